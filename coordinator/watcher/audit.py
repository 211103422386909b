"""Periodic audit of each Airflow instance's recent runs: repairs run states the plugin could not write.

Rules: runs only on the leader; reads Airflow over REST (one list call per DAG of the graph in that instance) and
decides from the leader's in-memory view which runs need a write (:func:`coordinator.core.audit.audit_record`), so a
pass costs no etcd read for the runs etcd already knows. Each write goes through the one run-record writer
(:func:`coordinator.run_records.write_run_record`), which re-reads the key and re-decides against what etcd holds
then: a concurrent plugin write, or one the view has not seen yet, is never overwritten by an older fact. An
unreachable instance is logged and skipped; the audit never stops the watcher.

Task states (semantics "task-level upstreams"): for every DAG run it lists, the audit also asks Airflow for each task
the adopted graph names in that DAG (``upstream_tasks`` of the view's activation; one ``GET .../taskInstances/{task}``
per run and named task, on REST v2 and v1) and repairs the task-state key with
:func:`coordinator.core.task_facts.audit_task_record`, through the same writer with the task ordering rule
(``should_replace_task``) and ``source: audit:<instance>``. Queued runs are skipped (their tasks have not run).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coordinator.airflow_api import AirflowClient, DagRunInfo, TaskInstanceInfo
from coordinator.core.audit import audit_record
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunRecord, canonical_partition
from coordinator.core.task_facts import (
    NamedTasks,
    audit_task_record,
    named_tasks_from_mapping,
    parse_task_record,
    should_replace_task,
)
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, StoreUnavailable
from coordinator.etcd import EtcdStore
from coordinator.run_records import Propose, RunWriteStatus, write_run_record

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    checked: int = 0
    repaired: int = 0
    errors: int = 0
    #: Runs the view said needed a write but etcd, read at write time, already had (or had something newer).
    stale: int = 0
    #: Task instances of named tasks looked at, and task-state keys written.
    tasks_checked: int = 0
    tasks_repaired: int = 0


def _decider(run: DagRunInfo, source: str, now: datetime) -> Propose:
    """The audit rule for one Airflow run, as a function of the record etcd (or the view) holds."""

    def decide(existing: RunRecord | None) -> RunRecord | None:
        return audit_record(
            existing, run_id=run.run_id, state=run.state, start_date=run.start_date, end_date=run.end_date,
            source=source, now=now,
        )  # fmt: skip

    return decide


async def audit_once(
    store: EtcdStore,
    keys: KeyLayout,
    graph: Graph,
    clients: Mapping[str, AirflowClient],
    lookback: timedelta,
    view: View,
) -> AuditResult:
    """One audit pass over every DAG of the graph whose instance has a client; ``view`` is the leader's view."""
    result = AuditResult()
    now = datetime.now(UTC)
    named = named_tasks_from_mapping(view.activation.upstream_tasks if view.activation is not None else None)
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
            partition = canonical_partition(run.logical_date)
            if not await _audit_tasks(store, keys, client, node, run, partition, named, now, result):
                return result  # etcd is down

            decide = _decider(run, f"audit:{node.instance}", now)
            known = view.runs.get((node, partition))
            if decide(known.record if known is not None else None) is None:
                continue  # the view already says enough: no etcd call at all
            key = keys.run_key(node, partition)
            try:
                done = await write_run_record(store, key, decide)
            except StoreUnavailable as exc:
                # etcd is down: every other key would fail the same way, each after its own retries.
                result.errors += 1
                log.warning("audit.aborted reason=etcd_unavailable error=%s", exc)
                return result
            except CoordinatorError as exc:
                result.errors += 1
                log.warning("audit.write_failed key=%s error=%s", key, exc)
                continue
            if done.status is RunWriteStatus.WRITTEN and done.record is not None:
                result.repaired += 1
                had = done.previous
                log.warning(
                    "audit.repaired key=%s state=%s run_id=%s clear_number=%d had=%s revision=%d",
                    key, done.record.state, done.record.run_id, done.record.clear_number,
                    f"{had.state}/{had.clear_number}" if had else "nothing", done.revision,
                )  # fmt: skip
            elif done.status is RunWriteStatus.CONTENDED:
                result.errors += 1
                log.warning("audit.contended key=%s rounds=%d", key, done.rounds)
            else:
                result.stale += 1
                log.info("audit.view_behind key=%s revision=%d", key, done.revision)
    log.info(
        "audit checked=%d repaired=%d stale=%d errors=%d tasks_checked=%d tasks_repaired=%d",
        result.checked, result.repaired, result.stale, result.errors, result.tasks_checked, result.tasks_repaired,
    )  # fmt: skip
    return result


async def _audit_tasks(
    store: EtcdStore,
    keys: KeyLayout,
    client: AirflowClient,
    node: NodeId,
    run: DagRunInfo,
    partition: str,
    named: NamedTasks,
    now: datetime,
    result: AuditResult,
) -> bool:
    """Repair the task-state keys of ``run``'s named tasks; False when etcd is unavailable (the pass stops)."""
    tasks = sorted(named.by_node.get(node, ()))
    if not tasks or run.state == "queued":
        return True
    for task_id in tasks:
        try:
            ti = await client.get_task_instance(node.dag_id, run.run_id, task_id)
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.task_failed node=%s run_id=%s task_id=%s error=%s", node, run.run_id, task_id, exc)
            continue
        if ti is None or ti.map_index >= 0:
            continue  # not in this run (added later), or mapped: no single task state
        result.tasks_checked += 1
        key = keys.task_key(node, task_id, partition)
        try:
            done = await write_run_record(
                store, key, _task_decider(ti, f"audit:{node.instance}", now),
                parse=parse_task_record, rule=should_replace_task,
            )  # fmt: skip
        except StoreUnavailable as exc:
            result.errors += 1
            log.warning("audit.aborted reason=etcd_unavailable error=%s", exc)
            return False
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.write_failed key=%s error=%s", key, exc)
            continue
        if done.status is RunWriteStatus.WRITTEN and done.record is not None:
            result.tasks_repaired += 1
            had = done.previous
            log.warning(
                "audit.task_repaired key=%s state=%s run_id=%s try_number=%s had=%s revision=%d",
                key, done.record.state, done.record.run_id, ti.try_number,
                f"{had.state}/{getattr(had, 'try_number', None)}" if had else "nothing", done.revision,
            )  # fmt: skip
        elif done.status is RunWriteStatus.CONTENDED:
            result.errors += 1
            log.warning("audit.contended key=%s rounds=%d", key, done.rounds)
    return True


def _task_decider(ti: TaskInstanceInfo, source: str, now: datetime) -> Propose:
    """The task audit rule for one task instance Airflow reports, as a function of the record etcd holds."""

    def decide(existing: RunRecord | None) -> RunRecord | None:
        return audit_task_record(
            existing, run_id=ti.run_id, state=ti.state, try_number=ti.try_number, start_date=ti.start_date,
            end_date=ti.end_date, source=source, now=now,
        )  # fmt: skip

    return decide
