"""What a DAG's history teaches the deadlines (``core.deadline.states``' **ETA**, **Expected duration** and
**Task deadlines**): learned run times of DAGs and of deadline tasks, and learned start offsets of gridded roots.

Rules (named as in ``states``):
- **Expected duration.** A learned duration is taken over the latest :data:`LEARN_SAMPLES` successes with a start and an
  end: a run longer
   than :data:`OUTLIER_FACTOR` times the median (one that waited a day in a queue, a backfill) is dropped, then the
   :data:`LEARN_PERCENTILE` percentile of the rest is taken; fewer than :data:`MIN_SAMPLES` samples learn nothing.
- **ETA.** A root's start offset (its scheduled runs' start minus their logical date, ``start``'s
  **First source that knows** (a)) is learned the same
   way, newest partitions first, only for the gridded roots (:func:`start_learners`).
- **Task deadlines.** A deadline task's duration is learned from that task's own successes.
Pure: the view in, numbers out; or, for a pass that keeps its samples as facts change (``core.deadline.cache``'s
**Learned durations from facts**), one sample in, whether what it learns moved out (:class:`Samples`, :func:`relearn`).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.core.deadline.start import start_offset
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, RunState
from coordinator.core.view import View

LEARN_SAMPLES = 20
MIN_SAMPLES = 3
OUTLIER_FACTOR = 3.0
LEARN_PERCENTILE = 0.9


def learned_duration(samples: Iterable[float]) -> float | None:
    """**Expected duration**: the learned duration of these run times (seconds), or None with too few samples."""
    values = sorted(s for s in samples if s >= 0)
    if len(values) < MIN_SAMPLES:
        return None
    middle = len(values) // 2
    median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    kept = [v for v in values if v <= OUTLIER_FACTOR * median] if median > 0 else values
    index = max(0, math.ceil(LEARN_PERCENTILE * len(kept)) - 1)
    return kept[index]


def _latest_learned(found: Mapping[NodeId, list[tuple[str, float]]]) -> dict[NodeId, float]:
    """**Expected duration** over each node's latest :data:`LEARN_SAMPLES` (partition, seconds) samples, where it learns
    anything."""
    result: dict[NodeId, float] = {}
    for node, items in found.items():
        items.sort(reverse=True)
        value = learned_duration(seconds for _, seconds in items[:LEARN_SAMPLES])
        if value is not None:
            result[node] = value
    return result


def learned_durations(view: View, nodes: Iterable[NodeId]) -> dict[NodeId, float]:
    """The learned duration of each of ``nodes`` that has enough history (**Expected duration**), from its latest
    successes."""
    wanted = set(nodes)
    found: dict[NodeId, list[tuple[str, float]]] = {}
    success = RunState.SUCCESS
    # Straight from the per-partition dicts (no (DAG, partition) pair built per fact: this walks every run state).
    for partition, facts in view.runs.by_partition.items():
        for node, fact in facts.items():
            if node in wanted and fact.state is success and fact.start_date and fact.end_date:
                found.setdefault(node, []).append((partition, (fact.end_date - fact.start_date).total_seconds()))
    return _latest_learned(found)


def learned_task_durations(view: View, tasks: Mapping[NodeId, str]) -> dict[NodeId, float]:
    """**Task deadlines**: each deadline task's learned duration (**Expected duration** over its latest successes with a
    start and an end)."""
    found: dict[NodeId, list[tuple[str, float]]] = {}
    for (node, task, partition), fact in view.tasks.items():
        if tasks.get(node) == task and fact.state is RunState.SUCCESS and fact.start_date and fact.end_date:
            found.setdefault(node, []).append((partition, (fact.end_date - fact.start_date).total_seconds()))
    return _latest_learned(found)


def learned_starts(view: View, nodes: Iterable[NodeId]) -> dict[NodeId, float]:
    """The learned start offset (``start``'s **First source that knows** (a)) of each of ``nodes`` with enough scheduled
    runs, from its latest :data:`LEARN_SAMPLES` samples."""
    samples: dict[NodeId, list[float]] = {node: [] for node in nodes}
    waiting = list(samples)
    by_partition = view.runs.by_partition
    # Newest partitions first, a lookup per DAG still short of samples: a DAG leaves the walk once it has enough, so
    # months of hourly history cost what a few days do, and the DAGs without a start rule are never looked at.
    for partition in sorted(by_partition, reverse=True):
        if not waiting:
            break
        by_node = by_partition[partition]
        full = False
        for node in waiting:
            fact = by_node.get(node)
            if fact is not None:
                offset = start_offset(fact, partition)
                if offset is not None:
                    found = samples[node]
                    found.append(offset)
                    full = full or len(found) >= LEARN_SAMPLES
        if full:
            waiting = [node for node in waiting if len(samples[node]) < LEARN_SAMPLES]
    result: dict[NodeId, float] = {}
    for node, found in samples.items():
        value = learned_duration(found)
        if value is not None:
            result[node] = value
    return result


@dataclass
class Samples:
    """One DAG's samples (a run time or a start offset, seconds) by partition, kept as its facts change: partitions in
    order, so what it learns is **Expected duration** over its latest :data:`LEARN_SAMPLES`, as from the view."""

    order: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def top(self) -> list[float]:
        return [self.seconds[p] for p in self.order[-LEARN_SAMPLES:]]

    def in_top(self, partition: str) -> bool:
        return partition in self.seconds and bisect_left(self.order, partition) >= len(self.order) - LEARN_SAMPLES


def learn_all(histories: Mapping[NodeId, Samples], learned: dict[NodeId, float]) -> None:
    """Each of ``histories`` put in order (filled by partition, unordered), and what it learns into ``learned``."""
    for node, history in histories.items():
        history.order = sorted(history.seconds)
        value = learned_duration(history.top())
        if value is not None:
            learned[node] = value


def relearn(
    histories: dict[NodeId, Samples], learned: dict[NodeId, float], node: NodeId, partition: str,
    seconds: float | None,
) -> bool:  # fmt: skip
    """Put ``node``'s sample for ``partition`` (None: none) in its history; True when what it learns
    (``learned[node]``) changed. Only a sample among the latest :data:`LEARN_SAMPLES` before or after can change it."""
    history = histories.setdefault(node, Samples())
    old = history.seconds.get(partition)
    if old == seconds:
        return False
    counted = history.in_top(partition)
    if old is None:
        insort(history.order, partition)
    if seconds is None:
        del history.seconds[partition]
        history.order.pop(bisect_left(history.order, partition))
    else:
        history.seconds[partition] = seconds
    if not (counted or history.in_top(partition)):
        return False
    value = learned_duration(history.top())
    if value == learned.get(node):
        return False
    if value is None:
        learned.pop(node, None)
    else:
        learned[node] = value
    return True


def start_learners(graph: Graph, nodes: Iterable[NodeId]) -> frozenset[NodeId]:
    """The DAGs among ``nodes`` whose start is predicted (**ETA**): the gridded roots."""
    found = set()
    for node in nodes:
        spec = graph.dags.get(node)
        if spec is not None and not spec.upstreams and spec.grid is not None:
            found.add(node)
    return frozenset(found)
