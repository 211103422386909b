"""The migration guide's scheduled dependent, as estates write it before the conversion: its own daily schedule and
an ExternalTaskSensor on the upstream's task (tests/e2e/test_rewrite_guide_e2e.py rewrites it with
``import-dags --rewrite``). Not in the session's DAGs folder: the test copies the rewritten file there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

with DAG(
    "e2e_rewrite_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=TODAY - timedelta(days=1),
    catchup=True,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    wait = ExternalTaskSensor(
        task_id="wait_for_load",
        external_dag_id="e2e_rewrite_up",
        external_task_id="load",
        timeout=600,  # ten minutes, then the run fails
        poke_interval=5,
        mode="reschedule",
    )
    wait >> EmptyOperator(task_id="report")
