"""DAGs for Airflow 3's own runs as upstreams and dependents across two deployments (semantics `segment-partitions`,
`asset-triggered-partitions`; tests/e2e/test_multi_instance_e2e.py); copied into both Airflow 3 instances:

- ``e2e_part_hourly``: ``CronPartitionTimetable`` hourly (its runs carry a partition key and date, no logical date);
  the test triggers a day's 24 hours over REST by partition key. ``e2e_part_daily`` (schedule None) rolls them up in
  the other deployment; ``e2e_part_keyed`` (``CronPartitionTimetable`` daily) is a partitioned dependent the
  coordinator triggers with a ``partition_key``.
- ``e2e_part_raw`` (schedule None) updates an asset; ``e2e_part_clean`` is scheduled on it (its runs are
  asset-triggered: no logical date); ``e2e_part_after_clean`` (schedule None) depends on it across deployments.
- ``e2e_seg_load`` (``PartitionedAtRuntime``): a day's load per region, triggered by key (``2001-01-01T00:00:00Z|eu``);
  ``e2e_seg_per`` (``PartitionedAtRuntime``) runs per region, ``e2e_seg_all`` (schedule None) once all regions are
  in, ``e2e_seg_two`` (schedule None) with two of three at its cutoff and once more with the third.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from airflow.sdk import DAG, Asset, CronPartitionTimetable, PartitionedAtRuntime, get_current_context, task

log = logging.getLogger(__name__)

RAW = Asset(name="e2e_part_raw", uri="s3://e2e/part-raw")
START = datetime(2000, 1, 1, tzinfo=UTC)


@task
def work() -> None:
    dag_run = get_current_context()["dag_run"]
    log.info(
        "logical_date=%s partition_key=%s clear_number=%s conf=%s", dag_run.logical_date,
        getattr(dag_run, "partition_key", None), dag_run.clear_number, json.dumps(dag_run.conf),
    )  # fmt: skip
    time.sleep(0.1)


@task(outlets=[RAW])
def publish() -> None:
    time.sleep(0.1)


def dag(dag_id: str, schedule: object) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=schedule,  # type: ignore[arg-type]
        start_date=START,
        catchup=False,
        max_active_runs=32,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    )


with dag("e2e_part_hourly", CronPartitionTimetable("0 * * * *", timezone="UTC")):
    work()
with dag("e2e_part_keyed", CronPartitionTimetable("0 0 * * *", timezone="UTC")):
    work()
for dag_id in ("e2e_part_daily", "e2e_part_after_clean", "e2e_seg_all", "e2e_seg_two"):
    with dag(dag_id, None):
        work()
with dag("e2e_part_raw", None):
    publish()
with dag("e2e_part_clean", [RAW]):
    work()
for dag_id in ("e2e_seg_load", "e2e_seg_per"):
    with dag(dag_id, PartitionedAtRuntime()):
        work()
