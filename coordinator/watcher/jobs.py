"""The leader's periodic jobs (audit, retention) as timed keys of the watcher's one work queue.

In the spirit of client-go's ``workqueue.AddAfter`` and controller-runtime's ``Result{RequeueAfter: d}``: "run the
audit every 5 minutes" is the key ``JobKey("audit")`` added to the queue with a delay, not a loop with its own timer.

Rules:
1. :meth:`LeaderJobs.schedule` adds each job's key after its interval; the queue hands it out when it is due. A job
   is due one interval after the end of its previous round (or after the schedule, for the first), or sooner when
   that round asked for it: a round returns its ``requeue_after`` (controller-runtime's ``Result{RequeueAfter}``),
   the seconds to its next round when that must come before the interval (an unread event to list again, a
   delivery whose wait ends), None otherwise. A job never reaches into the queue itself.
2. A due key is handed to :meth:`LeaderJobs.hand` by the loop that reads the queue; :meth:`LeaderJobs.run` is the one
   loop that runs the jobs, one at a time, and owns no other work. While the key runs it stays in processing (the
   queue never hands it out twice), and ``done`` is called when the round ends.
3. Only the leader runs a job: a key that comes due on a standby is put back for one interval, without running.
4. A round that fails is logged (``{job}.failed``) and its key is added rate-limited: 1, 2, 4... s, capped at the
   job's interval (client-go's per-item backoff); a round that succeeds resets the backoff (``forget``). A lost
   leadership is reported (``on_leadership_lost``) and the key waits one interval. A failure never stops the watcher.
5. Each job names only what it needs (a small dataclass of the store, the view, the keys...), never the watcher: the
   job modules do not import ``watcher.service`` (an import-linter contract keeps it so). ``now`` is given to the
   job by this loop (one clock, injectable, so tests drive time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from coordinator.errors import LeadershipLost, WritesRefused
from coordinator.watcher.queue import JobKey, WorkKey, WorkQueue

log = logging.getLogger(__name__)


class Job(Protocol):
    """What the loop needs of a job: its name, its interval and one round at ``now``."""

    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float: ...

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round; raises on failure (rule 4). Returns when the next round must come sooner than the interval
        (rule 1)."""
        ...


#: Rule 1: seconds to a job's next round when sooner than its interval; None: one interval.
RequeueAfter = float | None


def wall_clock() -> datetime:
    return datetime.now(UTC)


class LeaderJobs:
    """Rules 1-4: schedule, hand over, run only while leading, back off on failure."""

    def __init__(
        self,
        queue: WorkQueue[WorkKey],
        jobs: Sequence[Job],
        *,
        leading: Callable[[], bool],
        on_leadership_lost: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = wall_clock,
    ) -> None:
        self._queue = queue
        self._jobs = {JobKey(job.name): job for job in jobs}
        self._leading = leading
        self._on_leadership_lost = on_leadership_lost
        self._now = now
        self._handed: asyncio.Queue[JobKey] = asyncio.Queue()
        self.rounds: dict[str, int] = dict.fromkeys((job.name for job in jobs), 0)

    def schedule(self) -> None:
        """Add every job's key after its interval (rule 1)."""
        for key, job in self._jobs.items():
            self._queue.add_after(key, job.interval_s)

    def hand(self, key: JobKey) -> None:
        """A due key from the queue (in processing until its round ends): run it in :meth:`run` (rule 2)."""
        if key not in self._jobs:  # not a job of this process: nothing will ever run it
            self._queue.done(key)
            return
        self._handed.put_nowait(key)

    async def run(self) -> None:
        """The one loop of the periodic jobs (rule 2): until cancelled."""
        while True:
            key = await self._handed.get()
            await self.run_key(key)

    async def run_key(self, key: JobKey) -> None:
        """One handed-out key: a round if leading, then the key back in the queue after its delay (rules 3, 4)."""
        job = self._jobs[key]
        delay = job.interval_s
        try:
            if self._leading():
                requeue_after = await job.run_once(self._now())
                if requeue_after is not None:
                    delay = min(delay, max(0.0, requeue_after))  # rule 1: sooner, never later than the interval
                self.rounds[job.name] += 1
                self._queue.forget(key)
        except LeadershipLost:
            self._on_leadership_lost()
        except Exception as exc:  # a periodic job is a safety net: it never takes the watcher down (rule 4)
            self._queue.done(key)
            retry = self._queue.add_rate_limited(key, max_s=job.interval_s)
            # Under an etcd alarm every round would repeat it: the probe logs the alarm once (etcd.alarm_raised).
            level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING
            log.log(level, "%s.failed error=%s retry_in_s=%.1f", job.name, exc, retry)
            return
        self._queue.done(key)
        self._queue.add_after(key, delay)
