"""Handles and helpers for the end-to-end tests (the fixtures live in ``conftest.py``); see its docstring."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.activation import Activation
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    TriggerRecord,
    canonical_partition,
    parse_run_record,
    parse_trigger_record,
)
from coordinator.core.spec.loader import parse_spec
from coordinator.core.task_facts import TaskRecord, parse_task_record
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, InstanceSettings, parse_endpoints
from coordinator.runtime.spec_file import load_spec
from coordinator.watcher.audit import AuditResult, audit_once
from devtools import reaper
from devtools.airflow2_stack import Airflow2Stack
from devtools.airflow_stack import AirflowStack, AirflowStackError, AirflowUnreachable

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = Path(__file__).resolve().parent / "dags"
PIPELINES = [f"0{i}_pipeline" for i in range(1, 8)]
FAILURE_DAGS = ["08_on_failure", "09_flaky"]
# e2e_dependent: a plain one-task DAG the scenarios use as a normal dependent (of 09_flaky, of another instance).
# e2e_hourly / e2e_daily: the partition-grid scenario's hourly root and its daily rollup.
# e2e_shift_*, e2e_task_*, e2e_chain*: the edge-semantics scenarios (test_edges_e2e.py; e2e_af2_task_down is the
# Airflow 3 dependent of a task on the Airflow 2.11 instance, test_airflow2_e2e.py).
EDGE_DAGS = [
    "e2e_shift_up",
    "e2e_shift_down",
    "e2e_task_up",
    "e2e_task_down",
    "e2e_chain_root",
    "e2e_chain",
    "e2e_af2_task_down",
]
# e2e_task_level: produce >> tail, for the plugin's task-level facts; e2e_task_dependent: a dependent of its produce.
TEST_ONLY_DAGS = [
    "e2e_reported",
    "e2e_dependent",
    "e2e_hourly",
    "e2e_daily",
    "e2e_task_level",
    "e2e_task_dependent",
    "e2e_lineage_report",
    "e2e_interval_period",
    "e2e_interval_point",
    "e2e_asset_consumer",
    "e2e_native_producer",
    "e2e_native_consumer",
    # test_refused_trigger_e2e.py: a root, and a dependent Airflow refuses a partition_key for (schedule=None).
    "e2e_refused_source",
    "e2e_refused",
    *EDGE_DAGS,
]
#: tests/e2e/dags/e2e_shared_assets.py: assets shared between the session's Airflow and a second one (both load it).
SHARED_ASSET_DAGS = ["e2e_shared_producer", "e2e_shared_consumer", "e2e_parted_producer", "e2e_parted_consumer"]
TEST_ONLY_DAGS += SHARED_ASSET_DAGS
# tests/e2e/dags/e2e_conditions.py: the condition groups' feeds, regions and rollups, in both Airflow 3 instances.
CONDITION_DAGS = [
    *("e2e_feed_a", "e2e_feed_b", "e2e_either"),
    *(f"e2e_region_{region}" for region in ("eu", "us", "apac", "latam")),
    *("e2e_rollup", "e2e_rollup_quiet", "e2e_rollup_timed"),
]
TEST_ONLY_DAGS += CONDITION_DAGS
# tests/e2e/dags/e2e_partitions.py: Airflow 3's partitioned, keyed and asset-triggered runs, in both Airflow 3
# instances (test_multi_instance_e2e.py).
PARTITION_DAGS = [
    *("e2e_part_hourly", "e2e_part_keyed", "e2e_part_daily", "e2e_part_after_clean"),
    *("e2e_part_raw", "e2e_part_clean", "e2e_seg_load", "e2e_seg_per", "e2e_seg_all", "e2e_seg_two"),
]
TEST_ONLY_DAGS += PARTITION_DAGS
#: tests/e2e/dags/e2e_late.py: team_b's report and its late handler (the expected-by scenario of
#: test_multi_instance_e2e.py; team A's two DAGs before them are that module's LATE_A).
LATE_B = ["e2e_late_report", "e2e_late_handler"]
#: tests/e2e/dags/e2e_scheduled.py: team_b's scheduled dependents of default/e2e_scheduled_up (paused until their test).
SCHEDULED = ["e2e_scheduled_daily", "e2e_scheduled_timeout"]
# tests/e2e/dags/e2e_keys.py: a schedule=None DAG a graph keys by mistake (test_partition_keys_e2e.py).
TEST_ONLY_DAGS += ["e2e_keyed_unpartitioned"]
ALL_DAGS = PIPELINES + FAILURE_DAGS + TEST_ONLY_DAGS
#: The watcher's own Airflow user of the install guide's step 5 (docs/howto/existing-airflow.md; simple auth manager
#: role ``user``: read, trigger, clear); the session's Airflow has it from its start, since the api-server reads its
#: users only then. tests/e2e/test_readme_e2e.py checks that the guide creates exactly this user.
WATCHER_USER, WATCHER_ROLE = "coordinator", "user"
#: How long the plugin of an e2e Airflow keeps the adopted graph's named upstream tasks. The default is 30 s (a task
#: named by a NEW graph is recorded within 30 s; the REST audit repairs what it missed): right for a graph that changes
#: with a deployment, but the session swaps graphs from one module to the next (SESSION_GRAPH, the Airflow 2
#: module's); a scenario that needs task states waits this long after its adoption (``E2E.wait_for_named_tasks``).
PLUGIN_TASKS_TTL_S = 1.0
PLUGIN_ENV = {"COORDINATOR_PLUGIN_TASKS_TTL_S": f"{PLUGIN_TASKS_TTL_S:g}"}
# Partitions far in the past: never equal to a scheduled run's logical date, and after the DAGs' start_date.
_FIRST_PARTITION = datetime(2001, 1, 1, tzinfo=UTC)


#: The graph every single-instance cascade scenario runs with (extended form): the seven pipelines of
#: dependencies.json, plus 09_flaky's failure handler and a normal dependent of 09_flaky. One graph for all of them,
#: so a scenario never re-dates another's DAGs (a changed definition only applies to later upstream successes).
SESSION_GRAPH: dict[str, Any] = {
    "version": 1,
    "dags": {
        **{dag: {"upstreams": "01_pipeline"} for dag in PIPELINES[1:5]},
        "06_pipeline": {"upstreams": PIPELINES[1:5]},
        "07_pipeline": {"upstreams": "06_pipeline"},
        "08_on_failure": {"on_failure_of": "09_flaky"},
        "e2e_dependent": {"upstreams": "09_flaky"},
        "e2e_hourly": {"partitions": {"cron": "0 * * * *"}},
        "e2e_daily": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "e2e_hourly"},
        # Issue 16 (test_edges_e2e.py): the 05:00 run waits for the SAME day's 01:00 run only ...
        "e2e_shift_up": {"partitions": {"cron": "0 1 * * *"}},
        "e2e_shift_down": {"partitions": {"cron": "0 5 * * *"}, "upstreams": [{"dag": "e2e_shift_up", "shift": "-4h"}]},
        # ... a dependent of one task, while the rest of its DAG still runs ...
        "e2e_task_down": {"upstreams": [{"dag": "e2e_task_up", "task": "extract"}]},
        # ... and a daily DAG that also waits for its own previous day (a cron preset as grid).
        "e2e_chain_root": {"partitions": {"cron": "@daily"}},
        "e2e_chain": {
            "partitions": {"cron": "@daily"},
            "upstreams": ["e2e_chain_root", {"dag": "e2e_chain", "shift": "-1d"}],
        },
    },
}
#: Upstreams of each pipeline in SESSION_GRAPH, for ordering checks.
UPSTREAMS: dict[str, list[str]] = {
    **{dag: ["01_pipeline"] for dag in PIPELINES[1:5]},
    "06_pipeline": PIPELINES[1:5],
    "07_pipeline": ["06_pipeline"],
}


def _run_coro(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


#: What the leader's audit logs at the end of each pass (``watcher/audit.py``).
AUDIT_PASS = "audit checked="
#: How long the tests wait for the next audit pass beyond its interval before they call the audit stalled. A pass
#: lists each DAG's runs through Airflow's REST API, which answered a single call after 44 s on a loaded CI machine;
#: the tests judge that the audit goes on and changes nothing, never how fast a loaded machine runs it.
AUDIT_STALL_S = 180.0


def audit_passes(log: Path) -> int:
    """How many audit passes the watcher logging to ``log`` has finished."""
    return log.read_text(encoding="utf-8", errors="replace").count(AUDIT_PASS) if log.exists() else 0


def wait_for_audit_passes(log: Path, more: int, interval_s: float, what: str, stall_s: float = AUDIT_STALL_S) -> int:
    """Until the watcher logging to ``log`` has finished ``more`` audit passes after this call; fail naming ``what``
    only when no pass finished for ``interval_s`` + ``stall_s`` (the next pass starts an interval after the last one
    ended, so one slow pass delays every pass after it). The count reached."""
    seen = audit_passes(log)
    target, progressed = seen + more, time.monotonic()
    while True:
        count = audit_passes(log)
        if count >= target:
            return count
        if count > seen:
            seen, progressed = count, time.monotonic()
        elif time.monotonic() - progressed > interval_s + stall_s:
            raise AssertionError(
                f"no audit pass for {interval_s + stall_s:.0f} s waiting for {what} "
                f"({more - (target - count)} of {more} done)"
            )
        time.sleep(0.2)


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class DagRun:
    """One DAG run as Airflow's REST API reports it (dates parsed; ``clear_number`` is not exposed over REST)."""

    dag_id: str
    run_id: str
    state: str
    logical_date: datetime | None
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    conf: Mapping[str, Any]

    @classmethod
    def from_rest(cls, body: Mapping[str, Any]) -> DagRun:
        return cls(
            dag_id=body["dag_id"],
            run_id=body["dag_run_id"],
            state=body["state"],
            logical_date=parse_time(body.get("logical_date")),
            queued_at=parse_time(body.get("queued_at")),
            start_date=parse_time(body.get("start_date")),
            end_date=parse_time(body.get("end_date")),
            conf=body.get("conf") or {},
        )


