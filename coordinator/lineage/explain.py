"""What ``why`` adds for an upstream that is an OpenLineage job (semantics rule 18): which job, and its last event.

An upstream is an OpenLineage node when an ``"openlineage"`` entry of the graph maps to it (its fixed ``dag``, or a
job pattern matching its dag id). The line reads the node's run state (its ``run_id`` is the OpenLineage runId) and
the receiver's record of that run, so an operator reads "waits for dbt job ... last event FAIL at ..." instead of a
bare state.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from coordinator.core.graph import Graph
from coordinator.core.lineage.facts import SOURCE_PREFIX, LineageRun
from coordinator.core.lineage.mapping import LineageJob
from coordinator.core.model import KeyLayout, NodeId, parse_run_record
from coordinator.etcd import EtcdStore


def entry_for(graph: Graph, node: NodeId) -> LineageJob | None:
    """The first mapping entry that can name ``node`` (the mapping's rule 1 read backwards)."""
    for entry in graph.lineage_jobs:
        if entry.instance != node.instance:
            continue
        if entry.dag == node.dag_id or (entry.dag is None and fnmatchcase(node.dag_id, entry.job)):
            return entry
    return None


async def why_lineage_lines(store: EtcdStore, keys: KeyLayout, graph: Graph, node: NodeId, partition: str) -> list[str]:
    """One line per upstream of ``node`` that is an OpenLineage job, saying where it stands at ``partition``."""
    spec = graph.dags.get(node)
    if spec is None:
        return []
    lines: list[str] = []
    for up in sorted({*spec.upstreams, *spec.on_failure_of}):
        entry = entry_for(graph, up)
        if entry is None:
            continue
        kv = await store.get(keys.run_key(up, partition))
        record = parse_run_record(kv.value)[0] if kv is not None else None
        if record is None or not record.source.startswith(SOURCE_PREFIX):
            lines.append(f"  {up} is an OpenLineage job ({entry.label}: namespace {entry.namespace!r}, job "
                         f"{entry.job!r}): no event for {partition} has reached the receiver")  # fmt: skip
            continue
        stored = await store.get(keys.lineage_key(up.instance, record.run_id))
        run = LineageRun.model_validate_json(stored.value) if stored is not None else None
        if run is None:
            state = record.state.value
            lines.append(f"  {up} is an OpenLineage job ({entry.label}): state {state}, run {record.run_id}")
            continue
        last = run.last_event()
        said = f"last event {last[0].value} at {last[1].isoformat()}" if last is not None else "no event"
        lines.append(f"  {up} is OpenLineage job {run.namespace}/{run.job} ({entry.label}) at {partition}: "
                     f"{said}; state {record.state.value} (run {record.run_id})")  # fmt: skip
    return lines
