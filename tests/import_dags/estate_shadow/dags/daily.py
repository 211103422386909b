"""A plain DAG: the folder is fine, the plugins folder's `yaml` package is not."""

import pendulum
from airflow.sdk import DAG

with DAG("shadowed_daily", schedule="0 1 * * *", start_date=pendulum.datetime(2024, 1, 1)):
    pass