def assert_started_after(run: DagRun, upstreams: Iterable[DagRun]) -> None:
    """``run`` started after every upstream run ended (REST dates, all from the same Airflow clock)."""
    ends = {u.dag_id: u.end_date for u in upstreams}
    assert run.start_date is not None and None not in ends.values(), (run, ends)
    for dag_id, end in ends.items():
        assert end is not None and run.start_date > end, (
            f"{run.dag_id} started at {run.start_date}, before {dag_id} ended"
        )


def timeline(runs: Iterable[DagRun], origin: datetime | None) -> str:
    """``dag=start-end`` in seconds since ``origin`` (Airflow's clock) for runs that started after it (reports)."""
    assert origin is not None
    parts = []
    for run in runs:
        if run.start_date and run.end_date and run.start_date >= origin:
            start, end = ((t - origin).total_seconds() for t in (run.start_date, run.end_date))
            parts.append(f"{run.dag_id.split('_')[0]}={start:.1f}-{end:.1f}")
    return " ".join(parts)


def _api(stack: AirflowStack) -> tuple[str, str]:
    """The REST root of ``stack`` and the name of its logical-date filter (Airflow 2 still says execution_date)."""
    return ("/api/v1", "execution_date") if isinstance(stack, Airflow2Stack) else ("/api/v2", "logical_date")


