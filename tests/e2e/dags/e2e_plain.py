"""Plain one-task DAGs the end-to-end scenarios use, each started only by the test or the coordinator
(schedule=None); each logs its partition, clear number and conf:

- ``e2e_dependent``: a normal dependent (of 09_flaky in the failure-routing scenario, of another Airflow instance's
  DAG in the multi-instance one).
- ``e2e_hourly``: an hourly-partitioned root for the partition-grid scenario (the test triggers its runs for a day).
- ``e2e_daily``: its daily rollup, triggered by the coordinator.
- ``e2e_task_dependent``: a dependent of the task ``produce`` of ``e2e_task_level`` (task-level upstreams).
- ``e2e_lineage_report``: a dependent of two dbt models, known through OpenLineage (semantics rule 18).
- ``e2e_interval_period``, ``e2e_interval_point``: dependents converted from a ``CronDataIntervalTimetable`` and a
  ``CronTriggerTimetable`` (the data-interval scenario of ``test_airflow2_e2e.py``).
- ``e2e_refused_source``, ``e2e_refused``: a root and a dependent the refused-trigger scenario declares with a
  ``key_format`` while the DAG is not partitioned, so Airflow refuses every trigger of it with a 400.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)


@task
def work(seconds: float) -> None:
    dag_run = get_current_context()["dag_run"]
    conf = json.dumps(dag_run.conf)
    log.info("partition=%s clear_number=%s conf=%s", dag_run.logical_date, dag_run.clear_number, conf)
    time.sleep(seconds)


# e2e_dependent works a little longer: the failure-routing scenario watches it run.
for dag_id, seconds in (
    ("e2e_dependent", 0.5),
    ("e2e_hourly", 0.1),
    ("e2e_daily", 0.1),
    ("e2e_task_dependent", 0.1),
    ("e2e_lineage_report", 0.1),
    ("e2e_interval_period", 0.1),
    ("e2e_interval_point", 0.1),
    ("e2e_refused_source", 0.1),
    ("e2e_refused", 0.1),
):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    ):
        work(seconds)
