"""Retention: what a pruned partition means, which keys ``coordinator prune`` deletes, and what a watcher forgets.

This module is the specification of semantics `retention-retires` (``docs/semantics.md``); the rules are named as there.

``{prefix}/config/retention`` holds the retention FLOOR F, a canonical
partition. A partition P < F is RETIRED (canonical partitions sort by time).
   a. `floor-first`: The floor comes first. Whoever deletes keys below F records F before the first delete, so every
      view that reflects a deletion also reflects the floor (etcd's one revision order; a watcher applies events in
      order).
   b. `retired-inert`: A retired decision makes nothing happen. The decision of D for P is retired when P < F, or when
      it reads a partition before F: through a mapped edge (semantics `partition-grids`: a fan-out hour whose day starts
      before F, an offset's yesterday), transitively through the freshness of D's upstreams. The planner's triggers for
      retired decisions are dropped, so neither a deletion nor a new write in a retired partition (an old date rerun in
      Airflow after it was pruned) ever triggers or clears anything. A window that straddles the floor is retired as a
      whole: it is never planned with missing inputs.
   c. `retired-intents-complete`: Unfinished intents are completed. An intent recorded before its partition was retired
      (``pending`` or ``error``) is still completed (a Resume, never a new decision): its Airflow call may already have
      happened and exactly-once needs it finished. Prune therefore never deletes a partition holding one.
   d. `floor-forward`: The floor only moves forward. A prune with an earlier cutoff keeps the floor; only an explicit
      lowering (``prune --lower-floor``, or editing the key) moves it back, which makes the partitions between the two
      plannable again with whatever keys are left.
   e. `prune-deletes`: What prune deletes: every run-state, ledger, backfill and permit key whose partition is before
      the cutoff, except in the partitions that hold an unfinished intent or a queued/running run of any DAG (kept whole
      and listed with the reason). Each delete compares the key's mod revision, so a key written meanwhile is kept,
      never lost. A permit goes with its ledger entry (semantics `permit-not-run`: written in the same transaction, so
      at the same mod revision: what a view that holds no permit deletes it by), or, read from the store, by its own.
   f. `forget-retired`: A watcher forgets retired partitions (memory), except those holding an unfinished intent
      (`retired-intents-complete` needs them whole); a retired key written later is forgotten again as soon as it is
      applied.
   g. The audit trail ages out with the partitions: a history entry written before the cutoff (the time is
      in its key) and a hold that stopped holding before it (released, or expired) are deleted too
      (:func:`select_audit`), guarded by their mod revisions like every other delete. A standing hold is never
      deleted, however old; neither is a value that does not parse (its age is unknown).

Pure: no I/O, no clock (callers pass ``now``), no logging.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

from coordinator.core.actions import Plan, Trigger, Verdict

# The floor's value is a fact of the view (core/floor); re-exported for the callers that prune.
from coordinator.core.floor import RetentionFloor as RetentionFloor
from coordinator.core.floor import dump_floor as dump_floor
from coordinator.core.floor import parse_floor as parse_floor
from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.core.model import (
    HISTORY_TIME_FORMAT,
    KeyLayout,
    NodeId,
    TriggerStatus,
    canonical_partition,
    parse_run_record,
    parse_trigger_record,
)
from coordinator.core.partition import is_partition
from coordinator.core.permit import parse_permit_key, permit_key, permits_prefix
from coordinator.core.view import View

#: Deletes per etcd transaction. etcd refuses a transaction with more than ``--max-txn-ops`` (128 by default)
#: operations in any of its compare, success or failure lists; 64 stays well below it (a leader's fence compare
#: adds one) and keeps each transaction small enough not to stall a loaded member.
BATCH_SIZE = 64

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``1d12h``, ``3600s`` (units s, m, h, d, w); ValueError naming what is wrong."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit s, m, h, d or w, e.g. 90d or 12h")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(compact))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    return timedelta(seconds=seconds)


def cutoff_before(now: datetime, older_than: timedelta) -> str:
    """The cutoff of ``--older-than``: the partition ``older_than`` before ``now``, to the whole second."""
    return canonical_partition((now - older_than).replace(microsecond=0))


def cutoff_problem(cutoff: str, now: datetime) -> str | None:
    """Why ``cutoff`` cannot be used (a cutoff in the future would retire partitions that have not happened)."""
    if cutoff > canonical_partition(now.replace(microsecond=0)):
        return f"the cutoff {cutoff} is in the future (now is {canonical_partition(now.replace(microsecond=0))})"
    return None


def next_floor(current: RetentionFloor | None, cutoff: str, *, lower: bool = False) -> str:
    """The floor to record for ``cutoff`` (semantics `floor-forward`): never below the current one unless ``lower``."""
    if current is None or lower:
        return cutoff
    return max(current.before, cutoff)


# -- selection (semantics `prune-deletes`)
# --------------------------------------------------------------------------------------------


class KeyKind(StrEnum):
    RUN = "run"
    LEDGER = "ledger"
    BACKFILL = "backfill"
    #: A task-instance state (``{prefix}/tasks/...``); a partition's task keys go with its run states.
    TASK = "task"
    #: A scheduled dependent's permit (``{prefix}/permits/...``, semantics `scheduled-permit`): goes with its ledger.
    PERMIT = "permit"


class KeepReason(StrEnum):
    """Why a partition before the cutoff is kept whole."""

    UNFINISHED_INTENT = "unfinished intent"
    ACTIVE_RUN = "queued or running run"
    #: Found only while deleting: the key was written after it was read (its mod revision moved).
    CHANGED = "changed while pruning"


@dataclass(frozen=True, slots=True)
class KeyFact:
    """One key of a partition before the cutoff, with what it says about keeping its partition."""

    key: str
    kind: KeyKind
    node: NodeId
    partition: str
    mod_rev: int
    #: Set when this key alone keeps its whole partition (and why, in words).
    keep: KeepReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KeptPartition:
    partition: str
    reasons: tuple[KeepReason, ...]
    #: One line per keeping key, e.g. ``default/06_pipeline: intent pending``.
    details: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Selection:
    """What to delete (oldest partition first) and which partitions before the cutoff are kept, and why."""

    cutoff: str
    delete: tuple[KeyFact, ...]
    kept: tuple[KeptPartition, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def partitions(self) -> list[str]:
        return sorted({f.partition for f in self.delete})

    def kept_counts(self) -> dict[str, int]:
        """Kept partitions per reason (a partition kept for two reasons counts under both)."""
        found: dict[str, int] = {}
        for kept in self.kept:
            for reason in kept.reasons:
                found[reason.value] = found.get(reason.value, 0) + 1
        return found


def _keep_of_run(raw: bytes) -> tuple[KeepReason | None, str]:
    record, _ = parse_run_record(raw)
    if record is not None and record.state.active:
        return KeepReason.ACTIVE_RUN, f"{record.state} (run {record.run_id})"
    # an unparsable value counts as absent, as everywhere (``view``'s **Bad values never raise**): it keeps nothing
    return None, ""


def _keep_of_ledger(raw: bytes) -> tuple[KeepReason | None, str]:
    record, _ = parse_trigger_record(raw)
    if record is not None and record.status is not TriggerStatus.DONE:
        return KeepReason.UNFINISHED_INTENT, f"intent {record.status} ({record.action} {record.run_id})"
    return None, ""


def facts_from_kvs(keys: KeyLayout, kvs: Iterable[tuple[str, bytes, int]], cutoff: str) -> list[KeyFact]:
    """The keys of partitions before ``cutoff`` among (key, value, mod_revision) triples (a snapshot's)."""
    backfill, permits = keys.config_key("backfill/"), permits_prefix(keys)
    found: list[KeyFact] = []
    for key, value, mod_rev in kvs:
        if key[key.rfind("/") + 1 :] >= cutoff:  # most keys are recent: skip them before parsing anything
            continue
        if key.startswith(keys.runs):
            at, kind = keys.parse_run_key(key), KeyKind.RUN
        elif key.startswith(keys.triggers):
            at, kind = keys.parse_trigger_key(key), KeyKind.LEDGER
        elif key.startswith(backfill):
            at, kind = _parse_backfill(key[len(backfill) :]), KeyKind.BACKFILL
        elif key.startswith(keys.tasks):
            task = keys.parse_task_key(key)
            at, kind = (None if task is None else (task[0], task[2])), KeyKind.TASK
        elif key.startswith(permits):
            at, kind = parse_permit_key(keys, key), KeyKind.PERMIT
        else:
            continue
        if at is None or at[1] >= cutoff:  # malformed keys have no partition: never ours to delete
            continue
        keep, detail = (
            _keep_of_run(value) if kind in (KeyKind.RUN, KeyKind.TASK)
            else _keep_of_ledger(value) if kind is KeyKind.LEDGER else (None, "")
        )  # fmt: skip
        found.append(KeyFact(key, kind, at[0], at[1], mod_rev, keep, detail))
    return found


def _parse_backfill(rest: str) -> tuple[NodeId, str] | None:
    parts = rest.split("/")
    if len(parts) != 3 or not is_partition(parts[2]):
        return None
    try:
        return NodeId.parse(f"{parts[0]}/{parts[1]}"), parts[2]
    except ValueError:
        return None


def facts_from_view(view: View, cutoff: str) -> list[KeyFact]:
    """The same facts from a watcher's view (the leader's periodic retention: no second copy of the store).

    Unparsable values are not in a view; the ``prune`` command, which reads a snapshot, deletes those too, and the
    permits (``facts_from_kvs``).
    """
    return [
        f for partition in sorted(p for p in view.partitions if p < cutoff) for f in partition_facts(view, partition)
    ]


def partition_facts(view: View, partition: str, scheduled: Collection[NodeId] = ()) -> list[KeyFact]:
    """The keys the view holds for one partition, as :class:`KeyFact` values; with ``scheduled`` (the DAGs of the
    graph in force that keep their own timetable) each of their ledger entries' permit too, at the entry's mod
    revision (semantics `prune-deletes`)."""
    keys = view.keys
    found: list[KeyFact] = []
    for node in sorted(view.partitions.get(partition, ())):
        at = (node, partition)
        run = view.runs.get(at)
        if run is not None:
            keep = KeepReason.ACTIVE_RUN if run.state.active else None
            detail = f"{run.state} (run {run.run_id})" if keep else ""
            found.append(KeyFact(keys.run_key(node, partition), KeyKind.RUN, node, partition, run.rev, keep, detail))
        ledger = view.ledger.get(at)
        if ledger is not None:
            rec = ledger  # the slim fact carries status, action and run id
            keep = KeepReason.UNFINISHED_INTENT if rec.status is not TriggerStatus.DONE else None
            detail = f"intent {rec.status} ({rec.action} {rec.run_id})" if keep else ""
            found.append(KeyFact(keys.trigger_key(node, partition), KeyKind.LEDGER, node, partition, ledger.mod_rev,
                                 keep, detail))  # fmt: skip
            if node in scheduled:
                key = permit_key(keys, node, partition)
                found.append(KeyFact(key, KeyKind.PERMIT, node, partition, ledger.mod_rev))
        backfill = view.backfills.get(at)
        if backfill is not None:
            key = keys.config_key(f"backfill/{node.instance}/{node.dag_id}/{partition}")
            found.append(KeyFact(key, KeyKind.BACKFILL, node, partition, backfill))
    for (node, task, at_partition), fact in sorted(view.tasks.items()) if view.tasks else ():
        if at_partition == partition:
            keep = KeepReason.ACTIVE_RUN if fact.state.active else None
            detail = f"task {task} {fact.state} (run {fact.run_id})" if keep else ""
            key = keys.task_key(node, task, partition)
            found.append(KeyFact(key, KeyKind.TASK, node, partition, fact.rev, keep, detail))
    return found


def select(facts: Iterable[KeyFact], cutoff: str) -> Selection:
    """Semantics `prune-deletes`: delete every key before ``cutoff`` except in partitions one of their keys keeps."""
    by_partition: dict[str, list[KeyFact]] = {}
    for fact in facts:
        if fact.partition < cutoff:
            by_partition.setdefault(fact.partition, []).append(fact)
    delete: list[KeyFact] = []
    kept: list[KeptPartition] = []
    for partition in sorted(by_partition):
        group = sorted(by_partition[partition], key=lambda f: f.key)
        keeping = [f for f in group if f.keep is not None]
        if keeping:
            reasons = tuple(sorted({f.keep for f in keeping if f.keep is not None}))
            kept.append(KeptPartition(partition, reasons, tuple(f"{f.node.qualified}: {f.detail}" for f in keeping)))
        else:
            delete.extend(group)
    counts = {kind.value: sum(f.kind is kind for f in delete) for kind in KeyKind}
    if not counts[KeyKind.TASK.value]:  # a store without task states reports what it always reported
        del counts[KeyKind.TASK.value]
    return Selection(cutoff, tuple(delete), tuple(kept), counts)


class Guarded(Protocol):
    """A key to delete only if its mod revision is still ``mod_rev`` (a partition's key, an audit record)."""

    @property
    def key(self) -> str: ...

    @property
    def mod_rev(self) -> int: ...


G = TypeVar("G", bound=Guarded)


def batches(facts: Sequence[G], size: int = BATCH_SIZE) -> list[list[G]]:
    """Transactions of at most ``size`` deletes, oldest partition first."""
    return [list(facts[i : i + size]) for i in range(0, len(facts), size)]


# -- the audit trail (rule g) ------------------------------------------------------------------------------------------


class AuditKind(StrEnum):
    HISTORY = "history"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class AuditFact:
    """A history entry or an ended hold from before the cutoff (rule g), with the revision its delete compares."""

    key: str
    kind: AuditKind
    mod_rev: int
    #: When it was written (history) or stopped holding (a hold).
    at: datetime


def cutoff_time(cutoff: str) -> datetime:
    """The cutoff (a canonical partition) as an instant, to compare the audit trail's times with."""
    return datetime.fromisoformat(cutoff.replace("Z", "+00:00")).astimezone(UTC)


def history_time_of(keys: KeyLayout, key: str) -> datetime | None:
    """The time a history key names (``{prefix}/history/{time}-{id}``); None for a key of another shape."""
    stamp, sep, entry_id = key.removeprefix(keys.history).partition("Z-")
    if not key.startswith(keys.history) or not sep or not entry_id:
        return None
    try:
        return datetime.strptime(f"{stamp}Z", HISTORY_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def hold_ended(hold: Hold) -> datetime | None:
    """When a hold stopped holding: its release, else its expiry; None while nothing ends it."""
    return hold.released_at or hold.until


def select_audit(
    keys: KeyLayout, history: Mapping[str, int], holds: Iterable[tuple[Hold, int]], cutoff: str, now: datetime
) -> tuple[AuditFact, ...]:
    """Rule g: the history keys (key -> mod revision; a revision below 1 marks a value that does not parse) written
    before ``cutoff`` and the holds (with their mod revisions) that stopped holding before it, oldest first. A hold
    standing at ``now`` is never selected (an expiry in the future has not ended it)."""
    floor = cutoff_time(cutoff)
    found: list[AuditFact] = []
    for key, mod_rev in history.items():
        at = history_time_of(keys, key)
        if at is not None and at < floor and mod_rev > 0:
            found.append(AuditFact(key, AuditKind.HISTORY, mod_rev, at))
    for hold, mod_rev in holds:
        ended = hold_ended(hold)
        if ended is not None and ended < floor and not hold.standing(now) and mod_rev > 0:
            found.append(AuditFact(keys.hold_key(hold.id), AuditKind.HOLD, mod_rev, ended))
    return tuple(sorted(found, key=lambda f: (f.at, f.key)))


def audit_counts(facts: Iterable[AuditFact]) -> dict[str, int]:
    """Selected audit records per kind (history, hold)."""
    found = dict.fromkeys((k.value for k in AuditKind), 0)
    for fact in facts:
        found[fact.kind.value] += 1
    return found


# -- the planner side (semantics `retired-inert`, `retired-intents-complete`, `forget-retired`)
# --------------------------------------------------------------------------


class Retirement:
    """Which decisions a floor retires (semantics `retired-inert`), for one graph; memoised, so ask freely."""

    def __init__(self, graph: Graph, floor: RetentionFloor | None) -> None:
        self.graph = graph
        self.floor = floor
        self._lowest: dict[tuple[NodeId, str], str] = {}

    def lowest_input(self, node: NodeId, partition: str) -> str:
        """The earliest partition a decision of ``node`` for ``partition`` reads, through mapped edges and the
        freshness of its upstreams (a failure handler reads only its sources' states)."""
        at = (node, partition)
        found = self._lowest.get(at)
        if found is not None:
            return found
        graph = self.graph
        lowest = partition
        mapped = graph.mapped_edges.get(node, ())
        spec = graph.dags[node]
        for source in (*spec.upstreams, *spec.on_failure_of):
            needed = graph.source_partitions(node, source, partition) if source in mapped else (partition,)
            if not needed:
                continue
            # Mappings are monotone in time, so the window's first partition is the one that reaches back furthest.
            first = needed[0]
            reach = self.lowest_input(source, first) if source in spec.upstreams else first
            lowest = min(lowest, reach)
        self._lowest[at] = lowest
        return lowest

    def why_retired(self, node: NodeId, partition: str) -> str | None:
        """None when the decision is live; else why it is retired, in words."""
        floor = self.floor
        if floor is None:
            return None
        if floor.retires(partition):
            return floor.describe()
        if not self.graph.mapped_edges or node not in self.graph.dags:
            return None
        lowest = self.lowest_input(node, partition)
        if floor.retires(lowest):
            return f"its inputs reach back to {lowest}, and {floor.describe()}"
        return None

    def apply(self, plan: Plan) -> Plan:
        """``plan`` without the triggers of retired decisions, with their verdicts saying so (semantics `retired-inert`,
        `retired-intents-complete`)."""
        if self.floor is None:
            return plan
        actions = tuple(
            a for a in plan.actions if not (isinstance(a, Trigger) and self.why_retired(a.node, a.partition))
        )
        verdicts: dict[tuple[NodeId, str], Verdict] = {}
        for at, verdict in plan.verdicts.items():
            why = self.why_retired(*at)
            if why is not None:
                verdict = replace(verdict, due=False, summary=f"{verdict.node} is retired for {at[1]}: {why}; "
                                  f"nothing is planned there (was: {verdict.summary})")  # fmt: skip
            verdicts[at] = verdict
        return Plan(plan.revision, actions, verdicts)


def unfinished(view: View, partition: str) -> bool:
    """Whether ``partition`` holds an intent that is not confirmed (semantics `retired-intents-complete` keeps it
    whole)."""
    return any(
        (fact := view.ledger.get((node, partition))) is not None and fact.status is not TriggerStatus.DONE
        for node in view.partitions.get(partition, ())
    )


def forget_retired(view: View, floor: RetentionFloor | None, partitions: Iterable[str] | None = None) -> list[KeyFact]:
    """Semantics `forget-retired`: drop the facts of retired ``partitions`` (every retired one when None) from ``view``,
    except the partitions holding an unfinished intent. Returns the keys dropped: they are still in etcd until pruned,
    and the leader's periodic retention deletes them from this list (the view no longer has them)."""
    if floor is None:
        return []
    candidates = list(view.partitions) if partitions is None else list(partitions)
    dropped: list[KeyFact] = []
    for partition in candidates:
        if not floor.retires(partition) or partition not in view.partitions or unfinished(view, partition):
            continue
        dropped += partition_facts(view, partition)
        for node in view.partitions.pop(partition):
            at = (node, partition)
            view.runs.pop(at, None)
            view.ledger.pop(at, None)
            view.backfills.pop(at, None)
            view.run_backfills.pop(at, None)
        for fact in dropped:
            if fact.kind is KeyKind.TASK:
                task = view.keys.parse_task_key(fact.key)
                if task is not None:
                    view.tasks.pop(task, None)
    return dropped
