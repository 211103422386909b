"""Task-level facts from the plugin's hooks against a real etcd, without an Airflow process.

The task hooks' body (``record_task_instance``) is called with stand-ins for Airflow 3's task-SDK
``RuntimeTaskInstance`` (the DAG run under ``_ti_context_from_server``) and Airflow 2's ORM ``TaskInstance``
(``dag_run``). Which tasks are named comes from ``{prefix}/config/graph``, put into etcd by the tests themselves (the
watcher writes it in production).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.airflow_plugin.hooks import record_task_instance
from coordinator.airflow_plugin.records import WriterConfig
from coordinator.airflow_plugin.task_names import TaskNames
from coordinator.airflow_plugin.writer import BackgroundWriter, install_writer
from coordinator.core.model import KeyLayout, RunState
from coordinator.core.task_facts import TaskRecord, parse_task_record
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from tests.test_plugin_writer import _child_env, closed_port, run_check_plugin

PARTITION = "2026-01-01T00:00:00Z"
LOGICAL = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"


def sdk_ti(
    task_id: str = "publish",
    dag_id: str = "01_pipeline",
    try_number: int = 1,
    state: str = "success",
    clear_number: int = 0,
    map_index: int = -1,
    logical_date: datetime | None = LOGICAL,
) -> SimpleNamespace:
    """What Airflow 3.3's task runner passes: a RuntimeTaskInstance whose DAG run is in its server context."""
    dag_run = SimpleNamespace(run_id=RUN_ID, logical_date=logical_date, clear_number=clear_number)
    return SimpleNamespace(
        dag_id=dag_id,
        task_id=task_id,
        run_id=RUN_ID,
        map_index=map_index,
        try_number=try_number,
        state=state,
        start_date=datetime(2026, 1, 2, 0, 0, 5, tzinfo=UTC),
        end_date=datetime(2026, 1, 2, 0, 0, 9, tzinfo=UTC),
        _ti_context_from_server=SimpleNamespace(dag_run=dag_run),
    )


def orm_ti(state: str, try_number: int = 1, clear_number: int = 0) -> SimpleNamespace:
    """What Airflow 2.11 passes: an ORM TaskInstance with a ``dag_run`` relation and an enum state."""
    dag_run = SimpleNamespace(run_id=RUN_ID, logical_date=LOGICAL, clear_number=clear_number)
    return SimpleNamespace(
        dag_id="01_pipeline",
        task_id="publish",
        run_id=RUN_ID,
        map_index=-1,
        try_number=try_number,
        state=state,
        start_date=datetime(2026, 1, 2, 0, 0, 5, tzinfo=UTC),
        end_date=None,
        dag_run=dag_run,
    )


def config_for(endpoint: str, prefix: str, cache_dir: Path, **overrides: Any) -> WriterConfig:
    etcd = EtcdSettings(endpoints=parse_endpoints(endpoint), timeout_s=2.0)
    return WriterConfig(etcd=etcd, keys=KeyLayout(prefix), tasks_cache_dir=cache_dir, **overrides)


def task_key(prefix: str, task_id: str = "publish", dag_id: str = "01_pipeline", instance: str = "default") -> str:
    return f"{prefix}/tasks/{instance}/{dag_id}/{task_id}/{PARTITION}"


def put_graph(arun: Any, settings: EtcdSettings, prefix: str, upstream_tasks: dict[str, Any] | None) -> None:
    """Adopt a graph value naming ``upstream_tasks`` (None: a graph value without the field)."""
    value: dict[str, Any] = {"digest": "test", "adopted_by": "test", "nodes": {}}
    if upstream_tasks is not None:
        value["upstream_tasks"] = upstream_tasks

    async def go() -> None:
        async with await EtcdStore.connect(settings) as store:
            await store.put(f"{prefix}/config/graph", json.dumps(value).encode())

    arun(go())


def read_task(arun: Any, settings: EtcdSettings, key: str) -> tuple[TaskRecord | None, int]:
    async def go() -> tuple[TaskRecord | None, int]:
        async with await EtcdStore.connect(settings) as store:
            kv = await store.get(key)
        if kv is None:
            return None, 0
        record, problem = parse_task_record(kv.value)
        assert record is not None, problem
        return record, kv.mod_revision

    result: tuple[TaskRecord | None, int] = arun(go())
    return result


