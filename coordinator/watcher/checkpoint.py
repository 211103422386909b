"""The leader's plan checkpoint job (semantics `checkpoint-first`): the revision its trigger work is settled through,
recorded in ``{prefix}/config/checkpoint`` so that a later start plans first only what changed after it
(``core/first_work.py``).

Rules:
- **One term.** A round pins the leader's term first, then asks the trigger reconciler how far its work is settled
  (``TriggerReconciler.settled_through``, ``watcher/triggers.py``'s **Start and settle**): a checkpoint says what one
  term planned, and is refused once that term has ended, even if this watcher leads again meanwhile.
- **Nothing settled, nothing written.** Nothing settled (work queued, in flight or waiting, or no full pass yet in this
  term): nothing is written, and the next round comes ``RECHECK_S`` later instead of a whole interval.
- **Only what says more.** Written only when it says more than the one recorded: a newer revision or another graph. The
  write is a compare-and-swap on the mod revision last seen, from the view or from this job's own last write (whichever
  is newer: the watch may not have brought that write back yet); a write that lost the race is tried again at the next
  round, never forced.
- **Cheap rounds.** A round costs a few set lookups and, at most, one fenced transaction: the checkpoint moves at most
  once per interval (``COORDINATOR_CHECKPOINT_INTERVAL_S``, default 30 s; 0 turns the job off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.checkpoint import PlanCheckpoint
from coordinator.core.model import dump_record
from coordinator.core.view import View
from coordinator.manager import Controller, Handle, Manager, Periodic
from coordinator.manager.periodic import RequeueAfter
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import Tick
from coordinator.watcher.triggers import TRIGGERS

log = logging.getLogger(__name__)

#: **Nothing settled, nothing written**: how soon a round that found the work unsettled looks again.
RECHECK_S = 5.0


@dataclass
class CheckpointJob:
    """Every rule of the module, as a timed concern (``manager/periodic.py``): only what a round needs."""

    executor: Executor
    view: View
    #: ``TriggerReconciler.settled_through``.
    settled: Callable[[], int | None]
    #: The digest of the graph in force.
    digest: Callable[[], str]
    watcher_id: str
    interval_s: float
    name: str = "checkpoint"
    #: **Only what says more**: this job's last write and its mod revision.
    _written: tuple[PlanCheckpoint, int] | None = field(default=None, init=False)

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round (**One term**, **Nothing settled, nothing written** and **Only what says more**); raises on etcd
        trouble (the jobs loop backs off) and on a lost term."""
        writes = self.executor.pin()  # **One term**: raises LeadershipLost when this watcher leads no term
        revision = self.settled()
        if revision is None:
            return min(RECHECK_S, self.interval_s)  # **Nothing settled, nothing written**
        digest = self.digest()
        current, expected = self.view.checkpoint, self.view.checkpoint_rev
        if self._written is not None and self._written[1] > expected:
            current, expected = self._written
        if current is not None and current.revision >= revision and current.digest == digest:
            return None  # **Only what says more**: nothing new to say
        new = PlanCheckpoint(revision=revision, digest=digest, watcher=self.watcher_id, at=now)
        result = await writes.cas(self.view.checkpoint_key, dump_record(new), expected)
        if not result.succeeded:
            log.info("checkpoint.moved revision=%d expected_mod_revision=%d", revision, expected)
            return min(RECHECK_S, self.interval_s)
        self._written = (new, result.revision)
        log.info("checkpoint.recorded revision=%d mod_revision=%d digest=%s", revision, result.revision, digest)
        return None


#: What this concern provides (``manager/manager.py``'s **Handles**):
#: the leader's plan checkpoint: the service reads it.
CHECKPOINT: Handle[CheckpointJob] = Handle("checkpoint")


def setup(manager: Manager, deps: Deps) -> CheckpointJob | None:
    """The leader's plan checkpoint (semantics `checkpoint-first`), a key requeued at its interval, through the
    revision the planner settled; None while it is off."""
    interval_s = deps.settings.checkpoint_interval_s
    if interval_s <= 0:
        return None
    job = CheckpointJob(deps.executor, deps.view, manager.get(TRIGGERS).settled_through,
                        lambda: deps.graph().digest, deps.watcher_id, interval_s)  # fmt: skip
    manager.register(Controller(job.name, Periodic(job), now=deps.clock, needs_leader=True,
                                period_s=job.interval_s, backoff_max_s=job.interval_s),
                     start_after=(Tick(job.name), job.interval_s))  # fmt: skip
    return manager.provide(CHECKPOINT, job)
