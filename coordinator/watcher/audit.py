"""Periodic audit of each Airflow instance's recent runs: repairs run states the plugin could not write.

Rules: runs only on the leader; reads Airflow over REST (one list call per DAG of the graph in that instance) and
decides from the leader's in-memory view which runs need a write (:func:`coordinator.core.audit.audit_record`), so a
pass costs no etcd read for the runs etcd already knows. Each write goes through the one run-record writer
(:func:`coordinator.writers.run_records.write_run_record`), which re-reads the key and re-decides against what etcd
holds then: a concurrent plugin write, or one the view has not seen yet, is never overwritten by an older fact. An
unreachable instance is logged and skipped; the audit never stops the watcher. It runs as the timed key
``Tick("audit")`` of its controller (``manager/periodic.py``), at the ``now`` the controller gives it.

Task states (semantics "task-level upstreams"): for each task the adopted graph names (``upstream_tasks`` of the
view's activation) the audit lists that task's instances changed within the lookback (one paged
``GET /dags/{dag}/dagRuns/~/taskInstances?task_id=...`` per named task and pass, REST v2 and v1) and repairs each
task-state key with :func:`coordinator.core.task_facts.audit_task_record`, through the same writer with the task
ordering rule (``should_replace_task``) and ``source: audit:<instance>``. Mapped instances and runs of no partition
have no task-state key and are skipped. **Tasks Airflow never runs**: an ``EmptyOperator`` without callbacks is marked
success by Airflow's scheduler without a task process, so no plugin code records it and the audit is its only writer:
its first record is said at info (``audit.task_recorded reason=not_run_by_airflow``), not as a repair of a lost write
(``audit.task_repaired``, a warning), which an estate naming such tasks would otherwise log for every run.

Partitions (semantics `asset-triggered-partitions`): a run is repaired at each partition
:func:`coordinator.core.run_partition.run_partitions` gives it, the plugin's own rule: its logical date as always, a
partitioned run's ``partition_date`` and ``partition_key`` (API v2), an asset-triggered run's consumed events' source
runs (``coordinator.airflow.run_sources``: read only for those runs, bounded, each source once per pass). A task
instance is repaired at its run's partitions, for the runs the same pass listed.

The leader's audit writes through the executor (``watcher/executor.py``), so every repair is fenced: once this watcher
no longer leads, a repair is refused and the round ends (the new leader audits). :func:`audit_once` takes any
``etcd.Writes``: a caller that does not lead passes the store itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.airflow.client import AirflowClient, DagRunInfo
from coordinator.airflow.run_sources import RunSources, needs_sources, run_marks
from coordinator.airflow.runs import TaskInstanceInfo
from coordinator.core.audit import audit_record
from coordinator.core.graph import Graph
from coordinator.core.lineage.mapping import entry_for
from coordinator.core.model import KeyLayout, NodeId, RunRecord, canonical_partition
from coordinator.core.run_order import standing_run
from coordinator.core.run_partition import run_partitions
from coordinator.core.task_facts import (
    NOT_RUN_OPERATORS,
    NamedTasks,
    audit_task_record,
    named_tasks_from_mapping,
    parse_task_record,
    should_replace_task,
)
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, LeadershipLost, StoreUnavailable
from coordinator.etcd import Writes
from coordinator.manager import Controller, Handle, Manager, Periodic, wall_clock
from coordinator.manager.periodic import RequeueAfter
from coordinator.watcher.deps import Deps
from coordinator.watcher.keys import Tick
from coordinator.writers.run_records import Propose, RunWrite, RunWriteStatus, write_run_record

log = logging.getLogger(__name__)


#: Run-state key -> (the view's revision of it, the run id) of a proposal the writer refused at that revision: the key
#: names a newer run than any Airflow still lists (a run deleted in Airflow leaves its record, semantics
#: `newest-run-stands`), which the view's slim fact cannot tell; the proposal is not sent again until the key changes.
Refused = dict[str, tuple[int, str]]


@dataclass(frozen=True)
class AuditJob:
    """The leader's periodic audit as a timed concern (``manager/periodic.py``): what a pass needs, not the watcher."""

    #: The leader's executor (``watcher/executor.py``): a repair sent after this watcher stopped leading is refused.
    writes: Writes
    keys: KeyLayout
    #: The graph in force at the time of the round (it is reloaded while the watcher runs).
    graph: Callable[[], Graph]
    clients: Mapping[str, AirflowClient]
    lookback: timedelta
    view: View
    interval_s: float
    name: str = "audit"
    #: Told, per instance, how many run states a round repaired (the metric ``coordinator_audit_repairs``): repairs
    #: of an instance whose plugin wrote before are the sign that it stopped writing.
    on_repaired: Callable[[str, int], None] = lambda instance, count: None
    #: The proposals etcd refused, kept across passes (:data:`Refused`).
    refused: Refused = field(default_factory=dict)

    async def run_once(self, now: datetime) -> RequeueAfter:
        result = await audit_once(self.writes, self.keys, self.graph(), self.clients, self.lookback, self.view, now=now,
                                  refused=self.refused)  # fmt: skip
        for instance, count in sorted(result.repaired_in.items()):
            self.on_repaired(instance, count)
        return None


