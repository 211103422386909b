"""A real Airflow 3.3 refusing the watcher's password (issue 61): one backoff for the instance, logins counted in
Airflow's own access log; the corrected password file recovers without a restart, each run created once."""

from __future__ import annotations

import re
import time

import pytest

from coordinator.core.model import RunState, TriggerStatus
from tests.e2e.harness import E2E, PIPELINES, SESSION_GRAPH, wait_for

pytestmark = pytest.mark.e2e

#: Five partitions of 01_pipeline: 02..05 of each become due, 20 pending triggers.
PARTITIONS = 5
DUE = PIPELINES[1:5]
#: Backoff steps of 1, 2, 4, 4 s (the defaults, 5 s to 300 s, are the same code, only slower).
FIRST_STEP_S, MAX_STEP_S = 1.0, 4.0
REFUSED_WINDOW_S = 12.0
#: One login per step within the window (1 + 2 + 4 + 4 s), and slack for jitter and the window's edges. Per key,
#: 20 pending triggers made ~20 logins a second (3,499 in 180 s in the issue).
MAX_LOGINS = 8
#: Airflow 3.3's access log is structlog's (``HttpAccessLogMiddleware``: "request finished" with method, path and
#: status_code as key-value pairs or JSON fields).
_LOGIN = re.compile(r"request finished.*\bPOST\b.*/auth/token|request finished.*/auth/token.*\bPOST\b")


def _logins(e2e: E2E) -> int:
    """Logins (``POST /auth/token``) in the api-server's access log so far."""
    text = e2e.stack.log_file("api-server").read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines() if _LOGIN.search(line))


def _access_log_sample(e2e: E2E) -> str:
    lines = e2e.stack.log_file("api-server").read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join([line for line in lines if "auth/token" in line][-3:] or lines[-5:])


def test_refused_password_makes_one_login_per_step_and_the_corrected_file_recovers(e2e: E2E) -> None:
    """20 pending triggers against Airflow refusing the password file: a handful of logins in Airflow's access log;
    the file corrected, the same watcher creates each of the 20 runs exactly once."""
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    secret = e2e.work_dir / "refused-airflow-password"
    secret.write_text("not-the-password\n")
    watcher = e2e.start_watcher(
        deps, "--id", "e2e-refusing", name="refusing-watcher",
        COORDINATOR_AIRFLOW_PASSWORD_FILE=str(secret),  # wins over the environment's (correct) password
        COORDINATOR_AIRFLOW_REFUSED_BACKOFF_S=str(FIRST_STEP_S),
        COORDINATOR_AIRFLOW_REFUSED_BACKOFF_MAX_S=str(MAX_STEP_S),
        # The default bound of calls at once (COORDINATOR_AIRFLOW_MAX_CALLS, 8) keeps the 20 triggers from running the
        # api-server out of database connections (5 + 10 at its defaults): with 16 at once a task of the cascade failed.
    )  # fmt: skip
    e2e.wait_for_leader(deps, "e2e-refusing")
    log = e2e.work_dir / "refusing-watcher.log"

    partitions = [e2e.new_partition() for _ in range(PARTITIONS)]
    for partition in partitions:
        e2e.stack.trigger("01_pipeline", e2e.run_id("refused"), partition)
    for partition in partitions:
        e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=120,
                                what="success")  # fmt: skip
    wait_for(lambda: "airflow.refusing instance=" in log.read_text(), 60, "the watcher's first refused login")
    before = _logins(e2e)
    time.sleep(REFUSED_WINDOW_S)  # a rate needs a window; the test itself sends nothing meanwhile
    logins = _logins(e2e) - before
    print(f"\nlogins in Airflow's access log: {logins} in {REFUSED_WINDOW_S:g} s with {PARTITIONS * len(DUE)} pending")
    assert logins >= 1, f"no login found in the api-server's access log; its lines:\n{_access_log_sample(e2e)}"
    assert logins <= MAX_LOGINS, f"{logins} logins in {REFUSED_WINDOW_S:g} s"
    assert all(e2e.runs(dag, p) == [] for dag in DUE for p in partitions)

    secret.write_text(f"{e2e.stack.password}\n")

    def confirmed() -> bool:
        return all(
            (ledger := e2e.read_ledger(dag, p)) is not None and ledger.status is TriggerStatus.DONE
            for dag in DUE
            for p in partitions
        )

    wait_for(confirmed, 90, "the 20 intents confirmed after the password file was corrected")
    assert watcher.poll() is None, f"the watcher exited; see {log}"
    for partition in partitions:
        for dag in DUE:
            assert len(e2e.runs(dag, partition)) == 1, (dag, partition)
    # The cascade goes on to 06 and 07: let it finish, so the session's next scenario starts from a quiet Airflow.
    for partition in partitions:
        try:
            e2e.wait_for_run_record("07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=180,
                                    what="success")  # fmt: skip
        except AssertionError:
            mine = [line for line in log.read_text().splitlines() if partition in line and "level=DEBUG" not in line]
            print(f"\nwatcher lines for {partition}:\n" + "\n".join(mine[-40:]))
            print(f"runs: {[(dag, e2e.runs(dag, partition)) for dag in PIPELINES]}")
            raise
