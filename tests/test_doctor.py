"""The first hour's mistakes, each reproduced, and the message naming the fix: ``doctor``, ``status``, the watcher's
start check (real etcd; the fake Airflow at the HTTP boundary)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.etcd import EtcdStore
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.watcher.presence import check_instances
from coordinator.watcher.service import open_watcher
from devtools.etcd_server import EtcdServer
from tests.support.fake_airflow import FakeAirflow
from tests.test_plugin_writer import closed_port

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "dependencies.json"
GRAPH = load_spec(DEPS)
DAGS = sorted(n.dag_id for n in GRAPH.dags)
PASSWORD = "right-password"  # the fake's; not a real secret


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow(DAGS, username="coordinator", password=PASSWORD).start()
    try:
        yield fake
    finally:
        fake.stop()


def run_cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli_env(endpoint: str, prefix: str, url: str, password: str = PASSWORD, deps: Path = DEPS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
    env.update(
        COORDINATOR_ETCD_ENDPOINTS=endpoint,
        COORDINATOR_PREFIX=prefix,
        COORDINATOR_DEPS=str(deps),
        COORDINATOR_AIRFLOW_URL=url,
        COORDINATOR_AIRFLOW_USERNAME="coordinator",
        COORDINATOR_AIRFLOW_PASSWORD=password,
    )
    return env


def seed(arun: Any, settings: EtcdSettings, prefix: str, *, leader: bool, runs: dict[NodeId, list[str]]) -> None:
    """An adopted graph (the local file's), optionally a leader key, and successful run states."""
    keys = KeyLayout(prefix)

    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            activation = adopt(GRAPH.shapes, GRAPH.digest, None, 1, by="test", sources=GRAPH.dags)
            assert activation is not None
            await store.put(keys.config_key("graph"), dump_activation(activation))
            if leader:
                await store.put(keys.leader, b"host-a:123")
            for node, parts in runs.items():
                for p in parts:
                    record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{p}", source=f"airflow-plugin:"
                                       f"{node.instance}")  # fmt: skip
                    await store.put(keys.run_key(node, p), dump_record(record))

    arun(write())


