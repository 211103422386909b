"""The same patterns written for Airflow 2 (core imports, schedule_interval, data-interval cron timetables)."""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.sensors.external_task import ExternalTaskMarker, ExternalTaskSensor

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("ingest_orders", schedule_interval="0 1 * * *", start_date=START, catchup=False):
    EmptyOperator(task_id="load") >> ExternalTaskMarker(
        task_id="mark_report", external_dag_id="report_sales", external_task_id="wait_orders"
    )

with DAG("ingest_hourly", schedule_interval="@hourly", start_date=START, catchup=False):
    EmptyOperator(task_id="land")

with DAG("report_sales", schedule_interval="0 5 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders",
        external_dag_id="ingest_orders",
        external_task_id="load",
        execution_delta=timedelta(hours=4),
        mode="reschedule",
    )

with DAG("early_check", schedule="@daily", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders",
        external_dag_id="ingest_orders",
        external_task_ids=["load"],
        execution_delta=timedelta(hours=-1),
        deferrable=True,
    )

with DAG("hourly_enrich", schedule="15 * * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_land",
        external_dag_id="ingest_hourly",
        external_task_id="land",
        execution_date_fn=lambda dt, **context: dt.replace(minute=0),
    )

with DAG("daily_snapshot", schedule="0 3 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_yesterday", external_dag_id="daily_snapshot", execution_delta=timedelta(days=1))

with DAG("cleanup", schedule="0 1 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders_done", external_dag_id="ingest_orders", allowed_states=["success", "failed"]
    )

BERLIN = pendulum.datetime(2024, 1, 1, tz="Europe/Berlin")

with DAG("berlin_load", schedule="30 1 * * *", start_date=BERLIN, catchup=False):
    EmptyOperator(task_id="load")

with DAG("berlin_report", schedule="30 5 * * *", start_date=BERLIN, catchup=False):
    ExternalTaskSensor(
        task_id="wait_load", external_dag_id="berlin_load", external_task_id="load", execution_delta=timedelta(hours=4)
    )
