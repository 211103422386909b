"""Asset DAGs shared between two Airflow 3.3 instances (tests/e2e/test_multi_instance_e2e.py, semantics rules 16-17).

The session's Airflow (``default``) and the module's second one (``team_b``) both load this file:

- ``e2e_shared_producer`` (``outlets=[SHARED]``) runs in ``default`` only; ``e2e_shared_consumer`` keeps its own
  ``schedule=[SHARED]``: in ``default`` it is Airflow's own (native) consumer, measured beside the copy in ``team_b``,
  which only runs on the events the coordinator delivers there;
- ``e2e_parted_producer`` emits a PARTITIONED event (the key comes from the run's conf, per emission, Airflow 3.2+)
  and ``e2e_parted_consumer`` schedules on it with ``PartitionedAssetTimetable``: its run carries the event's key.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, get_current_context, task

log = logging.getLogger(__name__)

SHARED = Asset(name="shared_orders", uri="s3://e2e/shared-orders")
PARTED = Asset(name="shared_hourly", uri="s3://e2e/shared-hourly")
START = datetime(2000, 1, 1, tzinfo=UTC)


@task(outlets=[SHARED])
def publish() -> None:
    log.info("published a shared orders event")


@task(outlets=[PARTED])
def publish_partition() -> None:
    context = get_current_context()
    key = str(context["dag_run"].conf["partition_key"])  # the test says which partition the event is for
    context["outlet_events"][PARTED].add_partitions(key)
    log.info("published a shared hourly event for partition %s", key)


@task
def consume() -> None:
    log.info("consumed a shared event")


with DAG(dag_id="e2e_shared_producer", schedule=None, start_date=START, catchup=False, tags=["coordinator-test"]):
    publish()

with DAG(dag_id="e2e_shared_consumer", schedule=[SHARED], start_date=START, catchup=False, tags=["coordinator-test"]):
    consume()

with DAG(dag_id="e2e_parted_producer", schedule=None, start_date=START, catchup=False, tags=["coordinator-test"]):
    publish_partition()

with DAG(
    dag_id="e2e_parted_consumer",
    schedule=PartitionedAssetTimetable(assets=PARTED),
    start_date=START,
    catchup=False,
    tags=["coordinator-test"],
):
    consume()
