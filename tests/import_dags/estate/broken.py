"""Sensors that are bugs, and sensors the file cannot express: each must be reported with its line."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG

START = pendulum.datetime(2024, 1, 1, tz="UTC")

# Waits for 02:00, but ingest_orders runs at 01:00: never satisfied.
with DAG("report_finance", schedule="0 5 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_orders", external_dag_id="ingest_orders", execution_delta=timedelta(hours=3))

# No delta between DAGs on different times of day: never satisfied.
with DAG("report_naive", schedule="0 6 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_orders", external_dag_id="ingest_orders")

# Three days back: satisfied by a run that already existed for the previous day's run.
with DAG("report_stale", schedule="0 6 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders", external_dag_id="ingest_orders", execution_delta=timedelta(days=3, hours=5)
    )

with DAG("skips_ok", schedule="0 1 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders",
        external_dag_id="ingest_orders",
        external_task_id="load",
        allowed_states=["success", "skipped"],
    )


def broken_fn(dt):
    raise RuntimeError("looks up a calendar table")


with DAG("calendar_driven", schedule="0 1 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_calendar", external_dag_id="ingest_orders", execution_date_fn=broken_fn)

with DAG("templated", schedule="0 1 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_param", external_dag_id="{{ params.source }}")

with DAG("every_90_minutes", schedule=timedelta(minutes=90), start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_hourly", external_dag_id="ingest_hourly")
