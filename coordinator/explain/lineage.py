"""What ``why``, ``status`` and the page say of a node that is an OpenLineage job (semantics `lineage-upstreams`): the
job, its last event. Below the page and the CLI in the import layers (beside the read model), so all three read it
alike.

A node is an OpenLineage node when an ``"openlineage"`` entry of the graph maps to it (its fixed ``dag``, or a job
pattern matching its dag id). Its run state's ``run_id`` is the OpenLineage runId, and the receiver's record of that
run says which job it was and its events, so an operator reads "OpenLineage job dbt_prod/... at P: last event FAIL
at ..." instead of a bare state. Reads are targeted (a node's run state, then that run's record), never the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from coordinator.core.graph import Graph
from coordinator.core.lineage.facts import SOURCE_PREFIX, LineageRun
from coordinator.core.lineage.mapping import LineageJob
from coordinator.core.lineage.mapping import entry_for as mapped_entry
from coordinator.core.model import KeyLayout, NodeId, RunRecord, parse_run_record

if TYPE_CHECKING:  # the store is handed in: the page imports gRPC only when asked for (page/service.py)
    from coordinator.etcd import EtcdStore


@dataclass(frozen=True, slots=True)
class LineageState:
    """One OpenLineage node at one partition: its mapping entry, run state and the run's record (None: absent)."""

    node: NodeId
    partition: str
    entry: LineageJob
    record: RunRecord | None
    run: LineageRun | None

    def describe(self) -> str:
        """One sentence, for ``why`` and ``status``."""
        entry = self.entry
        if self.record is None or not self.record.source.startswith(SOURCE_PREFIX):
            return (f"{self.node} is an OpenLineage job ({entry.label}: namespace {entry.namespace!r}, job "
                    f"{entry.job!r}): no event for {self.partition} has reached the receiver")  # fmt: skip
        state = self.record.state.value
        if self.run is None:
            return f"{self.node} is an OpenLineage job ({entry.label}): state {state}, run {self.record.run_id}"
        last = self.run.last_event()
        said = f"last event {last[0].value} at {last[1].isoformat()}" if last is not None else "no event"
        return (f"{self.node} is OpenLineage job {self.run.namespace}/{self.run.job} ({entry.label}) at "
                f"{self.partition}: {said}; state {state} (run {self.record.run_id})")  # fmt: skip


def entry_for(graph: Graph, node: NodeId) -> LineageJob | None:
    """The entry that names ``node`` (``core.lineage.mapping.entry_for``)."""
    return mapped_entry(graph.lineage_jobs, node)


def lineage_nodes(graph: Graph) -> list[tuple[NodeId, LineageJob]]:
    """Every node of the graph an entry maps, with its entry, sorted."""
    found = ((node, entry_for(graph, node)) for node in sorted(graph.dags))
    return [(node, entry) for node, entry in found if entry is not None]


async def lineage_state(
    store: EtcdStore, keys: KeyLayout, node: NodeId, entry: LineageJob, partition: str
) -> LineageState:
    kv = await store.get(keys.run_key(node, partition))
    record = parse_run_record(kv.value)[0] if kv is not None else None
    run = None
    if record is not None and record.source.startswith(SOURCE_PREFIX):
        stored = await store.get(keys.lineage_key(node.instance, record.run_id))
        if stored is not None:
            try:
                run = LineageRun.model_validate_json(stored.value)
            except ValidationError:
                run = None  # a record that does not parse: the state alone is said
    return LineageState(node, partition, entry, record, run)


async def why_lineage_lines(store: EtcdStore, keys: KeyLayout, graph: Graph, node: NodeId, partition: str) -> list[str]:
    """One line per upstream of ``node`` that is an OpenLineage job, saying where it stands at ``partition``."""
    spec = graph.dags.get(node)
    if spec is None:
        return []
    lines: list[str] = []
    for up in sorted({*spec.upstreams, *spec.on_failure_of}):
        entry = entry_for(graph, up)
        if entry is not None:
            lines.append("  " + (await lineage_state(store, keys, up, entry, partition)).describe())
    return lines


async def lineage_states(store: EtcdStore, keys: KeyLayout, graph: Graph, partitions: list[str]) -> list[LineageState]:
    """Every OpenLineage node at each of ``partitions`` (``status``'s table)."""
    return [
        await lineage_state(store, keys, node, entry, partition)
        for node, entry in lineage_nodes(graph)
        for partition in partitions
    ]
