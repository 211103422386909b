"""Does each keyed dependent's Airflow DAG accept the ``partition_key`` the coordinator triggers it with? The comparison
behind ``coordinator validate --airflow`` and ``coordinator doctor`` (semantics `segment-partitions`).

Rules:
- **Keyed dependents.** A DAG the coordinator triggers (it has upstreams or failure sources, or it is a late handler)
  is triggered with a ``partition_key`` when it declares a ``key_format`` or ``segments``
  (:meth:`coordinator.core.graph.Graph.partition_key`). A root is not triggered by the coordinator: never judged.
- **What Airflow accepts.** Airflow 3.2+ accepts a ``partition_key`` only for a DAG whose timetable is partitioned
  (``CronPartitionTimetable``, ``PartitionedAssetTimetable``: the REST API's ``timetable_partitioned``) or partitioned
  at run time (``PartitionedAtRuntime``: its ``timetable_summary``); any other DAG answers every such trigger with 400
  "... is not a partitioned Dag and does not accept a partition_key". A dependent is a DAG the coordinator triggers,
  never one that schedules itself, so the fix is ``schedule=PartitionedAtRuntime()``.
- **Certain or not.** A DAG on one of Airflow's built-in timetables that refuse (:data:`REFUSING_TIMETABLES`, which
  the caller asks with the DAG list's ``timetable_type`` filter) is refused for certain: an error. A custom timetable
  may set ``partitioned_at_runtime``, which the REST API does not show: a warning that says so.
- **No partitions at all.** An Airflow whose DAG list has no ``timetable_partitioned`` (Airflow 2, Airflow 3.0 and
  3.1) has no partition keys: each keyed dependent there is refused for certain (on Airflow 2 by the coordinator's
  client itself, which never sends a key to API v1).
- **Only listed DAGs.** A DAG its Airflow does not list is judged missing by ``core.dag_presence``, not here.
- **Pure**: the keyed dependents and what Airflow lists in, :class:`KeyRefusal` values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordinator.core.activation import Activation
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.segments import Segments

#: ``type_name`` of Airflow 3.2+'s built-in timetables that accept no ``partition_key`` (neither ``partitioned`` nor
#: ``partitioned_at_runtime``; read from ``airflow.timetables`` of 3.3.2). A custom timetable's type name is its
#: import path, so it is never one of these.
REFUSING_TIMETABLES = (
    "AssetOrTimeSchedule",
    "AssetTriggeredTimetable",
    "ContinuousTimetable",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "DeltaDataIntervalTimetable",
    "DeltaTriggerTimetable",
    "EventsTimetable",
    "MultipleCronTriggerTimetable",
    "NullTimetable",
    "OnceTimetable",
)
#: ``timetable_summary`` of ``PartitionedAtRuntime``, the timetable a keyed dependent needs.
AT_RUNTIME_SUMMARY = "PartitionedAtRuntime"
#: Airflow's answer to a key it refuses, quoted so a reader finds the two together.
AIRFLOW_REFUSAL = "is not a partitioned Dag and does not accept a partition_key"


@dataclass(frozen=True, slots=True)
class KeyedDag:
    """A DAG the coordinator triggers with a ``partition_key`` (**Keyed dependents**), and what in the file keys it."""

    node: NodeId
    #: ``partitions.key_format '%Y-%m-%d'``, ``partitions.segments eu, us`` or both.
    keyed_by: str
    #: Whether it declares segments (its partitions cannot be triggered without a key at all).
    segmented: bool


@dataclass(frozen=True, slots=True)
class DagTimetable:
    """One DAG's timetable as its Airflow's DAG list says."""

    dag_id: str
    #: ``timetable_partitioned``; None: the list has no such field (an Airflow without partition keys).
    partitioned: bool | None
    summary: str | None = None
    description: str | None = None
    #: The DAG's file as Airflow knows it (``fileloc``); None when not said.
    fileloc: str | None = None

    @property
    def accepts_keys(self) -> bool:
        return self.partitioned is True or self.summary == AT_RUNTIME_SUMMARY

    def describe(self) -> str:
        """``None ("Never, external triggers only")``: the summary as the DAG's ``schedule=`` would read, and
        Airflow's own words."""
        said = f" ({self.description!r})" if self.description else ""
        return f"{self.summary or 'None'}{said}"


@dataclass(frozen=True, slots=True)
class KeyRefusal:
    """A keyed dependent whose Airflow DAG refuses (``certain``) or may refuse its ``partition_key``."""

    keyed: KeyedDag
    timetable: DagTimetable
    certain: bool
    #: Why, in one clause: what keys it and what Airflow has.
    problem: str
    #: The complete instruction that resolves it.
    fix: str

    @property
    def dag_id(self) -> str:
        return self.keyed.node.dag_id

    def line(self) -> str:
        return f"DAG {self.dag_id!r} {self.problem} — {self.fix}"


