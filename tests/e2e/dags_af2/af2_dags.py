"""DAGs for the Airflow 2.11 instance of the end-to-end tests (Airflow 2 imports: ``airflow.DAG``,
``airflow.decorators``; no ``airflow.sdk``). All are started by hand or by the coordinator (schedule=None):

- ``af2_root``: the root of the 2 -> 3 -> 2 cascade (triggered by the test);
- ``af2_leaf``: a dependent of a DAG on the Airflow 3 instance (the cascade's way back);
- ``af2_fail``: always fails, so the Airflow 3 instance's failure handler runs;
- ``af2_interval_root`` -> ``af2_interval_daily`` (converted from ``@daily``: triggered with its day as the data
  interval) and the Airflow 3 instance's ``e2e_interval_period``/``e2e_interval_point``;
- ``af2_shift_up`` (grid 01:00 daily) -> ``af2_shift_down`` (grid 05:00 daily, ``"shift": "-4h"``), both here;
- ``af2_task_up``: ``extract`` then ``hold``, which keeps the run running until the test creates its release file
  ``$PIPELINE_OUTPUT_DIR/release/<dag_id>/<YYYYMMDDTHHMM>``; Airflow 3's ``e2e_af2_task_down`` waits for ``extract``;
- ``af2_two_step``: ``produce >> tail`` for the plugin's task-level facts (tail keeps the run running 4 s);
- ``af2_asset_producer``: one task with ``outlets=[Dataset("s3://e2e/af2-orders")]``, whose events the coordinator
  delivers to the Airflow 3 instance's asset-scheduled ``e2e_asset_consumer``;
- ``af2_feed``: a feed on Airflow 2, one member of an ``any`` group beside the Airflow 3 instance's ``e2e_feed_a``
  (its ``e2e_either`` runs on whichever lands first).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow import DAG
from airflow.datasets import Dataset
from airflow.decorators import task
from airflow.operators.python import get_current_context

log = logging.getLogger(__name__)


@task
def work() -> None:
    dag_run: Any = get_current_context()["dag_run"]
    log.info("partition=%s clear_number=%s conf=%s", dag_run.logical_date, dag_run.clear_number, dag_run.conf)
    time.sleep(0.5)


@task
def extract() -> None:
    time.sleep(0.1)


@task
def hold() -> None:
    """Wait for the run's release file (created by the test); fail after 300 s so a failed test frees the executor."""
    dag_run: Any = get_current_context()["dag_run"]
    stamp = dag_run.logical_date.astimezone(UTC).strftime("%Y%m%dT%H%M")
    release = Path(os.environ.get("PIPELINE_OUTPUT_DIR", "/nonexistent")) / "release" / dag_run.dag_id / stamp
    log.info("holding until %s exists", release)
    deadline = time.monotonic() + 300.0
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} not created within 300 s")
        time.sleep(0.2)


@task
def fail() -> None:
    raise RuntimeError("af2_fail fails on purpose (failure-handler scenario)")


def _dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    )


with _dag("af2_root") as af2_root:
    work()

with _dag("af2_leaf") as af2_leaf:
    work()

with _dag("af2_fail") as af2_fail:
    fail()

with _dag("af2_feed") as af2_feed:
    work()

# The data-interval scenario: af2_interval_root's success triggers af2_interval_daily (a dependent converted from
# Airflow 2's @daily, "data_interval": "period") and two Airflow 3 dependents; the test reads each run's interval.
with _dag("af2_interval_root") as af2_interval_root:
    work()

with _dag("af2_interval_daily") as af2_interval_daily:
    work()

with _dag("af2_shift_up") as af2_shift_up:
    work()

with _dag("af2_shift_down") as af2_shift_down:
    work()

with _dag("af2_task_up") as af2_task_up:
    extract() >> hold()


@task
def produce() -> None:
    time.sleep(0.1)


@task
def tail() -> None:
    time.sleep(4)


with _dag("af2_two_step") as af2_two_step:
    produce() >> tail()


@task(outlets=[Dataset("s3://e2e/af2-orders")])
def publish() -> None:
    time.sleep(0.1)


with _dag("af2_asset_producer") as af2_asset_producer:
    publish()


# Scheduled dependents (semantics `scheduled-permit`) on Airflow 2.11: af2_sched_up is the upstream of the Airflow 3
# instance's e2e_scheduled_daily; af2_scheduled_daily keeps Airflow 2's daily cron meaning (CronDataIntervalTimetable,
# the run of D with the data interval [D, D+1)) from two days before today and waits, deferred in Airflow 2.11's
# triggerer, for default/e2e_scheduled_up2.
from datetime import timedelta  # noqa: E402

from airflow.timetables.interval import CronDataIntervalTimetable  # noqa: E402

from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator  # noqa: E402

_TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

with DAG("af2_sched_up", schedule=None, start_date=datetime(2000, 1, 1, tzinfo=UTC), catchup=False,
         default_args={"retries": 0}):  # fmt: skip
    work()

with DAG("af2_scheduled_daily", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
         start_date=_TODAY - timedelta(days=2), catchup=True, default_args={"retries": 0}):  # fmt: skip
    WaitForPermitOperator(task_id="wait_for_upstreams") >> work()
