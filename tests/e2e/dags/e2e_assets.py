"""Asset DAGs for the assets-across-deployments scenario (semantics rules 16-17):

- ``e2e_asset_consumer`` keeps its own ``schedule=[Asset(...)]``; the asset's producer lives in ANOTHER Airflow (the
  Airflow 2.11 instance's ``af2_asset_producer``), and the coordinator delivers each of its events here over REST;
- ``e2e_native_producer`` -> ``e2e_native_consumer``: the same shape inside this one Airflow, Airflow's own asset
  scheduling, measured beside it (never routed).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, Asset, task

log = logging.getLogger(__name__)

ORDERS = Asset(name="af2_orders", uri="s3://e2e/af2-orders")
NATIVE = Asset(name="native_orders", uri="s3://e2e/native-orders")


@task
def consume() -> None:
    log.info("consumed an orders event")


with DAG(
    dag_id="e2e_asset_consumer",
    schedule=[ORDERS],
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["coordinator-test"],
):
    consume()


@task(outlets=[NATIVE])
def publish() -> None:
    log.info("published a native orders event")


with DAG(
    dag_id="e2e_native_producer",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["coordinator-test"],
):
    publish()

with DAG(
    dag_id="e2e_native_consumer",
    schedule=[NATIVE],
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["coordinator-test"],
):
    consume()
