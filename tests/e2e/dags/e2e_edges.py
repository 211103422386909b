"""DAGs of the edge-semantics scenarios (issue 16: shift, task-level upstream, self-dependency), for the end-to-end
tests only. All are started by the test or the coordinator (schedule=None); their grids are declared in
``dependencies.json`` (harness.SESSION_GRAPH), not here:

- ``e2e_shift_up`` (grid 01:00 daily) -> ``e2e_shift_down`` (grid 05:00 daily, ``"shift": "-4h"``).
- ``e2e_task_up``: ``extract`` then ``hold``; ``hold`` keeps the run running until the test creates its release file.
  ``e2e_task_down`` depends on the task ``extract`` only.
- ``e2e_af2_task_down``: the Airflow 3 dependent of the task ``extract`` of ``af2_task_up`` on the Airflow 2.11
  instance (test_airflow2_e2e.py).
- ``e2e_chain_root`` (@daily) -> ``e2e_chain`` (@daily, also waits for its own previous day, ``"shift": "-1d"``);
  ``e2e_chain``'s task holds until its release file exists, so the test decides when each day may end.

A release file is ``$PIPELINE_OUTPUT_DIR/release/<dag_id>/<logical date as YYYYMMDDTHHMM>`` (the launcher sets the
directory; tests/e2e/harness.py ``release`` creates the file).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)

#: A held task gives up after this long (a failed test must not leave a worker busy for the rest of the session).
HOLD_LIMIT_S = 300.0


def _release_file(dag_id: str, logical_date: datetime) -> Path:
    base = Path(os.environ.get("PIPELINE_OUTPUT_DIR", "/nonexistent")) / "release" / dag_id
    return base / logical_date.astimezone(UTC).strftime("%Y%m%dT%H%M")


@task
def work() -> None:
    dag_run = get_current_context()["dag_run"]
    log.info("partition=%s clear_number=%s conf=%s", dag_run.logical_date, dag_run.clear_number, dag_run.conf)
    time.sleep(0.1)


@task
def hold() -> None:
    """Wait for the run's release file (created by the test), then succeed; fail after HOLD_LIMIT_S."""
    dag_run = get_current_context()["dag_run"]
    release = _release_file(dag_run.dag_id, dag_run.logical_date)
    log.info("holding until %s exists (clear_number=%s)", release, dag_run.clear_number)
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} not created within {HOLD_LIMIT_S:.0f} s")
        time.sleep(0.2)


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    )


for dag_id in ("e2e_shift_up", "e2e_shift_down", "e2e_task_down", "e2e_chain_root", "e2e_af2_task_down"):
    with _dag(dag_id):
        work()

with _dag("e2e_task_up"):
    work.override(task_id="extract")() >> hold()

with _dag("e2e_chain"):
    hold()