def _get(stack: AirflowStack, path: str) -> dict[str, Any]:
    for attempt in range(3):  # the API of a loaded machine may time out once; a read is safe to repeat
        try:
            status, body = stack.request("GET", path)
            break
        except AirflowUnreachable:
            if attempt == 2:
                raise
            time.sleep(1.0)
    if status != 200:
        raise AirflowStackError(f"GET {path} -> HTTP {status}: {body}")
    return body


def runs_between(stack: AirflowStack, dag_id: str, first: str, last: str) -> list[DagRun]:
    """Every run of ``dag_id`` in ``stack`` with a logical date in ``[first, last]``, oldest first."""
    root, date_filter = _api(stack)
    query = urllib.parse.urlencode({f"{date_filter}_gte": first, f"{date_filter}_lte": last, "limit": 100})
    body = _get(stack, f"{root}/dags/{urllib.parse.quote(dag_id)}/dagRuns?{query}")
    runs = [DagRun.from_rest(item) for item in body.get("dag_runs", [])]
    # The filter is the contract under test's foundation: if Airflow ignored it, every run would come back.
    low, high = datetime.fromisoformat(first), datetime.fromisoformat(last)
    assert all(r.logical_date is not None and low <= r.logical_date <= high for r in runs), (dag_id, first, last, runs)
    return sorted(runs, key=lambda r: r.logical_date or low)