def keys_under(arun: Any, settings: EtcdSettings, prefix: str) -> list[str]:
    async def go() -> list[str]:
        async with await EtcdStore.connect(settings) as store:
            snap = await store.snapshot(prefix)
        return sorted(kv.key for kv in snap.kvs)

    result: list[str] = arun(go())
    return result


@pytest.fixture
def make_writer() -> Iterator[Callable[..., BackgroundWriter]]:
    """BackgroundWriters installed as the process's writer; all closed and uninstalled afterwards."""
    made: list[BackgroundWriter] = []

    def make(config: WriterConfig) -> BackgroundWriter:
        writer = BackgroundWriter(config)
        made.append(writer)
        install_writer(writer)
        return writer

    yield make
    for writer in made:
        writer.close(0.5)
    install_writer(None)


def test_named_task_success_is_written_before_the_hook_returns(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """In the task's process a named task's success is in etcd when the hook returns: DAG run id, attempt and try."""
    put_graph(arun, etcd_settings, etcd_prefix, {"team_a/01_pipeline": ["publish"]})
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path, instance="team_a"))
    record_task_instance(sdk_ti(clear_number=2, try_number=3), RunState.SUCCESS)
    # No flush here: the hook itself waited (the task process exits with os._exit right after).
    record, _ = read_task(arun, etcd_settings, task_key(etcd_prefix, instance="team_a"))
    assert record is not None
    assert (record.state, record.run_id, record.clear_number, record.try_number) == (RunState.SUCCESS, RUN_ID, 2, 3)
    assert record.source == "airflow-plugin:team_a"
    assert record.start_date is not None and record.end_date is not None
    assert writer.stats.delivered == 1


@pytest.mark.parametrize(
    "upstream_tasks",
    [
        pytest.param({"default/01_pipeline": ["other_task"]}, id="other-task-of-the-dag"),
        pytest.param({"default/02_pipeline": ["publish"]}, id="same-task-id-other-dag"),
        pytest.param(None, id="graph-without-upstream-tasks"),
    ],
)
def test_tasks_the_graph_does_not_name_are_not_written(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
    upstream_tasks: dict[str, Any] | None,
) -> None:
    """Only named tasks are recorded: every other task's states leave etcd's task keys empty."""
    put_graph(arun, etcd_settings, etcd_prefix, upstream_tasks)
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    for state in (RunState.RUNNING, RunState.SUCCESS):
        record_task_instance(sdk_ti(), state)
    assert writer.flush(10)
    assert keys_under(arun, etcd_settings, f"{etcd_prefix}/tasks/") == []
    assert (writer.stats.not_named, writer.stats.delivered) == (2, 0)


