"""Airflow 2: the same DummyOperator import (a second file with the same cause: the report counts them)."""

import pendulum
from airflow import DAG
from airflow.operators.dummy import DummyOperator

with DAG("legacy_export", schedule_interval="0 2 * * *", start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    DummyOperator(task_id="export")
