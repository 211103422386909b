"""The producer -> consumer pairs of ``bench/side_by_side.py``: one pair per cross-DAG mechanism, identical work.

Every producer has one task ``work``; every consumer has a task ``work``, preceded by an ``ExternalTaskSensor`` named
``wait`` in the two sensor pairs. The benchmark measures from the producer's ``work`` end to the consumer's ``work``
start, so the tasks only sleep briefly. Pairs:

- ``sbs_coord_*``: nothing inside Airflow; the coordinator's dependencies.json makes the consumer wait for the producer.
- ``sbs_task_*``: the same, but the edge names the producer's task ``work`` (a task-level upstream).
- ``sbs_asset_*``: the producer's task has an outlet Asset, the consumer is scheduled on it.
- ``sbs_defer_*``: the consumer's sensor is deferrable (runs in the triggerer) and pokes every ``SBS_POKE_INTERVAL`` s.
- ``sbs_classic_*``: the classic sensor in ``SBS_CLASSIC_MODE`` (reschedule or poke), same interval.
- ``sbs_permit_*``: a scheduled dependent: ``wait`` is the package's ``WaitForPermitOperator`` (deferred).

The sensors wait for the producer's ``work`` task with the consumer's own logical date (the benchmark triggers both
runs of a pair with the same logical date).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG, Asset, task

from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator

POKE_INTERVAL = float(os.environ.get("SBS_POKE_INTERVAL", "2"))
CLASSIC_MODE = os.environ.get("SBS_CLASSIC_MODE", "reschedule")
WORK_S = 0.1
ASSET = Asset("sbs://side-by-side/producer-output")
COMMON = {
    "start_date": datetime(2000, 1, 1, tzinfo=UTC),
    "catchup": False,
    "default_args": {"retries": 0},
    "tags": ["side-by-side-bench"],
}


@task
def work() -> None:
    time.sleep(WORK_S)


@task(outlets=[ASSET])
def work_with_outlet() -> None:
    time.sleep(WORK_S)


for mechanism in ("coord", "task", "defer", "classic", "permit"):
    with DAG(dag_id=f"sbs_{mechanism}_producer", schedule=None, **COMMON):
        work()

with DAG(dag_id="sbs_permit_consumer", schedule=None, **COMMON):
    WaitForPermitOperator(task_id="wait", timeout=600) >> work()

with DAG(dag_id="sbs_asset_producer", schedule=None, **COMMON):
    work_with_outlet.override(task_id="work")()

for mechanism in ("coord", "task"):
    with DAG(dag_id=f"sbs_{mechanism}_consumer", schedule=None, **COMMON):
        work()

with DAG(dag_id="sbs_asset_consumer", schedule=[ASSET], **COMMON):
    work()

for mechanism, sensor_args in (
    ("defer", {"deferrable": True}),
    ("classic", {"deferrable": False, "mode": CLASSIC_MODE}),
):
    with DAG(dag_id=f"sbs_{mechanism}_consumer", schedule=None, **COMMON):
        (
            ExternalTaskSensor(
                task_id="wait",
                external_dag_id=f"sbs_{mechanism}_producer",
                external_task_id="work",
                poke_interval=POKE_INTERVAL,
                timeout=600,
                **sensor_args,
            )
            >> work()
        )
