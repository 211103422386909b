"""One OpenLineage run event into etcd, exactly once (semantics `lineage-once`; the decision is
``core/lineage/facts.py``).

Rules:
- **Read, judge, write.** The run's record (and its parent's, for a run not yet recorded) and the run state of the
  partition the record fixes are read at one revision; :func:`~coordinator.core.lineage.facts.judge` says what to write;
  both keys are written in ONE transaction guarded by the mod revisions read. A conflict (another receiver, or a retry
  of the same event racing the first) reads and judges again, so two copies of one event record it once.
- **Durable before 2xx.** An event is durable when its transaction committed (or was found already applied); only then
  does the receiver answer 2xx. A kill between two events of a batch leaves the first ones written: the client's retry
  finds them duplicates (``core/lineage/facts.py``'s **Once per run and type**) and writes the rest.
- **etcd errors raised.** etcd errors are raised to the caller (which answers 503: the client retries); nothing is
  half-written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coordinator.core.lineage.events import RunEvent
from coordinator.core.lineage.facts import LineageRun, Writes, judge, partition_of
from coordinator.core.lineage.mapping import LineageJob
from coordinator.core.model import KeyLayout, NodeId, dump_record, parse_run_record
from coordinator.errors import StoreError
from coordinator.etcd import KV, EtcdStore
from coordinator.watcher.faults import crash_point

log = logging.getLogger(__name__)

#: **Read, judge, write**: conflicts come from another copy of the same run's events in flight at once; a handful of
#: rounds ends them.
MAX_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class Written:
    """What one event became, and at which revision (0 when nothing was written)."""

    writes: Writes
    revision: int = 0


class EventWriter:
    """Every rule of the module over one store and key layout."""

    def __init__(self, store: EtcdStore, keys: KeyLayout) -> None:
        self.store = store
        self.keys = keys

    async def write(self, event: RunEvent, entry: LineageJob, node: NodeId) -> Written:
        """Record ``event`` of a job ``entry`` maps to ``node`` (**Read, judge, write** and **Durable before 2xx**).
        Raises NoPartition (the client's 400)."""
        record_key = self.keys.lineage_key(node.instance, event.run_id)
        parent_key = (
            self.keys.lineage_key(node.instance, event.parent_run_id)
            if event.parent_run_id is not None and event.parent_run_id != event.run_id
            else None
        )
        for _ in range(MAX_ROUNDS):
            revision, found = await self.store.get_many([k for k in (record_key, parent_key) if k is not None])
            by_key = {kv.key: kv for kv in found}
            record_kv = by_key.get(record_key)
            record = _lineage_run(record_kv)
            parent = _lineage_run(by_key.get(parent_key)) if parent_key is not None and record is None else None
            partition = record.partition if record is not None else partition_of(event, entry, parent)[0]
            run_key = self.keys.run_key(node, partition)
            _, runs = await self.store.get_many([run_key], revision=revision)
            run_kv = runs[0] if runs else None
            current = parse_run_record(run_kv.value)[0] if run_kv is not None else None
            writes = judge(event, entry, node, record, parent, current)
            if writes.record is None:
                return Written(writes)
            items = [(record_key, dump_record(writes.record), record_kv.mod_revision if record_kv else 0)]
            if writes.run_state is not None:
                items.append((run_key, dump_record(writes.run_state), run_kv.mod_revision if run_kv else 0))
            result = await self.store.put_unchanged(items)
            if result.succeeded:
                crash_point("lineage-after-write")
                return Written(writes, result.revision)
        raise StoreError(f"{record_key}: still changing after {MAX_ROUNDS} rounds; try again")


def _lineage_run(kv: KV | None) -> LineageRun | None:
    """A stored record, or None (absent, or a value that does not parse: logged, then overwritten as if absent)."""
    if kv is None:
        return None
    try:
        return LineageRun.model_validate_json(kv.value)
    except ValueError as exc:
        log.warning("lineage.bad_record key=%r error=%r", kv.key, str(exc)[:200])
        return None
