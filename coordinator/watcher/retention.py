"""Retention in the shell: pruning in guarded transactions, and the leader's timed round.

Rules (semantics `retention-retires`, ``coordinator.core.retention``; the floor a watcher holds and what it retires
are the read model's, followed by the informer: ``informer/retention.py``):
- **Guarded prune.** :func:`prune` records the floor first (never lowering it unless asked), then deletes in
  transactions of at most ``BATCH_SIZE`` keys, each delete guarded by the key's mod revision: a key written meanwhile is
  kept and reported.
- **Leader-only rounds.** The periodic retention (``COORDINATOR_RETENTION``) runs on the leader only, from its view, as
  the timed key ``Tick("retention")`` of its controller (``manager/periodic.py``); each round logs one
  ``retention.pruned`` line. A failure is logged and retried with a backoff capped at the interval, never fatal.
- **The audit trail ages out with prune, not with the leader.** ``prune`` (the prune role) also deletes the history
  entries and the ended holds from before the cutoff (``core.retention.select_audit``, issue 51), guarded the same way,
  after the partitions. The leader's rounds leave them alone: a watcher never writes the incident controls' keys
  (``coordinator roles`` grants them to the operator and to prune only), and the trail grows by a few entries per
  incident.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.core.holds import Hold
from coordinator.core.model import KeyLayout
from coordinator.core.retention import (
    BATCH_SIZE,
    AuditFact,
    Guarded,
    HoldReason,
    RetentionFloor,
    Selection,
    batches,
    cutoff_before,
    dump_floor,
    facts_from_view,
    next_floor,
    parse_floor,
    select,
    select_audit,
)
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, StoreError
from coordinator.etcd import EtcdStore, Writes
from coordinator.informer.holds import read_history, read_holds
from coordinator.informer.retention import RetentionTracker
from coordinator.manager.periodic import RequeueAfter
from coordinator.watcher.executor import Executor

log = logging.getLogger(__name__)

#: Delete transactions in flight at once: each waits for etcd's fsync, and etcd commits concurrent ones together, so
#: 4 deletes about three times as fast as 1 on a single disk (bench/prune.py) while a loaded member still answers.
IN_FLIGHT = 4
#: Seconds before a round looks again when the floor it wrote has not come back through the watch yet.
OWN_FLOOR_RECHECK_S = 1.0


# -- pruning (**Guarded prune**) ---------------------------------------------------------------------------------------


@dataclass
class PruneOutcome:
    """What a prune did: keys deleted, keys kept because they changed meanwhile, transactions used."""

    deleted: int = 0
    changed: list[str] = field(default_factory=list)
    transactions: int = 0


async def read_floor(store: EtcdStore, keys: KeyLayout) -> tuple[RetentionFloor | None, int]:
    """The stored floor and the key's mod revision (0: absent). An unparsable value is an error: fix it first."""
    kv = await store.get(keys.config_key("retention"))
    if kv is None:
        return None, 0
    floor, problem = parse_floor(kv.value)
    if floor is None:
        raise CoordinatorError(f"{kv.key} holds an unparsable retention floor ({problem}); rewrite or delete it")
    return floor, kv.mod_revision


async def record_floor(writes: Writes, keys: KeyLayout, floor: RetentionFloor, expected_rev: int) -> int:
    """Write ``floor`` if the key still has ``expected_rev``; its revision. A concurrent writer is an error (the
    caller re-reads and decides again: the floor must never move back by accident). ``writes``: the store (``prune``)
    or the leader's executor (fenced)."""
    result = await writes.cas(keys.config_key("retention"), dump_floor(floor), expected_rev)
    if not result.succeeded:
        raise CoordinatorError("the retention floor changed while pruning (another prune?); run it again")
    return result.revision


