"""A two-task DAG for the task-level facts check (semantics "task-level upstreams"), started only by the test:
``produce`` finishes at once, ``tail`` keeps the DAG run running for 8 s more, so a named ``produce``'s
success must reach etcd while the run is still running."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import DAG, task


@task
def produce() -> None:
    time.sleep(0.1)


@task
def tail() -> None:
    time.sleep(8)


with DAG(
    dag_id="e2e_task_level",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    produce() >> tail()
