"""Airflow 2 habits real estates have (issue 24): start_date only in default_args, timedelta schedules, SubDAGs."""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.subdag import SubDagOperator
from airflow.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sensors.external_task import ExternalTaskSensor

ARGS = {"owner": "data", "start_date": datetime(2024, 1, 1, 3), "retries": 1}

# Every 6 hours from 03:00 (the start date in default_args sets the points: 03, 09, 15, 21).
with DAG("six_hourly", schedule_interval=timedelta(hours=6), default_args=ARGS, catchup=False):
    EmptyOperator(task_id="land")

with DAG(
    "six_hourly_report",
    schedule_interval=timedelta(hours=6),
    default_args={**ARGS, "start_date": datetime(2024, 1, 1, 5)},
    catchup=False,
):
    ExternalTaskSensor(
        task_id="wait_land", external_dag_id="six_hourly", external_task_id="land", execution_delta=timedelta(hours=2)
    )


def section(parent: str, child: str) -> DAG:
    with DAG(f"{parent}.{child}", schedule_interval="0 5 * * *", default_args=ARGS) as sub:
        ExternalTaskSensor(
            task_id="wait_orders",
            external_dag_id="ingest_orders",
            external_task_id="load",
            execution_delta=timedelta(hours=4),
        )
    return sub


with DAG("with_sections", schedule_interval="0 5 * * *", default_args=ARGS, catchup=False):
    # Its own pool: SubDagOperator queries the metadata DB (slot_pool) when it shares a pool with its tasks, and the
    # test's AIRFLOW_HOME has no DB (a real estate's scheduler image has one).
    sections = SubDagOperator(task_id="section", subdag=section("with_sections", "section"), pool="sections")
    # Airflow 2 names the date execution_date; "{{ ds }}" of the 05:00 run is its midnight.
    sections >> TriggerDagRunOperator(task_id="trigger_ds", trigger_dag_id="by_ds", execution_date="{{ ds }}")

with DAG("by_ds", schedule_interval=None, default_args=ARGS):
    EmptyOperator(task_id="work")
