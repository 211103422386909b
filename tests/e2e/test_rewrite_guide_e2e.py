"""The migration guide (docs/howto/external-task-sensor.md, "Convert, review, adopt"), executed: its commands run as
written on a folder of scheduled DAGs with an ExternalTaskSensor (``tests/e2e/dags_rewrite/``), the rewritten DAGs
load into the session's real Airflow 3.3, the converted file is adopted, and the dependent's own scheduled run waits
deferred, runs once after the upstream succeeds, and nothing moves afterwards over several audit passes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.core.model import RunState, canonical_partition
from tests.e2e.harness import E2E, REPO, task_runs, wait_for_audit_passes
from tests.e2e.test_multi_instance_e2e import all_runs, scheduled_run, wait_state

pytestmark = pytest.mark.e2e

GUIDE = REPO / "docs" / "howto" / "external-task-sensor.md"
FOLDER = Path(__file__).resolve().parent / "dags_rewrite"
UP, DAILY = "e2e_rewrite_up", "e2e_rewrite_daily"
#: The audit's interval here: a few passes within seconds, to see that none of them moves anything.
AUDIT_S = 3
QUIET_PASSES = 3


def guide_commands() -> list[str]:
    """The commands of the guide's first console block under "Convert, review, adopt", as a user types them."""
    section = GUIDE.read_text(encoding="utf-8").split("## Convert, review, adopt", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    assert commands, f"{GUIDE}: the guide's commands are missing"
    return commands


def run_guide(work: Path) -> None:
    """Each command in ``work`` (``coordinator`` is this repository's CLI), Airflow isolated in a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COORDINATOR_"))}
    env |= {"AIRFLOW_HOME": str(work / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": str(REPO)}  # fmt: skip
    for command in guide_commands():
        argv = shlex.split(command)
        if argv[0] == "coordinator":
            argv = [sys.executable, "-m", "coordinator.cli", *argv[1:]]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"$ {command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def test_the_guide_converts_a_scheduled_dependent_that_then_waits_deferred_and_runs_once(e2e: E2E) -> None:
    """The guide's commands rewrite the sensor into the wait (schedule kept, "runs": "scheduled"); in Airflow the
    dependent's scheduled run waits deferred, the upstream's scheduled run succeeds, the permit opens the wait once,
    the run succeeds with its own data interval, the coordinator makes no run, and over three audit passes no run,
    ledger or permit moves."""
    work = e2e.work_dir / "rewrite-guide"
    shutil.copytree(FOLDER, work / "dags")
    run_guide(work)
    rewritten = (work / "dags" / f"{DAILY}.py").read_text(encoding="utf-8")
    assert "WaitForPermitOperator(" in rewritten and "ExternalTaskSensor(" not in rewritten
    assert "timeout=600,  # ten minutes, then the run fails" in rewritten and "poke_interval" not in rewritten
    deps = work / "dependencies.json"
    graph = json.loads(deps.read_text(encoding="utf-8"))["dags"]
    assert graph[DAILY]["runs"] == "scheduled" and graph[DAILY]["upstreams"] == [{"dag": UP, "task": "load"}]

    # Deploy: the rewritten files into the Airflow's DAGs folder (new DAGs are paused), the file to a watcher.
    for name in (f"{UP}.py", f"{DAILY}.py"):
        shutil.copy2(work / "dags" / name, e2e.stack.dags_folder / name)
    e2e.stack.wait_for_dags([UP, DAILY])
    e2e.start_watcher(
        deps, "--id", "rewrite-watcher", name="rewrite-watcher", COORDINATOR_AUDIT_INTERVAL_S=str(AUDIT_S)
    )
    e2e.wait_for_leader(deps, "rewrite-watcher")
    e2e.wait_for_named_tasks()

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=1)
    partition = canonical_partition(day)
    permit_key = f"{e2e.prefix}/permits/{e2e.stack.instance}/{DAILY}/{partition}"
    e2e.stack.unpause([DAILY])
    run = scheduled_run(e2e.stack, DAILY, day)
    wait_state(e2e.stack, DAILY, run, "wait_for_load", "deferred")
    assert e2e.read_key(permit_key) is None

    e2e.stack.unpause([UP])
    up_run = scheduled_run(e2e.stack, UP, day)
    e2e.stack.wait_for_run(UP, up_run, ["success"], timeout_s=120)
    done = e2e.stack.wait_for_run(DAILY, run, ["success"], timeout_s=120)
    interval = (done["data_interval_start"][:10], done["data_interval_end"][:10])
    assert interval == (f"{day:%Y-%m-%d}", f"{today:%Y-%m-%d}"), done  # its own timetable's [D, D + 1 day)
    # A second try only when Airflow 3.3.2 failed the deferred wait in its own race (docs: the wait's retry).
    assert task_runs(e2e.stack, DAILY, run)["wait_for_load"].try_number in (1, 2)
    permit = json.loads(e2e.read_key(permit_key) or b"{}")
    assert (permit["granted"], permit["generation"]) == (True, 1), permit
    assert [r.run_id for r in all_runs(e2e.stack, DAILY)] == [run], "the coordinator made a run of a scheduled DAG"

    # Nothing moves afterwards: the run states, the ledger and the permit stay as they are over three audit passes.
    e2e.wait_for_run_record(DAILY, partition, lambda r: r.state is RunState.SUCCESS, 60, "the dependent's success")
    watched = [e2e.keys.run_key(e2e.stack_node(d), partition) for d in (UP, DAILY)] + [permit_key]
    before = {key: e2e.revisions(key).get(key) for key in watched}
    ledger = e2e.read_ledger(DAILY, partition)
    log = e2e.work_dir / "rewrite-watcher.log"
    wait_for_audit_passes(log, QUIET_PASSES, AUDIT_S, f"{QUIET_PASSES} audit passes")
    assert {key: e2e.revisions(key).get(key) for key in watched} == before
    assert e2e.read_ledger(DAILY, partition) == ledger
    assert [r.run_id for r in all_runs(e2e.stack, DAILY)] == [run]
    assert "audit.repaired" not in log.read_text(encoding="utf-8", errors="replace")
