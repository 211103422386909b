"""make demo without Airflow: the state file, PID handling, port checks, `down` when nothing runs, the live rows.

The full demo (Airflow, the cascade) is exercised by running `make demo` and by the e2e suite; these tests cover the
logic around it in well under a few seconds, with at most one real etcd started and stopped through the demo's own
commands.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from rich.console import Console

from coordinator.airflow.client import AirflowClient, DagRunInfo
from coordinator.core.model import KeyLayout
from coordinator.runtime.settings import InstanceSettings
from coordinator.runtime.spec_file import load_spec
from devtools.airflow_stack import AirflowStack
from devtools.demo import main, next_partition
from devtools.demo_live import (
    CoordSeen,
    EtcdPeek,
    Follower,
    build_rows,
    changes,
    dag_order,
    failed_rows,
    order_checks,
    parse_coord,
    render,
)
from devtools.demo_state import (
    DemoState,
    EtcdRecord,
    Layout,
    WatcherRecord,
    load_state,
    port_busy_message,
    save_state,
    stop_pid,
)
from devtools.procs import free_port, is_alive, port_in_use, process_matches

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A minimal project folder (dependencies.json + dags/) whose .demo/ is private to the test."""
    shutil.copy(REPO / "dependencies.json", tmp_path / "dependencies.json")
    (tmp_path / "dags").mkdir()
    for name in ("DEMO_AIRFLOW_PORT", "DEMO_ETCD_PORT", "DEMO_ETCD_PEER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket of this process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _sleeper(ignore_term: bool = False) -> subprocess.Popen[bytes]:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # the signal disposition is set once it printed
    return proc


# ----- state file -----


def test_state_round_trips_through_demo_json(project: Path) -> None:
    """What `up` records (PIDs, ports, watcher id, partitions) reads back identical from .demo/demo.json."""
    layout = Layout(project)
    state = DemoState(
        etcd=EtcdRecord(pid=11, client_port=2379, peer_port=2380),
        watcher=WatcherRecord(pid=12, watcher_id="demo-watcher-abc"),
        airflow_port=8080,
        airflow_etcd="http://127.0.0.1:2379",
    ).with_partition("2026-01-01T00:00:00Z")
    save_state(layout, state)
    assert layout.state_file == project / ".demo" / "demo.json"
    assert load_state(layout) == state
    assert load_state(layout).last_partition == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "content",
    [None, "", "{not json", "[]", '{"etcd": {"pid": "x"}}', '{"etcd": {"unknown": 1}}'],
    ids=["missing", "empty", "broken-json", "not-an-object", "bad-field-type", "unknown-field"],
)
def test_unreadable_state_counts_as_nothing_recorded(project: Path, content: str | None) -> None:
    """A missing or damaged demo.json is an empty state, never a crash."""
    layout = Layout(project)
    if content is not None:
        layout.root.mkdir()
        layout.state_file.write_text(content)
    assert load_state(layout) == DemoState()


def test_layout_keeps_everything_under_dot_demo(project: Path) -> None:
    """Every file the demo writes is under .demo/ (the one ignored folder)."""
    layout = Layout(project)
    for path in (layout.state_file, layout.etcd_data, layout.etcd_log, layout.airflow_home, layout.watcher_log):
        assert path.is_relative_to(project / ".demo")
    assert ".demo/" in (REPO / ".gitignore").read_text().splitlines()


# ----- partitions -----


@pytest.mark.parametrize(
    ("used", "now", "expected"),
    [
        ((), T0.replace(microsecond=700_000), "2026-01-01T12:00:00Z"),
        (("2025-12-31T00:00:00Z",), T0, "2026-01-01T12:00:00Z"),
        (("2026-01-01T12:00:00Z",), T0, "2026-01-01T12:00:01Z"),
        (("2026-01-01T12:00:05Z", "2026-01-01T11:00:00Z"), T0, "2026-01-01T12:00:06Z"),
    ],
    ids=["first", "older-used", "same-second-bumps", "latest-in-future-bumps"],
)
def test_each_up_gets_a_new_partition(used: tuple[str, ...], now: datetime, expected: str) -> None:
    """The partition is the current UTC second, or one second after the latest one used: never a repeat."""
    assert next_partition(used, now) == expected


# ----- processes -----