def runs_for(stack: AirflowStack, dag_id: str, partition: str) -> list[DagRun]:
    """Every run of ``dag_id`` in ``stack`` whose logical date is ``partition`` (Airflow allows at most one)."""
    return runs_between(stack, dag_id, partition, partition)


@dataclass(frozen=True)
class TaskRun:
    """One task instance as Airflow's REST API reports it."""

    task_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None


def task_runs(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, TaskRun]:
    """task id -> state, try number and dates of every task of one run (v1 or v2)."""
    root, _ = _api(stack)
    path = f"{root}/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    return {
        ti["task_id"]: TaskRun(
            task_id=ti["task_id"],
            state=ti.get("state"),
            try_number=int(ti["try_number"]),
            start_date=parse_time(ti.get("start_date")),
            end_date=parse_time(ti.get("end_date")),
        )
        for ti in _get(stack, path).get("task_instances", [])
    }


def release_file(stack: AirflowStack, dag_id: str, partition: str) -> Path:
    """Where a held task of ``dag_id`` for ``partition`` looks for its release (tests/e2e/dags/e2e_edges.py)."""
    stamp = datetime.fromisoformat(partition).astimezone(UTC).strftime("%Y%m%dT%H%M")
    return Path(stack.environment()["PIPELINE_OUTPUT_DIR"]) / "release" / dag_id / stamp


