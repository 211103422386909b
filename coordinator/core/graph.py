"""The validated dependency graph: what ``spec.parse_spec`` returns and what the planner reads.

Rules:
- **Validated only.** A Graph is only ever built from a spec that passed validation: acyclic, every reference resolved,
  ids valid.
- **Every node** appears in ``dags``, roots included (a root has no upstreams and no failure sources).
- **Digest of meaning.** Immutable; ``digest`` identifies the graph's meaning (not its formatting), so reformatting the
  file is not a change.
- **Grids in the shape only when present.** A DAG's grid and its edges' offsets are part of its shape only when present:
  a graph without grids has exactly the shapes and digest it had before grids existed, so upgrading never re-dates a
  DAG. The same holds for the extended edge fields (``shift``, ``member``, ``task``, ``condition``, a self-dependency):
  they enter a shape, as :attr:`DagSpec.edges`, only for an edge that writes one; so do condition groups
  (:attr:`DagSpec.groups`, semantics `condition-groups`), only for a DAG that has one.
- **Sources are other DAGs.** ``upstreams`` and ``on_failure_of`` name DAGs (sorted, distinct, never the DAG itself):
  the graph's structure (order, descendants, cycles) is made of them. :meth:`DagSpec.all_edges` lists every edge as
  written, one :class:`EdgeSpec` per (DAG, task), self-dependencies (gates) included; every edge to one upstream DAG
  shares one date mapping (the loader checks it), so ``mapping(source)`` is a function of the DAG.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from coordinator.core.assets import AssetRoute
from coordinator.core.conditions import GroupSpec, Member
from coordinator.core.conditions import grouped as members_of
from coordinator.core.data_interval import DataInterval, IntervalKind
from coordinator.core.data_interval import data_interval as interval_of
from coordinator.core.deadline.rules import ExpectedBy, RuleItem
from coordinator.core.duration import format_shift, parse_shift
from coordinator.core.grid import EdgeMap, Grid, SegmentMap, downstream_partitions, is_identity, upstream_partitions
from coordinator.core.lineage.mapping import LineageJob
from coordinator.core.model import NodeId
from coordinator.core.partition import airflow_partition_key, has_segment
from coordinator.core.partition_count import PartitionCount
from coordinator.core.segments import Segments, maps_segments, segment_downstream, segment_upstream
from coordinator.core.spec.source import JsonPath


class Condition(StrEnum):
    """What an upstream's (or task's) latest state must be for an edge to be satisfied."""

    SUCCESS = "success"
    #: Success or failed: the upstream merely finished (Airflow's ``allowed_states=[success, failed]``, a lock).
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """One edge as written: the upstream DAG, optionally one of its tasks, the condition and the date mapping."""

    source: NodeId
    task: str | None = None
    condition: Condition = Condition.SUCCESS
    mapping: EdgeMap = field(default_factory=EdgeMap)
    #: True for an ``on_failure_of`` edge.
    failure: bool = False
    #: How many of its mapped partitions satisfy it (semantics `partition-count`); None: all of them.
    count: PartitionCount | None = None

    @property
    def extended(self) -> bool:
        """Whether the edge says more than a reference with an offset (so it enters the DAG's shape,
        **Grids in the shape only when present**)."""
        return (
            not self.mapping.plain
            or self.task is not None
            or self.condition is not Condition.SUCCESS
            or self.count is not None
        )

    def shape_item(self) -> list[object]:
        m = self.mapping
        shift = None if m.shift is None else format_shift(m.shift)
        item: list[object] = [
            self.source.qualified,
            self.task,
            str(self.condition),
            m.offset,
            shift,
            m.member,
            self.failure,
        ]
        more: dict[str, object] = {}  # only what is written: **Grids in the shape only when present**
        if m.segments is not None:
            more["segments"] = str(m.segments)
        if self.count is not None:
            more["count"] = self.count.item()
        if more:
            item.append(more)
        return item

    @classmethod
    def from_shape_item(cls, item: Sequence[object], grid: Grid | None = None) -> EdgeSpec:
        """The edge :meth:`shape_item` wrote (an activation records it, so readers without the file rebuild the
        graph in force exactly); raise ValueError on anything else."""
        source, task, condition, offset, shift, member, failure, *rest = item
        more = rest[0] if rest else {}
        if len(rest) > 1 or not isinstance(more, dict) or set(more) - {"segments", "count"}:
            raise ValueError(f"not an edge: {item!r}")
        written, counted = more.get("segments"), more.get("count")
        if not (written is None or written in tuple(SegmentMap)) or not (counted is None or isinstance(counted, list)):
            raise ValueError(f"not an edge: {item!r}")
        count = None if counted is None else PartitionCount.from_item(counted, grid)
        if not isinstance(source, str) or not isinstance(condition, str) or not isinstance(failure, bool):
            raise ValueError(f"not an edge: {item!r}")
        if not (task is None or isinstance(task, str)) or not isinstance(offset, int):
            raise ValueError(f"not an edge: {item!r}")
        if not (member is None or isinstance(member, int)) or not (shift is None or isinstance(shift, str)):
            raise ValueError(f"not an edge: {item!r}")
        seconds = None if shift is None else parse_shift(shift)
        if isinstance(seconds, str):
            raise ValueError(seconds)
        mapping = EdgeMap(
            offset=offset, shift=seconds, member=member, segments=SegmentMap(written) if written else None
        )
        return cls(NodeId.parse(source), task, Condition(condition), mapping, failure, count)


@dataclass(frozen=True, slots=True)
class DagSpec:
    """One DAG's place in the graph."""

    node: NodeId
    #: Runs for partition P once every one of these succeeded for P (sorted, no duplicates).
    upstreams: tuple[NodeId, ...] = ()
    #: Runs for partition P once per failed attempt of any of these for P (failure routing).
    on_failure_of: tuple[NodeId, ...] = ()
    description: str | None = None
    #: The partition grid (``partitions`` in the file); None: partitions are whatever logical dates runs have.
    grid: Grid | None = None
    #: (source, offset) for every edge with a non-zero offset, sorted (upstreams and failure sources alike).
    offsets: tuple[tuple[NodeId, int], ...] = ()
    #: Every edge with an extended field (shift, member, task, condition) and every self-dependency, sorted, plus
    #: the other edges to the same upstream DAG (**Sources are other DAGs**); () for a file without them
    #: (**Grids in the shape only when present**).
    edges: tuple[EdgeSpec, ...] = ()
    #: The partition deadline (``expected_by``, semantics `deadlines-judged`); never part of the shape: it does not
    #: change when the DAG is due.
    expected_by: ExpectedBy | None = None
    #: The DAGs whose deadline state changes trigger this one (a late handler, sorted); not part of the shape either.
    on_late_of: tuple[NodeId, ...] = ()
    #: The condition groups over its success edges (semantics `condition-groups`); the edges in no group are
    #: required. () for a DAG without groups (its shape unchanged).
    groups: tuple[GroupSpec, ...] = ()
    #: Its declared segments (``partitions.segments``, semantics `segment-partitions`); None: none declared (a segment
    #: of its runs passes through its edges unchanged).
    segments: Segments | None = None
    #: ``partitions.key_format``: an Airflow partitioned DAG, triggered with a ``partition_key`` whose time part is
    #: written so (``coordinator.core.partition.airflow_partition_key``); None: by logical date (a segment is still
    #: sent as a key).
    key_format: str | None = None
    #: ``data_interval``: what its triggered runs' data interval is (semantics `triggered-data-interval`); None: not
    #: declared (the default of ``coordinator.core.data_interval``). Never part of the shape: it does not change when
    #: the DAG is due, only what its next trigger sends; a change reaches the graph in force by the reload's equality.
    data_interval: IntervalKind | None = None
    #: ``"runs": "scheduled"`` (semantics `scheduled-permit`): Airflow creates its runs on the DAG's own timetable and
    #: the coordinator never creates one; where it would trigger, it grants the partition's permit instead (and reruns
    #: Airflow's run of the partition for a new generation). False: triggered, as always.
    scheduled: bool = False

    def offset(self, source: NodeId) -> int:
        for node, value in self.offsets:
            if node == source:
                return value
        return 0

    def mapping(self, source: NodeId) -> EdgeMap:
        """The date mapping of the edges to ``source`` (**Sources are other DAGs**: one per upstream DAG)."""
        for edge in self.edges:
            if edge.source == source:
                return edge.mapping
        return EdgeMap(offset=self.offset(source))

    def all_edges(self) -> tuple[EdgeSpec, ...]:
        """Every edge (**Sources are other DAGs**), sorted by (source, task): the extended ones and a plain one per
        other source."""
        extended = {edge.source for edge in self.edges}
        plain = [
            EdgeSpec(src, mapping=EdgeMap(offset=self.offset(src)), failure=failure)
            for failure, sources in ((False, self.upstreams), (True, self.on_failure_of))
            for src in sources
            if src not in extended
        ]
        return tuple(sorted((*self.edges, *plain), key=lambda e: (e.source, e.task or "")))

    @property
    def gates(self) -> tuple[EdgeSpec, ...]:
        """The self-dependencies: D for P waits for its own earlier partitions (never an input, never a cycle)."""
        return tuple(edge for edge in self.edges if edge.source == self.node)

    @property
    def is_root(self) -> bool:
        """No success or failure source: the planner never triggers it. A late handler is one too for the planner
        (the deadline pass triggers it), but not for people: see :attr:`is_late_handler`."""
        return not self.upstreams and not self.on_failure_of

    @property
    def is_late_handler(self) -> bool:
        """Runs only when a deadline state of its ``on_late_of`` sources changes: shown like a failure handler (it
        waits for an event), never as a root that runs on its own schedule."""
        return bool(self.on_late_of) and self.is_root

    @property
    def is_failure_handler(self) -> bool:
        return bool(self.on_failure_of)

    def deadline_item(self) -> tuple[RuleItem | None, tuple[str, ...]] | None:
        """The deadline fields (``expected_by``, ``on_late_of``) as JSON-able values, for the digest and the
        activation; None for a DAG without them (so its record and the digest stay what they always were)."""
        if self.expected_by is None and not self.on_late_of:
            return None
        rule = self.expected_by.item() if self.expected_by is not None else None
        return rule, tuple(n.qualified for n in self.on_late_of)

    def shape(self) -> str:
        """A stable fingerprint of what makes this DAG due (its sources); used to date graph changes."""
        payload: dict[str, object] = {
            "u": [n.qualified for n in self.upstreams],
            "f": [n.qualified for n in self.on_failure_of],
        }
        if self.grid is not None:  # only when present: **Grids in the shape only when present**
            payload["g"] = [self.grid.cron, self.grid.timezone]
        if self.offsets:
            payload["o"] = [[n.qualified, k] for n, k in self.offsets]
        if self.edges:  # only when present: **Grids in the shape only when present**
            payload["e"] = [edge.shape_item() for edge in self.edges]
        if self.groups:  # only when present, like edges
            payload["c"] = [group.item() for group in self.groups]
        if self.segments is not None:  # only when present, like grids
            payload["s"] = self.segments.item()
        if self.key_format is not None:  # how it is triggered changes what a trigger is: part of the shape
            payload["k"] = self.key_format
        if self.scheduled:  # what a trigger is (a permit, not a run): part of the shape, only when present
            payload["r"] = "scheduled"
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def upstream_tasks(specs: Iterable[DagSpec]) -> dict[str, tuple[str, ...]]:
    """``instance/dag_id`` -> the tasks these DAGs name as task-level upstreams or deadline tasks, sorted (see
    Graph.upstream_tasks)."""
    found: dict[str, set[str]] = {}
    for spec in specs:
        for edge in spec.edges:
            if edge.task is not None:
                found.setdefault(edge.source.qualified, set()).add(edge.task)
        rule = spec.expected_by
        # a task deadline needs its task's state too (semantics `deadline-task`)
        if rule is not None and rule.task is not None:
            found.setdefault(spec.node.qualified, set()).add(rule.task)
    return {name: tuple(sorted(tasks)) for name, tasks in sorted(found.items())}


