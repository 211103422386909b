"""The DAGs of ``bench/assets_across.py``: both Airflows load this file.

- ``bench_asset_producer`` (``outlets=[ORDERS]``) is run in the source Airflow only;
- ``bench_asset_consumer`` keeps its own ``schedule=[ORDERS]``: in the source Airflow it is Airflow's own (native)
  consumer, in the target Airflow it runs only on the events the coordinator delivers there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, Asset, task

ORDERS = Asset(name="bench_orders", uri="s3://bench/orders")
START = datetime(2000, 1, 1, tzinfo=UTC)


@task(outlets=[ORDERS])
def publish() -> None:
    pass


@task
def consume() -> None:
    pass


with DAG(dag_id="bench_asset_producer", schedule=None, start_date=START, catchup=False, max_active_runs=1):
    publish()

with DAG(dag_id="bench_asset_consumer", schedule=[ORDERS], start_date=START, catchup=False):
    consume()
