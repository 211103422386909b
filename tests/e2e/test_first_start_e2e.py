"""The proof of concept's third story on a fresh install (semantics rule 9), on a real Airflow 3.3 of its own: upstream
runs finish before any watcher ever ran under the prefix; enabling ``dags/00_watcher.py`` (the file itself, on a
10 s schedule) then runs the dependents once each, in order; the same holds for ``coordinator watch`` started for the
first time after the root succeeded.

This module starts its own Airflow because the session's Airflow writes to a prefix whose graph other modules adopt;
here the prefix must start with no graph adopted. The second story makes the prefix "never adopted" again by deleting
``{prefix}/config/graph`` (that key's absence is exactly what a first adoption is) and keeps the ledger, which also
shows that a first adoption never repeats work already done.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.core.model import RunState, run_id_for
from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from devtools.procs import free_port
from tests.e2e.harness import E2E, PIPELINES, REPO, UPSTREAMS, assert_started_after, parse_time, wait_for
from tests.e2e.settle import wait_settled

pytestmark = pytest.mark.e2e

DOWNSTREAM = PIPELINES[1:]
WATCHER_DAG = "00_watcher"
#: Three levels (02..05, 06, 07), each waiting for the next 10 s pass plus a task start: ~1 min; bound for a hang.
CASCADE_TIMEOUT_S = 240.0
#: Longer than one watcher-DAG interval: were the pause ignored, the scheduler would create the DAG's run at its next
#: loop (catchup off, the DAG parsed before the fixture yields), and no watcher-DAG run is asserted below.
PAUSED_QUIET_S = 10.0
#: Bounds one whole watcher-DAG pass: the 10 s interval, the task's start-up and its pass, on a loaded machine.
PASS_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def fresh(
    etcd_server: EtcdServer, airflow_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    """An Airflow with the example DAGs and 00_watcher (paused) on a new prefix; stopped by PID, even on failure."""
    base = tmp_path_factory.mktemp("first_start")
    dags = base / "dags"
    dags.mkdir()
    for name in [f"{dag}.py" for dag in (WATCHER_DAG, *PIPELINES)] + ["example_pipeline.py"]:
        shutil.copy2(REPO / "dags" / name, dags / name)
    deps = base / "dependencies.json"
    shutil.copy2(REPO / "dependencies.json", deps)  # the proof of concept's own graph, shorthand form
    port = free_port()
    home = base / "airflow"
    stack = AirflowStack(
        home=home,
        dags_folder=dags,
        etcd_endpoints=etcd_server.endpoint,
        prefix=f"/first-{uuid.uuid4().hex[:8]}",
        port=port,
        database_url=airflow_database("first_start"),
        extra_env={
            "PIPELINE_01_SCHEDULE": "none",
            # What the watcher DAG's task needs, from the workers' environment (as a user would configure it).
            "COORDINATOR_WATCHER_SCHEDULE": "10s",
            "COORDINATOR_DEPS": str(deps),
            "COORDINATOR_AIRFLOW_URL": f"http://127.0.0.1:{port}",
            "COORDINATOR_AIRFLOW_USERNAME": "admin",
            "COORDINATOR_AIRFLOW_PASSWORD_FILE": str(home / "admin_password"),
            "COORDINATOR_MAX_CONCURRENT_ACTIONS": "1",  # SQLite: see E2E.watcher_env
        },
    )
    env = E2E(stack=stack, etcd_endpoint=etcd_server.endpoint, prefix=stack.prefix, work_dir=base)
    try:
        stack.start()
        stack.wait_for_dags([WATCHER_DAG, *PIPELINES])
        stack.unpause(PIPELINES)  # every DAG except the watcher, as the story says
        print(f"\nfirst-start airflow up in {stack.started_in_s:.1f} s at {stack.url}, database {stack.database}")
        yield env
    finally:
        env.stop_watchers()
        stack.stop()


def watcher_dag_runs(stack: AirflowStack) -> list[dict[str, object]]:
    status, body = stack.request("GET", f"/api/v2/dags/{WATCHER_DAG}/dagRuns?limit=100")
    assert status == 200, body
    runs: list[dict[str, object]] = body["dag_runs"]
    return runs


def set_paused(stack: AirflowStack, paused: bool) -> None:
    status, body = stack.request("PATCH", f"/api/v2/dags/{urllib.parse.quote(WATCHER_DAG)}", {"is_paused": paused})
    assert status == 200, body


#: Task instance states of a run whose task has not started: a paused DAG's scheduler never queues them.
NOT_STARTED = (None, "none", "scheduled")


def stop_the_watcher_dag(stack: AirflowStack) -> None:
    """Pause the watcher DAG and wait until none of its runs is queued or running. A run the scheduler created just
    before the pause never starts its task (Airflow schedules no task of a paused DAG) and would stay running for
    ever: one whose task instances have not started is marked failed, as an operator would; a started task ends on
    its own."""
    set_paused(stack, True)

    def ended() -> bool | None:
        active = [r for r in watcher_dag_runs(stack) if r["state"] in ("queued", "running")]
        for run in active:
            run_path = f"/api/v2/dags/{WATCHER_DAG}/dagRuns/{urllib.parse.quote(str(run['dag_run_id']))}"
            status, body = stack.request("GET", f"{run_path}/taskInstances")
            assert status == 200, body
            if all(ti["state"] in NOT_STARTED for ti in body["task_instances"]):
                status, body = stack.request("PATCH", run_path, {"state": "failed"})
                assert status == 200, body
        return not active or None

    wait_for(ended, 120, "the watcher DAG's last run to end")


def root_succeeds(env: E2E, label: str) -> str:
    partition, run_id = env.new_partition(), env.run_id(label)
    env.stack.trigger("01_pipeline", run_id, partition)
    env.stack.wait_for_run("01_pipeline", run_id, ["success"], timeout_s=90)
    env.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS, what="success")
    return partition


def assert_cascaded_once(env: E2E, partition: str) -> None:
    """Each of 02..07 ran exactly once for ``partition`` (Airflow's own records), each after its upstreams ended."""
    runs = {dag_id: env.only_run(dag_id, partition) for dag_id in PIPELINES}
    for dag_id in DOWNSTREAM:
        assert runs[dag_id].run_id == run_id_for(partition) and runs[dag_id].state == "success", runs[dag_id]
        assert_started_after(runs[dag_id], (runs[u] for u in UPSTREAMS[dag_id]))
        ledger = env.read_ledger(dag_id, partition)
        assert ledger is not None and ledger.trigger_count == 1, (dag_id, ledger)


def wait_for_a_pass_after(stack: AirflowStack, after: datetime) -> None:
    """Until a watcher-DAG run that started after ``after`` has ended: one whole pass that saw everything written
    before ``after``, so a duplicate it would trigger shows now (an event, not a fixed sleep)."""

    def ended() -> bool:
        for run in watcher_dag_runs(stack):
            started = parse_time(str(run["start_date"])) if run.get("start_date") else None
            if started is not None and started > after and run["state"] in ("success", "failed"):
                assert run["state"] == "success", run
                return True
        return False

    wait_for(ended, PASS_TIMEOUT_S, f"a whole {WATCHER_DAG} run started after {after.isoformat()}", interval_s=0.5)


def task_log_lines(home: Path, needle: str) -> list[str]:
    found: list[str] = []
    for path in (home / "logs").glob(f"dag_id={WATCHER_DAG}/**/*.log"):
        found += [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if needle in line]
    return found


def test_watcher_dag_enabled_after_the_root_succeeded_runs_the_cascade_once(fresh: E2E) -> None:
    """Paused 00_watcher: nothing runs; enabled: each dependent runs once, in order, and again once after a clear.
    Slow by design: each of the three levels, twice, waits for the watcher DAG's next pass on its real 10 s schedule."""
    partition = root_succeeds(fresh, "before-watcher-dag")
    time.sleep(PAUSED_QUIET_S)
    assert all(fresh.runs(dag_id, partition) == [] for dag_id in DOWNSTREAM)
    assert watcher_dag_runs(fresh.stack) == []
    assert fresh.read_key(fresh.keys.config_key("graph")) is None, "no graph adopted while no watcher ran"

    set_paused(fresh.stack, False)
    enabled = time.monotonic()
    fresh.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=CASCADE_TIMEOUT_S, what="success"
    )
    print(f"\nwatcher DAG (10 s schedule): enabled -> 07 success in {time.monotonic() - enabled:.1f} s")
    wait_for_a_pass_after(fresh.stack, datetime.now(UTC))
    assert_cascaded_once(fresh, partition)
    assert json.loads(fresh.read_key(fresh.keys.config_key("graph")) or b"{}")["nodes"], "the first pass adopted"
    # The pass that adopted the graph said so in one line of its task log.
    assert task_log_lines(fresh.stack.home, "first adoption with history (auto): 4 run(s)"), "no adoption line"
    assert task_log_lines(fresh.stack.home, f"create 02_pipeline {partition}")

    # The second story, with the watcher DAG: clearing the root reruns every dependent once (same runs, cleared).
    fresh.stack.clear("01_pipeline", fresh.only_run("01_pipeline", partition).run_id)
    fresh.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
        timeout_s=CASCADE_TIMEOUT_S, what="rerun success",
    )  # fmt: skip
    wait_for_a_pass_after(fresh.stack, datetime.now(UTC))
    set_paused(fresh.stack, True)
    for dag_id in DOWNSTREAM:
        record, _ = fresh.read_run(dag_id, partition)
        ledger = fresh.read_ledger(dag_id, partition)
        assert record is not None and record.clear_number == 1, (dag_id, record)
        assert ledger is not None and ledger.trigger_count == 2, (dag_id, ledger)
        assert len(fresh.runs(dag_id, partition)) == 1, dag_id


