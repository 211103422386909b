"""dbt models as upstreams of a real Airflow 3.3 DAG, through OpenLineage: a real dbt project on dbt-duckdb run with
``dbt-ol build`` sends its events with the OpenLineage client's own HTTP transport to a real receiver; the watcher
triggers the dependent (semantics rule 18)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.core.grid import Grid
from coordinator.core.model import RunState, canonical_partition
from devtools.dbt_stack import dbt_project, ensure_venv, model_job, run_dbt_ol
from tests.e2e.harness import E2E, REPO
from tests.e2e.settle import wait_settled
from tests.lineage.receiver_proc import TOKENS, ReceiverProc

pytestmark = pytest.mark.e2e

NAMESPACE = "dbt_prod"
DEPENDENT = "e2e_lineage_report"
DAILY = {"cron": "0 0 * * *"}


def graph(instance: str) -> dict[str, object]:
    """The dependent waits for two of the project's models; the invocation is a node too, so every model of one
    ``dbt-ol build`` lands on the invocation's partition."""
    return {
        "version": 1,
        "instances": {instance: {}, "analytics": {"description": "the jaffle dbt project, through OpenLineage"}},
        "dags": {
            "analytics/orders": {"partitions": DAILY},
            "analytics/customers": {"partitions": DAILY},
            "analytics/dbt_run": {"partitions": DAILY},
            f"{instance}/{DEPENDENT}": {"upstreams": ["analytics/orders", "analytics/customers"], "partitions": DAILY},
        },
        "openlineage": [
            {"namespace": NAMESPACE, "job": "dbt-run-jaffle", "instance": "analytics", "dag": "dbt_run"},
            {"namespace": NAMESPACE, "job": model_job("orders"), "instance": "analytics", "dag": "orders"},
            {"namespace": NAMESPACE, "job": model_job("customers"), "instance": "analytics", "dag": "customers"},
        ],
    }


def test_dbt_ol_builds_trigger_the_dependent_once_per_partition_and_a_failed_model_blocks_it(
    e2e: E2E, tmp_path: Path
) -> None:
    """A failed model blocks the dependent (why names the model's FAIL); a good build triggers it once; a second
    build of the day (a rerun) clears it once; Airflow holds one run of it for the partition throughout. Slow by
    design: three real `dbt-ol build` runs and two real Airflow runs of the dependent."""
    venv = ensure_venv()
    project = dbt_project(tmp_path / "jaffle")
    instance = e2e.stack.instance
    deps = e2e.write_dependencies(graph(instance), name="lineage.json")
    (tmp_path / "dependencies.json").write_text(deps.read_text())
    watcher_id = "lineage-e2e-watcher"
    e2e.start_watcher(deps, "--id", watcher_id, name="lineage-watcher")
    log = e2e.work_dir / "lineage-watcher.log"
    e2e.wait_for_leader(deps, watcher_id)
    receiver = ReceiverProc(e2e.etcd_endpoint, e2e.prefix, tmp_path).start()
    token = TOKENS["dbt"][0]
    try:
        started = datetime.now(UTC)
        partition = canonical_partition(Grid("0 0 * * *").prev(Grid("0 0 * * *").floor(started)))

        def build(**vars: str) -> subprocess.CompletedProcess[str]:
            return run_dbt_ol(venv, project, url=receiver.url, api_key=token, namespace=NAMESPACE, vars=vars or None)

        # 1. orders fails (customers, downstream of it in dbt, is skipped): the dependent waits, and why says so.
        failed = build(fail_model="orders")
        assert failed.returncode == 1, failed.stdout[-2000:]
        e2e.wait_for_run_record("orders", partition, lambda r: r.state is RunState.FAILED, 30, "failed", "analytics")
        why = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "why", f"{instance}/{DEPENDENT}", "-p", partition],
            env=e2e.watcher_env(deps), capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert why.returncode == 0, why.stderr
        assert f"OpenLineage job {NAMESPACE}/{model_job('orders')}" in why.stdout, why.stdout
        assert "last event FAIL" in why.stdout and "state failed" in why.stdout, why.stdout
        # The watcher's pass that saw the build's last record planned nothing: nothing is triggered for a failed
        # upstream (an event, not a sleep: tests/e2e/settle.py).
        written = [e2e.read_run(dag, partition, "analytics")[1] for dag in ("orders", "customers", "dbt_run")]
        wait_settled(log, max(written))
        assert e2e.read_ledger(DEPENDENT, partition) is None
        assert e2e.runs(DEPENDENT, partition) == []

        # 2. A good build: both models succeed, the dependent is triggered once and succeeds.
        ok = build()
        assert ok.returncode == 0, ok.stdout[-2000:]
        e2e.wait_for_run_record(DEPENDENT, partition, lambda r: r.state is RunState.SUCCESS, 120, "success")
        ledger = e2e.read_ledger(DEPENDENT, partition)
        assert ledger is not None and ledger.trigger_count == 1, ledger
        assert len(e2e.runs(DEPENDENT, partition)) == 1

        # 3. A rerun of the day: new runIds, new generations of both models: the dependent is cleared once.
        again = build()
        assert again.returncode == 0, again.stdout[-2000:]
        e2e.wait_for_run_record(DEPENDENT, partition, lambda r: r.state is RunState.SUCCESS and r.clear_number >= 1,
                                120, "success after one clear")  # fmt: skip
        # The two models' new successes came in separately: once the watcher has seen the dependent's success and
        # planned nothing more, there was one clear, not two.
        wait_settled(log, e2e.read_run(DEPENDENT, partition)[1])
        ledger = e2e.read_ledger(DEPENDENT, partition)
        assert ledger is not None and ledger.trigger_count == 2, ledger
        record, _ = e2e.read_run(DEPENDENT, partition)
        assert record is not None and record.clear_number == 1, record
        assert len(e2e.runs(DEPENDENT, partition)) == 1
        assert json.loads(e2e.read_key(e2e.keys.run_key(e2e.stack_node(DEPENDENT), partition)) or b"{}")
        print(f"\nlineage e2e: partition {partition}, {(datetime.now(UTC) - started) / timedelta(seconds=1):.1f} s")
    finally:
        receiver.stop()
