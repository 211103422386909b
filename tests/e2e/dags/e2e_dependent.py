"""e2e_dependent: a plain one-task DAG that the end-to-end scenarios use as a normal dependent (of 09_flaky in the
failure-routing scenario, of another Airflow instance's DAG in the multi-instance one). Started only by the
coordinator (schedule=None); it logs its partition and conf.
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
    time.sleep(0.5)


with DAG(
    dag_id="e2e_dependent",
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
):
    work()
