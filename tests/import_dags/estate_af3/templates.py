"""Markers and triggers whose logical_date is a template (issue 24: 125 Mozilla notes "write the edge by hand")."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker, ExternalTaskSensor
from airflow.sdk import DAG

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("load_at_one", schedule="0 1 * * *", start_date=START, catchup=False):
    done = EmptyOperator(task_id="done")
    done >> TriggerDagRunOperator(task_id="trigger_ds", trigger_dag_id="by_ds", logical_date="{{ ds }}")
    done >> TriggerDagRunOperator(
        task_id="trigger_yesterday", trigger_dag_id="by_yesterday", logical_date="{{ macros.ds_add(ds, -1) }}"
    )
    done >> TriggerDagRunOperator(
        task_id="trigger_start", trigger_dag_id="by_start", logical_date="{{ data_interval_start }}"
    )
    done >> ExternalTaskMarker(
        task_id="mark_midnight", external_dag_id="marked", external_task_id="work", logical_date="{{ ds }}"
    )
    # Redundant: `sensed` already has a sensor on this DAG (its recursive clear is what the coordinator does).
    done >> ExternalTaskMarker(
        task_id="mark_sensed", external_dag_id="sensed", external_task_id="wait", logical_date="{{ ds }}"
    )

with DAG("hourly_source", schedule="@hourly", start_date=START, catchup=False):
    # 24 hourly runs trigger one date of by_day: Airflow acts on that one run again and again.
    TriggerDagRunOperator(task_id="trigger_day", trigger_dag_id="by_day", logical_date="{{ ds }}")

for target in ("by_ds", "by_yesterday", "by_start", "by_day"):
    with DAG(target, schedule=None, start_date=START, catchup=False):
        EmptyOperator(task_id="work")

with DAG("marked", schedule="0 0 * * *", start_date=START, catchup=False):
    EmptyOperator(task_id="work")

with DAG("sensed", schedule="0 5 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait", external_dag_id="load_at_one", external_task_id="done", execution_delta=timedelta(hours=4)
    )