def checks_of(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    payload = json.loads(done.stdout)
    return {c["name"]: c for c in payload["checks"]}


def test_doctor_says_no_watcher_leads_and_how_to_start_one(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """With the watcher stopped, doctor fails the leader check: "nothing will be triggered", `coordinator watch`."""
    seed(arun, etcd_settings, etcd_prefix, leader=False, runs={})
    done = run_cli("doctor", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[fail] leader: no watcher is leading: nothing will be triggered" in done.stdout
    assert "coordinator watch" in done.stdout
    assert "[ok] airflow default" in done.stdout and "[ok] dags default" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def test_doctor_is_green_when_everything_is_in_place(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """Graph adopted, a leader, Airflow reachable with every DAG unpaused: exit 0, and the JSON shape is the documented
    one (version, ok, checks with name/status/summary/fix/details)."""
    seed(
        arun, etcd_settings, etcd_prefix, leader=True, runs={NodeId("default", "01_pipeline"): ["2026-01-01T00:00:00Z"]}
    )
    done = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert payload["version"] == 1 and payload["ok"] is True
    assert all(set(c) == {"name", "status", "summary", "fix", "details"} for c in payload["checks"])
    checks = checks_of(done)
    assert checks["leader"]["status"] == "ok" and "host-a:123" in checks["leader"]["summary"]
    assert checks["airflow default"]["status"] == "ok" and "trigger yes" in checks["airflow default"]["summary"]
    assert "password" not in done.stdout.lower() or PASSWORD not in done.stdout  # never the secret itself
    assert PASSWORD not in done.stdout


def test_doctor_names_the_etcd_setting_when_the_endpoint_is_wrong(tmp_path: Path, airflow: FakeAirflow) -> None:
    """A wrong etcd endpoint is one failed check naming COORDINATOR_ETCD_ENDPOINTS / --etcd, not a traceback."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run_cli("doctor", env=cli_env(endpoint, "/coordinator", airflow.url))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"[fail] etcd: cannot reach {endpoint}" in done.stdout
    assert "COORDINATOR_ETCD_ENDPOINTS" in done.stdout and "--etcd" in done.stdout
    assert "[skip] leader" in done.stdout
    assert "Traceback" not in done.stderr


def test_status_names_the_etcd_setting_when_the_endpoint_is_wrong(tmp_path: Path) -> None:
    """Any command that cannot reach etcd says where the address comes from (COORDINATOR_ETCD_ENDPOINTS / --etcd)."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run_cli("status", env=cli_env(endpoint, "/coordinator", "http://127.0.0.1:9"))
    assert done.returncode == 1
    assert "COORDINATOR_ETCD_ENDPOINTS" in done.stderr and "--etcd" in done.stderr, done.stderr


def test_doctor_names_the_password_setting_on_a_refused_login(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """A wrong Airflow password fails the instance check and names COORDINATOR_AIRFLOW_PASSWORD(_FILE)."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    done = run_cli("doctor", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url, password="wrong"))
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("[fail] airflow default"))
    assert "401" in line, done.stdout
    assert "COORDINATOR_AIRFLOW_PASSWORD (or COORDINATOR_AIRFLOW_PASSWORD_FILE)" in done.stdout
    assert "wrong" not in done.stdout.replace("is wrong", "")  # the password itself is never printed


def test_doctor_lists_paused_dags_with_the_unpause_command(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """A paused DAG of the graph fails the DAG check with `airflow dags unpause <dag>`."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    airflow.set_paused("03_pipeline", True)
    done = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 1, done.stdout + done.stderr
    dags = checks_of(done)["dags default"]
    assert dags["status"] == "fail" and "03_pipeline" in dags["summary"]
    assert "airflow dags unpause 03_pipeline" in dags["fix"]
    assert all(airflow.creates(d) == 0 and airflow.clears(d) == 0 for d in DAGS)  # probes change nothing


def test_doctor_lists_run_states_of_an_instance_the_graph_does_not_know(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """The team_a trap: run states under an instance no graph names; doctor names it and COORDINATOR_INSTANCE."""
    seed(arun, etcd_settings, etcd_prefix, leader=True,
         runs={NodeId("team_a", "01_pipeline"): ["2026-01-01T00:00:00Z"]})  # fmt: skip
    done = run_cli("doctor", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[fail] unknown instances:" in done.stdout and "'team_a'" in done.stdout
    assert "COORDINATOR_INSTANCE" in done.stdout


def test_doctor_lists_a_bad_deadline_record_with_the_view_s_bad_values(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """An unparsable deadline record (the deadline index leaves it out) is named by doctor's values check beside an
    unparsable run state (the view's), each with its key."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    keys = KeyLayout(etcd_prefix)
    node = NodeId("default", "01_pipeline")
    deadline, run = keys.deadline_key(node, "2026-01-01T00:00:00Z"), keys.run_key(node, "2026-01-02T00:00:00Z")

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(deadline, b"{not json")
            await store.put(run, b"{not json")

    arun(write())
    done = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    values = checks_of(done)["values"]
    assert values["status"] == "warn", done.stdout + done.stderr
    assert [line.split(": ", 1)[0] for line in values["details"]] == sorted([deadline, run])


def test_status_header_says_nothing_will_be_triggered_without_a_leader(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """status with the watcher stopped starts with "no watcher is leading: nothing will be triggered"."""
    seed(
        arun,
        etcd_settings,
        etcd_prefix,
        leader=False,
        runs={NodeId("default", "01_pipeline"): ["2026-01-01T00:00:00Z"]},
    )
    done = run_cli("status", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no watcher is leading: nothing will be triggered"), done.stdout
    assert f"graph: adopted digest {GRAPH.digest}" in done.stdout and "is the same" in done.stdout


def test_status_uses_the_adopted_graph_when_the_local_file_is_invalid(
    tmp_path: Path, arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """An invalid local dependencies.json: status says so and shows the rows of the adopted graph instead of failing."""
    parts = [f"2026-01-0{d}T00:00:00Z" for d in range(1, 6)]
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={NodeId("default", "01_pipeline"): parts})
    broken = tmp_path / "dependencies.json"
    broken.write_text('{"dags": {"02_pipeline": {"upstreams": [}}', encoding="utf-8")
    done = run_cli("status", env=cli_env(etcd_endpoint, etcd_prefix, "http://127.0.0.1:9", deps=broken))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leader: host-a:123" in done.stdout
    assert "is INVALID (showing the adopted graph" in done.stdout, done.stdout
    assert "02_pipeline" in done.stdout and "2026-01-05T00:00:00Z" in done.stdout
    assert "2 more partition(s) (use --last N or -p PARTITION)" in done.stdout


def test_watcher_start_check_names_the_password_setting_and_sets_the_metric(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A watcher whose Airflow password is wrong logs one instance line naming the password setting and exports
    coordinator_instance_up{instance="default"} 0 and one check failure."""
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=DEPS, airflow_url=airflow.url,
                        airflow_username="coordinator", airflow_password="wrong", http="off")  # fmt: skip
    metrics = Metrics()

    async def go() -> Any:
        async with AsyncExitStack() as stack:
            watcher = await open_watcher(settings, stack, metrics)
            return await check_instances(watcher.presence_job.watcher)

    with caplog.at_level(logging.INFO, logger="coordinator.watcher.presence"):
        checks = arun(go())
    assert [c.instance for c in checks] == ["default"] and not checks[0].ok
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("instance.checked")]
    assert len(lines) == 1 and "ok=false" in lines[0], lines
    assert "COORDINATOR_AIRFLOW_PASSWORD" in lines[0] and "wrong" not in lines[0].replace("ok=false", "")
    assert metrics.registry.get_sample_value("coordinator_instance_up", {"instance": "default"}) == 0
    assert metrics.registry.get_sample_value("coordinator_instance_check_failures_total", {"instance": "default"}) == 1


def test_watcher_start_check_leaves_out_an_instance_nothing_uses(
    arun: Any, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A graph whose DAGs all live in team_a and team_b (the implicit instance "default" holds none) and an instances
    file naming those two: the start check asks exactly team_a and team_b, and no ERROR line mentions "default"."""
    deps = tmp_path / "dependencies.json"
    dags = {"team_a/01_pipeline": {}, "team_b/02_pipeline": {"upstreams": ["team_a/01_pipeline"]}}
    deps.write_text(json.dumps({"version": 1, "instances": {"team_a": {}, "team_b": {}}, "dags": dags}))
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "DOCTOR_TEST_AF_PASSWORD"}
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))
    os.environ["DOCTOR_TEST_AF_PASSWORD"] = PASSWORD
    try:
        settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, instances_file=instances,
                            http="off")  # fmt: skip

        async def go() -> Any:
            async with AsyncExitStack() as stack:
                watcher = await open_watcher(settings, stack, Metrics())
                return await check_instances(watcher.presence_job.watcher)

        with caplog.at_level(logging.INFO, logger="coordinator.watcher.presence"):
            checks = arun(go())
    finally:
        del os.environ["DOCTOR_TEST_AF_PASSWORD"]
    assert [c.instance for c in checks] == ["team_a", "team_b"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [line for line in errors if "default" in line], errors


@pytest.mark.airflow
def test_check_plugin_gives_up_fast_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    """check-plugin against a wrong etcd endpoint exits 1 with ONE error line naming COORDINATOR_ETCD_ENDPOINTS and
    no retry log (etcd is asked once per endpoint before the writer would retry for the whole timeout)."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = cli_env(endpoint, "/coordinator", "http://127.0.0.1:9")
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False", TMPDIR=str(tmp_path))
    done = run_cli("check-plugin", env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"did not reach etcd at {endpoint}" in errors[0], done.stderr
    assert "COORDINATOR_ETCD_ENDPOINTS" in errors[0]
    assert "etcd.retry" not in done.stderr and "plugin.write_retry" not in done.stderr, done.stderr


@pytest.mark.airflow
def test_check_plugin_warns_when_its_instance_is_not_in_the_adopted_graph(
    tmp_path: Path, arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """check-plugin --instance team_a with a graph that names only default: it writes, then warns that no watcher
    reads team_a and names COORDINATOR_INSTANCE; plugin.writer_stopped is logged once."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    env = cli_env(etcd_endpoint, etcd_prefix, "http://127.0.0.1:9")
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False", TMPDIR=str(tmp_path))
    done = run_cli("check-plugin", "--instance", "team_a", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plugin OK: wrote" in done.stdout
    assert "instance 'team_a' is not in the graph adopted" in done.stdout and "COORDINATOR_INSTANCE" in done.stdout
    both = done.stdout + done.stderr
    assert both.count("plugin.writer_stopped") == 1, both


def test_a_running_watchers_failed_start_check_shows_in_status_and_doctor(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """A watcher started with a wrong Airflow password keeps running; its failed start check (naming the password
    setting) shows in `status` and in `doctor`, which also sees it as the leader; no trigger or clear was sent."""
    env = cli_env(etcd_endpoint, etcd_prefix, airflow.url, password="wrong")
    log = (tmp_path / "watcher.log").open("w")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "watch", "--http", "off", "--id", "w-wrong-password"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        status = run_cli("status", env=env)
        while "failed its start check" not in status.stdout and time.monotonic() < deadline:
            assert watcher.poll() is None, (tmp_path / "watcher.log").read_text()
            time.sleep(0.3)
            status = run_cli("status", env=env)
        assert "leader: w-wrong-password" in status.stdout, status.stdout
        assert "watcher w-wrong-password: Airflow instance default failed its start check" in status.stdout
        assert "COORDINATOR_AIRFLOW_PASSWORD" in status.stdout
        doctor = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
        checks = checks_of(doctor)
        assert checks["leader"]["status"] == "ok" and "w-wrong-password" in checks["leader"]["summary"]
        # doctor's own settings are right, but the watcher's are not: the instance check fails on the watcher's note
        assert checks["airflow default"]["status"] == "fail", checks["airflow default"]
        assert any("watcher w-wrong-password at start" in d for d in checks["airflow default"]["details"])
        assert watcher.poll() is None, "the watcher stopped on a failed instance check"
        logged = (tmp_path / "watcher.log").read_text()
        assert logged.count("instance.checked instance=default ok=false") == 1, logged
    finally:
        watcher.terminate()
        try:
            watcher.wait(timeout=20)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait(timeout=10)
        log.close()
    assert all(airflow.creates(d) == 0 and airflow.clears(d) == 0 for d in DAGS)


def test_status_shows_one_state_for_a_rerun_that_has_not_started(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """During a rerun (02 cleared after a new 01 success, its new attempt not started) the row says "rerun requested"
    with one reason, not "success", "stale" and "has not started yet" at once; JSON keeps the raw parts."""
    p = "2026-01-01T00:00:00Z"
    keys = KeyLayout(etcd_prefix)
    up, down = NodeId("default", "01_pipeline"), NodeId("default", "02_pipeline")
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={up: [p], down: [p]})

    async def rerun() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            again = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{p}", clear_number=1)
            rev = await store.put(keys.run_key(up, p), dump_record(again))
            intent = TriggerRecord(
                status=TriggerStatus.DONE, action=TriggerAction.CLEAR, run_id=f"scheduled__{p}",
                inputs={up.qualified: rev}, cause_rev=rev, intent_rev=rev + 1, trigger_count=2,
            )  # fmt: skip
            await store.put(keys.trigger_key(down, p), dump_record(intent))

    arun(rerun())
    env = cli_env(etcd_endpoint, etcd_prefix, "http://127.0.0.1:9")
    text = run_cli("status", "-p", p, env=env)
    assert text.returncode == 0, text.stderr
    row = next(line for line in text.stdout.splitlines() if "02_pipeline" in line and p in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[3] == "rerun requested" and "triggered at revision" in cells[4], row  # one state, one reason
    assert "success" not in row and "stale" not in row, row
    as_json = json.loads(run_cli("status", "--format", "json", "-p", p, env=env).stdout)
    (raw,) = [r for r in as_json["rows"] if r["dag"] == "02_pipeline"]
    assert (raw["status"], raw["state"], raw["fresh"]) == ("rerun requested", "success", False)


def test_version_flag_prints_the_installed_version() -> None:
    """`coordinator --version` prints the package version and exits 0."""
    from coordinator import __version__

    done = run_cli("--version", env=dict(os.environ))
    assert (done.returncode, done.stdout.strip()) == (0, f"coordinator {__version__}")


def test_plugin_logs_one_coordinator_line_per_job_start_and_none_per_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener's on_starting hook logs one coordinator.plugin_started line (instance, prefix, etcd; no secret)
    for a scheduler job, and nothing for a task process."""
    from coordinator.airflow_plugin.hooks import announce_start
    from coordinator.airflow_plugin.writer import install_writer

    class Job:  # what Airflow passes: its Job, before the runner sets job_type
        job_type = None
        hostname = "sched-1"

    class TaskRunnerMarker:  # what the Task SDK passes for a task process
        pass

    monkeypatch.setenv("COORDINATOR_ETCD_ENDPOINTS", "http://etcd-a:2379")
    monkeypatch.setenv("COORDINATOR_PREFIX", "/team")
    monkeypatch.setenv("COORDINATOR_INSTANCE", "team_a")
    monkeypatch.setenv("COORDINATOR_ETCD_USERNAME", "plugin")
    monkeypatch.setenv("COORDINATOR_ETCD_PASSWORD", "s3cret-value")
    previous = install_writer(None)  # None: the next get_writer reads the environment above
    try:
        with caplog.at_level(logging.INFO, logger="coordinator.airflow_plugin.hooks"):
            announce_start(Job())
            announce_start(TaskRunnerMarker())
    finally:
        install_writer(previous)
    lines = [r.getMessage() for r in caplog.records if "plugin_started" in r.getMessage()]
    assert lines == [
        "coordinator.plugin_started component=Job@sched-1 instance=team_a prefix=/team etcd=http://etcd-a:2379 "
        "etcd_user=plugin"
    ]
    assert "s3cret-value" not in caplog.text


def test_a_refused_login_names_the_instances_file_fields(tmp_path: Path, airflow: FakeAirflow, arun: Any) -> None:
    """An instance from the instances file whose password is wrong: the 401 names that instance's fields and file."""
    from coordinator.airflow.client import AirflowClient
    from coordinator.errors import AirflowAuthError
    from coordinator.runtime.settings import load_instances_file

    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"team_b": {"url": airflow.url, "username": "coordinator", "password_env": "PW_B"}}))
    os.environ["PW_B"] = "wrong"
    try:
        settings = load_instances_file(path)["team_b"]
    finally:
        del os.environ["PW_B"]

    async def go() -> None:
        async with AirflowClient(settings, name="team_b") as client:
            await client.dags()

    with pytest.raises(AirflowAuthError) as raised:
        arun(go())
    message = str(raised.value)
    assert "401" in message and "password_env/password_file of 'team_b'" in message and str(path) in message
    assert "wrong" not in message


def test_doctor_checks_the_etcd_users_permissions_without_writing(
    private_etcd: EtcdServer, tmp_path: Path, airflow: FakeAirflow
) -> None:
    """With etcd auth on: a user that may only read the prefix (doctor's own role) gets a warning that the watcher
    and prune need more, naming `coordinator roles` (asked with a transaction that writes nothing); a wrong password
    names the etcd credential settings."""
    etcdctl = [str(private_etcd.binary.with_name("etcdctl")), f"--endpoints={private_etcd.endpoint}"]

    def ctl(*args: str) -> None:
        subprocess.run([*etcdctl, *args], check=True, capture_output=True, timeout=30)

    ctl("role", "add", "root")
    ctl("user", "add", "root", "--new-user-password=root-pw")
    ctl("user", "grant-role", "root", "root")
    ctl("role", "add", "reader")
    ctl("role", "grant-permission", "reader", "read", "--prefix=true", "/coordinator/")
    ctl("user", "add", "reader", "--new-user-password=reader-pw")
    ctl("user", "grant-role", "reader", "reader")
    ctl("auth", "enable")
    env = cli_env(private_etcd.endpoint, "/coordinator", airflow.url)
    env.update(COORDINATOR_ETCD_USERNAME="reader", COORDINATOR_ETCD_PASSWORD="reader-pw")
    done = run_cli("doctor", "--format", "json", env=env)
    checks = checks_of(done)
    assert checks["etcd"]["status"] == "ok", checks["etcd"]
    perms = checks["etcd permissions"]
    assert perms["status"] == "warn" and "may read /coordinator/ but not write it" in perms["summary"], perms
    assert "coordinator roles" in perms["fix"]
    keys = subprocess.run([*etcdctl, "--user=root:root-pw", "get", "--prefix", "--keys-only", "/"],
                          check=True, capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    assert keys.strip() == "", keys  # the write probe wrote nothing
    env.update(COORDINATOR_ETCD_PASSWORD="not-the-password")
    wrong = checks_of(run_cli("doctor", "--format", "json", env=env))["etcd"]
    assert wrong["status"] == "fail" and "authentication failed" in wrong["summary"]
    assert "COORDINATOR_ETCD_PASSWORD" in wrong["fix"] and "not-the-password" not in json.dumps(wrong)


def test_reconcile_once_passes_count_as_a_watcher_between_passes(
    etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """The 00_watcher mode: after a `reconcile` pass nobody leads, but doctor's leader check passes and status
    says the next pass triggers what is due, instead of "nothing will be triggered"."""
    env = cli_env(etcd_endpoint, etcd_prefix, airflow.url)
    done = run_cli("reconcile", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    leader = checks_of(run_cli("doctor", "--format", "json", env=env))["leader"]
    assert leader["status"] == "ok" and "last `reconcile` pass" in leader["summary"], leader
    status = run_cli("status", env=env)
    assert status.stdout.startswith("no watcher leads between passes"), status.stdout
    assert "nothing will be triggered" not in status.stdout
