"""The local Airflow launcher's process handling and environment, with stand-in processes (no Airflow started)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import ClassVar

import pytest

from devtools import airflow_stack
from devtools.airflow_stack import STATE_FILE, AirflowStack, AirflowStackError, stop_recorded

# A process group like an Airflow component's: a leader whose command line says "airflow", with a child of its own.
LEADER = """
import signal, subprocess, sys, time
if "ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """PIDs started by a test (leaders and their children); killed afterwards whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def start_group(spawned: list[int], *args: str, new_session: bool = True) -> tuple[int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER, "airflow-stand-in", *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    spawned.extend((proc.pid, child))
    return proc.pid, child


def record(home: Path, **pids: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / STATE_FILE).write_text(json.dumps({"pids": pids}))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="the checks read /proc (Linux)")


def test_stop_recorded_stops_the_whole_process_group(tmp_path: Path, spawned: list[int]) -> None:
    """stop_recorded TERMs each recorded component's process group, children included, and forgets the PIDs."""
    leader, child = start_group(spawned)
    record(tmp_path, scheduler=leader)
    assert stop_recorded(tmp_path) == [leader]
    assert wait_gone(leader) and wait_gone(child)
    assert not (tmp_path / STATE_FILE).exists()


def test_stop_escalates_to_kill(tmp_path: Path, spawned: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A component that ignores TERM (a hung LocalExecutor) is killed after the second TERM's wait."""
    monkeypatch.setattr(airflow_stack, "_TERM_WAIT_S", 0.3)
    monkeypatch.setattr(airflow_stack, "_SECOND_TERM_WAIT_S", 0.3)
    leader, child = start_group(spawned, "ignore-term")
    time.sleep(0.2)  # let it install its handler
    record(tmp_path, scheduler=leader)
    started = time.monotonic()
    assert stop_recorded(tmp_path) == [leader]
    assert wait_gone(leader) and wait_gone(child)
    assert time.monotonic() - started < 5


def test_recorded_pid_that_is_not_ours_is_left_alone(tmp_path: Path, spawned: list[int]) -> None:
    """A recorded PID that no longer leads its own session (PID reused by something else) is never signalled."""
    leader, _ = start_group(spawned, new_session=False)
    record(tmp_path, scheduler=leader)
    assert stop_recorded(tmp_path) == []
    assert alive(leader)


def test_environment_is_loopback_and_ignores_inherited_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The children's environment binds 127.0.0.1, uses LocalExecutor, and drops inherited AIRFLOW__/COORDINATOR_."""
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    monkeypatch.setenv("COORDINATOR_DEPS", "/somewhere/else.json")
    tmp_path.mkdir(exist_ok=True)
    stack = AirflowStack(home=tmp_path, dags_folder=tmp_path, instance="team_a", etcd_endpoints="http://127.0.0.1:1")
    stack.port = 18080
    env = stack.environment()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION" not in env and "COORDINATOR_DEPS" not in env
    assert (env["COORDINATOR_INSTANCE"], env["COORDINATOR_ETCD_ENDPOINTS"]) == ("team_a", "http://127.0.0.1:1")
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    # The secret is per home and stable across restarts of the same home.
    assert (
        AirflowStack(home=tmp_path, dags_folder=tmp_path).environment()["AIRFLOW__API_AUTH__JWT_SECRET"]
        == (env["AIRFLOW__API_AUTH__JWT_SECRET"])
    )


def test_the_dag_processor_finds_new_files_at_once_and_re_parses_unchanged_ones_only_every_300_s(
    tmp_path: Path,
) -> None:
    """The launcher scans the DAG folder every 5 s, parses a file changed since its last parse first (modified_time),
    and parses an unchanged file again only after 300 s."""
    env = AirflowStack(home=tmp_path, dags_folder=tmp_path).environment()
    assert env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] == "5"
    assert env["AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE"] == "modified_time"
    assert env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] == "300"


def test_both_launchers_schedulers_sleep_half_a_second_after_an_idle_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both launchers' schedulers sleep 0.5 s after an idle loop (Airflow's default: 1 s), whatever the shell sets."""
    from devtools.airflow2_stack import Airflow2Stack

    monkeypatch.setenv("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "7")
    for home in ("3", "2"):
        (tmp_path / home).mkdir()
    airflow3 = AirflowStack(home=tmp_path / "3", dags_folder=tmp_path).environment()
    airflow2 = Airflow2Stack(home=tmp_path / "2", dags_folder=tmp_path).environment()
    for env in (airflow3, airflow2):
        assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "0.5"


def test_the_airflow3_launchers_tasks_wait_a_minute_for_each_answer_of_the_execution_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task of the Airflow 3 launcher waits 60 s for each answer of the execution API (Airflow's default: 5 s), so a
    loaded machine's slow API server does not fail it, whatever the shell sets."""
    monkeypatch.setenv("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "5")
    env = AirflowStack(home=tmp_path, dags_folder=tmp_path).environment()
    assert env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] == "60"


