"""The receiver's own records follow the retention floor (semantics `retention-retires` and `lineage-once`).

The receiver keeps one record per OpenLineage run (``{prefix}/lineage/{instance}/{runId}``); without this they would
grow with every run for ever. Rules:
- **The run states floor.** Records are retired by the same floor as run states (``{prefix}/config/retention``, written
  by ``coordinator prune`` or the leader's periodic retention): a record whose partition the floor retires is deleted.
  No floor, no deletion: the records last as long as the run states do.
- **One load, guarded deletes.** The floor and the records are read in one load (``informer.read_model.load``: the
  floor's key and each instance's records; the lineage index keeps each record's partition); a record whose value does
  not parse is not ours to judge (the receiver logs it) and stays. Each delete is guarded by the record's mod revision
  (``delete_unchanged``, in transactions of ``BATCH_SIZE``): a record an event changed meanwhile is kept until the next
  round. A late event of a retired run finds no record and writes as a new run would; the watcher plans nothing before
  the floor (semantics `retired-inert`), so nothing is triggered by it.
- **A round every RETIRE_EVERY_S.** The receiver runs it every ``RETIRE_EVERY_S`` and once at start; a failure is logged
  and the next round retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from coordinator.core.model import KeyLayout
from coordinator.core.retention import BATCH_SIZE
from coordinator.etcd import EtcdStore
from coordinator.informer.read_model import Family, Scope, load

log = logging.getLogger(__name__)

RETIRE_EVERY_S = 3600.0


async def retire_records(store: EtcdStore, keys: KeyLayout, instances: Iterable[str]) -> int:
    """**The run states floor** and **One load, guarded deletes** for the records of ``instances``; how many were
    deleted."""
    parts = tuple(f"{keys.lineage}{instance}/" for instance in sorted(set(instances)))
    model = await load(store, keys, {Family.CONFIG, Family.LINEAGE}, Scope(parts, (keys.config_key("retention"),)))
    floor, lineage = model.view.floor, model.lineage
    if floor is None or lineage is None:
        return 0
    deleted = 0
    for part in parts:
        retired = [(key, fact.mod_rev) for key, fact in sorted(lineage.records.items())
                   if key.startswith(part) and floor.retires(fact.partition)]  # fmt: skip
        for start in range(0, len(retired), BATCH_SIZE):
            batch = retired[start : start + BATCH_SIZE]
            result = await store.delete_unchanged(batch)
            if result.succeeded:
                deleted += len(batch)
    if deleted:
        log.info("lineage.retired records=%d before=%s", deleted, floor.before)
    return deleted