def test_process_matches_needs_every_needle_in_the_command_line() -> None:
    """A recorded PID is trusted only while its command line still names what the demo started."""
    proc = _sleeper()
    try:
        assert process_matches(proc.pid, "time.sleep(60)")
        assert not process_matches(proc.pid, "time.sleep(60)", "--data-dir=/elsewhere")
        assert not process_matches(None, "x")
    finally:
        proc.kill()
        proc.wait()
    assert not process_matches(proc.pid, "time.sleep(60)")


@pytest.mark.parametrize(("ignore_term", "how"), [(False, "term"), (True, "kill")], ids=["obeys-term", "needs-kill"])
def test_stop_pid_terms_then_kills(ignore_term: bool, how: str) -> None:
    """stop_pid sends TERM, waits, then KILL; it reports which one ended the process."""
    proc = _sleeper(ignore_term)
    begin = time.monotonic()
    result = stop_pid(proc.pid, term_wait_s=0.5 if ignore_term else 5.0, kill_wait_s=5.0)
    proc.wait(timeout=5)
    assert result == how
    assert time.monotonic() - begin < 6
    assert stop_pid(proc.pid) == "gone"


def test_zombies_do_not_count_as_alive() -> None:
    """A process that exited but was not reaped yet is not alive (so `down` does not wait for it)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 5
    while is_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_alive(proc.pid)  # exited, not reaped by us yet
    proc.wait()


# ----- ports -----


def test_port_busy_message_names_the_owner_and_the_way_out(listener: int) -> None:
    """A busy port is detected and the message says who holds it and which variable moves the demo."""
    assert port_in_use(listener)
    message = port_busy_message(listener, "the Airflow UI and API", "DEMO_AIRFLOW_PORT")
    assert f"127.0.0.1:{listener}" in message
    assert f"DEMO_AIRFLOW_PORT={listener + 10} make demo" in message
    assert f"pid {os.getpid()}" in message
    assert not port_in_use(free_port())


# ----- commands -----


def test_down_with_nothing_running_says_so_and_exits_0(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make down` on a fresh clone (no .demo/) is not an error."""
    assert main(["down"], project=project) == 0
    assert "nothing to stop" in capsys.readouterr().out
    assert not (project / ".demo").exists()


