"""What a planner pass looks at: the (partition, DAG) pairs a change can affect, and the candidates of a partition.

Rules:
- **Same partition without grids.** Without partition grids a fact in partition P can only affect decisions in P
  (semantics `joins-per-partition`): the sets here are exactly the ones the planner used before grids existed
  (:func:`affected_same_partition`, :func:`candidates`).
- **Mapped partitions.** With grids, a fact of U in partition Q affects D in every partition
  ``graph.target_partitions(D, U, Q)`` (a daily success: 24 hourly partitions of D), and so on down the graph
  (:func:`affected`). A partition of D is a candidate when a source it is mapped to has a fact
  (:func:`mapped_candidates`), which may live in another partition.
- **Cost of what changed.** Pure; each function's cost is what changed times the mapped windows, never the size of the
  store.
- **Gates one step.** A gate (a self-dependency, semantics `edge-gate`) makes a change of D in Q re-plan D in the
  partitions gated by Q, ONE step: D there is not itself changed, so nothing chains on through D's history (a rerun of Q
  never reruns the later partitions; only what was waiting on Q may now start).
- **What a partition reads.** What deciding ONE partition reads (:func:`partition_reads`): every DAG in P, and, through
  mapped edges, each source in the partitions it is mapped to, transitively (freshness recurses through upstreams); with
  each such (DAG, partition), the task keys there of the tasks an edge names (semantics `edge-task`: a task-level
  upstream is judged by its task's state, and a task fact alone puts a DAG in a partition). A gated DAG
  (semantics `edge-gate`) also reads, ONE step, its own gated partitions Q and, for each Q, its upstreams in the
  partitions it would read there (the ABSENT test); nothing chains on through Q's own gate, as in **Gates one step**.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.partition import SEGMENT_SEP, split_partition
from coordinator.core.view import View


def affected_same_partition(graph: Graph, changed: Iterable[NodeId], order: Mapping[NodeId, int]) -> list[NodeId]:
    """``changed`` (those in the graph), their descendants, and the failure handlers of all of them, in topo order."""
    found: set[NodeId] = set()
    for node in changed:
        if node in order and node not in found:  # a node already found brought its descendants along
            found.add(node)
            found |= graph.descendants(node)
    for node in list(found):
        found.update(graph.failure_handlers[node])
    return sorted(found, key=order.__getitem__)


def _targets(graph: Graph, target: NodeId, source: NodeId, partition: str) -> tuple[str, ...]:
    if source in graph.mapped_edges.get(target, ()):
        return graph.target_partitions(target, source, partition)
    return (partition,)


def affected(graph: Graph, changed: Mapping[str, Iterable[NodeId]]) -> dict[str, list[NodeId]]:
    """partition -> the DAGs to re-plan there (topo order) after facts of ``changed`` changed (**Mapped partitions**):
    the changed DAGs, what depends on them in the partitions mapped from theirs (transitively), and their failure
    handlers."""
    order = graph.topo_index
    if not graph.mapped_edges and not graph.gated:
        return {p: affected_same_partition(graph, nodes, order) for p, nodes in changed.items()}
    found: dict[str, set[NodeId]] = {}
    work = [(p, node) for p, nodes in changed.items() for node in nodes if node in order]
    handlers: list[tuple[str, NodeId]] = []
    while work:
        partition, node = work.pop()
        seen = found.setdefault(partition, set())
        if node in seen:
            continue
        seen.add(node)
        for child in graph.downstreams[node]:
            work += [(p, child) for p in _targets(graph, child, node, partition)]
        for handler in graph.failure_handlers[node]:
            handlers += [(p, handler) for p in _targets(graph, handler, node, partition)]
    for partition, handler in handlers:
        found.setdefault(partition, set()).add(handler)
    for partition, nodes in changed.items():  # **Gates one step**: one step, from what changed only
        for node in nodes:
            for edge in graph.gated.get(node, ()):
                for later in graph.gated_partitions(node, edge, partition):
                    found.setdefault(later, set()).add(node)
    return {p: sorted(nodes, key=order.__getitem__) for p, nodes in found.items()}


def candidates(graph: Graph, present: Iterable[NodeId], order: Mapping[NodeId, int]) -> list[NodeId]:
    """The DAGs that may act in a partition where ``present`` have facts: those and what depends on them, in topo
    order. (The view also holds facts of DAGs the graph does not know; they are not candidates.)"""
    found: set[NodeId] = set()
    for node in present:
        if node in order:
            found.add(node)
            found.update(graph.downstreams[node])
            found.update(graph.failure_handlers[node])
    return sorted(found, key=order.__getitem__)


def mapped_candidates(graph: Graph, view: View, partition: str) -> set[NodeId]:
    """The DAGs with a mapped edge that may act in ``partition``: some source partition they map to has a fact."""
    found: set[NodeId] = set()
    for node, sources in graph.mapped_edges.items():
        for source in sources:
            # Any key of the source (a run state, a task state) may satisfy an edge.
            if any(source in view.partitions.get(q, ()) for q in graph.source_partitions(node, source, partition)):
                found.add(node)
                break
    return found


def mapped_partitions(graph: Graph, view: View) -> set[str]:
    """Every partition that a fact maps to through a mapped edge (for a pass over everything: a fan-out's hourly
    partitions of D exist nowhere in the store until D runs)."""
    found: set[str] = set()
    for (node, partition), _ in view.runs.items():
        for target in graph.mapped_targets.get(node, ()):
            found.update(graph.target_partitions(target, node, partition))
    for node, _, partition in view.tasks:
        for target in graph.mapped_targets.get(node, ()):
            found.update(graph.target_partitions(target, node, partition))
    return found


def span(window: Sequence[str], missing: Iterable[str]) -> str:
    """The ``missing`` partitions of a mapped ``window`` as ranges of neighbours, ``05:00Z-07:00Z, 12:00Z`` (times
    alone when the whole window is on one UTC date, which keeps a day's rollup on one line; full keys otherwise)."""
    absent = set(missing)
    parts = [split_partition(p) for p in window]
    if len({time for time, _ in parts}) == 1 and any(segment for _, segment in parts):
        # One time, several segments (a rollup of regions): the segments name them.
        return ", ".join(segment or p for p, (_, segment) in zip(window, parts, strict=True) if p in absent)
    day = window[0][:10] if window and window[-1][:10] == window[0][:10] else None
    groups: list[list[str]] = []
    previous_missing = False
    for p in window:
        if p in absent:
            if previous_missing:
                groups[-1][1] = p
            else:
                groups.append([p, p])
        previous_missing = p in absent

    def short(p: str) -> str:
        time, sep, segment = p.partition(SEGMENT_SEP)
        return time[11:16] + "Z" + sep + segment if time[:10] == day and len(time) == 20 else p

    return ", ".join(short(a) if a == b else f"{short(a)}-{short(b)}" for a, b in groups)


@dataclass(frozen=True, slots=True)
class PartitionReads:
    """**What a partition reads**: the facts deciding one partition may read, by key family."""

    #: (DAG, partition) pairs whose run state, ledger entry and backfill request are read.
    nodes: frozenset[tuple[NodeId, str]]
    #: (DAG, task id, partition) triples whose task state is read.
    tasks: frozenset[tuple[NodeId, str, str]]


def partition_reads(graph: Graph, partition: str) -> PartitionReads:
    """**What a partition reads**: what a decision of every DAG in ``partition`` may read, and nothing of other
    partitions' histories."""
    found: set[tuple[NodeId, str]] = set()
    work = [(node, partition) for node in graph.dags]
    while work:
        at = work.pop()
        if at in found:
            continue
        found.add(at)
        node, p = at
        spec = graph.dags[node]
        for source in (*spec.upstreams, *spec.on_failure_of):
            if source != node:  # a gate is read below, one step
                work += [(source, q) for q in _sources(graph, node, source, p)]
    for node, edges in graph.gated.items():
        for edge in edges:
            for q in graph.gate_partitions(node, edge, partition):
                found.add((node, q))
                found.update(
                    (up, r) for up in graph.dags[node].upstreams if up != node for r in _sources(graph, node, up, q)
                )
    named: dict[NodeId, set[str]] = {}
    for spec in graph.dags.values():
        for edge in spec.all_edges():
            if edge.task is not None:
                named.setdefault(edge.source, set()).add(edge.task)
    tasks = frozenset((node, task, p) for node, p in found for task in named.get(node, ()))
    return PartitionReads(frozenset(found), tasks)


def _sources(graph: Graph, target: NodeId, source: NodeId, partition: str) -> tuple[str, ...]:
    if source in graph.mapped_edges.get(target, ()):
        return graph.source_partitions(target, source, partition)
    return (partition,)
