"""Dependents written the ways real repositories write ExternalTaskSensors (classic and deferrable)."""

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG

START = pendulum.datetime(2024, 1, 1, tz="UTC")

# Same day, different time of day: upstream 01:00, dependent 05:00.
with DAG("report_sales", schedule="0 5 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders",
        external_dag_id="ingest_orders",
        external_task_id="load",
        execution_delta=timedelta(hours=4),
        failed_states=["failed", "upstream_failed"],
        mode="reschedule",
    ) >> EmptyOperator(task_id="build")

# Negative delta, deferrable: dependent at midnight, upstream at 02:00 the same day.
with DAG("early_check", schedule="@daily", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_warehouse",
        external_dag_id="ingest_warehouse",
        external_task_ids=["extract_a", "extract_b"],
        execution_delta=timedelta(hours=-2),
        deferrable=True,
        poke_interval=2,
    )

# A task group of the upstream.
with DAG("warehouse_quality", schedule="0 2 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(task_id="wait_transform", external_dag_id="ingest_warehouse", external_task_group_id="transform")

# A weekly run waiting for one day of its week: Saturday 10:00 waits for Friday 01:00.
with DAG("weekly_summary", schedule="0 10 * * 6", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_friday",
        external_dag_id="ingest_orders",
        external_task_id="load",
        execution_delta=timedelta(days=1, hours=9),
    )

# @weekly (Sunday 00:00) waits for the last day of its week, looking forward.
with DAG("weekly_rollup", schedule="@weekly", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_saturday",
        external_dag_id="ingest_customers",
        execution_delta=timedelta(days=-6),
        deferrable=True,
    )

# Date functions: jump to a fixed hour, truncate to the hour, a list of dates, the last day of the month.
with DAG("books_check", schedule="@daily", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_books",
        external_dag_id="ingest_late",
        external_task_id="close_books",
        execution_date_fn=lambda dt: dt.replace(hour=23),
    )

with DAG("hourly_enrich", schedule="15 * * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_land",
        external_dag_id="ingest_hourly",
        external_task_id="land",
        execution_date_fn=lambda dt, **context: dt.replace(minute=0, second=0),
    )


def previous_day_hours(logical_date, **context):
    return [logical_date - timedelta(hours=h) for h in range(1, 25)]


with DAG("daily_from_hourly", schedule="0 0 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_all_hours",
        external_dag_id="ingest_hourly",
        external_task_id="land",
        execution_date_fn=previous_day_hours,
        deferrable=True,
    )

with DAG("monthly_close", schedule="@monthly", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_month_end",
        external_dag_id="ingest_customers",
        execution_date_fn=lambda dt: dt.add(months=1).subtract(days=1),
    )

# Its own previous day (a DAG-level self-dependency through one task).
with DAG("daily_snapshot", schedule="0 3 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_yesterday",
        external_dag_id="daily_snapshot",
        external_task_id="publish",
        execution_delta=timedelta(days=1),
    ) >> EmptyOperator(task_id="publish")

# A lock: the upstream merely finished (success or failed).
with DAG("cleanup", schedule="0 1 * * *", start_date=START, catchup=False):
    ExternalTaskSensor(
        task_id="wait_orders_done",
        external_dag_id="ingest_orders",
        allowed_states=["success", "failed"],
    )