def test_no_graph_adopted_records_nothing(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """Without a graph value under the prefix no task is named and nothing is written."""
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    record_task_instance(sdk_ti(), RunState.SUCCESS)
    assert writer.flush(10)
    assert keys_under(arun, etcd_settings, f"{etcd_prefix}/") == []
    assert writer.stats.not_named == 1


def test_retry_is_not_a_failure_and_the_next_try_succeeds(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """A failed try that Airflow retries (up_for_retry) writes nothing; only the retry's success is recorded."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    key = task_key(etcd_prefix)
    record_task_instance(sdk_ti(try_number=1, state="running"), RunState.RUNNING)
    record_task_instance(sdk_ti(try_number=1, state="up_for_retry"), RunState.FAILED)
    assert writer.flush(10)
    record, _ = read_task(arun, etcd_settings, key)
    assert record is not None and record.state is RunState.RUNNING
    record_task_instance(sdk_ti(try_number=2, state="running"), RunState.RUNNING)
    record_task_instance(sdk_ti(try_number=2, state="success"), RunState.SUCCESS)
    record, _ = read_task(arun, etcd_settings, key)
    assert record is not None and (record.state, record.try_number) == (RunState.SUCCESS, 2)


def test_cleared_task_is_a_new_generation_and_late_records_lose(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """A task cleared inside a running DAG run (same clear_number, next try) withdraws and re-records its success;
    a repeated or older record never makes another generation."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    key = task_key(etcd_prefix)
    record_task_instance(sdk_ti(try_number=1), RunState.SUCCESS)
    _, first = read_task(arun, etcd_settings, key)
    record_task_instance(sdk_ti(try_number=1), RunState.SUCCESS)  # the same fact again (api-server + task process)
    assert read_task(arun, etcd_settings, key)[1] == first
    record_task_instance(sdk_ti(try_number=2, state="running"), RunState.RUNNING)
    assert writer.flush(10)
    running, _ = read_task(arun, etcd_settings, key)
    assert running is not None and running.state is RunState.RUNNING  # the old success is withdrawn
    record_task_instance(sdk_ti(try_number=1), RunState.SUCCESS)  # a late record of the older try
    record_task_instance(sdk_ti(try_number=2), RunState.SUCCESS)
    record, second = read_task(arun, etcd_settings, key)
    assert record is not None and (record.state, record.try_number, record.clear_number) == (RunState.SUCCESS, 2, 0)
    assert second > first
    assert writer.stats.skipped == 2


def test_airflow2_task_instance_and_retry_state(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow 2's ORM task instance (DAG run via ``dag_run``, enum-style state) is recorded; its retry is not."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    # Airflow 2 exports the running task's ids into its process environment: this is the task's own process.
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "publish")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", RUN_ID)
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    record_task_instance(orm_ti("TaskInstanceState.UP_FOR_RETRY", try_number=1, clear_number=1), RunState.FAILED)
    assert writer.flush(10)
    assert keys_under(arun, etcd_settings, f"{etcd_prefix}/tasks/") == []
    record_task_instance(orm_ti("TaskInstanceState.FAILED", try_number=2, clear_number=1), RunState.FAILED)
    record, _ = read_task(arun, etcd_settings, task_key(etcd_prefix))
    assert record is not None
    assert (record.state, record.clear_number, record.try_number) == (RunState.FAILED, 1, 2)


@pytest.mark.parametrize(
    ("ti", "reason"),
    [
        pytest.param(sdk_ti(map_index=0), "mapped", id="mapped-instance"),
        pytest.param(sdk_ti(logical_date=None), "no-logical-date", id="no-logical-date"),
        pytest.param(sdk_ti(task_id="bad/task"), "bad-id", id="task-id-not-a-key-segment"),
    ],
)
def test_task_instances_without_one_key_are_counted_not_written(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
    ti: SimpleNamespace,
    reason: str,
) -> None:
    """A mapped instance, a run without a logical date and an id that cannot be a key segment are skipped, counted."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish", "bad/task"]})
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    record_task_instance(ti, RunState.SUCCESS)
    assert writer.flush(10)
    assert keys_under(arun, etcd_settings, f"{etcd_prefix}/tasks/") == []
    assert (writer.stats.unrecordable, writer.stats.submitted) == (1, 0)


def test_named_tasks_are_read_from_etcd_once_per_ttl_per_host(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """A second process on the host uses the cached names without reading etcd; after the TTL a new graph applies."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    first = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path, tasks_ttl_s=1.5))
    record_task_instance(sdk_ti(task_id="extract"), RunState.SUCCESS)
    assert first.flush(10) and first.task_names.etcd_reads == 1
    # Another task process: a new writer with the same cache directory. The graph changes meanwhile.
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish", "extract"]})
    second = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path, tasks_ttl_s=1.5))
    record_task_instance(sdk_ti(task_id="extract"), RunState.SUCCESS)
    assert second.flush(10)
    assert (second.task_names.etcd_reads, second.stats.not_named) == (0, 1)  # the host's copy, still fresh
    time.sleep(1.6)
    third = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path, tasks_ttl_s=1.5))
    record_task_instance(sdk_ti(task_id="extract"), RunState.SUCCESS)
    assert third.flush(10)
    assert third.task_names.etcd_reads == 1
    record, _ = read_task(arun, etcd_settings, task_key(etcd_prefix, task_id="extract"))
    assert record is not None and record.state is RunState.SUCCESS


