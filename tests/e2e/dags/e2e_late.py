"""The expected-by scenario's DAGs (tests/e2e/test_multi_instance_e2e.py), loaded by both Airflows of that module;
each instance's test unpauses only the ones it plays, the rest stay paused and never run:

- instance ``default`` (team A): ``e2e_late_root`` always fails (no retries: nothing is in flight after it), and
  ``e2e_late_mid`` waits for it (one hop);
- instance ``team_b``: ``e2e_late_report`` waits for ``default/e2e_late_mid`` (two hops from the failure) and declares
  ``expected_by``; ``e2e_late_handler`` is its ``on_late_of`` handler and logs the deadline it was given.

All are started only by the test or the coordinator (schedule=None).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)


@task
def fail() -> None:
    raise RuntimeError("e2e_late_root fails on purpose: its dependents' deadlines become blocked")


@task
def work() -> None:
    conf = get_current_context()["dag_run"].conf
    log.info("deadline=%s", json.dumps((conf or {}).get("coordinator", {}).get("deadline")))


for dag_id, body in (
    ("e2e_late_root", fail),
    ("e2e_late_mid", work),
    ("e2e_late_report", work),
    ("e2e_late_handler", work),
):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    ):
        body()
