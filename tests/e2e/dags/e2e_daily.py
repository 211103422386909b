"""e2e_daily: a daily-partitioned dependent of e2e_hourly in the partition-grid scenario: the coordinator triggers it
once all 24 hourly partitions of its day succeeded (schedule=None). It logs its partition.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)


@task
def work() -> None:
    dag_run = get_current_context()["dag_run"]
    conf = json.dumps(dag_run.conf)
    log.info("partition=%s clear_number=%s conf=%s", dag_run.logical_date, dag_run.clear_number, conf)
    time.sleep(0.1)


with DAG(
    dag_id="e2e_daily",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    work()
