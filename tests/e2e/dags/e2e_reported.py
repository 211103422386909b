"""e2e_reported: a DAG that reports its own success with ReportRunStateOperator (the explicit alternative to the
listener), for the end-to-end tests only. The listener is installed too: its identical success must be skipped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, task

from coordinator.airflow_plugin.operator import ReportRunStateOperator

log = logging.getLogger(__name__)


@task
def work() -> None:
    log.info("working")


with DAG(
    dag_id="e2e_reported",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    work() >> ReportRunStateOperator(task_id="report", retries=0, timeout_s=10)
