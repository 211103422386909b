"""The Airflow plugin's writer against a real etcd, without an Airflow process.

The hook body (``record_dag_run``) is called with stand-in DagRun objects; the real listener, registered through
Airflow's own plugin machinery, is exercised by ``coordinator check-plugin`` in a subprocess (so Airflow is never
imported into the test process).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.airflow_plugin import hooks
from coordinator.airflow_plugin import writer as writer_mod
from coordinator.airflow_plugin.hooks import record_dag_run
from coordinator.airflow_plugin.records import (
    RunStateWrite,
    WriteOutcome,
    WriterConfig,
    run_write_from_dag_run,
    write_one,
)
from coordinator.airflow_plugin.writer import BackgroundWriter, RecordingWriter, install_writer
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record, parse_run_record
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer

PARTITION = "2026-01-01T00:00:00Z"
LOGICAL = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeRun:
    """The DagRun attributes the listener reads."""

    dag_id: str = "01_pipeline"
    run_id: str = "scheduled__2026-01-01T00:00:00+00:00"
    logical_date: datetime | None = LOGICAL
    clear_number: int = 0
    start_date: datetime | None = datetime(2026, 1, 2, 0, 0, 5, tzinfo=UTC)
    end_date: datetime | None = datetime(2026, 1, 2, 0, 0, 9, tzinfo=UTC)
    conf: dict[str, Any] = field(default_factory=dict)


def config_for(endpoint: str, prefix: str, **overrides: Any) -> WriterConfig:
    etcd = EtcdSettings(endpoints=parse_endpoints(endpoint), timeout_s=2.0)
    return WriterConfig(etcd=etcd, keys=KeyLayout(prefix), **overrides)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_record(arun: Callable[..., Any], settings: EtcdSettings, key: str) -> tuple[RunRecord | None, int]:
    async def go() -> tuple[RunRecord | None, int]:
        async with await EtcdStore.connect(settings) as store:
            kv = await store.get(key)
        if kv is None:
            return None, 0
        record, problem = parse_run_record(kv.value)
        assert record is not None, problem
        return record, kv.mod_revision

    result: tuple[RunRecord | None, int] = arun(go())
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


def test_hook_writes_expected_record(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
) -> None:
    """A success hook writes the RunRecord at runs/<instance>/<dag_id>/<partition> with run id, dates and source."""
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix, instance="team_a"))
    record_dag_run(FakeRun(), RunState.SUCCESS)
    assert writer.flush(10)
    key = f"{etcd_prefix}/runs/team_a/01_pipeline/{PARTITION}"
    record, revision = read_record(arun, etcd_settings, key)
    assert record is not None
    assert (record.state, record.run_id, record.clear_number) == (
        RunState.SUCCESS,
        "scheduled__2026-01-01T00:00:00+00:00",
        0,
    )
    assert record.source == "airflow-plugin:team_a"
    assert record.start_date == FakeRun().start_date and record.end_date == FakeRun().end_date
    assert record.updated_at is not None
    assert writer.last_written == (key, revision)
    assert (writer.stats.submitted, writer.stats.delivered, writer.stats.failed) == (1, 1, 0)


def test_running_record_has_no_end_date(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
) -> None:
    """A running hook records state running without an end date (a cleared run's old end date is not its end)."""
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix))
    record_dag_run(FakeRun(clear_number=1), RunState.RUNNING)
    assert writer.flush(10)
    record, _ = read_record(arun, etcd_settings, f"{etcd_prefix}/runs/default/01_pipeline/{PARTITION}")
    assert record is not None
    assert (record.state, record.clear_number, record.end_date) == (RunState.RUNNING, 1, None)


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        pytest.param(
            [(RunState.SUCCESS, 1), (RunState.SUCCESS, 0)], (RunState.SUCCESS, 1), id="older-attempt-after-newer"
        ),
        pytest.param(
            [(RunState.RUNNING, 1), (RunState.FAILED, 0)], (RunState.RUNNING, 1), id="old-failure-after-rerun-started"
        ),
        pytest.param([(RunState.SUCCESS, 0), (RunState.RUNNING, 0)], (RunState.SUCCESS, 0), id="late-running"),
        pytest.param(
            [(RunState.RUNNING, 0), (RunState.SUCCESS, 0), (RunState.RUNNING, 1), (RunState.SUCCESS, 1)],
            (RunState.SUCCESS, 1),
            id="run-then-rerun",
        ),
    ],
)
def test_older_attempt_never_overwrites_newer(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    sequence: list[tuple[RunState, int]],
    expected: tuple[RunState, int],
) -> None:
    """Records delivered out of order end at the newest attempt's latest state (should_replace via CAS)."""
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix))
    for state, clear_number in sequence:
        record_dag_run(FakeRun(clear_number=clear_number), state)
    assert writer.flush(10)
    record, _ = read_record(arun, etcd_settings, f"{etcd_prefix}/runs/default/01_pipeline/{PARTITION}")
    assert record is not None
    assert (record.state, record.clear_number) == expected
    assert writer.stats.delivered + writer.stats.skipped == len(sequence)


