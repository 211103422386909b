"""The receiver's own records follow the retention floor (semantics rules 11 and 18c).

The receiver keeps one record per OpenLineage run (``{prefix}/lineage/{instance}/{runId}``); without this they would
grow with every run for ever. Rules:
1. Records are retired by the same floor as run states (``{prefix}/config/retention``, written by ``coordinator
   prune`` or the leader's periodic retention): a record whose partition the floor retires is deleted. No floor, no
   deletion: the records last as long as the run states do.
2. The floor and the records are read in one load (``informer.read_model.load``: the floor's key and each
   instance's records; the lineage index keeps each record's partition); a record whose value does not parse is
   not ours to judge (the receiver logs it) and stays. Each delete is guarded by the record's mod revision
   (``delete_unchanged``, in transactions of ``BATCH_SIZE``): a record an event changed meanwhile is kept until
   the next round. A late event of a retired run finds no record and
   writes as a new run would; the watcher plans nothing before the floor (rule 11), so nothing is triggered by it.
3. The receiver runs it every ``RETIRE_EVERY_S`` and once at start; a failure is logged and the next round retries.
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
    """Rules 1-2 for the records of ``instances``; how many were deleted."""
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