def keyed_dependents(graph: Graph) -> tuple[KeyedDag, ...]:
    """**Keyed dependents** of the graph, sorted."""
    found = []
    for node in sorted(graph.dags):
        spec = graph.dags[node]
        if spec.is_root and not spec.is_late_handler:
            continue
        keyed = _keyed(node, spec.key_format, spec.segments)
        if keyed is not None:
            found.append(keyed)
    return tuple(found)


def keyed_in_activation(activation: Activation) -> tuple[KeyedDag, ...]:
    """**Keyed dependents** of the adopted graph (for ``doctor`` without the file); a value recorded before the
    edges were is judged on its keys alone (a keyed root is then judged too: the record cannot tell)."""
    found = []
    for qualified, node in sorted(activation.nodes.items()):
        known = node.upstreams is not None
        sources = bool(node.upstreams) or bool(node.on_failure_of) or bool(node.deadline and node.deadline[1])
        if known and not sources:
            continue
        try:
            segments = Segments.from_item(list(node.segments)) if node.segments is not None else None
        except ValueError:
            segments = None  # a damaged record: judged on its key format alone
        keyed = _keyed(NodeId.parse(qualified), node.key_format, segments)
        if keyed is not None:
            found.append(keyed)
    return tuple(found)


def _keyed(node: NodeId, key_format: str | None, segments: Segments | None) -> KeyedDag | None:
    parts = []
    if key_format is not None:
        parts.append(f"partitions.key_format {key_format!r}")
    if segments is not None:
        parts.append(f"partitions.segments {segments}")
    return KeyedDag(node, " and ".join(parts), segments is not None) if parts else None


def suspects(keyed: Iterable[KeyedDag], listed: Mapping[str, DagTimetable]) -> tuple[str, ...]:
    """The keyed dependents' DAG ids whose listed timetable shows no partitions on an Airflow that has them: the ones
    whose timetable type the caller asks about (**Certain or not**)."""
    return tuple(
        k.node.dag_id
        for k in keyed
        if (t := listed.get(k.node.dag_id)) is not None and t.partitioned is not None and not t.accepts_keys
    )


def key_refusals(
    keyed: Iterable[KeyedDag],
    listed: Mapping[str, DagTimetable],
    built_in: Iterable[str],
    *,
    airflow_version: str,
    deps: str,
) -> tuple[KeyRefusal, ...]:
    """**What Airflow accepts** for each keyed dependent ``listed`` names; ``built_in``: the suspects whose timetable is
    one of :data:`REFUSING_TIMETABLES`; ``deps``: the dependencies file, named in the fixes."""
    refusing = frozenset(built_in)
    found = []
    for item in keyed:
        timetable = listed.get(item.node.dag_id)
        if timetable is None or timetable.accepts_keys:
            continue
        if timetable.partitioned is None:
            found.append(_no_partitions(item, timetable, airflow_version, deps))
            continue
        certain = item.node.dag_id in refusing
        where = f" in {timetable.fileloc}" if timetable.fileloc else " in its DAG file"
        fix = f"set schedule=PartitionedAtRuntime(){where} (from airflow.sdk import PartitionedAtRuntime)"
        if not item.segmented:
            fix += (
                f", or remove partitions.key_format from {item.node.dag_id!r} in {deps} to trigger it by logical date "
                "alone"
            )
        if certain:
            problem = (
                f"is triggered with a partition_key ({item.keyed_by}), but its Airflow timetable, "
                f'{timetable.describe()}, is not partitioned: Airflow answers each such trigger 400 "{AIRFLOW_REFUSAL}"'
            )
        else:
            problem = (
                f"is triggered with a partition_key ({item.keyed_by}), but its Airflow timetable, "
                f"{timetable.describe()}, is a custom one that is not partitioned: Airflow refuses the key (400 "
                f'"{AIRFLOW_REFUSAL}") unless that timetable sets partitioned_at_runtime = True, which its REST API '
                "does not show"
            )
            fix = f"if it does not, {fix}"
        found.append(KeyRefusal(item, timetable, certain, problem, fix))
    return tuple(found)


def _no_partitions(item: KeyedDag, timetable: DagTimetable, version: str, deps: str) -> KeyRefusal:
    """**No partitions at all**."""
    who = "the coordinator cannot send one to Airflow 2 (API v1)" if version.startswith("2.") else "it refuses them"
    problem = (
        f"is triggered with a partition_key ({item.keyed_by}), but Airflow {version} has no partition keys (Airflow "
        f"3.2 added them) and {who}: every trigger of it fails"
    )
    where = f" in {timetable.fileloc}" if timetable.fileloc else " in its DAG file"
    upgrade = f"run it on Airflow 3.2 or later with schedule=PartitionedAtRuntime(){where}"
    if item.segmented:
        fix = f"{upgrade}; its segments need partition keys"
    else:
        fix = (
            f"remove partitions.key_format from {item.node.dag_id!r} in {deps} (it is then triggered by logical "
            f"date), or {upgrade}"
        )
    return KeyRefusal(item, timetable, True, problem, fix)
