"""Each DAG's trigger allowance (semantics `budget-per-dag`): how many new runs of it the graph explains in the budget's
window.

Rules:
- **Grids bound the due partitions.** A DAG's grid and its sources' grids bound how many of its partitions can become
  due in a window: a source whose grid puts ``n`` points in the window, each of which maps to ``k`` partitions of the
  DAG (a daily upstream under an hourly DAG: 24), explains ``n * k`` triggers; the DAG expects the largest of its
  sources' (a partition is triggered once all its sources are in, so sources are not summed). Without a grid a source is
  one point per window.
- **The allowance** is ``max(floor, MARGIN * expected)``; a floor of 0 turns the per-DAG brake off (allowance 0).
- **Backfills explain themselves.** A declared backfill (``{prefix}/config/backfill/{instance}/{dag}/{partition}``)
  explains its own partitions and, for every DAG below the backfilled one, the partitions whose window overlaps the
  backfill's range: those pass uncounted (:meth:`Declared.covers`). A DAG's release (``coordinator release INSTANCE
  --dag DAG``) is declared the same way over the range it let through (``released_first`` .. ``released_last``), for
  that DAG and every DAG below it: the released runs' successes do not hold their dependents again. A partition outside
  these is merely counted (errs on the side of holding). A run Airflow itself ran as a backfill (its run state's
  ``run_type``, ``RunFact.backfill``) explains itself the same way: its partition, and for every DAG below it the
  partitions whose window overlaps that partition's own window. Each such run is its own range (runs of adjacent
  partitions join into one): two backfills months apart do not explain the months between.
- **Pure and deterministic**: the sample the grids are measured on is fixed (:data:`SAMPLE_FROM`), not the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from coordinator.core.deadline.rules import window_end
from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.model import NodeId, canonical_partition, partition_datetime
from coordinator.core.partition import is_segment_only

#: **The allowance**' floor: 40 new runs of one DAG in the window. A catch-up after four weeks of downtime of a daily
#: DAG is 28 partitions of each dependent, all due at once; 13 days of an 8-DAG graph written by an outside writer is 13
#: per DAG. A forged flood of 300 successes of one root asks for 300 of each dependent: 40 start, the rest wait.
DEFAULT_DAG_ALLOWANCE_FLOOR = 40
#: **The allowance**' margin: twice what the grids explain, so a rerun of every partition of a window (a clear of the
#: upstream's runs) still passes; a flood is an order of magnitude beyond, not a factor of two.
MARGIN = 2
#: **Pure and deterministic**: grids are measured from here, over this many points: enough to see the shortest gap of a
#: grid that is irregular within a day or a week (``0 9,17 * * 1-5``) and its mapping across a DST change.
SAMPLE_FROM = datetime(2024, 3, 1, tzinfo=UTC)
SAMPLE_POINTS = 48
_SECOND = timedelta(seconds=1)


def points_in_window(grid: Grid | None, window_s: float) -> int:
    """At most how many points of ``grid`` fall in any window of ``window_s`` seconds
    (**Grids bound the due partitions**)."""
    if grid is None:
        return 1
    at, gaps = grid.floor(SAMPLE_FROM), []
    for _ in range(SAMPLE_POINTS):
        nxt = grid.next(at)
        gaps.append((nxt - at).total_seconds())
        at = nxt
    return int(window_s // max(1.0, min(gaps))) + 1


def _fan_out(graph: Graph, node: NodeId, source: NodeId) -> int:
    """At most how many partitions of ``node`` one partition of ``source`` maps to (**Grids bound the due partitions**'
    ``k``)."""
    grid = graph.dags[source].grid
    at = SAMPLE_FROM if grid is None else grid.floor(SAMPLE_FROM)
    most = 1
    for _ in range(4 if grid is not None else 1):
        most = max(most, len(graph.target_partitions(node, source, canonical_partition(at))))
        if grid is not None:
            at = grid.next(at)
    return most


def expected_runs(graph: Graph, node: NodeId, window_s: float) -> int:
    """**Grids bound the due partitions**: the new runs of ``node`` its sources' grids explain in a window (its own
    grid's for a root)."""
    spec = graph.dags[node]
    sources = sorted({*spec.upstreams, *spec.on_failure_of})
    if not sources:
        return points_in_window(spec.grid, window_s)
    return max(points_in_window(graph.dags[s].grid, window_s) * _fan_out(graph, node, s) for s in sources)


def dag_allowances(graph: Graph, window_s: float, floor: int) -> dict[NodeId, int]:
    """**The allowance** for every DAG of ``graph`` (empty when the floor is 0: the per-DAG brake is off)."""
    if floor <= 0:
        return {}
    return {node: max(floor, MARGIN * expected_runs(graph, node, window_s)) for node in graph.dags}


