"""The trigger reconciler's passes, summarised: one INFO line a minute with their counts, instead of a line per pass.

The watch brings hundreds of passes a minute on a busy estate, and most of them find nothing to do; what the watcher
did is said by the lines of its decisions and effects (``actuator.intent``, ``actuator.created``,
``actuator.cleared``, ``hold.held``, ``budget.held``, ...). Each pass's own line (``reconcile revision=...``,
``watcher/triggers.py``'s **One line per pass**) is bookkeeping: at DEBUG.

Rules:
- **One line a minute.** Every ``SUMMARY_INTERVAL_S`` the passes since the last summary are said in one line,
  ``reconcile.summary passes=N full=F revisions=A..B actions=... triggers=... resumes=... submitted=...
  in_flight=... errors=... leader=... plan_ms_max=...``; a minute without a pass says nothing (an idle watcher is
  quiet). ``full`` counts the passes that planned every partition (a sweep's end, a one-shot pass). ``errors`` is the
  actuator's count of failed attempts since the watcher started (as the pass lines said it).
- **Said at the stop.** The passes since the last summary are said when the watcher stops, so a short run (a test, a
  restart) still shows them.
- **Two passes, one revision.** A pass's line names the revision its view had: two passes at one revision are two
  passes, not one line twice. That happens when an attempt's end plans its key again with nothing new in etcd
  (``watcher/actuator.py``'s **The end plans the key again**) and when the first pass's own graph adoption comes back
  through the watch (its activation write plans every partition again). Both are cheap and correct (level-triggered);
  the summary counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from coordinator.manager import Controller, Handle, Manager, Periodic
from coordinator.manager.periodic import RequeueAfter
from coordinator.watcher.actuator import ACTUATOR
from coordinator.watcher.deps import Deps
from coordinator.watcher.keys import Tick
from coordinator.watcher.sweep import PassSummary
from coordinator.watcher.triggers import TRIGGERS

log = logging.getLogger("coordinator.watcher.triggers")  # the summary is the trigger reconciler's line

#: **One line a minute**.
SUMMARY_INTERVAL_S = 60.0


@dataclass
class SummaryJob:
    """**One line a minute** and **Said at the stop**, as a timed concern (``manager/periodic.py``)."""

    summary: PassSummary
    #: The executor's attempts in flight now, and the actuator's failed attempts so far.
    in_flight: Callable[[], int]
    errors: Callable[[], int]
    interval_s: float = SUMMARY_INTERVAL_S
    name: str = "pass summary"

    async def run_once(self, now: datetime) -> RequeueAfter:
        self.say()
        return None

    def say(self) -> None:
        """The summary line of the passes since the last one, if any."""
        line = self.summary.line(in_flight=self.in_flight(), errors=self.errors())
        if line is not None:
            log.info("%s", line)


#: What this concern provides (``manager/manager.py``'s **Handles**):
#: the summary of the planner's passes: the service says it once more at the stop.
PASS_SUMMARY: Handle[SummaryJob] = Handle("pass summary")


def setup(manager: Manager, deps: Deps) -> SummaryJob:
    """The summary of the trigger reconciler's passes, a key requeued every minute, on leaders and standbys alike (a
    standby plans too)."""
    triggers, actuator = manager.get(TRIGGERS), manager.get(ACTUATOR)
    job = SummaryJob(triggers.summary, lambda: deps.executor.busy, lambda: actuator.outcome.errors)
    manager.register(Controller(job.name, Periodic(job), now=deps.clock, period_s=job.interval_s,
                                backoff_max_s=job.interval_s),
                     start_after=(Tick(job.name), job.interval_s))  # fmt: skip
    return manager.provide(PASS_SUMMARY, job)