def release(stack: AirflowStack, dag_id: str, partition: str) -> None:
    """Let the held task of ``dag_id`` for ``partition`` finish (it polls for this file)."""
    path = release_file(stack, dag_id, partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def task_tries(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, int]:
    """task id -> try number of every task of one run (Airflow 2.10+ and 3: 1 after the first run, +1 per clear)."""
    root, _ = _api(stack)
    path = f"{root}/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
    return {ti["task_id"]: int(ti["try_number"]) for ti in _get(stack, path).get("task_instances", [])}


@dataclass
class E2E:
    """Handles on the running Airflow and etcd, and the helpers scenario tests share."""

    stack: AirflowStack
    etcd_endpoint: str
    prefix: str
    work_dir: Path
    _partitions: Iterator[int] = field(default_factory=itertools.count)
    _watchers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.prefix)

    @property
    def etcd_settings(self) -> EtcdSettings:
        return EtcdSettings(endpoints=parse_endpoints(self.etcd_endpoint))

    def new_partition(self) -> str:
        """A partition no other test of the session used (one run per DAG and logical date in Airflow)."""
        return canonical_partition(_FIRST_PARTITION + timedelta(days=next(self._partitions)))

    @staticmethod
    def run_id(label: str) -> str:
        return f"e2e_{label}_{uuid.uuid4().hex[:8]}"

    def stack_node(self, dag_id: str) -> NodeId:
        """The node of ``dag_id`` in this E2E's Airflow instance."""
        return NodeId(self.stack.instance, dag_id)

    # ----- etcd -----

    def read_run(self, dag_id: str, partition: str, instance: str | None = None) -> tuple[RunRecord | None, int]:
        """The run-state record of a DAG and partition, and its mod revision (None, 0 when absent)."""
        key = self.keys.run_key(NodeId(instance or self.stack.instance, dag_id), partition)

        async def go() -> tuple[RunRecord | None, int]:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                kv = await store.get(key)
            if kv is None:
                return None, 0
            record, problem = parse_run_record(kv.value)
            assert record is not None, f"{key}: {problem}"
            return record, kv.mod_revision

        result: tuple[RunRecord | None, int] = _run_coro(go())
        return result

    def wait_for_run_record(
        self,
        dag_id: str,
        partition: str,
        predicate: Callable[[RunRecord], bool],
        timeout_s: float = 60.0,
        what: str = "",
        instance: str | None = None,
    ) -> RunRecord:
        """Poll the run-state key until ``predicate`` holds; the failure names the last record seen."""
        deadline = time.monotonic() + timeout_s
        record: RunRecord | None = None
        while time.monotonic() < deadline:
            record, _ = self.read_run(dag_id, partition, instance)
            if record is not None and predicate(record):
                return record
            time.sleep(0.1)
        raise AssertionError(
            f"{dag_id} {partition}: no record {what} within {timeout_s:.0f} s; last: {record!r}; "
            f"{self.stack.diagnosis()}"
        )

    def read_ledger(self, dag_id: str, partition: str, instance: str | None = None) -> TriggerRecord | None:
        """The trigger ledger entry of a DAG and partition (what the coordinator last decided), None when absent."""
        key = self.keys.trigger_key(NodeId(instance or self.stack.instance, dag_id), partition)
        raw = self.read_key(key)
        if raw is None:
            return None
        record, problem = parse_trigger_record(raw)
        assert record is not None, f"{key}: {problem}"
        return record

    def revisions(self, prefix: str) -> dict[str, int]:
        """key -> mod revision of every key under ``prefix`` (e.g. ``self.keys.triggers``)."""

        async def go() -> dict[str, int]:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                snap = await store.snapshot(prefix)
            return {kv.key: kv.mod_revision for kv in snap.kvs}

        result: dict[str, int] = _run_coro(go())
        return result

    def read_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its raw value, at one revision."""

        async def go() -> dict[str, bytes]:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                snap = await store.snapshot(prefix)
            return {kv.key: kv.value for kv in snap.kvs}

        result: dict[str, bytes] = _run_coro(go())
        return result

    def read_key(self, key: str) -> bytes | None:
        """The raw value of one key, None when absent."""

        async def go() -> bytes | None:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                kv = await store.get(key)
            return None if kv is None else kv.value

        result: bytes | None = _run_coro(go())
        return result

    def put_key(self, key: str, value: bytes) -> int:
        """Write one key; returns the revision."""

        async def go() -> int:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                return await store.put(key, value)

        result: int = _run_coro(go())
        return result

    @contextlib.contextmanager
    def named_tasks(self, upstream_tasks: Mapping[str, list[str]]) -> Iterator[None]:
        """Adopt a graph value naming ``upstream_tasks`` (what the leading watcher writes) while no watcher runs;
        the graph key is put back as it was afterwards, so later scenarios see the session's adoption history."""
        key = self.keys.config_key("graph")
        before = self.read_key(key)
        value = {"digest": "e2e-named-tasks", "adopted_by": "e2e", "nodes": {}, "upstream_tasks": dict(upstream_tasks)}
        self.put_key(key, json.dumps(value).encode())
        try:
            yield
        finally:
            if before is None:
                self.delete_key(key)
            else:
                self.put_key(key, before)

    def read_task(
        self, dag_id: str, task_id: str, partition: str, instance: str | None = None
    ) -> tuple[TaskRecord | None, int]:
        """The task-state record of a task of a DAG run, and its mod revision (None, 0 when absent)."""
        key = self.keys.task_key(NodeId(instance or self.stack.instance, dag_id), task_id, partition)

        async def go() -> tuple[TaskRecord | None, int]:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                kv = await store.get(key)
            if kv is None:
                return None, 0
            record, problem = parse_task_record(kv.value)
            assert record is not None, f"{key}: {problem}"
            return record, kv.mod_revision

        result: tuple[TaskRecord | None, int] = _run_coro(go())
        return result

    def wait_for_task_record(
        self,
        dag_id: str,
        task_id: str,
        partition: str,
        predicate: Callable[[TaskRecord], bool],
        timeout_s: float = 60.0,
        instance: str | None = None,
    ) -> tuple[TaskRecord, int]:
        """Poll the task-state key until ``predicate`` holds; returns the record and its revision."""
        deadline = time.monotonic() + timeout_s
        record: TaskRecord | None = None
        while time.monotonic() < deadline:
            record, revision = self.read_task(dag_id, task_id, partition, instance)
            if record is not None and predicate(record):
                return record, revision
            time.sleep(0.05)
        raise AssertionError(
            f"{dag_id}.{task_id} {partition}: no matching task record in {timeout_s:.0f} s; last: {record!r}"
        )

    def audit_once(self, graph: Mapping[str, Any], stack: AirflowStack) -> AuditResult:
        """One pass of the leader's REST audit, in this process, over ``graph`` (a dependencies mapping) against
        ``stack`` as its instance, with a view loaded from etcd now (the named tasks come from its graph value)."""

        async def go() -> AuditResult:
            settings = InstanceSettings(url=stack.url, username=stack.username, password=SecretStr(stack.password))
            async with (
                await EtcdStore.connect(self.etcd_settings) as store,
                AirflowClient(settings, timeout_s=30.0, name=stack.instance) as client,
            ):
                view = View(self.keys)
                snap = await store.snapshot(self.keys.root)
                view.load(snap.revision, ((kv.key, kv.value, kv.mod_revision) for kv in snap.kvs))
                spec = parse_spec(json.dumps(dict(graph)))
                return await audit_once(store, self.keys, spec, {stack.instance: client}, timedelta(hours=1), view)

        result: AuditResult = _run_coro(go(), timeout=120.0)
        return result

    def delete_key(self, key: str) -> bool:
        """Delete one key; True if it existed."""

        async def go() -> bool:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                return await store.delete(key)

        result: bool = _run_coro(go())
        return result

    # ----- Airflow REST -----

    def runs(self, dag_id: str, partition: str, stack: AirflowStack | None = None) -> list[DagRun]:
        """Every run of ``dag_id`` for ``partition`` in this (or the given) Airflow."""
        return runs_for(stack or self.stack, dag_id, partition)

    def only_run(self, dag_id: str, partition: str, stack: AirflowStack | None = None) -> DagRun:
        """The one run of ``dag_id`` for ``partition``; fails if there is none or more than one."""
        found = self.runs(dag_id, partition, stack)
        assert len(found) == 1, f"{dag_id} {partition}: expected exactly one run, found {found}"
        return found[0]

    # ----- watcher (for the cascade scenarios) -----

    def write_dependencies(self, mapping: Mapping[str, Any], name: str = "dependencies.json") -> Path:
        """Write a dependencies file for this test's graph into the session's work dir; returns its path."""
        path = self.work_dir / name
        path.write_text(json.dumps(mapping, indent=2), encoding="utf-8")
        return path

    def watcher_env(self, deps: Path, **extra: str) -> dict[str, str]:
        """Environment for ``coordinator`` commands aimed at this Airflow, etcd and prefix."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
        env.update(
            COORDINATOR_ETCD_ENDPOINTS=self.etcd_endpoint,
            COORDINATOR_PREFIX=self.prefix,
            COORDINATOR_DEPS=str(deps),
            COORDINATOR_AIRFLOW_URL=self.stack.url,
            COORDINATOR_AIRFLOW_USERNAME=self.stack.username,
            COORDINATOR_AIRFLOW_PASSWORD=self.stack.password,
            # A free port per watcher: a test may run several, and other suites may hold the default 9465.
            COORDINATOR_HTTP="127.0.0.1:0",
            # One Airflow call at a time: on SQLite (the smoke test's stack, make demo's), a few concurrent REST
            # writes (four triggers at once) wait on each other's locks for 5-15 s and some fail with HTTP 500
            # "database is locked". The coordinator survives that (retries, 409 read-back), but it makes cascade
            # timings meaningless. The other stacks now run on PostgreSQL, which does not serialise writers like
            # this; the scenarios' timings were tuned with one call at a time, so it stays until they are re-tuned.
            COORDINATOR_MAX_CONCURRENT_ACTIONS="1",
        )
        env.update(extra)
        return env

    def start_watcher(
        self, deps: Path, *args: str, name: str = "watcher", crash_at: str | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """Start ``coordinator watch`` (logs to ``<work dir>/<name>.log``); stopped at the end of the test.
        ``crash_at`` (``name[:n]``) arms a crash point through the tests' entry point (tests/support/crash_watcher.py).
        """
        log_path = self.work_dir / f"{name}.log"
        entry = ["coordinator.cli"] if crash_at is None else ["tests.support.crash_watcher", crash_at]
        if crash_at is not None:
            env = {"PYTHONPATH": str(REPO), **env}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                # DEBUG: settle.py reads each pass's line (``reconcile revision=...``, at DEBUG since the minute's
                # summary says the passes at INFO: ``watcher/pass_summary.py``); a test's own --log-level wins.
                [
                    sys.executable,
                    "-m",
                    *entry,
                    "watch",
                    *(() if "--log-level" in args else ("--log-level", "DEBUG")),
                    *args,
                ],
                env=self.watcher_env(deps, **env),
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        reaper.record(proc.pid, "watch", group=True)
        self._watchers.append(proc)
        return proc

    def wait_for_leader(self, deps: Path, watcher_id: str, timeout_s: float = 30.0) -> None:
        """Wait until watcher ``watcher_id`` leads and has adopted the graph of ``deps`` (so the DAGs' definitions
        are active before the scenario makes anything happen: a definition only applies to later successes)."""
        digest = load_spec(deps).digest

        def ready() -> bool:
            if self.read_key(self.keys.leader) != watcher_id.encode():
                return False
            raw = self.read_key(self.keys.config_key("graph"))
            return raw is not None and Activation.model_validate_json(raw).digest == digest

        wait_for(ready, timeout_s, f"watcher {watcher_id} to lead with graph {digest} of {deps.name}")

    @staticmethod
    def wait_for_named_tasks() -> None:
        """After an adoption: every task process from now on knows the graph's named tasks (not a cached copy)."""
        time.sleep(PLUGIN_TASKS_TTL_S + 0.2)

    def revive_if_needed(self) -> None:
        """Restart what died in the shared Airflow (a scheduler whose loop crashed on a loaded machine leaves every
        later run queued), saying so in the test's output: one crash fails the test it hit, not the session."""
        problem = self.stack.problem()
        if problem is None:
            return
        print(f"\nairflow e2e stack unhealthy ({problem}): {self.stack.diagnosis()}")
        restarted = self.stack.revive()
        print(f"airflow e2e stack revived: restarted {', '.join(restarted) or 'nothing (it recovered by itself)'}")

    def stop_watchers(self, timeout_s: float = 30.0) -> None:
        """TERM every watcher this object started, then KILL what did not exit (after more than the watcher's own
        bound on a stop, docs/explanation/deployment.md: a loaded machine's slow Airflow answers are not a failure to
        resign)."""
        for proc in self._watchers:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self._watchers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._watchers.clear()


