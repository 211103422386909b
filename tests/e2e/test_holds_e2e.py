"""Holds on two real Airflow deployments (issue 51): a ``--downstream`` hold on default/01_pipeline keeps
team_b/02_pipeline and default/e2e_dependent from starting while 01 runs twice; a leader killed with kill -9 while
holding changes nothing; the release starts each held run once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.core.model import RunState
from devtools.airflow_stack import AirflowStack
from tests.e2e.harness import E2E
from tests.e2e.settle import wait_settled
from tests.e2e.test_multi_instance_e2e import GRAPH, RERUN, start_two_instance_watcher
from tests.e2e.test_multi_instance_e2e import team_b as team_b

pytestmark = pytest.mark.e2e

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
