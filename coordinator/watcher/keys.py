"""The watcher's typed keys: what each of its controllers reconciles (each concern's ``setup`` registers its own).

- The triggers' controller (``watcher/triggers.py``): ``AllPartitions`` (re-plan everything), ``NextSlice`` (the next
  slice of a sweep over everything), ``PartitionKey`` (re-plan one partition), ``DagKey`` (the facts of one DAG in
  one partition changed: it and what depends on it are re-planned).
- The actions' controller (``watcher/actuator.py``): ``DagKey`` again, the unit of the intent protocol: one attempt
  per (DAG, partition) at a time.
- The asset streams' controller (``watcher/deliveries.py``): ``AssetStream``, one attempt per stream at a time.
- The deadlines' controller (``watcher/deadlines.py``): ``DagKey``, ``PartitionKey`` and ``AllPartitions`` from the
  watch, and ``Tick("deadline")`` requeued at the next instant the clock alone changes a deadline state.
- The retention's controller (``watcher/retention.py``): ``RetentionPartition``, one key per partition, requeued at
  the instant it becomes older than the cutoff (time as a requeue), and ``AllPartitions`` (a key for every partition:
  the first sweep, a relist).
- Every other timed concern (the asset round, the audit, the plan checkpoint, the graph file's reload): ``Tick``, its
  one key, requeued at its interval (time as a requeue).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from coordinator.core.model import NodeId
from coordinator.manager import Controller, Handle, Result


class _All(Enum):
    ALL = "all"
    NEXT_SLICE = "next slice"

    def __repr__(self) -> str:
        return "AllPartitions" if self is _All.ALL else "NextSlice"


#: Every partition must be re-planned (start, graph change, resync, new leadership, a failed pass).
AllPartitions = _All.ALL
#: The watcher's sweep over every partition has slices left to plan (``watcher/triggers.py``, *sweep*): queued behind
#: whatever the watch brought meanwhile, so a sweep never holds an event for longer than a slice.
NextSlice = _All.NEXT_SLICE
AllPartitionsType = _All


@dataclass(frozen=True, slots=True)
class PartitionKey:
    """One partition must be re-planned whole (a backfill request)."""

    partition: str


class DagKey(NamedTuple):
    """The run state or ledger entry of one DAG in one partition changed: it and what depends on it are re-planned.
    Also the key of the actions' controller: one action per key in flight.

    A named tuple rather than a frozen dataclass: one is made and hashed per watch event, and a tuple is made and
    hashed three times faster (a pass of 100,000 events would otherwise spend ~0.1 s of CPU on keys alone)."""

    node: NodeId
    partition: str


class AssetStream(NamedTuple):
    """The (target, source, asset uri) stream of asset deliveries (semantics `asset-order`): its due events are
    delivered in order by one attempt at a time (``watcher/deliveries.py``). A tuple, as the asset index's stream keys
    are."""

    target: str
    source: str
    uri: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The one key of a timed concern (its controller's name): due again ``requeue_after`` its last reconcile."""

    name: str


@dataclass(frozen=True, slots=True)
class RetentionPartition:
    """One partition's retention (``watcher/retention.py``): reconciled when the watch brings a change in it, requeued
    until it is older than the cutoff, then pruned (or requeued while something keeps it). Its own type, not
    ``PartitionKey``: the same partition means "re-plan it" to the planner and "retire it when due" here."""

    partition: str


#: The triggers' controller's keys.
TriggerKey = AllPartitionsType | PartitionKey | DagKey

#: What a step of a trigger pass asks for keys besides the pass's own (a hold's expiry, a withheld trigger, the next
#: slice of a sweep): returned up to the pass, which settles them with its keys (``manager/controller.py``'s
#: **Result**).
Requeues = dict[TriggerKey, Result]

#: The deadlines' controller's keys (``watcher/deadlines.py``): ``DagKey`` (one DAG's facts in one partition changed),
#: ``PartitionKey`` (a backfill in a partition), ``AllPartitions`` (judge everything: a relist, a new activation) and
#: ``Tick("deadline")``, the clock, requeued at the next instant the clock alone changes a deadline state.
DeadlineKey = AllPartitionsType | PartitionKey | DagKey | Tick

#: The retention's controller's keys (``watcher/retention.py``): a partition, or ``AllPartitions`` (a key for every
#: partition the view holds and every partition with keys the view forgot: the first sweep, a relist).
RetentionKey = AllPartitionsType | RetentionPartition


#: The planner's queue (``watcher/triggers.py`` provides it, ``manager/manager.py``'s **Handles**): the actions hand a
#: key back to it, a graph reload plans every partition. Here, with the planner's keys, so that a concern set up
#: before the planner (the actions) hands it keys without importing it.
PLANNER: Handle[Controller[TriggerKey]] = Handle("planner")
