"""Holds and reruns on two real Airflow deployments (issue 51): a ``--downstream`` hold on default/01_pipeline keeps
team_b/02_pipeline and default/e2e_dependent from starting while 01 runs twice; a leader killed with kill -9 while
holding changes nothing; the release starts each held run once. On the seven-DAG example across both deployments,
``plan rerun`` lists exactly the runs a real ``rerun`` then clears or creates in both Airflows, and ``rerun
--no-cascade`` reruns the root and nothing below it. The second Airflow is the session's ``team_b``
(tests/e2e/conftest.py), started once for this module and test_multi_instance_e2e.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.model import RunState
from devtools.airflow_stack import AirflowStack
from tests.e2e.harness import E2E
from tests.e2e.settle import wait_settled
from tests.e2e.test_multi_instance_e2e import GRAPH, RERUN, start_two_instance_watcher

pytestmark = pytest.mark.e2e

#: The seven-DAG example (dependencies.json) across the two deployments: 02_pipeline is team_b's (the DAG the second
#: Airflow has), so the cascade crosses to team_b and back into the fan-in 06.
SEVEN: dict[str, Any] = {
    "version": 1,
    "instances": {"team_b": {"description": "the second Airflow"}},
    "dags": {
        "team_b/02_pipeline": {"upstreams": "default/01_pipeline"},
        **{dag: {"upstreams": "01_pipeline"} for dag in ("03_pipeline", "04_pipeline", "05_pipeline")},
        "06_pipeline": {"upstreams": ["team_b/02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"]},
        "07_pipeline": {"upstreams": "06_pipeline"},
    },
}
#: (instance, dag) of the seven, with the depth below the root each is at.
DEPTHS = {("default", "01_pipeline"): 0, ("team_b", "02_pipeline"): 1, ("default", "03_pipeline"): 1,
          ("default", "04_pipeline"): 1, ("default", "05_pipeline"): 1, ("default", "06_pipeline"): 2,
          ("default", "07_pipeline"): 3}  # fmt: skip
#: After a root success, how long the held dependents must stay without a run (several passes of the watcher).
HELD_S = 5.0


def coordinator(e2e: E2E, deps: Path, *words: str) -> str:
    """``coordinator <words>`` against the session's etcd and prefix; its stdout (exit 0 asserted)."""
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", *words], env=e2e.watcher_env(deps),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, (words, done.stdout, done.stderr)
    return done.stdout


def test_a_downstream_hold_keeps_both_deployments_back_through_two_root_runs_and_a_kill9(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """default/01 succeeds twice under a --downstream hold and the leader is killed with SIGKILL: no run of
    team_b/02_pipeline nor of default/e2e_dependent; after the release each runs exactly once, on 01's second
    success."""
    deps = e2e.write_dependencies(GRAPH, name="holds.json")
    first = start_two_instance_watcher(e2e, team_b, deps, "e2e-holds", "--leader-ttl", "3")
    e2e.wait_for_leader(deps, "e2e-holds")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-holds-standby", "--leader-ttl", "3")
    partition, run_id = e2e.new_partition(), e2e.run_id("holds")
    out = coordinator(e2e, deps, "hold", "01_pipeline", "--downstream", "--from", partition, "--to", partition,
                      "--reason", "bad customer data in 01", "--by", "alice")  # fmt: skip
    hold_id = out.split()[1].rstrip(":")

    e2e.stack.trigger("01_pipeline", run_id, partition)
    e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS, 120, "success")
    e2e.stack.clear("01_pipeline", run_id)  # the root reruns while held
    e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
                            120, "the rerun's success")  # fmt: skip
    first.send_signal(signal.SIGKILL)  # kill -9 while holding: the standby takes over
    first.wait(10)
    e2e.wait_for_leader(deps, "e2e-holds-standby")
    time.sleep(HELD_S)
    assert e2e.runs("02_pipeline", partition, stack=team_b) == []
    assert e2e.runs("e2e_dependent", partition) == []
    for dag_id, instance in RERUN:
        assert e2e.read_ledger(dag_id, partition, instance) is None, (instance, dag_id)

    coordinator(e2e, deps, "release-hold", hold_id, "--reason", "reloaded", "--by", "alice")
    for dag_id, instance in RERUN:
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, 120, "success after the "
                                "release", instance=instance)  # fmt: skip
    last = max(e2e.read_run(dag_id, partition, instance)[1] for dag_id, instance in RERUN)
    wait_settled(e2e.work_dir / "e2e-holds-standby-watcher.log", last)
    assert len(e2e.runs("02_pipeline", partition, stack=team_b)) == 1
    assert len(e2e.runs("e2e_dependent", partition)) == 1
    for dag_id, instance in RERUN:
        ledger = e2e.read_ledger(dag_id, partition, instance)
        assert ledger is not None and ledger.trigger_count == 1, (instance, dag_id, ledger)


