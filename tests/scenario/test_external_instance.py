"""The OpenLineage worked example of docs/howto/openlineage.md, green in the coordinator's own tools: its dbt
instance ``analytics`` has no Airflow (``"kind": "external"``), so ``validate --airflow``, ``doctor`` and the watcher
ask it nothing, and the watcher still triggers ``team_b/report`` once both models' OpenLineage runs succeeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openlineage.client.event_v2 import RunState

from coordinator.core.model import canonical_partition
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id
from tests.scenario.conftest import Stack, wait_for
from tests.support.fake_airflow import FakeAirflow
from tests.support.openlineage_example import WHY, example

#: The docs' worked example (docs/howto/openlineage.md) and its `why` line, read from the page.
EXAMPLE = example()


def run(stack: Stack, words: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``coordinator WORDS`` with the stack's environment (no etcd flags: validate takes none)."""
    return stack.command(*words, **env)


def test_the_worked_example_asks_its_external_instance_nothing_and_still_triggers_report(
    stack: Stack, tmp_path: Path
) -> None:
    """With analytics external and only team_b's Airflow configured, validate --airflow and doctor pass; with a stale
    URL configured for analytics too, the watcher logs no error and sends that URL no request; two successful models
    trigger report once for the partition the README's `why` command computes."""
    stack.fake.add_dag("report")
    stack.set_deps(EXAMPLE)
    with FakeAirflow(["orders", "customers"]) as stale:
        login = {"username": "admin", "password_env": "COORDINATOR_AIRFLOW_PASSWORD"}
        instances = tmp_path / "instances.json"  # what the README's user has: an Airflow for team_b only
        instances.write_text(json.dumps({"team_b": {"url": stack.fake.url, **login}}))
        settings = {"COORDINATOR_INSTANCES_FILE": str(instances)}
        with_stale = tmp_path / "instances-stale.json"  # and a leftover entry for analytics
        with_stale.write_text(json.dumps({"team_b": {"url": stack.fake.url, **login},
                                          "analytics": {"url": stale.url, **login}}))  # fmt: skip

        validated = run(stack, ["validate", str(stack.deps), "--airflow"], **settings)
        assert validated.returncode == 0, (validated.stdout, validated.stderr)
        assert validated.stderr == ""
        assert 'instance analytics: no Airflow ("kind": "external"): 3 DAGs not asked' in validated.stdout
        assert f"instance team_b ({stack.fake.url}): Airflow 3.3.2: 1 of 1 DAGs exist" in validated.stdout

        watcher = stack.start_watcher(COORDINATOR_INSTANCES_FILE=str(with_stale))
        watcher.wait_log(r"instance\.checked instance=team_b ok=true")
        receiver = ReceiverProc(stack.endpoint, stack.prefix, tmp_path).start()
        try:
            now = datetime.now(UTC)
            dbt = client(receiver.url, TOKENS["dbt"][0])
            for model in ("orders", "customers"):
                dbt.emit(event(RunState.COMPLETE, new_run_id(), job=f"jaffle.main.jaffle.{model}.build.run", at=now))
        finally:
            receiver.stop()
        # Slot "previous" on a daily grid: a build today is yesterday's partition.
        partition = canonical_partition((now - timedelta(days=1)).strftime("%Y-%m-%d"))
        wait_for(lambda: stack.fake_runs("report", partition), f"report triggered for {partition}")

        doctor = stack.cli("doctor", "--format", "json", "--instances", str(instances), check=False)
        assert doctor.returncode == 0, doctor.stdout
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["instances without Airflow"]["status"] == "ok", checks["instances without Airflow"]
        assert "airflow analytics" not in checks and checks["airflow team_b"]["status"] == "ok"

        # The README's line as pasted, in bash, with the installed `coordinator` on PATH and this stack's etcd.
        path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
        pasted = f"{WHY} --etcd {stack.endpoint} --prefix {stack.prefix} --deps {stack.deps}"
        why = subprocess.run(["bash", "-c", pasted], env={**stack.env(**settings), "PATH": path}, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert why.returncode == 0, why.stderr
        assert partition in why.stdout, why.stdout

        stack.settle()
        assert len(stack.fake_runs("report", partition)) == 1
        # Both logs of the fake: the coordinator's requests and its instance checks' (kept apart by User-Agent).
        assert stale.requests() == [] and stale.checks() == [], [r.endpoint for r in stale.requests() + stale.checks()]
        assert not watcher.lines(r"ERROR|ok=false|instance=analytics"), watcher.tail()