class _OnDemand(Mapping[NodeId, int]):
    """**The allowance** per DAG, computed the first time a DAG is asked about: a pass asks only about the DAGs it
    triggers, and measuring every DAG of a 5,000-DAG graph with mixed grids takes about a second."""

    def __init__(self, graph: Graph, window_s: float, floor: int) -> None:
        self._graph, self._window_s, self._floor = graph, window_s, floor
        self._known: dict[NodeId, int] = {}

    def __getitem__(self, node: NodeId) -> int:
        if node not in self._known:
            if node not in self._graph.dags:
                raise KeyError(node)
            self._known[node] = max(self._floor, MARGIN * expected_runs(self._graph, node, self._window_s))
        return self._known[node]

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self._graph.dags)

    def __len__(self) -> int:
        return len(self._graph.dags)


def graph_allowances(graph: Graph, window_s: float, floor: int) -> Allowances:
    """The :class:`Allowances` of ``graph``, each DAG's measured when first asked (the watcher keeps one per graph)."""
    return Allowances(floor, _OnDemand(graph, window_s, floor) if floor > 0 else {})


@dataclass(frozen=True)
class Allowances:
    """What the budget judges each DAG against: the floor, and the graph's allowance per DAG (**The allowance**)."""

    floor: int = 0
    per_dag: Mapping[NodeId, int] = field(default_factory=dict)

    def of(self, node: NodeId) -> int:
        """``node``'s allowance; a DAG the graph does not know (yet) gets the floor; 0: not limited."""
        return 0 if self.floor <= 0 else self.per_dag.get(node, self.floor)


@dataclass(frozen=True)
class Declared:
    """**Backfills explain themselves**: the partitions a declared backfill explains."""

    exact: frozenset[tuple[NodeId, str]] = frozenset()
    #: DAG below a backfilled one -> the backfills' ranges, ``[first partition, end of the last one's window)``.
    ranges: Mapping[NodeId, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict)
    grids: Mapping[NodeId, Grid | None] = field(default_factory=dict)

    def covers(self, node: NodeId, partition: str) -> bool:
        if (node, partition) in self.exact:
            return True
        spans = self.ranges.get(node)
        if not spans or is_segment_only(partition):  # a segment alone has no time to fall in a range: exact only
            return False
        start = partition_datetime(partition)
        end = window_end(self.grids.get(node), partition)
        return any(start < hi and (lo < end or lo <= start) for lo, hi in spans)


def declared_backfills(
    graph: Graph,
    backfills: Iterable[tuple[NodeId, str]],
    releases: Iterable[tuple[NodeId, str, str]] = (),
    runs: Iterable[tuple[NodeId, str]] = (),
) -> Declared:
    """**Backfills explain themselves** from the view's backfill requests (``View.backfills``), the DAG releases
    ``(DAG, first, last)`` and the runs Airflow ran as backfills (``View.run_backfills``)."""
    ran = frozenset(runs)
    exact = frozenset(backfills)
    bounds: dict[NodeId, tuple[str, str]] = {}
    for node, partition in exact:
        if is_segment_only(partition):
            continue
        lo, hi = bounds.get(node, (partition, partition))
        bounds[node] = (min(lo, partition), max(hi, partition))
    ranges: dict[NodeId, list[tuple[datetime, datetime]]] = {}
    spans = [(node, lo, hi, False) for node, (lo, hi) in bounds.items()]
    spans += [(node, lo, hi, True) for node, lo, hi in releases]
    spans += [(node, partition, partition, False) for node, partition in ran]
    for node, lo, hi, itself in spans:
        if node not in graph.dags or is_segment_only(lo) or is_segment_only(hi):
            continue  # segments alone are explained exactly (``exact``), never by a time range
        # Without a grid a partition is an instant: the range ends just after the last one.
        span = (partition_datetime(lo), max(window_end(graph.dags[node].grid, hi), partition_datetime(hi) + _SECOND))
        for below in graph.descendants(node) | ({node} if itself else set()):
            ranges.setdefault(below, []).append(span)
    grids = {node: graph.dags[node].grid for node in ranges}
    return Declared(exact | ran, {n: _joined(s) for n, s in ranges.items()}, grids)


def _joined(spans: list[tuple[datetime, datetime]]) -> tuple[tuple[datetime, datetime], ...]:
    """``spans`` with those that overlap or touch joined (a week of daily backfill runs is one range): the same
    partitions overlap the result as overlap one of ``spans``."""
    joined: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if joined and lo <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], hi))
        else:
            joined.append((lo, hi))
    return tuple(joined)