async def delete_selected(
    writes: Writes,
    facts: Sequence[Guarded],
    *,
    size: int = BATCH_SIZE,
    in_flight: int = IN_FLIGHT,
) -> PruneOutcome:
    """Delete ``facts`` in transactions of at most ``size``, ``in_flight`` at a time, each key guarded by its mod
    revision (**Guarded prune**). A batch that meets a changed key is retried without it (and without keys already
    gone); the changed ones are kept. Order does not matter for safety (the floor is recorded first): oldest go first
    anyway."""
    outcome = PruneOutcome()
    todo = iter(batches(facts, size))  # shared by the workers: each batch is taken once

    async def one(batch: list[Guarded]) -> None:
        pending = [(f.key, f.mod_rev) for f in batch]
        while pending:
            result = await writes.delete_unchanged(pending)
            outcome.transactions += 1
            if result.succeeded:
                outcome.deleted += len(pending)
                return
            outcome.changed.extend(result.changed)
            drop = set(result.changed) | set(result.gone)
            if not drop:  # cannot happen (a failed compare names a key); never loop on it
                raise CoordinatorError("a guarded delete failed without naming a changed key")
            pending = [item for item in pending if item[0] not in drop]

    async def worker() -> None:
        for batch in todo:
            await one(batch)

    results = await asyncio.gather(*(worker() for _ in range(max(1, in_flight))), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    outcome.changed.sort()
    return outcome


# -- the audit trail (**The audit trail ages out**) -------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecords:
    """The history's keys with their mod revisions and every hold with its own, as the informer read them."""

    history: dict[str, int]
    holds: list[tuple[Hold, int]]


async def read_audit(store: EtcdStore, keys: KeyLayout) -> AuditRecords:
    """Holds and history through the informer (``informer/holds.py``: no reader lists the store on its own)."""
    holds, _ = await read_holds(store, keys)
    history, _ = await read_history(store, keys)
    return AuditRecords(history.held(), [(h, holds.revisions.get(i, 0)) for i, h in holds.holds.items()])


async def prune_audit(
    store: EtcdStore, writes: Writes, keys: KeyLayout, cutoff: str, now: datetime, *, dry_run: bool = False
) -> tuple[tuple[AuditFact, ...], PruneOutcome, str | None]:
    """**The audit trail ages out**: what was selected, what the guarded deletes did, and why they were refused (a
    role without write access to holds/ and history/), None when they were not."""
    records = await read_audit(store, keys)
    facts = select_audit(keys, records.history, records.holds, cutoff, now)
    if dry_run or not facts:
        return facts, PruneOutcome(), None
    try:
        return facts, await delete_selected(writes, facts), None
    except StoreError as exc:
        if "permission denied" not in str(exc).lower():
            raise
        return facts, PruneOutcome(), f"{exc}"


# -- the leader's periodic retention (**Leader-only rounds**) ----------------------------------------------------------


@dataclass(frozen=True)
class RetentionJob:
    """The leader's periodic retention (**Leader-only rounds**) as a timed concern (``manager/periodic.py``): what a
    round needs."""

    #: The floor and the deletes are the executor's writes, pinned to the term the round began in (refused once it
    #: ends, even if this watcher leads again meanwhile).
    executor: Executor
    keys: KeyLayout
    period: timedelta
    interval_s: float
    view: View
    tracker: RetentionTracker
    watcher_id: str
    name: str = "retention"

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One :func:`prune_from_view` round and its log lines; raises on etcd trouble (the jobs loop backs off).
        A floor this leader wrote that the informer has not brought back yet (``informer/expectations.py``) waits: the
        round would decide from the floor before it."""
        if self.executor.expectations.pending(self.tracker.key):
            return OWN_FLOOR_RECHECK_S
        selection, outcome, floor = await prune_from_view(self, now)
        kept = selection.kept_counts()
        if outcome.changed:
            kept[HoldReason.CHANGED.value] = len(outcome.changed)
        log.info(
            "retention.pruned cutoff=%s floor=%s deleted=%d partitions=%d runs=%d ledger=%d backfill=%d "
            "kept_partitions=%d kept=%r changed=%d transactions=%d",
            selection.cutoff, floor, outcome.deleted, len(selection.partitions), selection.counts.get("run", 0),
            selection.counts.get("ledger", 0), selection.counts.get("backfill", 0), len(selection.kept),
            ",".join(f"{k}:{v}" for k, v in sorted(kept.items())) or "-", len(outcome.changed), outcome.transactions,
        )  # fmt: skip
        for kept_partition in selection.kept:
            log.info("retention.kept partition=%s reasons=%r", kept_partition.partition,
                     "; ".join(kept_partition.details))  # fmt: skip
        return None


async def prune_from_view(job: RetentionJob, now: datetime) -> tuple[Selection, PruneOutcome, str]:
    """One round of the leader's retention: record the floor, then delete what the view (and the leftovers) hold
    before the cutoff."""
    tracker, view = job.tracker, job.view
    cutoff = cutoff_before(now, job.period)
    writes = job.executor.pin()  # raises LeadershipLost: no round without leading
    # Gather first: recording the floor makes the view forget these partitions.
    facts = {f.key: f for f in facts_from_view(view, cutoff)}
    facts.update({k: f for k, f in tracker.leftovers.items() if f.partition < cutoff and k not in facts})
    floor = next_floor(tracker.floor, cutoff)
    if tracker.floor is None or tracker.floor.before != floor:
        new = RetentionFloor(before=floor, by=job.watcher_id, at=now)
        # The round deletes from what it gathered above; the informer brings the floor back into the tracker and the
        # view forgets what it retires then (**The floor in event order**), before the next round may start.
        await record_floor(writes, job.keys, new, tracker.floor_rev)
    selection = select(facts.values(), cutoff)
    outcome = await delete_selected(writes, selection.delete)
    return selection, outcome, floor
