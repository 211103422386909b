"""Airflow 2: DummyOperator and schedule_interval (under Airflow 3: No module named 'airflow.operators.dummy')."""

import pendulum
from airflow import DAG
from airflow.operators.dummy import DummyOperator

with DAG("legacy_ingest", schedule_interval="0 1 * * *", start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    DummyOperator(task_id="load")