def airflow_runs(e2e: E2E, team_b: AirflowStack, partition: str) -> dict[tuple[str, str], list[tuple[str, Any]]]:
    """(instance, dag) -> each run of the partition as both Airflows' REST APIs list it: (run id, start date)."""
    stacks = {"default": e2e.stack, "team_b": team_b}
    return {(i, d): [(r.run_id, r.start_date) for r in e2e.runs(d, partition, stack=stacks[i])] for i, d in DEPTHS}


def effects(
    before: dict[tuple[str, str], list[tuple[str, Any]]], after: dict[tuple[str, str], list[tuple[str, Any]]]
) -> set[tuple[str, str, str]]:
    """(instance, dag, create|clear) for each DAG whose run appeared (create) or started again (clear)."""
    found = set()
    for at, runs in after.items():
        assert len(runs) <= 1, (at, runs)  # Airflow allows one run per logical date
        if runs and not before[at]:
            found.add((*at, "create"))
        elif runs and runs != before[at]:
            found.add((*at, "clear"))
    return found


def settle_all(e2e: E2E, partition: str, log: str) -> None:
    """Until the leader had an idle pass after the newest run record of the seven."""
    last = max(e2e.read_run(dag, partition, instance)[1] for instance, dag in DEPTHS)
    wait_settled(e2e.work_dir / log, last)


def test_plan_rerun_lists_the_runs_a_real_rerun_clears_and_no_cascade_reruns_the_root_only(
    e2e: E2E, team_b: AirflowStack
) -> None:
    """On the seven-DAG example across both deployments: the preview's runs (instance, DAG, step) are exactly the runs
    both Airflows' REST APIs show cleared or created by the real rerun, each once; then `rerun --no-cascade` clears
    the root and no run below it starts again in either Airflow."""
    deps = e2e.write_dependencies(SEVEN, name="rerun.json")
    start_two_instance_watcher(e2e, team_b, deps, "e2e-rerun")
    e2e.wait_for_leader(deps, "e2e-rerun")
    partition = e2e.new_partition()
    e2e.stack.trigger("01_pipeline", e2e.run_id("rerun"), partition)
    e2e.wait_for_run_record("07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, 240, "the cascade")
    settle_all(e2e, partition, "e2e-rerun-watcher.log")
    span = ("01_pipeline", "--from", partition, "--to", partition)

    planned = json.loads(coordinator(e2e, deps, "plan", "rerun", *span, "--format", "json"))
    assert {((r["instance"], r["dag"]), r["depth"]) for r in planned["runs"]} == set(DEPTHS.items()), planned
    listed = {(r["instance"], r["dag"], r["step"]) for r in planned["runs"]}
    before = airflow_runs(e2e, team_b, partition)
    coordinator(e2e, deps, "rerun", *span, "--yes")
    e2e.wait_for_run_record("07_pipeline", partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
                            240, "the rerun's cascade")  # fmt: skip
    settle_all(e2e, partition, "e2e-rerun-watcher.log")
    assert effects(before, airflow_runs(e2e, team_b, partition)) == listed
    for instance, dag in DEPTHS:
        record, _ = e2e.read_run(dag, partition, instance)
        assert record is not None and record.clear_number == 1, (instance, dag, record)  # cleared once, not twice

    planned = json.loads(coordinator(e2e, deps, "plan", "rerun", *span, "--no-cascade", "--format", "json"))
    assert [(r["instance"], r["dag"], r["step"]) for r in planned["runs"]] == [("default", "01_pipeline", "clear")]
    ledgers = {at: e2e.read_ledger(at[1], partition, at[0]) for at in DEPTHS}
    before = airflow_runs(e2e, team_b, partition)
    coordinator(e2e, deps, "rerun", *span, "--no-cascade", "--yes")
    e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 2,
                            120, "the root's rerun")  # fmt: skip
    settle_all(e2e, partition, "e2e-rerun-watcher.log")
    time.sleep(HELD_S)  # several more passes: nothing below may start late
    assert effects(before, airflow_runs(e2e, team_b, partition)) == {("default", "01_pipeline", "clear")}
    assert {at: e2e.read_ledger(at[1], partition, at[0]) for at in DEPTHS} == ledgers
