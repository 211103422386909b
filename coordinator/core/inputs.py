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
  points around it; one whose form does not fit the DAG's declared segments raises :class:`NotAPartition`.
- **Counts.** An edge that counts its partitions (semantics `partition-count`) carries its count: ``20 of 24``.
- **Groups.** A DAG with condition groups (semantics `condition-groups`) waits for its required edges and, per group,
  for its rule over its members (:func:`grouped_inputs`): ``any of 2``, ``2 of 3``, with a cutoff ``2 of 3, cutoff 6h
  then min 1, late: rerun`` and the instant the cutoff passes for this partition. Each member is a
  :class:`RequiredInput` like an edge, in the group's order.
- **Pure**: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.core.conditions import GroupRule, GroupSpec
from coordinator.core.duration import format_shift
from coordinator.core.graph import Graph
from coordinator.core.model import PARTITION_FORMAT, NodeId, any_partition, partition_datetime
from coordinator.core.partition import is_segment_only
from coordinator.core.partition_count import PartitionCount
from coordinator.core.segments import partition_problem


@dataclass(frozen=True, slots=True)
class RequiredInput:
    """One upstream edge of a partition: the upstream DAG (or one of its tasks) and the partitions it must reach."""

    dag: NodeId
    task: str | None
    #: ``success`` or ``finished`` (success or failed).
    condition: str
    partitions: tuple[str, ...]
    #: How many of ``partitions`` are enough (semantics `partition-count`); None: all of them.
    count: PartitionCount | None = None


class NotAPartition(ValueError):
    """The partition's form does not fit the DAG (a segment it does not declare, a segment alone for a DAG of times,
    a time for a DAG of segments alone: semantics `segment-partitions`)."""


class OffGrid(NotAPartition):
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
    partition = any_partition(partition)
    if (problem := partition_problem(spec.grid, spec.segments, partition)) is not None:
        raise NotAPartition(f"{partition} is not a partition of {node}: {problem}")
    if spec.grid is not None and not is_segment_only(partition):
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
            tuple(
                sorted(
                    graph.gate_partitions(node, edge, partition)
                    if edge.source == node
                    else graph.source_partitions(node, edge.source, partition)
                )
            ),
            edge.count,
        )
        for edge in spec.all_edges()
        if not edge.failure
    ]
    return tuple(sorted(found, key=lambda r: (r.dag, r.task or "")))


@dataclass(frozen=True, slots=True)
class InputGroup:
    """One condition group of a partition (**Groups**): its rule and each member's partitions."""

    group: GroupSpec
    members: tuple[RequiredInput, ...]
    #: When the group's cutoff passes for this partition (``...Z``), None without a cutoff.
    cutoff_at: str | None

    @property
    def rule(self) -> str:
        """``any of 2``, ``2 of 3``, ``2 of 3, cutoff 6h then min 1, late: rerun``."""
        size = len(self.members)
        text = f"any of {size}" if self.group.rule is GroupRule.ANY else f"{self.group.need} of {size}"
        if self.cutoff_at is not None:
            when = format_shift(self.group.cutoff) if self.group.cutoff is not None else f"at {self.cutoff_at}"
            text += f", cutoff {when} then min {self.group.minimum}, late: {self.group.late}"
        return text

    def satisfied_by(self) -> str:
        """What satisfies it for this partition, in words."""
        need = self.group.need
        text = "one of these" if need == 1 else f"{need} of these {len(self.members)}"
        if self.cutoff_at is not None:
            text += f"; from {self.cutoff_at} on, {self.group.minimum} of them"
        return text


def grouped_inputs(
    graph: Graph, node: NodeId, found: tuple[RequiredInput, ...], partition: str
) -> tuple[tuple[RequiredInput, ...], tuple[InputGroup, ...]]:
    """``found`` (from :func:`required_inputs`) split into the required inputs and the groups (**Groups**)."""
    groups = graph.dags[node].groups
    if not groups:
        return found, ()
    by_member = {(item.dag, item.task): item for item in found}
    grouped = {m for group in groups for m in group.members}
    required = tuple(item for item in found if (item.dag, item.task) not in grouped)
    partition = any_partition(partition)
    result = []
    for group in groups:
        at = group.cutoff_at(partition)
        result.append(
            InputGroup(
                group,
                tuple(by_member[m] for m in group.members if m in by_member),
                None if at is None else at.strftime(PARTITION_FORMAT),
            )
        )
    return required, tuple(result)