def test_bad_upstream_tasks_entries_are_skipped_and_logged(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entries that do not parse are skipped with one warning; the good entries still apply."""
    put_graph(arun, etcd_settings, etcd_prefix, {"bad//ref": ["x"], "default/01_pipeline": ["publish"], "x/y": 3})
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, tmp_path))
    with caplog.at_level(logging.WARNING):
        record_task_instance(sdk_ti(), RunState.SUCCESS)
        assert writer.flush(10)
    assert writer.stats.delivered == 1
    assert [r.getMessage() for r in caplog.records if "upstream_tasks_problems" in r.getMessage()]


def test_task_process_exits_with_its_state_written(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any
) -> None:
    """A task process that ends with os._exit right after the success hook (as Airflow's do) has written the state."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    script = textwrap.dedent(
        """
        import os
        from datetime import UTC, datetime
        from types import SimpleNamespace
        from coordinator.airflow_plugin.hooks import record_task_instance
        from coordinator.core.model import RunState
        run = SimpleNamespace(run_id="r1", logical_date=datetime(2026, 1, 1, tzinfo=UTC), clear_number=0)
        ti = SimpleNamespace(dag_id="01_pipeline", task_id="publish", run_id="r1", map_index=-1, try_number=1,
                             state="success", start_date=None, end_date=None,
                             _ti_context_from_server=SimpleNamespace(dag_run=run))
        record_task_instance(ti, RunState.RUNNING)
        record_task_instance(ti, RunState.SUCCESS)
        os._exit(0)  # no atexit handler runs: the hook must have waited
        """
    )
    env = _child_env(etcd_endpoint, etcd_prefix, tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    record, _ = read_task(arun, etcd_settings, task_key(etcd_prefix))
    assert record is not None and (record.run_id, record.state) == ("r1", RunState.SUCCESS)


def test_task_hook_wait_is_bounded_when_etcd_is_down(
    make_writer: Callable[..., BackgroundWriter], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With etcd unreachable the task process waits at most task_flush_s, logs once, and a scheduler-side hook never
    waits."""
    config = config_for(f"http://127.0.0.1:{closed_port()}", "/gone", tmp_path, task_flush_s=0.5)
    writer = make_writer(config)
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        record_task_instance(sdk_ti(), RunState.SUCCESS)
        record_task_instance(sdk_ti(task_id="other"), RunState.SUCCESS)
        in_task = time.monotonic() - started
        scheduler_side = sdk_ti()
        del scheduler_side._ti_context_from_server  # an ORM instance in the scheduler: no task context, no env
        scheduler_side.dag_run = SimpleNamespace(run_id=RUN_ID, logical_date=LOGICAL, clear_number=0)
        started = time.monotonic()
        record_task_instance(scheduler_side, RunState.FAILED)
        in_scheduler = time.monotonic() - started
    assert in_task < 0.5 * 2 + 0.5, f"task hooks took {in_task:.2f} s"
    assert in_scheduler < 0.2, f"scheduler-side hook took {in_scheduler:.2f} s"
    assert writer.stats.task_flush_timeouts == 2
    assert len([r for r in caplog.records if "task_state_unconfirmed" in r.getMessage()]) == 1


@pytest.mark.airflow
def test_check_plugin_runs_the_task_hook_and_reports_the_named_tasks(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any
) -> None:
    """check-plugin calls the task hook through Airflow's listener manager and says how many tasks the graph names,
    writing no task key for its stand-in task."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/a": ["t1", "t2"], "team_b/b": ["t3"]})
    done = run_check_plugin(tmp_path, etcd_endpoint, etcd_prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "task hook handled a task state; the adopted graph names 3 task(s)" in done.stdout
    assert keys_under(arun, etcd_settings, f"{etcd_prefix}/tasks/") == []


def test_a_cache_file_of_another_user_is_ignored(
    etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The host's cache file is used only when this process's user owns it: otherwise etcd is read."""
    put_graph(arun, etcd_settings, etcd_prefix, {"default/01_pipeline": ["publish"]})
    config = config_for(etcd_endpoint, etcd_prefix, tmp_path)

    async def load(names: TaskNames) -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await names.load(store, 2.0)

    first = TaskNames(config.keys, config.etcd, 30.0, tmp_path)
    arun(load(first))
    assert TaskNames(config.keys, config.etcd, 30.0, tmp_path).cached() is not None  # same user: the file serves
    monkeypatch.setattr("os.getuid", lambda: first.path.stat().st_uid + 1)
    assert TaskNames(config.keys, config.etcd, 30.0, tmp_path).cached() is None