@dataclass
class AuditResult:
    checked: int = 0
    repaired: int = 0
    #: ``repaired`` by instance.
    repaired_in: dict[str, int] = field(default_factory=dict)
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
            source=source, now=now, run_type=run.run_type or None, run_after=run.run_after,
        )  # fmt: skip

    return decide


async def audit_once(
    writes: Writes,
    keys: KeyLayout,
    graph: Graph,
    clients: Mapping[str, AirflowClient],
    lookback: timedelta,
    view: View,
    *,
    now: datetime | None = None,
    refused: Refused | None = None,
) -> AuditResult:
    """One audit pass at ``now`` (the wall clock if None) over every DAG of the graph whose instance has a client;
    ``view`` is the leader's view; ``refused``: the proposals refused by earlier passes (:data:`Refused`), updated."""
    result = AuditResult()
    refused = refused if refused is not None else {}
    now = now if now is not None else wall_clock()
    named = named_tasks_from_mapping(view.activation.upstream_tasks if view.activation is not None else None)
    for node in graph.topo_order:
        client = clients.get(node.instance)
        # An OpenLineage node's facts are the receiver's (semantics `lineage-upstreams`): a second writer with Airflow's
        # run ids beside the receiver's run ids would make each success two generations, and its dependents run twice.
        # An external instance has no Airflow to list (a client configured for it by mistake is not used).
        if client is None or entry_for(graph.lineage_jobs, node) is not None or not graph.has_airflow(node.instance):
            continue
        try:
            runs = await client.list_runs(node.dag_id, since=now - lookback)
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.list_failed node=%s error=%s", node, exc)
            continue
        partitions = _standing(runs, await _run_partitions(client, node, runs, result))
        after = {run.run_id: run.run_after for run in runs}
        if not await _audit_tasks(writes, keys, client, node, named, now - lookback, now, result, partitions, after):
            return result  # etcd is down
        for run in runs:
            for partition in partitions.get(run.run_id, ()):
                result.checked += 1
                if not await _repair_run(writes, keys, node, run, partition, view, now, result, refused):
                    return result  # etcd is down
    log.info(
        "audit checked=%d repaired=%d stale=%d errors=%d tasks_checked=%d tasks_repaired=%d",
        result.checked, result.repaired, result.stale, result.errors, result.tasks_checked, result.tasks_repaired,
    )  # fmt: skip
    return result


