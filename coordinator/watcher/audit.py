"""Periodic audit of each Airflow instance's recent runs: repairs run states the plugin could not write.

Rules: runs only on the leader; reads Airflow over REST (one list call per DAG of the graph in that instance), writes
only what :func:`coordinator.core.audit.audit_record` asks for, through a compare-and-swap so a concurrent plugin write
is never overwritten blindly. An unreachable instance is logged and skipped; the audit never stops the watcher.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coordinator.airflow_api import AirflowClient
from coordinator.core.audit import audit_record
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, canonical_partition, dump_record, parse_run_record
from coordinator.errors import CoordinatorError, StoreUnavailable
from coordinator.etcd import EtcdStore

log = logging.getLogger("coordinator.audit")


@dataclass
class AuditResult:
    checked: int = 0
    repaired: int = 0
    errors: int = 0


async def audit_once(
    store: EtcdStore,
    keys: KeyLayout,
    graph: Graph,
    clients: Mapping[str, AirflowClient],
    lookback: timedelta,
) -> AuditResult:
    """One audit pass over every DAG of the graph whose instance has a client."""
    result = AuditResult()
    now = datetime.now(UTC)
    for node in graph.topo_order:
        client = clients.get(node.instance)
        if client is None:
            continue
        try:
            runs = await client.list_runs(node.dag_id, since=now - lookback)
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.list_failed node=%s error=%s", node, exc)
            continue
        for run in runs:
            if run.logical_date is None:
                continue
            result.checked += 1
            key = keys.run_key(node, canonical_partition(run.logical_date))
            try:
                kv = await store.get(key)
                existing = parse_run_record(kv.value)[0] if kv is not None else None
                record = audit_record(
                    existing, run_id=run.run_id, state=run.state, start_date=run.start_date,
                    end_date=run.end_date, source=f"audit:{node.instance}", now=now,
                )  # fmt: skip
                if record is None:
                    continue
                written = await store.cas(key, dump_record(record), kv.mod_revision if kv is not None else 0)
                if written.succeeded:
                    result.repaired += 1
                    log.warning(
                        "audit.repaired key=%s state=%s run_id=%s clear_number=%d had=%s",
                        key, record.state, record.run_id, record.clear_number,
                        f"{existing.state}/{existing.clear_number}" if existing else "nothing",
                    )  # fmt: skip
            except StoreUnavailable as exc:
                # etcd is down: every other key would fail the same way, each after its own retries.
                result.errors += 1
                log.warning("audit.aborted reason=etcd_unavailable error=%s", exc)
                return result
            except CoordinatorError as exc:
                result.errors += 1
                log.warning("audit.write_failed key=%s error=%s", key, exc)
    log.info("audit checked=%d repaired=%d errors=%d", result.checked, result.repaired, result.errors)
    return result
