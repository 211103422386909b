"""An asset consumer for the assets-across-deployments scenario (semantics rules 14-15): ``e2e_asset_consumer`` keeps
its own ``schedule=[Asset(...)]``; the asset's producer lives in ANOTHER Airflow (the Airflow 2.11 instance's
``af2_asset_producer``), and the coordinator delivers each of its events here over REST."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, Asset, task

log = logging.getLogger(__name__)

ORDERS = Asset(name="af2_orders", uri="s3://e2e/af2-orders")


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
