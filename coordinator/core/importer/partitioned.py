"""Airflow 3.2+ partitioned DAGs in the written file: each DAG's ``partitions`` (a grid, segments, a key format) and
the segment edges of its partitioned assets.

Rules (``docs/import-dags.md``, "Partitioned assets"):
- **Key formats.** A DAG Airflow runs by partition key is triggered with one: a ``CronPartitionTimetable``'s
  ``key_format``, a consumer's temporal mapper's ``output_format``; an identity consumer (its key is its producer's)
  on its producer's grid takes the producer's, through chains. A DAG without a grid writes none (the loader needs a
  cron beside a key format).
- **Consumer segments.** A consumer whose every asset is mapped to names (``facts``' **Segments**) has those names as
  its segments when every mapping agrees; else none, and its segment edges are reported.
- **Producer segments.** A producer whose keys its tasks decide at run time (``PartitionedAtRuntime``) has the segments
  its consumers' mappers read (their union), when every partitioned consumer of its assets reads names: an identity
  consumer takes every key, which no declared list says. A producer with a grid keys its runs by time, never names.
- **Segment edges.** A mapping to names is an edge to the producing task with the mapper's rule (``"all"`` written,
  ``"same"`` the default when both sides declare segments) and count (``at_least``), when both DAGs declare the
  segments the mapper names (for ``"all"``, exactly the window's); else it is reported.
- **Pure.**
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coordinator.core.importer.edges import Work
from coordinator.core.importer.facts import AssetMapping, DagFact, ScheduleKind
from coordinator.core.importer.fit import Edge

PARTITIONED = "PartitionedAssetTimetable"


def consumer_segments(dag: DagFact) -> tuple[str, ...] | None:
    """**Consumer segments**."""
    mappings = dag.schedule.mappings
    if dag.schedule.timetable != PARTITIONED or not mappings:
        return None
    found = {m.segments for m in mappings}
    if len(found) != 1:
        return None
    (segments,) = found
    return segments


def declared_segments(dags: Mapping[str, DagFact]) -> dict[str, tuple[str, ...]]:
    """Every DAG's segments (**Consumer segments**, **Producer segments**); DAGs without are left out."""
    found = {dag_id: s for dag_id, dag in dags.items() if (s := consumer_segments(dag)) is not None}
    reads: dict[str, list[AssetMapping | None]] = {}
    producer_of = {uri: dag_id for dag_id, dag in dags.items() for _, uri in dag.outlets}
    for dag in dags.values():
        if dag.schedule.timetable != PARTITIONED:
            continue
        for uri in dag.schedule.assets or ():
            producer = producer_of.get(uri)
            if producer is not None:
                reads.setdefault(producer, []).append(dag.schedule.mapping(uri))
    for producer, mappings in reads.items():
        if not dags[producer].schedule.runtime_keys or producer in found:
            continue
        names = [m.upstream_segments for m in mappings if m is not None]
        if len(names) != len(mappings) or any(n is None for n in names):
            continue
        found[producer] = tuple(sorted({s for n in names if n is not None for s in n}))
    return found


def segment_edge(work: Work, dag: DagFact, uri: str, mapping: AssetMapping, producer: str, task: str) -> Edge | str:
    """**Segment edges**: the edge, or why there is none."""
    assert mapping.segments is not None and mapping.upstream_segments is not None
    mine = work.segments.get(dag.dag_id)
    theirs = work.segments.get(producer)
    if work.grid(producer) is not None:
        return f"asset {uri!r}: {mapping.mapper} reads names, and {producer}'s partition keys are times"
    if mine != mapping.segments:
        keyed = f"keys {dag.dag_id} by {list(mapping.segments)}"
        return f"asset {uri!r}: {mapping.mapper} {keyed}, and its other assets do not"
    exact = theirs == mapping.upstream_segments if mapping.segment_rule == "all" else theirs is not None
    if theirs is None or not exact or not set(mapping.upstream_segments) <= set(theirs):
        said = "no segments" if theirs is None else f"the segments {list(theirs)}"
        return (
            f"asset {uri!r}: {mapping.mapper} reads {list(mapping.upstream_segments)} of {producer}, which has {said} "
            f"(its keys are decided at run time and another consumer reads them otherwise)"
        )
    return Edge(work.ref(producer), task, segments=mapping.segment_rule, at_least=mapping.at_least)


def key_format(work: Work, dag_id: str, seen: frozenset[str] = frozenset()) -> str | None:
    """**Key formats**: the DAG's ``key_format``, or None."""
    dag = work.dags.get(dag_id)
    if dag is None or work.grid(dag_id) is None or dag_id in seen:
        return None
    if dag.schedule.key_format is not None:
        return dag.schedule.key_format
    schedule = dag.schedule
    identity = schedule.kind is ScheduleKind.ASSETS and schedule.timetable == PARTITIONED and schedule.mappings
    if not identity or any(m.mapper != "IdentityMapper" for m in schedule.mappings):
        return None
    sources = {e.dag.rsplit("/", 1)[-1] for e in work.upstream_edges(dag_id)}
    formats = {key_format(work, s, seen | {dag_id}) for s in sources}
    if len(formats) != 1 or not all(work.grids.get(s) == work.grids[dag_id] for s in sources):
        return None
    (found,) = formats
    return found


def partitions_entry(work: Work, dag_id: str) -> dict[str, Any] | None:
    """The DAG's ``partitions``: its grid, segments and key format (the file's syntax), or None."""
    choice = work.grids[dag_id]
    entry: dict[str, Any] = {}
    if choice.grid is not None:
        entry = {"cron": choice.written_cron or choice.grid.cron, "timezone": choice.grid.timezone}
    segments = work.segments.get(dag_id)
    if segments is not None:
        entry["segments"] = list(segments)
    found = key_format(work, dag_id)
    if found is not None:
        entry["key_format"] = found
    return entry or None