def test_first_watcher_service_after_the_root_succeeded_runs_the_cascade_once(fresh: E2E) -> None:
    """`coordinator watch` started for the first time after the root succeeded cascades once; done work is kept."""
    stop_the_watcher_dag(fresh.stack)
    fresh.delete_key(fresh.keys.config_key("graph"))  # what "no watcher ever ran here" is
    partition = root_succeeds(fresh, "before-service")
    time.sleep(5.0)  # no watcher of any kind runs now: a quiet period is the only evidence there is
    assert all(fresh.runs(dag_id, partition) == [] for dag_id in DOWNSTREAM)
    ledger_before = fresh.revisions(fresh.keys.triggers)

    deps = fresh.work_dir / "dependencies.json"
    started = time.monotonic()
    fresh.start_watcher(deps, "--id", "first-service", name="first-service")
    fresh.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=150, what="success"
    )
    print(f"\nfirst service start -> 07 success in {time.monotonic() - started:.1f} s")
    wait_settled(fresh.work_dir / "first-service.log", fresh.read_run("07_pipeline", partition)[1])
    assert_cascaded_once(fresh, partition)
    ledger_after = fresh.revisions(fresh.keys.triggers)
    rewritten = {key for key, rev in ledger_before.items() if ledger_after.get(key) != rev}
    assert not rewritten, f"a first adoption repeated work already done: {sorted(rewritten)}"
    log = (fresh.work_dir / "first-service.log").read_text(encoding="utf-8")
    assert "graph.adopted" in log and "first=True" in log, log[-2000:]
