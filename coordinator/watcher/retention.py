"""Retention in the shell: pruning in guarded transactions, and the leader's retention, a key per partition.

Rules (semantics `retention-retires`, ``coordinator.core.retention``; the floor a watcher holds and what it retires
are the read model's, followed by the informer: ``informer/retention.py``):
- **Guarded prune.** :func:`prune` records the floor first (never lowering it unless asked), then deletes in
  transactions of at most ``BATCH_SIZE`` keys, each delete guarded by the key's mod revision: a key written meanwhile is
  kept and reported.
- **Leader-only, a key per partition.** The periodic retention (``COORDINATOR_RETENTION``) is a controller of its own
  (:class:`RetentionReconciler`, controller-runtime's shape: ``manager/controller.py``) whose keys are partitions
  (``watcher/keys.py``'s ``RetentionPartition``), reconciled on the leader only, from its view. The watch brings a key
  for each partition a batch touches, unless the controller holds that key already (queued, waiting or being
  reconciled), so a flood of events in one partition is one reconcile; the first sweep, a relist and a change that
  re-plans everything (a moved floor) bring ``AllPartitions``, a key for every partition the view holds and every
  partition with keys it forgot. Time is a requeue, not a round: a partition not yet older than the cutoff comes back
  when it will be (at most ``COORDINATOR_RETENTION_INTERVAL_S`` later: a clock that jumps costs one interval at most).
  One that is makes the recorded floor cover it (the whole cutoff, through the executor's pinned writes), then its keys
  (the view's and the leftovers') are selected and deleted guarded, with one ``retention.pruned`` line, and a
  ``retention.kept`` line when it is kept; while this leader's last floor, or its deletes in the partition, have not
  come back through the watch, it waits ``OWN_FLOOR_RECHECK_S`` instead. A kept partition (a run still running, an
  unfinished intent, a key written meanwhile) comes back after the interval; a partition that is not a canonical time
  is never retention's (``core.retention`` selects no key without a partition). A standby puts the keys it is handed
  back after the interval, so it still holds them when it leads. A failure is logged (``retention.failed``) and retried
  with a backoff capped at the interval, never fatal.
- **The audit trail ages out with prune, not with the leader.** ``prune`` (the prune role) also deletes the history
  entries and the ended holds from before the cutoff (``core.retention.select_audit``), guarded the same way,
  after the partitions. The leader's retention leaves them alone: a watcher never writes the incident controls' keys
  (``coordinator roles`` grants them to the operator and to prune only), and the trail grows by a few entries per
  incident.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.core.model import KeyLayout, is_canonical_partition, partition_datetime
from coordinator.core.retention import (
    BATCH_SIZE,
    AuditFact,
    Guarded,
    KeepReason,
    KeyFact,
    RetentionFloor,
    Selection,
    batches,
    cutoff_before,
    dump_floor,
    next_floor,
    parse_floor,
    partition_facts,
    select,
    select_audit,
)
from coordinator.core.view import ALL, View
from coordinator.errors import CoordinatorError, StoreError
from coordinator.etcd import EtcdStore, Writes
from coordinator.informer import Changes
from coordinator.informer.holds import read_history, read_holds
from coordinator.informer.retention import RETENTION_TRACKER, RetentionTracker
from coordinator.manager import DONE, Controller, Handle, Manager, Result, Watch, WorkQueue
from coordinator.manager.controller import wall_clock
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AllPartitions, RetentionKey, RetentionPartition

log = logging.getLogger(__name__)

#: Delete transactions in flight at once: each waits for etcd's fsync, and etcd commits concurrent ones together, so
#: 4 deletes about three times as fast as 1 on a single disk (bench/prune.py) while a loaded member still answers.
IN_FLIGHT = 4
#: Seconds before a due partition is looked at again when the floor this leader wrote, or its deletes of the
#: partition's keys, have not come back through the watch yet (the watch brings a write back within milliseconds; a
#: second keeps a lagging one from spinning).
OWN_FLOOR_RECHECK_S = 1.0
#: Partitions a sweep (``AllPartitions``) keys between two turns of the event loop: about 5 ms of work.
SWEEP_SLICE = 2000
#: The shortest requeue of a partition not yet old enough (its due time is computed to the second, so it never needs
#: less; a clock at the exact edge must not requeue it at 0 s again and again).
DUE_MARGIN_S = 0.5


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
    return AuditRecords(history.known(), [(h, holds.revisions.get(i, 0)) for i, h in holds.holds.items()])


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


# -- the leader's retention (**Leader-only, a key per partition**) -----------------------------------------------------


def due_in(partition: str, now: datetime, period: timedelta) -> float | None:
    """Seconds from ``now`` until ``partition`` is before the cutoff of ``period`` (``core.retention.cutoff_before``);
    0 when it is already. None when ``partition`` is not a canonical partition: no time to compare, and never
    retention's to delete (``core.retention``: a key without a partition is never selected)."""
    if not is_canonical_partition(partition):
        return None
    if partition < cutoff_before(now, period):
        return 0.0
    # The cutoff is whole seconds: the partition is before it from the second after it turns ``period`` old.
    return max((partition_datetime(partition) + period - now).total_seconds() + 1.0, DUE_MARGIN_S)


