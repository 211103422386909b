"""Which OpenLineage jobs are nodes of the graph, and how a run of one becomes a partition
(semantics `lineage-mapping`).

Declared in ``dependencies.json`` under ``"openlineage"`` (read by ``coordinator.core.spec.lineage``)::

    "openlineage": [
      {"namespace": "dbt_prod", "job": "jaffle.main.jaffle.orders.build.run", "instance": "analytics", "dag": "orders"},
      {"namespace": "spark-*", "job": "export_*", "instance": "spark"}
    ]

Rules (semantics `lineage-mapping`):
- **First match.** Entries are tried in file order; the first whose ``namespace`` and ``job`` patterns (``fnmatch``:
  ``*``, ``?``, ``[...]``, case-sensitive) both match names the node. A job no entry matches is not a node: its events
  are answered 2xx and ignored (a client that tees every event to the receiver is not an error).
- **The node** is ``{instance}/{dag}``; without ``dag`` the job's own name is the dag id, which must then be a valid one
  (an event whose job name is not is refused, naming the entry). Several jobs may map to one node (a dbt invocation's
  models as one node is mapping the invocation's job; many nodes is a pattern over the models). A node the graph does
  not hold (no DAG names it: nothing waits for it) is not written: its events are answered and ignored, so a pattern
  over every job of a namespace (an Airflow's task jobs ``dag.task`` among its DAG runs) writes only what a dependent
  reads.
- **The partition** of a run: the ``nominalTime`` facet's ``nominalStartTime`` when the producer sends it; otherwise
  (``"partition": "auto"``, the default) the run's anchor time placed on the node's grid by ``slot``; with
  ``"partition": "nominal"`` an event without ``nominalTime`` is refused (400).
- **Slot.** ``slot`` ``"previous"`` (default, Airflow's logical date): a run at time t belongs to the latest grid
  interval that ENDED at or before t, and the partition is that interval's start (a daily job at 02:00 on the 21st is
  the 20th's, like Airflow's scheduled run of the 20th that starts at midnight on the 21st). ``"current"``: the latest
  grid point at or before t (a run at 02:00 on the 21st is the 21st's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase

from coordinator.core.grid import Grid
from coordinator.core.model import NAME_RE, NodeId


class PartitionSource(StrEnum):
    """Where a run's partition comes from (**The partition**)."""

    AUTO = "auto"
    NOMINAL = "nominal"


class Slot(StrEnum):
    """How an anchor time is placed on a grid (**Slot**)."""

    PREVIOUS = "previous"
    CURRENT = "current"


@dataclass(frozen=True, slots=True)
class LineageJob:
    """One entry of ``"openlineage"``: which jobs, which node, which partition (**First match**, **The node**,
    **The partition** and **Slot**)."""

    namespace: str
    job: str
    instance: str
    #: The node's dag id; None: the job's own name (**The node**).
    dag: str | None = None
    partition: PartitionSource = PartitionSource.AUTO
    slot: Slot = Slot.PREVIOUS
    #: The grid event times are placed on (the node's ``partitions``, else the entry's own); None only with
    #: ``partition: nominal`` (the loader refuses ``auto`` without a grid).
    grid: Grid | None = None
    #: The entry's index in the file, for messages ("openlineage[2]").
    index: int = 0
    #: The segment its runs are recorded in (``"segment": "eu"``: a job per region); None: a time alone.
    segment: str | None = None

    def matches(self, namespace: str, job: str) -> bool:
        return fnmatchcase(namespace, self.namespace) and fnmatchcase(job, self.job)

    def node_for(self, job: str) -> NodeId | None:
        """**The node**: the node a matched job is; None when the job's name cannot be a dag id."""
        dag = self.dag if self.dag is not None else job
        if not NAME_RE.match(dag) or dag in (".", ".."):
            return None
        return NodeId(self.instance, dag)

    def place(self, at: datetime) -> datetime:
        """**Slot**: the partition (a grid point, UTC) of a run anchored at ``at``. Needs a grid (**The partition**)."""
        assert self.grid is not None, "partition: auto needs a grid (the loader refuses one without)"
        point = self.grid.floor(at)
        return self.grid.prev(point) if self.slot is Slot.PREVIOUS else point

    @property
    def label(self) -> str:
        return f"openlineage[{self.index}]"


def entry_for(jobs: tuple[LineageJob, ...], node: NodeId) -> LineageJob | None:
    """The first entry that can name ``node`` (**First match** read backwards: its fixed ``dag``, or a job pattern
    matching the dag id), or None: a node no entry names is not an OpenLineage node."""
    for entry in jobs:
        if entry.instance == node.instance and (
            entry.dag == node.dag_id or (entry.dag is None and fnmatchcase(node.dag_id, entry.job))
        ):
            return entry
    return None


def match(jobs: tuple[LineageJob, ...], namespace: str, job: str) -> LineageJob | None:
    """**First match**: the first entry matching (namespace, job), or None."""
    for entry in jobs:
        if entry.matches(namespace, job):
            return entry
    return None
