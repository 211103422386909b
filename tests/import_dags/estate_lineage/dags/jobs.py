"""Sensors on other systems' jobs, written as the providers' docs write them: a job started elsewhere, polled by
name or by a run id from the DAG's run configuration, and a job the DAG starts itself."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from job_providers import DbtCloudJobRunSensor, GlueJobOperator, GlueJobSensor, SparkKubernetesSensor

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("orders_report", schedule="0 5 * * *", start_date=START, catchup=False):
    glue = GlueJobSensor(task_id="wait_glue", job_name="Orders ETL", run_id="{{ dag_run.conf['glue_run'] }}")
    spark = SparkKubernetesSensor(task_id="wait_spark", application_name="ordersEnrich", namespace="spark")
    [glue, spark] >> EmptyOperator(task_id="report")

with DAG("marts", schedule="@daily", start_date=START, catchup=False):
    DbtCloudJobRunSensor(task_id="wait_dbt", run_id="{{ var.value.dbt_run_id }}") >> EmptyOperator(task_id="publish")

with DAG("own_glue", schedule="0 3 * * *", start_date=START, catchup=False):
    start = GlueJobOperator(task_id="start_etl", job_name="nightly", wait_for_completion=False)
    GlueJobSensor(task_id="wait_etl", job_name="nightly", run_id=start.output)
