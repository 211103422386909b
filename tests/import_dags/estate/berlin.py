"""A non-UTC estate: Europe/Berlin crons across the daylight-saving changes."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG

BERLIN = pendulum.datetime(2024, 1, 1, tz="Europe/Berlin")

with DAG("berlin_load", schedule="30 1 * * *", start_date=BERLIN, catchup=False):
    EmptyOperator(task_id="load")

# 05:30 local - 4 h is 01:30 local on every day but the two daylight-saving Sundays, where it is 00:30 or 02:30.
with DAG("berlin_report", schedule="30 5 * * *", start_date=BERLIN, catchup=False):
    ExternalTaskSensor(
        task_id="wait_load",
        external_dag_id="berlin_load",
        external_task_id="load",
        execution_delta=timedelta(hours=4),
        deferrable=True,
    )

# A Berlin daily waiting for a UTC upstream with a date function.
with DAG("berlin_fx", schedule="@daily", start_date=BERLIN, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders",
        external_dag_id="ingest_orders",
        external_task_id="load",
        execution_date_fn=lambda dt: (dt + timedelta(hours=12)).replace(hour=1, minute=0),
    )