@dataclass
class RetentionReconciler:
    """The leader's retention as a controller of per-partition keys (**Leader-only, a key per partition**): what it
    needs, its controller, which keys a watch batch brings it, and one reconcile per partition."""

    #: The floor and the deletes are the executor's writes, pinned to the term the reconcile began in (refused once it
    #: ends, even if this watcher leads again meanwhile).
    executor: Executor
    keys: KeyLayout
    period: timedelta
    #: ``COORDINATOR_RETENTION_INTERVAL_S``: the longest a key waits (a kept partition's recheck, the cap of a young
    #: partition's requeue and of a failure's backoff, a standby's rhythm).
    interval_s: float
    view: View
    tracker: RetentionTracker
    watcher_id: str
    leading: Callable[[], bool] = lambda: True
    #: The graph in force: its scheduled dependents' permits go with their ledger entries (semantics `prune-deletes`).
    graph: Callable[[], Graph | None] = lambda: None
    #: The controller's clock (``manager/controller.py``), and its queue (tests give one with a clock of theirs).
    now: Callable[[], datetime] = wall_clock
    queue: WorkQueue[RetentionKey] | None = None
    name: str = "retention"
    controller: Controller[RetentionKey] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One worker: the floor's compare-and-swap is against the revision this watcher last saw, so two reconciles
        # writing it at once would fail each other; the deletes of one partition already run IN_FLIGHT at a time.
        self.controller = Controller(
            self.name, self, needs_leader=True, leading=self.leading, period_s=self.interval_s,
            backoff_max_s=self.interval_s, now=self.now, queue=self.queue,
        )  # fmt: skip

    # -- keys ---------------------------------------------------------------------------------------------------------

    def interest(self, changes: Changes) -> list[RetentionKey]:
        """What a watch batch brings: a key per partition it touched that the controller does not hold already
        (queued, waiting or being reconciled: a partition written 100,000 times is still one key), and
        ``AllPartitions`` after a relist or a change that re-plans everything (a moved floor among them)."""
        touched = {partition for _, partition in changes.of(View.NODES)}
        touched.update(changes.of(View.PARTITIONS))
        everything = ALL in touched or changes.relisted
        touched.discard(ALL)
        keys: list[RetentionKey] = [AllPartitions] if everything else []
        keys += self._fresh(touched)
        return keys

    def _fresh(self, partitions: Iterable[str]) -> list[RetentionKey]:
        busy = self.controller.busy
        return [key for key in (RetentionPartition(p) for p in sorted(partitions)) if not busy(key)]

    # -- reconcile ----------------------------------------------------------------------------------------------------

    async def reconcile(self, key: RetentionKey, now: datetime) -> Result:
        """``AllPartitions``: a key for every partition the view holds and every partition with keys it forgot (the
        first sweep, a relist); a partition: :meth:`retire`. Raises on etcd trouble (the controller backs off)."""
        # A sweep makes thousands of keys ready at once, and a partition not yet due is answered without awaiting
        # anything: without this the worker would hold the event loop (the watch, the lease) for the whole sweep.
        await asyncio.sleep(0)
        if isinstance(key, RetentionPartition):
            return await self.retire(key.partition, now)
        partitions = sorted(set(self.view.partitions) | self.tracker.leftover_partitions())
        for start in range(0, len(partitions), SWEEP_SLICE):
            for fresh in self._fresh(partitions[start : start + SWEEP_SLICE]):
                self.controller.add(fresh)
            await asyncio.sleep(0)  # the same, for a store of a hundred thousand partitions
        return DONE

    async def retire(self, partition: str, now: datetime) -> Result:
        """One partition (**Leader-only, a key per partition**): not old enough yet, back when it is; else the floor
        made to cover it (once this leader's last floor has come back), its keys gathered from the view and the
        leftovers, selected and deleted guarded (**Guarded prune**). Kept (a run still running, an unfinished intent,
        a key written meanwhile): back after the interval."""
        wait = due_in(partition, now, self.period)
        if wait is None:
            return DONE
        if wait > 0:
            return Result(requeue_after=min(wait, self.interval_s))
        tracker, expectations = self.tracker, self.executor.expectations
        # Gathered before the floor's write, which makes the view forget the partition when it comes back (its keys
        # become leftovers at the same revisions); a key written meanwhile is kept by its guarded delete.
        facts = self.facts(partition)
        # This leader's own writes that the informer has not brought back yet (``informer/expectations.py``): a floor
        # (the tracker's floor and its revision, the next write's guard, are the floor before it), or deletes of this
        # partition's keys (the model still shows them: selected again, they would be deleted twice).
        if expectations.pending(tracker.key) or any(expectations.pending(f.key) for f in facts):
            return Result(requeue_after=OWN_FLOOR_RECHECK_S)
        cutoff = cutoff_before(now, self.period)
        writes = self.executor.pin()  # raises LeadershipLost: nothing is deleted without leading
        floor = tracker.floor
        if floor is None or not floor.retires(partition):
            # Semantics `floor-first`: the floor covers the partition before its first delete. The whole cutoff, not
            # just this partition: one write per move of the cutoff, whatever the number of partitions it retires.
            floor = RetentionFloor(before=next_floor(floor, cutoff), by=self.watcher_id, at=now)
            await record_floor(writes, self.keys, floor, tracker.floor_rev)
        selection = select(facts, cutoff)
        outcome = await delete_selected(writes, selection.delete)
        self._report(partition, selection, outcome, floor.before)
        deleted = {(f.key, f.mod_rev) for f in selection.delete}
        # A key written while the deletes ran (a late rerun of a retired date) is not in the selection: looked at again.
        left = any((f.key, f.mod_rev) not in deleted for f in self.facts(partition))
        if selection.kept or outcome.changed or left:
            return Result(requeue_after=self.interval_s)
        return DONE

    def facts(self, partition: str) -> list[KeyFact]:
        """The keys of ``partition`` the view holds, and those it forgot that are still stored (the view's first)."""
        graph = self.graph()
        scheduled = graph.scheduled if graph is not None else frozenset()
        found = (
            {f.key: f for f in partition_facts(self.view, partition, scheduled)}
            if partition in self.view.partitions
            else {}
        )
        for fact in self.tracker.leftovers_of(partition):
            found.setdefault(fact.key, fact)
        return list(found.values())

    def _report(self, partition: str, selection: Selection, outcome: PruneOutcome, floor: str) -> None:
        """One ``retention.pruned`` line per partition that had keys (DEBUG when it had none left), one
        ``retention.kept`` line when it is kept."""
        kept = selection.kept_counts()
        if outcome.changed:
            kept[KeepReason.CHANGED.value] = len(outcome.changed)
        level = logging.INFO if selection.delete or selection.kept or outcome.changed else logging.DEBUG
        log.log(level,
            "retention.pruned partition=%s cutoff=%s floor=%s deleted=%d partitions=%d runs=%d ledger=%d backfill=%d "
            "kept_partitions=%d kept=%r changed=%d transactions=%d",
            partition, selection.cutoff, floor, outcome.deleted, len(selection.partitions),
            selection.counts.get("run", 0), selection.counts.get("ledger", 0), selection.counts.get("backfill", 0),
            len(selection.kept), ",".join(f"{k}:{v}" for k, v in sorted(kept.items())) or "-", len(outcome.changed),
            outcome.transactions,
        )  # fmt: skip
        for kept_partition in selection.kept:
            log.info("retention.kept partition=%s reasons=%r", kept_partition.partition,
                     "; ".join(kept_partition.details))  # fmt: skip


#: What this concern provides (``manager/manager.py``'s **Handles**):
#: the leader's retention: the service and the tests read it.
RETENTION: Handle[RetentionReconciler] = Handle("retention")


def setup(manager: Manager, deps: Deps) -> RetentionReconciler | None:
    """The leader's retention (semantics `retention-retires`, ``COORDINATOR_RETENTION``): a key per partition the
    watch touches (every one at the first sweep, one interval after the start, and after a relist), each due when its
    partition is; None while it is off."""
    settings = deps.settings
    if settings.retention_period is None:
        return None
    retention = RetentionReconciler(
        deps.executor, settings.keys, settings.retention_period, settings.retention_interval_s, deps.view,
        deps.index(RETENTION_TRACKER), deps.watcher_id, leading=deps.leading, graph=deps.graph, now=deps.clock,
    )  # fmt: skip
    manager.register(retention.controller, Watch(retention.interest),
                     start_after=(AllPartitions, retention.interval_s))  # fmt: skip
    return manager.provide(RETENTION, retention)