def test_identical_rewrite_is_skipped(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
) -> None:
    """The same state of the same attempt written twice keeps the first write's revision (no new generation)."""
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix))
    key = f"{etcd_prefix}/runs/default/01_pipeline/{PARTITION}"
    record_dag_run(FakeRun(), RunState.SUCCESS)
    assert writer.flush(10)
    _, first_revision = read_record(arun, etcd_settings, key)
    record_dag_run(FakeRun(end_date=datetime(2026, 1, 3, tzinfo=UTC)), RunState.SUCCESS)
    assert writer.flush(10)
    _, second_revision = read_record(arun, etcd_settings, key)
    assert second_revision == first_revision
    assert (writer.stats.delivered, writer.stats.skipped) == (1, 1)


def test_lost_race_rereads_and_decides_again(etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any) -> None:
    """When another writer changes the key between read and write, the CAS fails and the newer record is kept."""
    config = config_for(",".join(f"http://{e.host}:{e.port}" for e in etcd_settings.endpoints), etcd_prefix)
    fact, _ = run_write_from_dag_run(FakeRun(), RunState.SUCCESS, config, datetime.now(UTC))
    assert fact is not None
    newer = RunRecord(state=RunState.RUNNING, run_id=fact.record.run_id, clear_number=1, source="other")

    class Interfering:
        """Passes calls through; writes a newer attempt just before the first compare-and-swap."""

        def __init__(self, store: EtcdStore) -> None:
            self.store = store
            self.cas_calls = 0

        async def get(self, key: str) -> Any:
            return await self.store.get(key)

        async def cas(self, key: str, value: bytes, expected: int) -> Any:
            self.cas_calls += 1
            if self.cas_calls == 1:
                await self.store.put(key, dump_record(newer))
            return await self.store.cas(key, value, expected)

    async def go() -> tuple[WriteOutcome, RunRecord | None, int]:
        async with await EtcdStore.connect(etcd_settings) as store:
            proxy = Interfering(store)
            outcome, _ = await write_one(proxy, fact, 2.0)  # type: ignore[arg-type]
            kv = await store.get(fact.key)
        assert kv is not None
        return outcome, parse_run_record(kv.value)[0], proxy.cas_calls

    outcome, stored, cas_calls = arun(go())
    assert outcome is WriteOutcome.SKIPPED and cas_calls == 1
    assert stored is not None and stored.clear_number == 1 and stored.source == "other"


