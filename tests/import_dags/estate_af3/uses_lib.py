"""A DAG whose file imports a package from the DAGs folder itself (issue 24: `No module named 'rockflow'`)."""

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from mylib import SCHEDULE

with DAG("uses_lib", schedule=SCHEDULE, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    EmptyOperator(task_id="work")
