"""Producers: the upstream side of the estate (cron, presets, a marker, a trigger, an asset)."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
from airflow.sdk import DAG, Asset, TaskGroup

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("ingest_orders", schedule="0 1 * * *", start_date=START, catchup=False):
    load = EmptyOperator(task_id="load")
    mark = ExternalTaskMarker(task_id="mark_report", external_dag_id="report_sales", external_task_id="wait_orders")
    export = TriggerDagRunOperator(task_id="trigger_export", trigger_dag_id="orders_export")
    load >> [mark, export]

with DAG("ingest_warehouse", schedule="0 2 * * *", start_date=START, catchup=False):
    with TaskGroup("transform"):
        EmptyOperator(task_id="clean") >> EmptyOperator(task_id="dedupe")
    EmptyOperator(task_id="extract_a")
    EmptyOperator(task_id="extract_b")

with DAG("ingest_hourly", schedule="@hourly", start_date=START, catchup=False):
    EmptyOperator(task_id="land")

with DAG("ingest_late", schedule="0 23 * * *", start_date=START, catchup=False):
    EmptyOperator(task_id="close_books")

with DAG("ingest_customers", schedule="@daily", start_date=START, catchup=False):
    EmptyOperator(task_id="publish", outlets=[Asset("s3://lake/customers")])

with DAG("orders_export", schedule=None, start_date=START, catchup=False):
    EmptyOperator(task_id="export")

with DAG("customer_scoring", schedule=[Asset("s3://lake/customers")], start_date=START, catchup=False):
    EmptyOperator(task_id="score")
