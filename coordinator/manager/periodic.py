"""A timed concern as a controller's key: "run the audit every 5 minutes" is the key ``Tick("audit")`` requeued five
minutes after each reconcile (client-go's ``AddAfter``, controller-runtime's ``Result{RequeueAfter}``), not a loop
with a timer of its own.

Rules:
- **Interval.** A round is due one interval after the end of the previous one, or sooner when that round asked for it:
  ``run_once`` returns the seconds to its next round when that must come before the interval (an unread event to
  list again, a delivery whose wait ends), None otherwise. A job never reaches into a queue itself.
- **Clock.** ``now`` is the controller's (one clock, injectable, so tests drive time); a job is told it.
- **Failures** are ``manager/controller.py``'s **Errors**: retried after a backoff capped at the interval; a lost
  leadership waits one interval. A job names only what it needs (the store's reads, the executor's writes, the view...),
  never the watcher.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Protocol

from coordinator.manager.controller import Result

#: Rule *interval*: seconds to a job's next round when sooner than its interval; None: one interval.
RequeueAfter = float | None


class Job(Protocol):
    """What a timed concern provides: its name, its interval and one round at ``now``."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round; raises on failure. Returns when the next round must come sooner than the interval."""
        ...


class Periodic:
    """The reconciler of a timed concern's one key: one round, then the key again after its interval or sooner."""

    def __init__(self, job: Job) -> None:
        self.job = job

    async def reconcile(self, key: Hashable, now: datetime) -> Result:
        sooner = await self.job.run_once(now)
        interval = self.job.interval_s
        return Result(requeue_after=interval if sooner is None else min(interval, max(0.0, sooner)))
