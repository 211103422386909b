"""Airflow 2: schedule_interval; a sensor on legacy_ingest and one on warehouse_load, whose file fails everywhere."""

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.sensors.external_task import ExternalTaskSensor

with DAG("legacy_report", schedule_interval="0 5 * * *", start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    ExternalTaskSensor(
        task_id="wait_ingest",
        external_dag_id="legacy_ingest",
        external_task_id="load",
        execution_delta=timedelta(hours=4),
    )
    ExternalTaskSensor(task_id="wait_warehouse", external_dag_id="warehouse_load", execution_delta=timedelta(hours=2))