async def _run_partitions(
    client: AirflowClient, node: NodeId, runs: list[DagRunInfo], result: AuditResult
) -> dict[str, tuple[str, ...]]:
    """Each listed run's partitions by :mod:`coordinator.core.run_partition`, the plugin's rule (an asset-triggered
    run's consumed events and their sources read over REST, only for the runs that need them); a run of no partition,
    or whose sources could not be read (counted, logged, read again next pass), is left out."""
    sources = RunSources(client)
    found: dict[str, tuple[str, ...]] = {}
    for run in runs:
        marks = run_marks(run)
        try:
            read = await sources.of(run) if needs_sources(marks) else marks
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.sources_failed node=%s run_id=%s error=%s", node, run.run_id, exc)
            continue
        partitions = run_partitions(read).partitions
        if partitions:
            found[run.run_id] = partitions
    if sources.reads:
        log.info("audit.run_sources node=%s reads=%d", node, sources.reads)
    return found


def _standing(runs: list[DagRunInfo], partitions: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Each listed run's partitions where it is the run that stands (semantics `newest-run-stands`,
    :func:`coordinator.core.run_order.standing_run`): of several runs of one partition only the last in the run order
    is audited there, so a pass never proposes an older run, and the writer's rule refuses one all the same."""
    by_partition: dict[str, list[DagRunInfo]] = {}
    for run in runs:
        for partition in partitions.get(run.run_id, ()):
            by_partition.setdefault(partition, []).append(run)
    standing: dict[str, list[str]] = {}
    for partition, candidates in by_partition.items():
        winner = standing_run(candidates)
        if winner is not None:
            standing.setdefault(winner.run_id, []).append(partition)
    return {run_id: tuple(found) for run_id, found in standing.items()}


async def _repair_run(
    writes: Writes,
    keys: KeyLayout,
    node: NodeId,
    run: DagRunInfo,
    partition: str,
    view: View,
    now: datetime,
    result: AuditResult,
    refused: Refused,
) -> bool:
    """One run-state key of ``run`` at ``partition`` through the run-record writer; False when etcd is unavailable."""
    decide = _decider(run, f"audit:{node.instance}", now)
    known = view.runs.get((node, partition))
    if decide(known.record if known is not None else None) is None:
        return True  # the view already says enough: no etcd call at all
    key = keys.run_key(node, partition)
    proposal = (known.rev if known is not None else 0, run.run_id)
    if refused.get(key) == proposal:
        return True  # etcd refused this run over the same record before: it names a newer run
    done = await _write_repair(lambda: write_run_record(writes, key, decide), key, result)
    if isinstance(done, bool):
        return done
    if done.status is RunWriteStatus.WRITTEN and done.record is not None:
        result.repaired += 1
        result.repaired_in[node.instance] = result.repaired_in.get(node.instance, 0) + 1
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
        refused[key] = proposal
        log.info("audit.view_behind key=%s revision=%d", key, done.revision)
    return True


async def _audit_tasks(
    writes: Writes,
    keys: KeyLayout,
    client: AirflowClient,
    node: NodeId,
    named: NamedTasks,
    since: datetime,
    now: datetime,
    result: AuditResult,
    partitions: Mapping[str, tuple[str, ...]],
    run_after: Mapping[str, datetime | None],
) -> bool:
    """Repair the task-state keys of ``node``'s named tasks, at their run's partitions (``partitions``: by run id, the
    runs listed this pass where they stand; ``run_after``: their run order); False when etcd is unavailable (the pass
    stops)."""
    for task_id in sorted(named.by_node.get(node, ())):
        try:
            instances = await client.list_task_instances(node.dag_id, task_id, since)
        except CoordinatorError as exc:
            result.errors += 1
            log.warning("audit.task_list_failed node=%s task_id=%s error=%s", node, task_id, exc)
            continue
        for ti in instances:
            if ti.map_index >= 0:
                continue  # mapped: no single task state
            for partition in _task_partitions(ti, partitions):
                result.tasks_checked += 1
                key = keys.task_key(node, task_id, partition)
                decide = _task_decider(ti, f"audit:{node.instance}", now, run_after.get(ti.run_id))
                if not await _repair_task(writes, key, ti, decide, result):
                    return False
    return True