def test_hook_never_blocks_when_etcd_unreachable(
    make_writer: Callable[..., BackgroundWriter], etcd_prefix: str
) -> None:
    """With etcd unreachable hook calls never wait for etcd, and records beyond the queue bound are dropped."""
    writer = make_writer(config_for(f"http://127.0.0.1:{closed_port()}", etcd_prefix, queue_size=5))
    durations_ms = []
    # A full garbage collection can pause any Python code for tens of ms; that is not the hook waiting for etcd.
    gc.collect()
    gc.disable()
    try:
        for i in range(50):
            run = FakeRun(dag_id=f"dag_{i:02d}")
            started = time.perf_counter()
            record_dag_run(run, RunState.SUCCESS)
            durations_ms.append((time.perf_counter() - started) * 1000)
    finally:
        gc.enable()
    durations_ms.sort()
    # A hook that waited for etcd would take the connect timeout (seconds) on every call once the queue is full;
    # the median tells that apart from a loaded machine's scheduling hiccups (tens of ms on one call). The hook's
    # real cost (tens of microseconds) is a benchmark number, not a test assertion.
    assert durations_ms[len(durations_ms) // 2] < 50.0, f"hook call durations (ms): {durations_ms}"
    assert durations_ms[-1] < 1000.0, f"hook call durations (ms): {durations_ms}"
    stats = writer.stats
    # The writer thread may hold one record in flight, so 5 or 6 were accepted; the rest were dropped, not waited on.
    assert stats.submitted in (5, 6) and stats.submitted + stats.dropped == 50
    assert writer.close(0.5) is False
    assert stats.failed == stats.submitted and stats.delivered == 0


def test_retries_deliver_after_etcd_comes_back(
    make_writer: Callable[..., BackgroundWriter], private_etcd: EtcdServer, arun: Any
) -> None:
    """Records submitted while etcd is down stay queued and are all written, in order, once it is back."""
    prefix = "/retry"
    writer = make_writer(config_for(private_etcd.endpoint, prefix, backoff_initial_s=0.05, backoff_max_s=0.5))
    private_etcd.kill()
    record_dag_run(FakeRun(), RunState.RUNNING)
    record_dag_run(FakeRun(dag_id="02_pipeline"), RunState.RUNNING)
    record_dag_run(FakeRun(), RunState.SUCCESS)
    deadline = time.monotonic() + 10
    while writer.stats.retries < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.stats.retries >= 2 and writer.stats.delivered == 0 and writer.pending() == 3
    private_etcd.start()
    assert writer.flush(15), f"not flushed: {writer.stats} last_error={writer.last_error}"
    assert (writer.stats.delivered, writer.stats.failed, writer.stats.dropped) == (3, 0, 0)
    settings = EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))
    first, _ = read_record(arun, settings, f"{prefix}/runs/default/01_pipeline/{PARTITION}")
    second, _ = read_record(arun, settings, f"{prefix}/runs/default/02_pipeline/{PARTITION}")
    assert first is not None and first.state is RunState.SUCCESS
    assert second is not None and second.state is RunState.RUNNING


@pytest.mark.parametrize(
    ("run", "counter"),
    [
        pytest.param(FakeRun(logical_date=None), "no_partition", id="no-partition"),
        pytest.param(
            FakeRun(logical_date=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)), "unrecordable", id="sub-second"
        ),
        pytest.param(FakeRun(logical_date=datetime(2026, 1, 1)), "unrecordable", id="naive"),
        pytest.param(FakeRun(dag_id="bad/dag"), "unrecordable", id="bad-dag-id"),
    ],
)
def test_runs_without_partition_are_counted_not_recorded(run: FakeRun, counter: str) -> None:
    """A run the key layout cannot name is skipped and counted; the hook does not raise."""
    recorder = RecordingWriter(config_for("http://127.0.0.1:2379", "/p"))
    install_writer(recorder)
    try:
        record_dag_run(run, RunState.SUCCESS)
        record_dag_run(run, RunState.SUCCESS)
    finally:
        install_writer(None)
    assert recorder.items == []
    assert getattr(recorder.stats, counter) == 2


def test_no_partition_logged_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Runs of no partition (no date, key or consumed partition) produce one INFO line, then debug only."""
    recorder = RecordingWriter(config_for("http://127.0.0.1:2379", "/p"))
    install_writer(recorder)
    try:
        with caplog.at_level(logging.INFO, logger=hooks.__name__):
            for _ in range(3):
                record_dag_run(FakeRun(logical_date=None), RunState.RUNNING)
    finally:
        install_writer(None)
    infos = [r for r in caplog.records if r.levelno == logging.INFO and "reason=no_partition" in r.getMessage()]
    assert len(infos) == 1


def test_hook_survives_a_broken_dag_run_and_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invalid COORDINATOR_* settings disable the plugin with one error; a hook never raises into Airflow."""
    monkeypatch.setenv("COORDINATOR_INSTANCE", "not a name")
    install_writer(None)
    try:
        record_dag_run(FakeRun(), RunState.SUCCESS)
        record_dag_run(object(), RunState.FAILED)
        assert writer_mod.get_writer() is None
    finally:
        install_writer(None)