def test_plugin_settings_the_airflow_way_leave_no_coordinator_variable(tmp_path: Path) -> None:
    """plugin_settings="airflow" replaces every COORDINATOR_* variable by [coordinator] options and writes the etcd
    endpoint into the coordinator_etcd connection of a LocalFilesystemBackend that the environment configures."""
    stack = AirflowStack(
        home=tmp_path, dags_folder=tmp_path, instance="team_a", etcd_endpoints="http://127.0.0.1:2399", prefix="/p",
        plugin_settings="airflow",
    )  # fmt: skip
    env = stack.environment()
    assert not [k for k in env if k.startswith("COORDINATOR_")]
    assert (env["AIRFLOW__COORDINATOR__INSTANCE"], env["AIRFLOW__COORDINATOR__PREFIX"]) == ("team_a", "/p")
    assert env["AIRFLOW__SECRETS__BACKEND"] == "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    kwargs = json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"])
    connections = json.loads(Path(kwargs["connections_file_path"]).read_text())
    assert connections == {"coordinator_etcd": {"conn_type": "generic", "host": "127.0.0.1", "port": 2399}}
    with pytest.raises(ValueError, match="plugin_settings must be"):
        AirflowStack(home=tmp_path, dags_folder=tmp_path, plugin_settings="yaml").environment()


def test_failed_start_names_the_log_file(tmp_path: Path) -> None:
    """When a start step fails the error names its log file and nothing is left running."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'no airflow here' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    stack = AirflowStack(home=tmp_path / "home", dags_folder=tmp_path, python=str(fake_python))
    with pytest.raises(AirflowStackError, match=r"db migrate exited with 3; see .*db-migrate\.log") as info:
        stack.start(timeout_s=10)
    assert "no airflow here" in str(info.value)
    assert not (tmp_path / "home" / STATE_FILE).exists()


def test_the_sqlite_database_is_switched_to_the_write_ahead_log(tmp_path: Path) -> None:
    """use_write_ahead_log() puts the stack's SQLite file in WAL mode; a stack on another database is left alone."""
    stack = AirflowStack(home=tmp_path, dags_folder=tmp_path)
    assert stack.database_file == tmp_path / "airflow.db"
    with closing(sqlite3.connect(tmp_path / "airflow.db")) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    stack.use_write_ahead_log()
    with closing(sqlite3.connect(tmp_path / "airflow.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    (tmp_path / "pg").mkdir()
    elsewhere = AirflowStack(
        home=tmp_path / "pg", dags_folder=tmp_path,
        extra_env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow@127.0.0.1/airflow"},
    )  # fmt: skip
    assert elsewhere.database_file is None
    elsewhere.use_write_ahead_log()  # nothing to switch, and no SQLite file made
    assert not (tmp_path / "pg" / "airflow.db").exists()


def test_a_database_url_is_the_stacks_metadata_database(tmp_path: Path) -> None:
    """With database_url every Airflow process gets it as its connection and the stack names it; without one the
    stack names its SQLite file (make demo's database)."""
    url = "postgresql+psycopg2://postgres@127.0.0.1:5999/airflow_e2e"
    stack = AirflowStack(home=tmp_path, dags_folder=tmp_path, database_url=url)
    assert stack.environment()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC" not in stack.environment()  # Airflow derives +asyncpg
    assert (stack.database, stack.database_file) == (url, None)
    stack.use_write_ahead_log()
    assert not (tmp_path / "airflow.db").exists()
    assert AirflowStack(home=tmp_path, dags_folder=tmp_path).database == str(tmp_path / "airflow.db")
    secret = AirflowStack(home=tmp_path, dags_folder=tmp_path, database_url="postgresql://u:pw@db:5432/airflow")
    assert secret.database == "postgresql://u:***@db:5432/airflow"


class SlowFirstWrite(http.server.BaseHTTPRequestHandler):
    """An Airflow REST stand-in whose first trigger commits but answers too late (a write waiting for SQLite's lock
    on a loaded machine); the run id then exists, so a second trigger gets 409."""

    posts: ClassVar[list[float]] = []
    run: ClassVar[dict[str, str]] = {"dag_run_id": "r1", "state": "queued"}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/auth/token":
            return self.answer(201, {"access_token": "t"})
        type(self).posts.append(time.monotonic())
        if len(self.posts) == 1:
            time.sleep(1.0)  # committed, but the client gave up
            return self.answer(200, self.run)
        return self.answer(409, {"detail": "already exists"})

    def do_GET(self) -> None:
        return self.answer(200, self.run)

    def answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_trigger_whose_answer_timed_out_is_retried_and_found_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trigger() retries a POST that timed out; the 409 that follows means the first try committed: it returns the
    run instead of failing the test that triggered."""
    monkeypatch.setattr(airflow_stack, "WRITE_TIMEOUT_S", 0.3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowFirstWrite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        stack = AirflowStack(home=tmp_path, dags_folder=tmp_path, port=server.server_address[1])
        assert stack.trigger("01_pipeline", "r1", "2001-01-01T00:00:00Z") == SlowFirstWrite.run
        assert len(SlowFirstWrite.posts) == 2
    finally:
        server.shutdown()
        server.server_close()
