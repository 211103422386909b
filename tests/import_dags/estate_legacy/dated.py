"""Airflow 2: days_ago (removed in Airflow 3)."""

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.utils.dates import days_ago

with DAG("legacy_dated", schedule_interval="@daily", start_date=days_ago(2), catchup=False):
    EmptyOperator(task_id="work")
