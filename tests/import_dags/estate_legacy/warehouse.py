"""A provider library installed in the estate's image only: fails under both test interpreters."""

import pendulum
from airflow import DAG
from google.cloud import bigquery  # noqa: F401

with DAG("warehouse_load", schedule_interval="0 3 * * *", start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    pass