def assert_paused_list_follows(stack: AirflowStack, dags: Iterable[str], dag: str) -> None:
    """``AirflowClient.paused_dags`` against ``stack`` (v2, or v1 on an Airflow2Stack): none of ``dags`` is listed,
    then only ``dag`` once paused, then none again after it is unpaused (in ``finally``)."""
    settings = InstanceSettings(url=stack.url, username=stack.username, password=stack.password)
    known = set(dags)

    async def paused() -> frozenset[str]:
        async with AirflowClient(settings) as client:
            return await client.paused_dags()

    assert not known & asyncio.run(paused())
    status, body = stack.request("PATCH", f"{stack.API_ROOT}/dags/{urllib.parse.quote(dag)}", {"is_paused": True})
    try:
        assert status == 200, body
        assert known & asyncio.run(paused()) == {dag}
    finally:
        stack.unpause([dag])
    assert not known & asyncio.run(paused())


#: A DAG file the parse probes write: one empty DAG per id, importable by Airflow 2.11 and 3.3 alike.
_PROBE_SOURCE = '''"""A parse probe of the end-to-end tests (harness.assert_new_and_changed_dag_files_are_parsed)."""
from datetime import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

for dag_id in {dag_ids!r}:
    with DAG(dag_id, schedule=None, start_date=datetime(2001, 1, 1)):  # registered on leaving the block
        pass
'''
#: The mtime of the probe's first version: before the stack started, as ``shutil.copy2`` keeps a copied file's.
_OLD_MTIME = datetime(2001, 1, 1, tzinfo=UTC).timestamp()
#: How far ahead of the rewrite its mtime is set (``assert_new_and_changed_dag_files_are_parsed``): longer than a loaded
#: parser takes from a parse's end to recording it.
_CHANGED_AHEAD_S = 10.0


