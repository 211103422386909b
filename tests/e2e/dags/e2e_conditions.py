"""Plain one-task DAGs for the condition-group scenarios (semantics `condition-groups`, test_multi_instance_e2e.py),
each started only by the test or the coordinator (schedule=None); copied into both Airflow instances:

- ``e2e_feed_a`` / ``e2e_feed_b``: the primary and the fallback feed; ``e2e_either`` runs on any of them.
- ``e2e_region_eu`` / ``_us`` / ``_apac`` / ``_latam``: four regional loads; ``e2e_rollup`` (late members rerun it),
  ``e2e_rollup_quiet`` (late members are ignored) and ``e2e_rollup_timed`` (a cutoff 90 s after its partition)
  roll them up.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)

FEEDS = ["e2e_feed_a", "e2e_feed_b", "e2e_either"]
REGIONS = ["e2e_region_eu", "e2e_region_us", "e2e_region_apac", "e2e_region_latam"]
ROLLUPS = ["e2e_rollup", "e2e_rollup_quiet", "e2e_rollup_timed"]


@task
def work() -> None:
    dag_run = get_current_context()["dag_run"]
    log.info("partition=%s clear_number=%s conf=%s", dag_run.logical_date, dag_run.clear_number,
             json.dumps(dag_run.conf))  # fmt: skip
    time.sleep(0.1)


for dag_id in [*FEEDS, *REGIONS, *ROLLUPS]:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=["coordinator-test"],
    ):
        work()