def _task_partitions(ti: TaskInstanceInfo, partitions: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The partitions of a task instance's run: as listed this pass, else (its run changed before the lookback) its
    logical date as always; a run of no partition has no task-state key."""
    if ti.run_id in partitions:
        return partitions[ti.run_id]
    try:
        return () if ti.logical_date is None else (canonical_partition(ti.logical_date),)
    except ValueError:
        return ()


async def _write_repair(write: Callable[[], Awaitable[RunWrite]], key: str, result: AuditResult) -> RunWrite | bool:
    """One repair's write of ``key``: its outcome, or, when it failed, whether the round goes on (counted and logged).
    etcd unavailable ends the round: every other key would fail the same way, each after its own retries. A lost
    leadership ends it too, raised: a leader's repairs are the executor's fenced writes."""
    try:
        return await write()
    except LeadershipLost:
        raise
    except StoreUnavailable as exc:
        result.errors += 1
        log.warning("audit.aborted reason=etcd_unavailable error=%s", exc)
        return False
    except CoordinatorError as exc:
        result.errors += 1
        log.warning("audit.write_failed key=%s error=%s", key, exc)
        return True


async def _repair_task(writes: Writes, key: str, ti: TaskInstanceInfo, decider: Propose, result: AuditResult) -> bool:
    """One task-state key through the run-record writer with the task rule; False when etcd is unavailable."""
    done = await _write_repair(
        lambda: write_run_record(writes, key, decider, parse=parse_task_record, rule=should_replace_task), key, result
    )
    if isinstance(done, bool):
        return done
    if done.status is RunWriteStatus.WRITTEN and done.record is not None:
        result.tasks_repaired += 1
        had = done.previous
        if had is None and ti.operator in NOT_RUN_OPERATORS:  # **Tasks Airflow never runs**: expected, not a loss
            log.info(
                "audit.task_recorded key=%s state=%s run_id=%s try_number=%s reason=not_run_by_airflow operator=%s "
                "revision=%d",
                key, done.record.state, done.record.run_id, ti.try_number, ti.operator, done.revision,
            )  # fmt: skip
            return True
        log.warning(
            "audit.task_repaired key=%s state=%s run_id=%s try_number=%s had=%s revision=%d",
            key, done.record.state, done.record.run_id, ti.try_number,
            f"{had.state}/{getattr(had, 'try_number', None)}" if had else "nothing", done.revision,
        )  # fmt: skip
    elif done.status is RunWriteStatus.CONTENDED:
        result.errors += 1
        log.warning("audit.contended key=%s rounds=%d", key, done.rounds)
    return True


def _task_decider(ti: TaskInstanceInfo, source: str, now: datetime, run_after: datetime | None) -> Propose:
    """The task audit rule for one task instance Airflow reports, as a function of the record etcd holds."""

    def decide(existing: RunRecord | None) -> RunRecord | None:
        return audit_task_record(
            existing, run_id=ti.run_id, state=ti.state, try_number=ti.try_number, start_date=ti.start_date,
            end_date=ti.end_date, source=source, now=now, run_after=run_after,
        )  # fmt: skip

    return decide


#: What this concern provides (``manager/manager.py``'s **Handles**): the leader's audit: the service reads it.
AUDIT: Handle[AuditJob] = Handle("audit")


def setup(manager: Manager, deps: Deps) -> AuditJob | None:
    """The leader's audit, a key requeued at its interval; None while it is off or no Airflow is configured."""
    settings = deps.settings
    if settings.audit_interval_s <= 0 or not deps.clients:
        return None
    job = AuditJob(deps.executor, settings.keys, deps.graph, deps.clients, timedelta(hours=settings.audit_lookback_h),
                   deps.view, settings.audit_interval_s, on_repaired=deps.metrics.audit_repaired)  # fmt: skip
    manager.register(Controller(job.name, Periodic(job), now=deps.clock, needs_leader=True,
                                period_s=job.interval_s, backoff_max_s=job.interval_s),
                     start_after=(Tick(job.name), job.interval_s))  # fmt: skip
    return manager.provide(AUDIT, job)
