"""What a change of ``dependencies.json`` does to the running system: the pure core of ``coordinator diff``.

Rules (the semantics are ``docs/semantics.md``'s "Changing dependencies.json" and semantics `first-adoption`):

- **Pure**: a :class:`Baseline` (the graph in force, from the adopted activation or another file) and the new
  :class:`~coordinator.core.graph.Graph` in, a typed :class:`GraphDiff` out. No I/O, no clock, no logging.
- **Changed DAGs.** A DAG is *changed* when its sources (upstreams or failure sources), its grid or an offset change:
  exactly what re-dates it on adoption. A description change is not a change (the graph's digest ignores it, and so does
  the watcher).
- **Shapes when edges are unknown.** When the baseline knows only a DAG's shape (an activation written before edges were
  recorded), equal shapes mean unchanged (the shape is a fingerprint of the sources) and different shapes are reported
  as changed with the edges unknown; nothing is guessed.
- **First adoption.** When nothing was ever adopted (no baseline graph), the next adoption is a FIRST adoption: history
  is processed (semantics `first-adoption`), so no DAG needs a backfill; otherwise an added or changed non-root DAG
  applies only to successes of its sources after the adoption and needs ``coordinator backfill`` for older partitions.
- **Warnings from the store.** Warnings come from facts the caller gathered in the store (:class:`StoreActivity`): a
  removed DAG with queued or running runs or pending intents is left half-done; a new failure handler starts running on
  failures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from coordinator.core.activation import Activation
from coordinator.core.conditions import GroupSpec
from coordinator.core.data_interval import IntervalKind
from coordinator.core.deadline.rules import ExpectedBy
from coordinator.core.graph import DagSpec, EdgeSpec, Graph
from coordinator.core.grid import DEFAULT_TIMEZONE, Grid
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.segments import Segments
from coordinator.core.view import View


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class EdgeKind(StrEnum):
    #: The target runs once the source succeeded.
    UPSTREAM = "upstream"
    #: The target runs once per failed attempt of the source (failure routing).
    ON_FAILURE = "on_failure_of"


@dataclass(frozen=True, slots=True)
class BaselineDag:
    """One DAG of the graph in force; ``upstreams``/``on_failure_of`` are None when only the shape is known."""

    node: NodeId
    shape: str
    upstreams: tuple[NodeId, ...] | None
    on_failure_of: tuple[NodeId, ...] | None
    #: Revision since which its definition applies (None for a file baseline).
    since: int | None = None
    #: The grid as text (None: no grid) and the non-zero offsets by source; known when the edges are.
    grid: str | None = None
    offsets: Mapping[NodeId, int] = field(default_factory=dict)
    #: The extended edges (shift, member, task, condition, gates); () when it has none or they were not recorded.
    edges: tuple[EdgeSpec, ...] = ()
    #: The deadline fields (semantics `deadlines-judged`), when recorded.
    expected_by: ExpectedBy | None = None
    on_late_of: tuple[NodeId, ...] = ()
    #: ``"runs": "scheduled"`` (semantics `scheduled-permit`; part of the shape) and the declared data interval
    #: (semantics `triggered-data-interval`; not part of it), when recorded.
    scheduled: bool = False
    data_interval: str | None = None

    @property
    def edges_known(self) -> bool:
        return self.upstreams is not None and self.on_failure_of is not None


@dataclass(frozen=True, slots=True)
class Baseline:
    """The graph a change is compared with: the adopted one, another file, or nothing ever adopted."""

    label: str
    dags: Mapping[NodeId, BaselineDag]
    #: False when no graph was ever adopted under the prefix: the next adoption is a first adoption
    #: (semantics `first-adoption`).
    adopted: bool = True
    #: Revision of the activation value (0 for a file).
    revision: int = 0

    @classmethod
    def from_graph(cls, graph: Graph, label: str | None = None) -> Baseline:
        dags = {
            n: BaselineDag(
                n, graph.shapes[n], spec.upstreams, spec.on_failure_of, None,
                str(spec.grid) if spec.grid is not None else None, dict(spec.offsets),
                scheduled=spec.scheduled, data_interval=spec.data_interval,
            )
            for n, spec in graph.dags.items()
        }  # fmt: skip
        return cls(label or graph.source, dags)

    @classmethod
    def from_activation(cls, activation: Activation | None, label: str, revision: int = 0) -> Baseline:
        """The adopted graph; None (the key is absent) is an empty, never-adopted baseline."""
        if activation is None:
            return cls(label, {}, adopted=False)
        dags: dict[NodeId, BaselineDag] = {}
        for qualified, entry in activation.nodes.items():
            node = NodeId.parse(qualified)
            ups = _nodes(entry.upstreams)
            fails = _nodes(entry.on_failure_of)
            offsets = {NodeId.parse(q): k for q, k in (entry.offsets or {}).items()}
            expected: ExpectedBy | None = None
            late: tuple[NodeId, ...] = ()
            try:
                edges = tuple(EdgeSpec.from_shape_item(item, entry.grid_spec()) for item in entry.edges or ())
                if entry.deadline is not None:
                    rule, handlers = entry.deadline
                    expected = ExpectedBy.from_item(rule) if rule is not None else None
                    late = tuple(NodeId.parse(h) for h in handlers)
            except ValueError:
                # A damaged record: the rebuilt graph's digest will not match, so no graph is rebuilt from it.
                edges, expected, late = (), None, ()
            dags[node] = BaselineDag(node, entry.shape, ups, fails, entry.since, entry.grid, offsets, edges, expected,
                                     late, entry.runs == "scheduled", entry.data_interval)  # fmt: skip
        return cls(label, dags, revision=revision)


def adopted_graph(activation: Activation, source: str) -> Graph | None:
    """The graph in force as the activation records it (edges, grids, offsets), for readers that cannot use the
    local file (``status`` while dependencies.json is invalid); None when an entry predates edge recording."""
    baseline = Baseline.from_activation(activation, source)
    dags: dict[NodeId, DagSpec] = {}
    for node, entry in baseline.dags.items():
        if not entry.edges_known:
            return None
        assert entry.upstreams is not None and entry.on_failure_of is not None
        grid = None
        if entry.grid is not None:
            fields = entry.grid.split()  # "cron" (5 fields) or "cron timezone" (Grid.__str__)
            grid = Grid(" ".join(fields[:5]), fields[5] if len(fields) > 5 else DEFAULT_TIMEZONE)
        dags[node] = DagSpec(node, entry.upstreams, entry.on_failure_of, grid=grid,
                             offsets=tuple(sorted(entry.offsets.items())), edges=entry.edges,
                             expected_by=entry.expected_by, on_late_of=entry.on_late_of,
                             groups=_groups(activation, node), segments=_segments(activation, node),
                             key_format=activation.nodes[node.qualified].key_format,
                             scheduled=entry.scheduled,
                             data_interval=_interval(entry.data_interval))  # fmt: skip
    if any(src not in dags for spec in dags.values() for src in (*spec.upstreams, *spec.on_failure_of)):
        return None
    graph = Graph(dags, frozenset(n.instance for n in dags), source)
    # The digest fingerprints everything the watcher adopted (every shape, the deadline fields): a rebuilt graph
    # with another digest (extended edges or deadlines adopted before they were recorded, a damaged record) is not
    # the graph in force, and deciding on it would be wrong.
    if graph.digest != activation.digest:
        return None
    return graph


def _interval(recorded: str | None) -> IntervalKind | None:
    """The recorded data interval; None for none, or for a damaged record (whose rebuilt graph then has another
    digest and is not used)."""
    try:
        return IntervalKind(recorded) if recorded is not None else None
    except ValueError:
        return None


def _groups(activation: Activation, node: NodeId) -> tuple[GroupSpec, ...]:
    """The DAG's recorded condition groups (``NodeActivation.group_specs``); () for a damaged record, whose rebuilt
    graph then has another digest and is not used."""
    try:
        return activation.nodes[node.qualified].group_specs()
    except ValueError:
        return ()


def _nodes(values: Iterable[str] | None) -> tuple[NodeId, ...] | None:
    return None if values is None else tuple(sorted(NodeId.parse(v) for v in values))


@dataclass(frozen=True, slots=True)
class EdgeChange:
    """An edge ``source -> target`` added or removed."""

    kind: ChangeKind
    edge: EdgeKind
    source: NodeId
    target: NodeId

    def describe(self) -> str:
        arrow = "->" if self.edge is EdgeKind.UPSTREAM else "-(on failure)->"
        return f"{self.kind} {self.source} {arrow} {self.target}"


@dataclass(frozen=True, slots=True)
class StoreActivity:
    """What the store holds for one DAG that a removal would leave behind."""

    active_runs: tuple[str, ...] = ()  # partitions with a queued or running run
    pending_intents: tuple[str, ...] = ()  # partitions with a trigger intent not yet confirmed by Airflow

    @property
    def busy(self) -> bool:
        return bool(self.active_runs or self.pending_intents)


@dataclass(frozen=True, slots=True)
class DagChange:
    """One DAG added, removed or changed, with its edges and from when the change applies."""

    node: NodeId
    kind: ChangeKind
    edges: tuple[EdgeChange, ...] = ()
    #: False when the baseline held only a shape for this DAG (**Shapes when edges are unknown**): the edges are
    #: unknown.
    edges_known: bool = True
    applies_from: str = ""
    #: True when partitions older than the adoption are processed only with ``coordinator backfill``.
    needs_backfill: bool = False
    #: Revision since which the old definition applied (adopted baseline only).
    old_since: int | None = None
    #: Grid and offset changes, in words (e.g. ``grid: 0 * * * * -> 0 0 * * * Europe/Berlin``).
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GraphDiff:
    """The answer of ``coordinator diff``."""

    old_label: str
    new_label: str
    first_adoption: bool
    changes: tuple[DagChange, ...] = ()
    warnings: tuple[str, ...] = ()
    instances_added: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def backfill(self) -> tuple[NodeId, ...]:
        return tuple(c.node for c in self.changes if c.needs_backfill)

    def of(self, kind: ChangeKind) -> tuple[DagChange, ...]:
        return tuple(c for c in self.changes if c.kind is kind)


def store_activity(view: View, nodes: Iterable[NodeId]) -> dict[NodeId, StoreActivity]:
    """Per DAG of ``nodes``: its queued/running runs and unconfirmed intents in the view (only the busy ones)."""
    wanted = set(nodes)
    runs: dict[NodeId, list[str]] = {}
    intents: dict[NodeId, list[str]] = {}
    for (node, partition), fact in view.runs.items():
        if node in wanted and fact.record.state in (RunState.QUEUED, RunState.RUNNING):
            runs.setdefault(node, []).append(partition)
    for (node, partition), ledger in view.ledger.items():
        if node in wanted and ledger.record.status is TriggerStatus.PENDING:
            intents.setdefault(node, []).append(partition)
    return {
        n: StoreActivity(tuple(sorted(runs.get(n, ()))), tuple(sorted(intents.get(n, ()))))
        for n in sorted(wanted)
        if n in runs or n in intents
    }


def _edges(target: NodeId, kind: ChangeKind, ups: Iterable[NodeId], fails: Iterable[NodeId]) -> list[EdgeChange]:
    return [EdgeChange(kind, EdgeKind.UPSTREAM, s, target) for s in sorted(ups)] + [
        EdgeChange(kind, EdgeKind.ON_FAILURE, s, target) for s in sorted(fails)
    ]


def _applies(spec: DagSpec, baseline: Baseline, kind: ChangeKind) -> tuple[str, bool]:
    """(from which point the new definition applies, whether history needs ``coordinator backfill``)."""
    if spec.is_late_handler:
        return "a late handler: it runs when a source's deadline state changes, from the next deadline pass", False
    if spec.is_root:
        return "a root: it runs on its own schedule; the coordinator never triggers it", False
    if not baseline.adopted:
        return (
            "first adoption: run states already in etcd are processed too (semantics `first-adoption`; flood guard "
            "applies)",
            False,
        )
    events = "failed attempts" if spec.is_failure_handler else "successes"  # a DAG is one or the other
    what = "its sources'" if kind is ChangeKind.ADDED else "its new sources'"
    return f"{what} {events} after the watcher adopts this file; older partitions only with coordinator backfill", True


def diff_graphs(baseline: Baseline, new: Graph, activity: Mapping[NodeId, StoreActivity] | None = None) -> GraphDiff:
    """Compare the graph in force with ``new`` (**Pure** to **Warnings from the store**)."""
    activity = activity or {}
    changes: list[DagChange] = []
    warnings: list[str] = []
    for node in sorted(set(baseline.dags) | set(new.dags)):
        old = baseline.dags.get(node)
        spec = new.dags.get(node)
        if old is None and spec is not None:
            applies, backfill = _applies(spec, baseline, ChangeKind.ADDED)
            edges = _edges(node, ChangeKind.ADDED, spec.upstreams, spec.on_failure_of)
            changes.append(DagChange(node, ChangeKind.ADDED, tuple(edges), True, applies, backfill))
            if spec.is_failure_handler and baseline.adopted:
                warnings.append(_handler_warning(node, spec.on_failure_of))
        elif old is not None and spec is None:
            edges = (
                _edges(node, ChangeKind.REMOVED, old.upstreams or (), old.on_failure_of or ())
                if old.edges_known
                else []
            )
            applies = "from the adoption: never triggered again; its run states and ledger stay in etcd"
            changes.append(
                DagChange(node, ChangeKind.REMOVED, tuple(edges), old.edges_known, applies, False, old.since)
            )
            busy = activity.get(node)
            if busy is not None and busy.busy:
                warnings.append(_removal_warning(node, busy))
        elif old is not None and spec is not None:
            if old.edges_known and old.data_interval != spec.data_interval:
                warnings.append(_interval_warning(node, old.data_interval, spec.data_interval))
            change = _changed(node, old, spec, baseline)
            if change is None:
                continue
            changes.append(change)
            gained = set(spec.on_failure_of) - set(old.on_failure_of or ())
            if gained and baseline.adopted and (old.edges_known or not old.on_failure_of):
                warnings.append(_handler_warning(node, tuple(sorted(gained))))
    old_instances = {n.instance for n in baseline.dags}
    added_instances = tuple(sorted({n.instance for n in new.dags} - old_instances)) if baseline.dags else ()
    for instance in added_instances:
        warnings.append(
            f"new Airflow instance {instance!r}: the watcher needs its URL and credentials (--instances) before it "
            f"can trigger DAGs there"
        )
    return GraphDiff(baseline.label, new.source, not baseline.adopted, tuple(changes), tuple(warnings), added_instances)


def _details(old: BaselineDag, spec: DagSpec) -> tuple[str, ...]:
    """Grid and offset changes of a DAG whose edges are known (**Changed DAGs**: they re-date it like an edge
    change)."""
    found: list[str] = []
    grid = str(spec.grid) if spec.grid is not None else None
    if grid != old.grid:
        found.append(f"grid: {old.grid or 'none'} -> {grid or 'none'}")
    if spec.scheduled != old.scheduled:
        found.append(f"runs: {_runs(old.scheduled)} -> {_runs(spec.scheduled)}")
    offsets = dict(spec.offsets)
    for source in sorted(set(old.offsets) | set(offsets)):
        before, after = old.offsets.get(source, 0), offsets.get(source, 0)
        if before != after:
            found.append(f"offset of {source}: {before} -> {after}")
    return tuple(found)


def _runs(scheduled: bool) -> str:
    if scheduled:
        return "scheduled (Airflow creates the run; the coordinator grants its permit)"
    return "triggered (the coordinator creates the run)"


def _interval_warning(node: NodeId, old: str | None, new: str | None) -> str:
    return (
        f"{node}: the data interval of the runs the coordinator creates changes: {old or 'the default'} -> "
        f"{new or 'the default'} (semantics `triggered-data-interval`); runs created after the adoption get it, "
        f"nothing is re-dated"
    )


def _changed(node: NodeId, old: BaselineDag, spec: DagSpec, baseline: Baseline) -> DagChange | None:
    details = _details(old, spec) if old.edges_known else ()
    if (
        old.shape == spec.shape()
        and not details
        and (not old.edges_known or (old.upstreams, old.on_failure_of) == (spec.upstreams, spec.on_failure_of))
    ):
        return None
    applies, backfill = _applies(spec, baseline, ChangeKind.CHANGED)
    if not old.edges_known:
        return DagChange(node, ChangeKind.CHANGED, (), False, applies, backfill, old.since)
    old_ups, old_fails = set(old.upstreams or ()), set(old.on_failure_of or ())
    new_ups, new_fails = set(spec.upstreams), set(spec.on_failure_of)
    edges = _edges(node, ChangeKind.REMOVED, old_ups - new_ups, old_fails - new_fails) + _edges(
        node, ChangeKind.ADDED, new_ups - old_ups, new_fails - old_fails
    )
    return DagChange(node, ChangeKind.CHANGED, tuple(edges), True, applies, backfill, old.since, details)


def _handler_warning(node: NodeId, sources: Iterable[NodeId]) -> str:
    names = ", ".join(str(s) for s in sources)
    return f"new failure handler: {node} will run once per failed attempt of {names} (failures after the adoption)"


def _removal_warning(node: NodeId, busy: StoreActivity) -> str:
    parts = []
    if busy.active_runs:
        parts.append(f"{len(busy.active_runs)} queued/running run(s) ({_span(busy.active_runs)})")
    if busy.pending_intents:
        parts.append(f"{len(busy.pending_intents)} pending trigger intent(s) ({_span(busy.pending_intents)})")
    return (
        f"removed DAG {node} has {' and '.join(parts)} in the store: after the adoption the watcher stops tracking "
        f"it, so a pending intent is never confirmed or retried; let them finish first"
    )


def _span(partitions: tuple[str, ...]) -> str:
    return partitions[0] if len(partitions) == 1 else f"{partitions[0]} .. {partitions[-1]}"


def _segments(activation: Activation, node: NodeId) -> Segments | None:
    """The recorded segments of ``node`` (None: none declared, or a damaged record: then the digest will not match
    and no graph is rebuilt)."""
    item = activation.nodes[node.qualified].segments
    if item is None:
        return None
    try:
        return Segments.from_item(list(item))
    except ValueError:
        return None