def assert_new_and_changed_dag_files_are_parsed(stack: AirflowStack, name: str) -> None:
    """Put a DAG file ``<name>.py`` with DAG ``<name>_a`` into the running ``stack``'s folder, with an mtime older
    than the stack (as ``shutil.copy2`` copies a file), and wait until it is parsed; then rewrite it with ``<name>_b``
    added and wait for that. The launchers re-parse an UNCHANGED file only after 300 s (``PARSING_ENV`` of
    devtools/airflow_stack.py), longer than ``wait_for_dags``' deadline: both waits end only because Airflow parses a
    new file at its next scan and a file changed since its last parse at once. Each version is written beside the
    folder's files and renamed in, so a parse never reads half a file."""

    def put(dag_ids: list[str], mtime: float | None) -> None:
        part = stack.dags_folder / f"{name}.part"  # not a *.py file: Airflow does not list it
        part.write_text(_PROBE_SOURCE.format(dag_ids=dag_ids), encoding="utf-8")
        if mtime is not None:
            os.utime(part, (mtime, mtime))
        part.replace(stack.dags_folder / f"{name}.py")

    put([f"{name}_a"], _OLD_MTIME)
    stack.wait_for_dags([f"{name}_a"])
    # Its mtime ahead of now: the API shows the first version's DAG once the parse has written it, and the parse
    # manager records the parse's finish only when it collects the result, later; a file whose mtime is not after
    # that recorded finish counts as parsed (Airflow 2.11's DagFileProcessorManager; on 2026-11-28 the rewrite came
    # 4 ms after the first parse's own end, and the second DAG was not parsed within 90 s). A parse that ends before
    # the mtime is followed by another: a few more parses of one small file.
    put([f"{name}_a", f"{name}_b"], time.time() + _CHANGED_AHEAD_S)
    stack.wait_for_dags([f"{name}_b"])
