"""The session's real Airflow 3.3 behind a front that authenticates like a managed service, one auth method per test
(bearer rotated mid-cascade, exec tokens expiring, google tokens from the real google-auth, an MWAA session through
real boto3; see managed_auth.py): the seven-DAG cascade and a cleared rerun (05 cleared: 06 and 07 rerun) each run
exactly once while credentials expire or rotate under the watcher; then a revoked credential is a clear error on the
ledger (what ``status`` shows) and in ``coordinator_airflow_auth_failures_total`` while ``/readyz`` stays ready, and
restoring it recovers.

The watcher reaches Airflow only through the front (its instances file names the front's URL); the test reads and
triggers Airflow directly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coordinator.core.model import RunState, TriggerAction, run_id_for
from tests.e2e.harness import E2E, PIPELINES, SESSION_GRAPH, wait_for
from tests.e2e.managed_auth import METHODS, auth_failures, instances_file, managed, watcher_metrics, watcher_ready
from tests.e2e.settle import wait_settled

pytestmark = pytest.mark.e2e

DOWNSTREAM = PIPELINES[1:]
#: Credentials live 4 s: a cascade (15-30 s here) and its rerun cross several expiries; longer than a request.
LIFETIME_S = 4.0
CASCADE_TIMEOUT_S = 150.0


def wait_success(e2e: E2E, dag_id: str, partition: str, clear_number: int) -> None:
    e2e.wait_for_run_record(
        dag_id,
        partition,
        lambda r: r.state is RunState.SUCCESS and r.clear_number == clear_number,
        timeout_s=CASCADE_TIMEOUT_S,
        what=f"success of attempt {clear_number}",
    )


def assert_each_ran(e2e: E2E, partition: str, attempts: dict[str, tuple[int, int]]) -> None:
    """One run per DAG for the partition; each DAG at (clear_number, trigger_count) as given."""
    for dag_id, (clear_number, trigger_count) in attempts.items():
        run = e2e.only_run(dag_id, partition)
        record, _ = e2e.read_run(dag_id, partition)
        ledger = e2e.read_ledger(dag_id, partition)
        assert run.state == "success" and run.run_id == run_id_for(partition), run
        assert record is not None and record.clear_number == clear_number, (dag_id, record)
        assert ledger is not None and ledger.trigger_count == trigger_count, (dag_id, ledger)


@pytest.mark.parametrize("method", METHODS)
def test_cascade_and_cleared_rerun_run_once_across_expiries_then_revocation_is_reported_and_recovers(
    e2e: E2E, method: str
) -> None:
    """Through the front: 02..07 run once, then 06 and 07 once more after clearing 05, while the credential expires or
    rotates at least twice; a revoked credential is a per-instance error + metric, /readyz ready; restored, it works.
    Slow by design: a real seven-DAG cascade and rerun per method, long enough to cross credential expiries."""
    work = e2e.work_dir / f"auth-{method}"
    with managed(
        method, e2e.stack.url, username=e2e.stack.username, password=e2e.stack.password, upstream_api="v2",
        work=work, lifetime_s=LIFETIME_S,
    ) as m:  # fmt: skip
        instance = e2e.stack.instance
        instances = instances_file(work / "instances.json", {instance: {"url": m.front.url, "auth": m.auth}})
        deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
        watcher_id, name = f"e2e-auth-{method}", f"auth-{method}-watcher"
        log_file = e2e.work_dir / f"{name}.log"
        e2e.start_watcher(
            deps, "--id", watcher_id, name=name, COORDINATOR_INSTANCES_FILE=str(instances),
            COORDINATOR_AIRFLOW_URL="", COORDINATOR_ERROR_RETRY_S="2", **m.env,
        )  # fmt: skip
        e2e.wait_for_leader(deps, watcher_id)

        # The cascade and the cleared rerun, exactly once each, while credentials expire.
        partition, root = e2e.new_partition(), e2e.run_id(f"auth-{method}")
        e2e.stack.trigger("01_pipeline", root, partition)
        wait_success(e2e, "07_pipeline", partition, 0)
        wait_settled(log_file, e2e.read_run("07_pipeline", partition)[1])  # a duplicate would be due by now
        assert_each_ran(e2e, partition, {dag_id: (0, 1) for dag_id in DOWNSTREAM})
        # The cleared rerun: an operator clears 05; 06 (fan-in) and 07 rerun once each, 02..04 do not run again.
        # (Clearing 05 rather than 01 keeps the rerun to three DAG runs: the e2e budget is shared by four methods.)
        e2e.stack.clear("05_pipeline", run_id_for(partition))
        wait_success(e2e, "07_pipeline", partition, 1)
        wait_settled(log_file, e2e.read_run("07_pipeline", partition)[1])
        rerun = {"05_pipeline": (1, 1), "06_pipeline": (1, 2), "07_pipeline": (1, 2)}
        assert_each_ran(e2e, partition, {**{dag_id: (0, 1) for dag_id in DOWNSTREAM}, **rerun})
        ledger = e2e.read_ledger("07_pipeline", partition)
        assert ledger is not None and ledger.action is TriggerAction.CLEAR
        crossed = m.crossings()
        assert crossed >= 2, f"{method}: only {crossed} credential expiries/rotations during the cascades"
        assert m.front.forwarded > 0
        assert auth_failures(watcher_metrics(log_file), instance, method) == 0

        # Revoked: the watcher cannot trigger 02 for a new partition; the ledger says why (status shows it).
        revoked = e2e.new_partition()
        m.revoke()
        e2e.stack.trigger("01_pipeline", e2e.run_id(f"auth-{method}-revoked"), revoked)

        def error_recorded() -> str | None:
            entry = e2e.read_ledger("02_pipeline", revoked)
            return entry.last_error if entry is not None and entry.last_error else None

        error = wait_for(error_recorded, CASCADE_TIMEOUT_S, f"the {method} auth error on 02's ledger entry")
        assert f": {instance}: " in f": {error}", error  # the ledger prefixes the error class
        assert method in error, error
        shown = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "status", "--partition", revoked, "--format", "json"],
            env=e2e.watcher_env(deps), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        (row,) = [r for r in json.loads(shown.stdout)["rows"] if r["dag"].endswith("02_pipeline")]
        assert row["last_error"] == error, row
        assert auth_failures(watcher_metrics(log_file), instance, method) >= 1
        assert watcher_ready(log_file) == 200  # readiness is about etcd, not one Airflow's credential
        assert e2e.runs("02_pipeline", revoked) == []

        # Restored: the retries (every 2 s here) get through and the cascade goes on, once.
        m.restore()
        wait_success(e2e, "02_pipeline", revoked, 0)
        assert len(e2e.runs("02_pipeline", revoked)) == 1
        print(f"\n{method}: {crossed} expiries/rotations crossed; revoked -> {error}")
