"""The leader's plan checkpoint job (semantics rule 19): the revision its trigger work is settled through, recorded in
``{prefix}/config/checkpoint`` so that a later start plans first only what changed after it (``core/first_work.py``).

Rules:
1. A round pins the leader's term first, then asks the trigger reconciler how far its work is settled
   (``TriggerReconciler.settled_through``, its rule 5): a checkpoint says what one term planned, and is refused
   once that term has ended, even if this watcher leads again meanwhile.
2. Nothing settled (work queued, in flight or waiting, or no full pass yet in this term): nothing is written, and
   the next round comes ``RECHECK_S`` later instead of a whole interval.
3. Written only when it says more than the one recorded: a newer revision or another graph. The write is a
   compare-and-swap on the mod revision last seen, from the view or from this job's own last write (whichever is
   newer: the watch may not have brought that write back yet); a write that lost the race is tried again at the
   next round, never forced.
4. A round costs a few set lookups and, at most, one fenced transaction: the checkpoint moves at most once per
   interval (``COORDINATOR_CHECKPOINT_INTERVAL_S``, default 30 s; 0 turns the job off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.checkpoint import PlanCheckpoint
from coordinator.core.model import dump_record
from coordinator.core.view import View
from coordinator.manager.periodic import RequeueAfter
from coordinator.watcher.executor import Executor

log = logging.getLogger(__name__)

#: Rule 2: how soon a round that found the work unsettled looks again.
RECHECK_S = 5.0


@dataclass
class CheckpointJob:
    """Rules 1-4, as a timed concern (``manager/periodic.py``): only what a round needs."""

    executor: Executor
    view: View
    #: ``TriggerReconciler.settled_through``.
    settled: Callable[[], int | None]
    #: The digest of the graph in force.
    digest: Callable[[], str]
    watcher_id: str
    interval_s: float
    name: str = "checkpoint"
    #: Rule 3: this job's last write and its mod revision.
    _written: tuple[PlanCheckpoint, int] | None = field(default=None, init=False)

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round (rules 1-3); raises on etcd trouble (the jobs loop backs off) and on a lost term."""
        writes = self.executor.pin()  # rule 1: raises LeadershipLost when this watcher leads no term
        revision = self.settled()
        if revision is None:
            return min(RECHECK_S, self.interval_s)  # rule 2
        digest = self.digest()
        current, expected = self.view.checkpoint, self.view.checkpoint_rev
        if self._written is not None and self._written[1] > expected:
            current, expected = self._written
        if current is not None and current.revision >= revision and current.digest == digest:
            return None  # rule 3: nothing new to say
        new = PlanCheckpoint(revision=revision, digest=digest, watcher=self.watcher_id, at=now)
        result = await writes.cas(self.view.checkpoint_key, dump_record(new), expected)
        if not result.succeeded:
            log.info("checkpoint.moved revision=%d expected_mod_revision=%d", revision, expected)
            return min(RECHECK_S, self.interval_s)
        self._written = (new, result.revision)
        log.info("checkpoint.recorded revision=%d mod_revision=%d digest=%s", revision, result.revision, digest)
        return None
