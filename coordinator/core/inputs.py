"""What one run of a DAG waits for: every upstream edge with the exact upstream partitions it needs.

Rules:
- **The planner's mapping.** The same mapping the planner uses (``coordinator.core.grid``'s **Mapping by overlap** and
  **Edge maps**, through each edge's :class:`~coordinator.core.grid.EdgeMap`), so ``coordinator inputs`` shows what the
  watcher will wait for and the importer can compare it with the dates an ExternalTaskSensor computes.
- **One input per success edge.** One :class:`RequiredInput` per success edge (failure sources are not waited for), a
  self-dependency included (the DAG's own earlier partitions: a gate), sorted by (DAG, task); partitions sorted,
  canonical UTC ``...Z``. An edge whose mapping yields nothing for this partition (a shift off the upstream's grid, a
  member the window does not have) has no partitions: D waits for it forever, which is what the user needs to see.
- **Off-grid partitions.** A partition that is not a point of the DAG's own grid raises :class:`OffGrid` with the grid
  points around it.
- **Pure**: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.core.graph import Graph
from coordinator.core.grid import upstream_partitions
from coordinator.core.model import PARTITION_FORMAT, NodeId, canonical_partition, partition_datetime


@dataclass(frozen=True, slots=True)
class RequiredInput:
    """One upstream edge of a partition: the upstream DAG (or one of its tasks) and the partitions it must reach."""

    dag: NodeId
    task: str | None
    #: ``success`` or ``finished`` (success or failed).
    condition: str
    partitions: tuple[str, ...]


class OffGrid(ValueError):
    """The partition is not a point of the DAG's grid; ``nearest`` are the grid points just before and after it."""

    def __init__(self, node: NodeId, partition: str, grid: str, nearest: tuple[str, ...]) -> None:
        self.node = node
        self.partition = partition
        self.nearest = nearest
        super().__init__(
            f"{partition} is not a partition of {node}: its grid is {grid}; the nearest partitions are "
            + " and ".join(nearest)
        )


def required_inputs(graph: Graph, node: NodeId, partition: str) -> tuple[RequiredInput, ...]:
    """The upstream partitions ``node``'s ``partition`` waits for (**The planner's mapping**,
    **One input per success edge** and **Off-grid partitions**); KeyError if ``node`` is unknown."""
    spec = graph.dags[node]
    partition = canonical_partition(partition)
    if spec.grid is not None:
        at = partition_datetime(partition)
        if not spec.grid.contains(at):
            before, after = spec.grid.floor(at), spec.grid.next(at)
            nearest = tuple(p.strftime(PARTITION_FORMAT) for p in (before, after))
            raise OffGrid(node, partition, str(spec.grid), nearest)
    found = [
        RequiredInput(
            edge.source,
            edge.task,
            str(edge.condition),
            tuple(sorted(upstream_partitions(spec.grid, graph.dags[edge.source].grid, edge.mapping, partition))),
        )
        for edge in spec.all_edges()
        if not edge.failure
    ]
    return tuple(sorted(found, key=lambda r: (r.dag, r.task or "")))