def test_down_never_signals_a_recycled_pid(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PIDs recorded for the demo but now used by an unrelated process are left alone."""
    stranger = _sleeper()
    try:
        save_state(
            Layout(project),
            DemoState(
                etcd=EtcdRecord(pid=stranger.pid, client_port=free_port(), peer_port=free_port()),
                watcher=WatcherRecord(pid=stranger.pid, watcher_id="demo-watcher-gone"),
            ),
        )
        assert main(["down"], project=project) == 0
        assert "nothing to stop" in capsys.readouterr().out
        assert stranger.poll() is None
        assert load_state(Layout(project)).watcher is None
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("variable", "what"),
    [
        ("DEMO_ETCD_PORT", "etcd"),
        ("DEMO_ETCD_PEER_PORT", "etcd"),
        ("DEMO_AIRFLOW_PORT", "the Airflow UI and API"),
    ],
    ids=["etcd-client", "etcd-peer", "airflow"],
)
def test_up_refuses_a_busy_port_before_starting_anything(
    project: Path,
    listener: int,
    variable: str,
    what: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A busy port fails `make demo` at once, naming the port, its use and the variable that moves it."""
    for other in ("DEMO_ETCD_PORT", "DEMO_ETCD_PEER_PORT", "DEMO_AIRFLOW_PORT"):
        monkeypatch.setenv(other, str(free_port()))
    monkeypatch.setenv(variable, str(listener))
    assert main(["up"], project=project) == 1
    out = capsys.readouterr().out
    assert f"port 127.0.0.1:{listener} (for {what}) is already in use" in out
    assert f"{variable}={listener + 10} make demo" in out
    assert "starting" not in out
    assert not Layout(project).etcd_data.exists()


def test_etcd_outlives_the_command_that_started_it_until_down(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's etcd keeps running after `make demo` exits; `make down` stops it by PID and frees its ports."""
    client, peer = free_port(), free_port()
    monkeypatch.setenv("DEMO_ETCD_PORT", str(client))
    monkeypatch.setenv("DEMO_ETCD_PEER_PORT", str(peer))
    layout = Layout(project)
    starter = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rich.console import Console\n"
        "from devtools.demo_stack import DemoStack\n"
        "from devtools.demo_state import Layout\n"
        "DemoStack(Layout(Path(sys.argv[1])), Console()).ensure_etcd()\n"
    )
    # From the repository root: devtools/ is beside the installed package, not in it.
    done = subprocess.run(
        [sys.executable, "-c", starter, str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert f"starting etcd on 127.0.0.1:{client} ... ok" in done.stdout
    try:
        state = load_state(layout)
        assert state.etcd is not None
        pid = state.etcd.pid
        assert process_matches(pid, str(layout.etcd_data)), "etcd died with the interpreter that started it"
        assert port_in_use(client)
    finally:
        assert main(["down"], project=project) == 0
    assert f"stopped etcd (pid {pid}: term)" in capsys.readouterr().out
    assert not process_matches(pid, str(layout.etcd_data))
    assert not port_in_use(client) and not port_in_use(peer)
    assert main(["down"], project=project) == 0
    assert "nothing to stop" in capsys.readouterr().out
    shutil.rmtree(layout.etcd_data)  # ~120 MB of preallocated WAL


def test_commands_other_than_down_need_the_repository_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run from elsewhere, `up` says where to run it instead of failing later; `down` works anywhere."""
    assert main(["up"], project=tmp_path) == 1
    assert "run from the repository root" in capsys.readouterr().out
    assert main(["down"], project=tmp_path) == 0


def test_an_invalid_dependencies_file_is_one_message(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken dependencies.json stops the demo with the loader's problems, not a traceback."""
    (project / "dependencies.json").write_text('{"02_pipeline": ["01_pipeline", 3]}')
    assert main(["up"], project=project) == 1
    out = capsys.readouterr().out
    assert out.startswith("error: ") and "dependencies.json" in out and "Traceback" not in out


# ----- live rows -----


def _run(dag: str, state: str, queued: float, start: float | None = None, end: float | None = None) -> DagRunInfo:
    def at(s: float | None) -> datetime | None:
        return None if s is None else T0 + timedelta(seconds=s)

    return DagRunInfo(dag, f"coordinator__{dag}", T0, state, at(queued), at(start), at(end))


def test_rows_follow_the_graph_and_mark_earlier_attempts() -> None:
    """Rows come in cascade order; a run queued before the story began shows as 'earlier', a missing one 'waiting'."""
    graph = load_spec(REPO / "dependencies.json")
    assert [n.dag_id for n in dag_order(graph)] == [f"0{i}_pipeline" for i in range(1, 8)]
    runs = {
        "01_pipeline": _run("01_pipeline", "success", 0.1, 1.0, 3.0),
        "02_pipeline": _run("02_pipeline", "running", 3.2, 4.0),
        "03_pipeline": _run("03_pipeline", "success", -100.0, -99.0, -97.0),
    }
    rows = build_rows(graph, runs, {"02_pipeline": CoordSeen("running", 0, "create", "done", 1)}, T0)
    by = {r.dag_id: r for r in rows}
    assert by["01_pipeline"].succeeded and by["01_pipeline"].took_s == pytest.approx(2.0)
    assert (by["02_pipeline"].state, by["02_pipeline"].started_s, by["02_pipeline"].ended_s) == ("running", 4.0, None)
    assert by["03_pipeline"].state == "success earlier" and not by["03_pipeline"].current
    assert by["03_pipeline"].started_s is None
    assert by["06_pipeline"].state == "waiting" and by["06_pipeline"].waits_for.count("_pipeline") == 4
    assert render(rows, "cascade").row_count == 7
    assert failed_rows(rows) == []


def test_order_checks_catch_a_dependent_that_started_too_early() -> None:
    """06 starting before one of 02..05 ended fails its check; the others pass."""
    graph = load_spec(REPO / "dependencies.json")
    runs = {"01_pipeline": _run("01_pipeline", "success", 0, 1, 3)}
    for dag in ("02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"):
        runs[dag] = _run(dag, "success", 3.1, 4, 6)
    runs["05_pipeline"] = _run("05_pipeline", "success", 3.1, 4, 9)
    runs["06_pipeline"] = _run("06_pipeline", "success", 6.1, 7, 8)
    runs["07_pipeline"] = _run("07_pipeline", "success", 8.1, 8.5, 9)
    checks = dict((text, ok) for ok, text in order_checks(graph, build_rows(graph, runs, {}, T0)))
    assert checks["02_pipeline started after 01_pipeline ended"]
    assert not checks["06_pipeline started after 02_pipeline, 03_pipeline, 04_pipeline, 05_pipeline ended"]
    assert checks["07_pipeline started after 06_pipeline ended"]


def test_changes_print_only_what_moved() -> None:
    """Without a terminal, each poll prints one line per DAG whose state or etcd reading changed."""
    graph = load_spec(REPO / "dependencies.json")
    before = build_rows(graph, {"01_pipeline": _run("01_pipeline", "running", 0, 1)}, {}, T0)
    after = build_rows(graph, {"01_pipeline": _run("01_pipeline", "success", 0, 1, 3)}, {}, T0)
    lines = changes(before, after, 3.5)
    assert len(lines) == 1 and "01_pipeline" in lines[0] and "success" in lines[0] and "+  3.5 s" in lines[0]
    assert len(changes([], after, 0.0)) == 7


def test_readings_parse_etcd_values() -> None:
    """etcd's run record and ledger entry become one typed reading; invalid etcd values read as absent."""
    record = b'{"state":"success","run_id":"r","clear_number":2}'
    ledger = b'{"status":"done","action":"clear","run_id":"r","trigger_count":3}'
    assert parse_coord(record, ledger) == CoordSeen("success", 2, "clear", "done", 3)
    assert parse_coord(b"not json", None) == CoordSeen()


def _run_json(dag_id: str, logical_date: str, state: str) -> dict[str, object]:
    return {
        "dag_id": dag_id, "dag_run_id": f"demo__{dag_id}", "logical_date": logical_date, "state": state,
        "queued_at": "2026-01-01T12:00:00.5+00:00", "start_date": "2026-01-01T12:00:01Z", "end_date": None,
    }  # fmt: skip


def test_live_view_reads_runs_with_the_coordinators_airflow_client(tmp_path: Path) -> None:
    """The follower lists every DAG's run at the partition through AirflowClient (logged in, filtered by logical date,
    other dates dropped) and keeps its last reading when a poll fails."""
    partition = "2026-01-01T12:00:00Z"
    requests: list[httpx.Request] = []
    answers = iter([200, 503])

    def airflow(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "tok"})
        status = next(answers)
        if status != 200:
            return httpx.Response(status, json={"detail": "busy"})
        runs = [
            _run_json("01_pipeline", "2026-01-01T12:00:00+00:00", "running"),
            _run_json("02_pipeline", "2026-01-01T11:00:00+00:00", "success"),  # a server that ignored the filter
        ]
        return httpx.Response(200, json={"dag_runs": runs, "total_entries": 2})

    stack = AirflowStack(home=tmp_path / "airflow", dags_folder=tmp_path, port=1)
    stack.password = "pw"
    client = AirflowClient(
        InstanceSettings(url=stack.url, username="admin", password=SecretStr("pw"), api="v2"),
        transport=httpx.MockTransport(airflow),
    )
    graph = load_spec(REPO / "dependencies.json")
    with Follower(Console(), stack, EtcdPeek("http://127.0.0.1:1"), graph, partition, KeyLayout(), client) as follower:
        first = follower.read_runs()
        assert set(first) == {"01_pipeline"}
        assert first["01_pipeline"].state == "running"
        assert first["01_pipeline"].start_date == T0 + timedelta(seconds=1)
        assert follower.read_runs() == first  # the 503: the previous reading stays
    listed = [r for r in requests if r.url.path == "/api/v2/dags/~/dagRuns"]
    assert len(listed) == 2
    assert (
        listed[0].url.params["logical_date_gte"]
        == listed[0].url.params["logical_date_lte"]
        == "2026-01-01T12:00:00+00:00"
    )
    assert listed[0].headers["Authorization"] == "Bearer tok"


def test_signals_reach_the_whole_process_group() -> None:
    """stop_pid signals the group of a session leader, so children a demo process forked stop with it."""
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert stop_pid(leader.pid, term_wait_s=5.0) == "term"
    leader.wait(timeout=5)
    deadline = time.monotonic() + 5
    while is_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(child)
