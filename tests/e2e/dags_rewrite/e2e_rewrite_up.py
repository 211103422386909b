"""The migration guide's upstream (tests/e2e/test_rewrite_guide_e2e.py): Airflow 2's meaning of a daily cron
(``CronDataIntervalTimetable``), from yesterday with catchup, so Airflow's scheduler makes exactly one run of it
(yesterday's) once it is unpaused. Not in the session's DAGs folder: the test copies it there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

with DAG(
    "e2e_rewrite_up",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=TODAY - timedelta(days=1),
    catchup=True,
    tags=["coordinator-test"],
):
    EmptyOperator(task_id="load")