@dataclass(frozen=True)
class Graph:
    """The whole validated graph."""

    dags: Mapping[NodeId, DagSpec]
    instances: frozenset[str] = field(default_factory=frozenset)
    source: str = "dependencies.json"
    #: Where the file declared or wrote each DAG and edge, for warnings about the file
    #: (``coordinator.core.spec.near_misses``): the DAGs declared as keys (the others are roots only referenced) and the
    #: JSON path of each (source, target) edge's reference. Not part of the graph's meaning (**Digest of meaning**):
    #: equality and the digest ignore them, and a graph not read from a file (the adopted one) has none.
    declared: frozenset[NodeId] = field(default_factory=frozenset, compare=False)
    edge_paths: Mapping[tuple[NodeId, NodeId], JsonPath] = field(default_factory=dict, compare=False)
    #: Assets shared across instances (semantics `asset-routes`). Not part of the digest: a route never makes a DAG due;
    #: a changed route reaches the graph in force through the reload's equality check like deadlines do.
    asset_routes: tuple[AssetRoute, ...] = ()
    #: OpenLineage jobs that are nodes (semantics `lineage-mapping`, ``"openlineage"`` in the file). Not part of the
    #: digest either: a mapping never makes a DAG due, only the run states the receiver writes do.
    lineage_jobs: tuple[LineageJob, ...] = ()
    #: Instances declared ``"kind": "external"`` (no Airflow: ``coordinator.core.spec.instances``). Not part of the
    #: digest: a kind never makes a DAG due (the loader refuses a dependent in such an instance); a changed kind
    #: reaches the graph in force through the reload's equality check, like routes.
    external_instances: frozenset[str] = frozenset()

    def has_airflow(self, instance: str) -> bool:
        """Whether ``instance`` is an Airflow the coordinator may ask and trigger in (not ``"kind": "external"``)."""
        return instance not in self.external_instances

    @cached_property
    def digest(self) -> str:
        """What the watcher adopts: every shape, and the deadline fields and declared data intervals where a DAG has
        them (not part of any shape: they never make a DAG due, but a change must reach the adopted graph that readers
        without the file use, and ``coordinator diff`` names it)."""
        payload: dict[str, object] = {n.qualified: self.shapes[n] for n in sorted(self.dags)}
        deadlines = {n.qualified: item for n in sorted(self.dags) if (item := self.dags[n].deadline_item()) is not None}
        intervals = {n.qualified: kind for n in sorted(self.dags) if (kind := self.dags[n].data_interval) is not None}
        if deadlines or intervals:  # only when present: a graph without either keeps the digest it always had
            payload = {"shapes": payload, "deadlines": deadlines}
            if intervals:
                payload["data_intervals"] = intervals
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def shapes(self) -> Mapping[NodeId, str]:
        """Node -> fingerprint of its sources (computed once: the planner reads it for every partition)."""
        return {n: s.shape() for n, s in self.dags.items()}

    @cached_property
    def mapped_edges(self) -> Mapping[NodeId, tuple[NodeId, ...]]:
        """Node -> its sources (upstreams and failure sources) joined through a grid mapping rather than equal dates.
        Empty for a graph without grids, which is how the planner keeps today's exact-date path for it."""
        result: dict[NodeId, tuple[NodeId, ...]] = {}
        for node, spec in self.dags.items():
            mapped = tuple(
                src
                for src in (*spec.upstreams, *spec.on_failure_of)
                if not is_identity(spec.grid, self.dags[src].grid, spec.mapping(src))
                or maps_segments(spec.segments, self.dags[src].segments, spec.mapping(src).segments)
            )
            if mapped:
                result[node] = mapped
        return result

    @cached_property
    def edge_inputs(self) -> Mapping[NodeId, tuple[EdgeSpec, ...]]:
        """Node -> its success edges (gates excluded), for the DAGs with a task-level or a "finished" edge or a
        condition group: the planner judges those edge by edge; every other DAG keeps the per-DAG path (semantics
        `root-fresh` to `failure-handler`, as before)."""
        result: dict[NodeId, tuple[EdgeSpec, ...]] = {}
        for node, spec in self.dags.items():
            if spec.groups or any(
                e.source != node and (e.task is not None or e.condition is not Condition.SUCCESS or e.count is not None)
                for e in spec.edges
            ):
                result[node] = tuple(e for e in spec.all_edges() if not e.failure and e.source != node)
        return result

    @cached_property
    def plain_inputs(self) -> Mapping[NodeId, tuple[tuple[NodeId, str], ...]]:
        """Node -> (upstream, its ledger input key) of each upstream, for the DAGs judged by the per-DAG path alone
        (upstreams, no failure sources, no edge judged edge by edge, no grid mapping), and an empty tuple for a root
        (neither upstreams nor failure sources): what the planner's settled check of a full pass
        (``core.settled_pass``'s **A settled DAG is passed over**) reads. Other DAGs are not in it."""
        found: dict[NodeId, tuple[tuple[NodeId, str], ...]] = {}
        for node, spec in self.dags.items():
            if spec.on_failure_of:
                continue
            if not spec.upstreams or (node not in self.edge_inputs and node not in self.mapped_edges):
                found[node] = tuple((up, up.qualified) for up in spec.upstreams)
        return found

    @cached_property
    def pass_order(self) -> tuple[tuple[NodeId, tuple[tuple[int, NodeId, str], ...] | None], ...]:
        """:attr:`topo_order` with each node's :attr:`plain_inputs` (None: not in it), each upstream with its position
        in :attr:`topo_order`: what a full pass reads in one go."""
        plain, index = self.plain_inputs, self.topo_index
        return tuple(
            (node, None if (ups := plain.get(node)) is None else tuple((index[up], up, key) for up, key in ups))
            for node in self.topo_order
        )

    @cached_property
    def grouped(self) -> Mapping[NodeId, frozenset[Member]]:
        """Node -> the members of its condition groups, for the DAGs that have one (semantics `condition-groups`)."""
        return {node: members_of(spec.groups) for node, spec in self.dags.items() if spec.groups}

    @cached_property
    def cutoff_groups(self) -> tuple[GroupSpec | PartitionCount, ...]:
        """Every condition group and every partition count with a cutoff (semantics `group-cutoff`,
        `partition-count`): when none, time never changes a plan."""
        groups = tuple(g for spec in self.dags.values() for g in spec.groups if g.has_cutoff)
        counts = tuple(
            {e.count for spec in self.dags.values() for e in spec.edges if e.count is not None and e.count.has_cutoff}
        )
        return (*groups, *sorted(counts))

    @cached_property
    def plain_grouped(self) -> frozenset[NodeId]:
        """The DAGs with groups whose success edges all join equal dates on whole runs' success (no grid mapping, no
        task, no "finished"): the planner judges those with the lookups inlined, as it does DAGs without groups."""
        return frozenset(
            node
            for node, spec in self.dags.items()
            if spec.groups and node not in self.mapped_edges and all(e.source == node for e in spec.edges)
        )

    @cached_property
    def gated(self) -> Mapping[NodeId, tuple[EdgeSpec, ...]]:
        """Node -> its self-dependencies (gates), for the DAGs that have one."""
        return {node: spec.gates for node, spec in self.dags.items() if spec.gates}

    def gate_partitions(self, node: NodeId, edge: EdgeSpec, partition: str) -> tuple[str, ...]:
        """The earlier partitions of ``node`` that its ``partition`` waits for through the gate ``edge`` (a segment
        waits for its own earlier partitions: ``coordinator.core.segments``' **Same** or **Pass-through**)."""
        spec = self.dags[node]
        return _upstream(spec, spec, edge.mapping, partition)

    def gated_partitions(self, node: NodeId, edge: EdgeSpec, partition: str) -> tuple[str, ...]:
        """The later partitions of ``node`` whose gate ``edge`` waits for its ``partition`` (the inverse)."""
        spec = self.dags[node]
        return _downstream(spec, spec, edge.mapping, partition)

    @cached_property
    def scheduled(self) -> frozenset[NodeId]:
        """The DAGs that keep their own timetable and wait for a permit (semantics `scheduled-permit`)."""
        return frozenset(node for node, spec in self.dags.items() if spec.scheduled)

    @cached_property
    def upstream_tasks(self) -> Mapping[str, tuple[str, ...]]:
        """``instance/dag_id`` -> every task the graph names as a task-level upstream (sorted): the task states the
        Airflow plugin records (the activation's ``upstream_tasks``); no other task's state is ever written."""
        return upstream_tasks(self.dags.values())

    @cached_property
    def mapped_targets(self) -> Mapping[NodeId, tuple[NodeId, ...]]:
        """Source -> the DAGs that join it through a grid mapping (the inverse of :attr:`mapped_edges`)."""
        result: dict[NodeId, list[NodeId]] = {}
        for node, sources in self.mapped_edges.items():
            for src in sources:
                result.setdefault(src, []).append(node)
        return {n: tuple(sorted(v)) for n, v in result.items()}

    def source_partitions(self, node: NodeId, source: NodeId, partition: str) -> tuple[str, ...]:
        """The partitions of ``source`` that ``node``'s ``partition`` needs (``coordinator.core.grid``'s
        **Mapping by overlap**)."""
        spec = self.dags[node]
        return _upstream(spec, self.dags[source], spec.mapping(source), partition)

    def target_partitions(self, node: NodeId, source: NodeId, partition: str) -> tuple[str, ...]:
        """The partitions of ``node`` that need ``source``'s ``partition`` (the inverse of source_partitions)."""
        spec = self.dags[node]
        return _downstream(spec, self.dags[source], spec.mapping(source), partition)

    def partition_key(self, node: NodeId, partition: str) -> str | None:
        """The Airflow ``partition_key`` a trigger of ``node`` for ``partition`` sends (None: by logical date alone, as
        always): its segment, its time in the DAG's ``key_format`` and grid zone, or both."""
        spec = self.dags[node]
        zone = spec.grid.timezone if spec.grid is not None else "UTC"
        return airflow_partition_key(partition, spec.key_format, zone)

    def data_interval(self, node: NodeId, partition: str) -> DataInterval | None:
        """The data interval a trigger of ``node`` for ``partition`` sends (semantics `triggered-data-interval`; None:
        none, Airflow's timetable decides)."""
        spec = self.dags[node]
        return interval_of(partition, spec.grid, spec.data_interval, spec.key_format is not None)

    @cached_property
    def late_handlers(self) -> Mapping[NodeId, tuple[NodeId, ...]]:
        """Node -> the DAGs that run when its deadline state changes (``on_late_of``)."""
        result: dict[NodeId, list[NodeId]] = {}
        for spec in self.dags.values():
            for src in spec.on_late_of:
                result.setdefault(src, []).append(spec.node)
        return {n: tuple(sorted(v)) for n, v in result.items()}

    @cached_property
    def downstreams(self) -> Mapping[NodeId, tuple[NodeId, ...]]:
        """Node -> the DAGs that depend on its success."""
        result: dict[NodeId, list[NodeId]] = {n: [] for n in self.dags}
        for spec in self.dags.values():
            for up in spec.upstreams:
                result[up].append(spec.node)
        return {n: tuple(sorted(v)) for n, v in result.items()}

    @cached_property
    def failure_handlers(self) -> Mapping[NodeId, tuple[NodeId, ...]]:
        """Node -> the DAGs that run when it fails."""
        result: dict[NodeId, list[NodeId]] = {n: [] for n in self.dags}
        for spec in self.dags.values():
            for src in spec.on_failure_of:
                result[src].append(spec.node)
        return {n: tuple(sorted(v)) for n, v in result.items()}

    @cached_property
    def topo_order(self) -> tuple[NodeId, ...]:
        """Every node after all of its sources (upstreams and failure sources); ties broken by name."""
        indegree = {n: len(s.upstreams) + len(s.on_failure_of) for n, s in self.dags.items()}
        children: dict[NodeId, list[NodeId]] = {n: [] for n in self.dags}
        for spec in self.dags.values():
            for src in (*spec.upstreams, *spec.on_failure_of):
                children[src].append(spec.node)
        # Kahn's order taking the least ready node each time: a heap, not a list sorted again after every node (at
        # 5,000 DAGs that was a tenth of a second of a watcher's first pass).
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[NodeId] = []
        while ready:
            node = heapq.heappop(ready)
            order.append(node)
            for child in children[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, child)
        if len(order) != len(self.dags):  # pragma: no cover - validation rejects cycles before a Graph exists
            raise ValueError("graph has a cycle")
        return tuple(order)

    @cached_property
    def topo_index(self) -> Mapping[NodeId, int]:
        """Node -> its position in :attr:`topo_order`. Built once per graph: building it costs as much as planning a
        few changes, and a watcher's planner asks hundreds of times per second about the same graph."""
        return {node: i for i, node in enumerate(self.topo_order)}

    @property
    def roots(self) -> tuple[NodeId, ...]:
        """The DAGs that run on their own schedule (late handlers excluded: an event runs them)."""
        return tuple(n for n in self.topo_order if self.dags[n].is_root and not self.dags[n].is_late_handler)

    @property
    def edge_count(self) -> int:
        return sum(len(s.upstreams) + len(s.on_failure_of) for s in self.dags.values())

    def descendants(self, node: NodeId) -> frozenset[NodeId]:
        """Every node reachable through success edges (not failure routing)."""
        seen: set[NodeId] = set()
        stack = [node]
        while stack:
            for child in self.downstreams.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return frozenset(seen)

    def resolve(self, ref: str) -> NodeId | None:
        """Find a node by ``dag_id`` (if unique across instances) or ``instance/dag_id``."""
        if "/" in ref:
            node = NodeId.parse(ref)
            return node if node in self.dags else None
        matches = [n for n in self.dags if n.dag_id == ref]
        return matches[0] if len(matches) == 1 else None


def _upstream(down: DagSpec, up: DagSpec, mapping: EdgeMap, partition: str) -> tuple[str, ...]:
    """U's partitions that D's ``partition`` needs: the grids' mapping (``coordinator.core.grid``), through
    ``coordinator.core.segments`` when a side declares segments or the partition has one."""
    if down.segments is None and up.segments is None and mapping.segments is None and not has_segment(partition):
        return upstream_partitions(down.grid, up.grid, mapping, partition)
    return segment_upstream(down.grid, down.segments, up.grid, up.segments, mapping, mapping.segments, partition)


def _downstream(down: DagSpec, up: DagSpec, mapping: EdgeMap, partition: str) -> tuple[str, ...]:
    """The inverse of :func:`_upstream`."""
    if down.segments is None and up.segments is None and mapping.segments is None and not has_segment(partition):
        return downstream_partitions(down.grid, up.grid, mapping, partition)
    return segment_downstream(down.grid, down.segments, up.grid, up.segments, mapping, mapping.segments, partition)