def test_fact_keys_follow_the_key_layout() -> None:
    """The record's key is KeyLayout.run_key of (instance, dag_id) and the canonical partition."""
    config = config_for("http://127.0.0.1:2379", "/coordinator", instance="team_b")
    fact, reason = run_write_from_dag_run(FakeRun(dag_id="07_pipeline"), RunState.FAILED, config, datetime.now(UTC))
    assert reason is None and isinstance(fact, RunStateWrite)
    assert fact.key == KeyLayout("/coordinator").run_key(NodeId("team_b", "07_pipeline"), PARTITION)


def _child_env(endpoint: str, prefix: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        COORDINATOR_ETCD_ENDPOINTS=endpoint,
        COORDINATOR_PREFIX=prefix,
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # The plugin's cache of named tasks (and any other temporary file) stays in the test's directory.
        TMPDIR=str(home),
    )
    return env


def test_records_are_flushed_at_interpreter_exit(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any
) -> None:
    """A process that records a run and exits at once still delivers it (atexit flush)."""
    script = textwrap.dedent(
        """
        from datetime import UTC, datetime
        from types import SimpleNamespace
        from coordinator.airflow_plugin.hooks import record_dag_run
        from coordinator.core.model import RunState
        run = SimpleNamespace(dag_id="05_pipeline", run_id="r1", logical_date=datetime(2026, 1, 1, tzinfo=UTC),
                              clear_number=0, start_date=None, end_date=None)
        record_dag_run(run, RunState.SUCCESS)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_child_env(etcd_endpoint, etcd_prefix, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    record, _ = read_record(arun, etcd_settings, f"{etcd_prefix}/runs/default/05_pipeline/{PARTITION}")
    assert record is not None and record.run_id == "r1"


def test_exit_with_etcd_down_is_bounded_and_logs_the_lost_record(tmp_path: Path) -> None:
    """With etcd unreachable the exit flush gives up after ~2 s and logs the undelivered record's key."""
    script = textwrap.dedent(
        """
        import logging
        from datetime import UTC, datetime
        from types import SimpleNamespace
        from coordinator.airflow_plugin.hooks import record_dag_run
        from coordinator.core.model import RunState
        logging.basicConfig(level=logging.WARNING)
        run = SimpleNamespace(dag_id="05_pipeline", run_id="r1", logical_date=datetime(2026, 1, 1, tzinfo=UTC),
                              clear_number=0, start_date=None, end_date=None)
        record_dag_run(run, RunState.SUCCESS)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=_child_env(f"http://127.0.0.1:{closed_port()}", "/gone", tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "plugin.not_delivered" in done.stderr and "/gone/runs/default/05_pipeline/" in done.stderr
    assert elapsed < 8, f"exit took {elapsed:.1f} s"


def test_forked_child_gets_its_own_writer(
    make_writer: Callable[..., BackgroundWriter],
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    arun: Any,
    tmp_path: Path,
) -> None:
    """After a fork the child's hook queues to a new thread of its own without blocking; the parent keeps writing."""
    # Delivery from the child is not asserted: gRPC cannot be used in a child forked while the parent's gRPC threads
    # were active. In Airflow only the scheduler and the api-server fire these hooks, and neither forks afterwards
    # (LocalExecutor forks its workers at start, before the first hook, and workers never fire dag-run hooks).
    writer = make_writer(config_for(etcd_endpoint, etcd_prefix))
    record_dag_run(FakeRun(dag_id="03_pipeline"), RunState.SUCCESS)
    assert writer.flush(10)
    parent_thread = writer._thread
    report = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # child: must leave through os._exit, never back into pytest
        code = 1
        try:
            started = time.perf_counter()
            record_dag_run(FakeRun(dag_id="04_pipeline"), RunState.SUCCESS)
            elapsed_ms = (time.perf_counter() - started) * 1000
            child = writer_mod.get_writer()
            assert isinstance(child, BackgroundWriter)
            fresh = child._pid == os.getpid() and child._thread is not None and child._thread is not parent_thread
            report.write_text(
                f"{fresh} {child._thread.is_alive() if child._thread else None} "
                f"{child.stats.submitted} {child.stats.delivered} {elapsed_ms:.3f}"
            )
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    fresh, alive, submitted, delivered, elapsed_ms = report.read_text().split()
    assert (fresh, alive, submitted, delivered) == ("True", "True", "1", "0")  # counters start again in the child
    # Blocking would mean waiting on etcd or a thread join (seconds); 1 s tells the two apart on a loaded machine
    # (the hook's own cost, tens of microseconds, is measured in bench/, not asserted here).
    assert float(elapsed_ms) < 1000.0
    record_dag_run(FakeRun(dag_id="05_pipeline"), RunState.SUCCESS)
    assert writer.flush(10)
    assert writer.stats.delivered == 2
    record, _ = read_record(arun, etcd_settings, f"{etcd_prefix}/runs/default/05_pipeline/{PARTITION}")
    assert record is not None and record.state is RunState.SUCCESS


# ----- coordinator check-plugin (a subprocess: imports Airflow and its plugin machinery) -----


def run_check_plugin(tmp_path: Path, endpoint: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "check-plugin", *args],
        env=_child_env(endpoint, prefix, tmp_path / "airflow-home"),
        # Not the repository root: a stray *.egg-info there makes Airflow see the plugin twice.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.airflow
def test_check_plugin_writes_through_the_real_listener(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any
) -> None:
    """check-plugin exits 0 and reports the key it wrote through Airflow's registered listener."""
    done = run_check_plugin(tmp_path, etcd_endpoint, etcd_prefix, "--keep")
    assert done.returncode == 0, done.stdout + done.stderr
    key = f"{etcd_prefix}/runs/default/coordinator_check_plugin/2000-01-01T00:00:00Z"
    assert f"plugin OK: wrote {key}" in done.stdout
    assert "registered by Airflow's listener manager" in done.stdout
    assert "task hook handled a task state; the adopted graph names 0 task(s)" in done.stdout
    assert f"the wait of a scheduled dependent reaches etcd: read and watch of {etcd_prefix}/permits/" in done.stdout
    record, _ = read_record(arun, etcd_settings, key)
    assert record is not None and record.state is RunState.SUCCESS and record.source == "airflow-plugin:default"


@pytest.mark.airflow
def test_check_plugin_dry_run_writes_nothing(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, etcd_settings: EtcdSettings, arun: Any
) -> None:
    """--dry-run prints the key and the JSON value and leaves etcd untouched."""
    done = run_check_plugin(tmp_path, etcd_endpoint, etcd_prefix, "--dry-run", "--instance", "team_a")
    assert done.returncode == 0, done.stdout + done.stderr
    key = f"{etcd_prefix}/runs/team_a/coordinator_check_plugin/2000-01-01T00:00:00Z"
    assert f"would write {key}" in done.stdout and '"source":"airflow-plugin:team_a"' in done.stdout
    task_key = f"{etcd_prefix}/tasks/team_a/coordinator_check_plugin/coordinator_check_task/2000-01-01T00:00:00Z"
    assert f"task hook OK (dry run): would write {task_key}" in done.stdout
    assert read_record(arun, etcd_settings, key) == (None, 0)


@pytest.mark.airflow
def test_check_plugin_fails_clearly_when_etcd_is_unreachable(tmp_path: Path) -> None:
    """check-plugin exits 1 naming the endpoint when the record cannot be written."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run_check_plugin(tmp_path, endpoint, "/coordinator", "--timeout", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"did not reach etcd at {endpoint}" in done.stderr
