"""The scheduled dependents' DAGs (tests/e2e/test_multi_instance_e2e.py, semantics `scheduled-permit`), loaded by both
Airflows of that module; each instance's test unpauses only the ones it plays:

- instance ``default`` (team A): ``e2e_scheduled_up`` and ``e2e_scheduled_up2`` (the upstream of Airflow 2.11's
  ``af2_scheduled_daily``, tests/e2e/test_airflow2_e2e.py), started only by the tests (schedule=None); and in that
  module, the session Airflow's own ``e2e_scheduled_daily``, which waits for ``af2/af2_sched_up``;
- instance ``team_b``: ``e2e_scheduled_daily``, Airflow 2's meaning of a daily cron (``CronDataIntervalTimetable``:
  the run of D has the data interval [D, D+1)), from two days before today with catchup: two runs, each waiting
  first for the coordinator's permit, then logging its data interval; ``e2e_scheduled_timeout``, the same for one
  day, whose wait gives up after 20 s.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator

log = logging.getLogger(__name__)
#: Today's midnight (UTC): the scheduled DAGs' runs are the last days before it.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAILY = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")


@task
def work() -> None:
    log.info("e2e work")


@task
def load() -> None:
    context = get_current_context()
    log.info("data_interval=%s..%s", context["data_interval_start"], context["data_interval_end"])


for upstream in ("e2e_scheduled_up", "e2e_scheduled_up2"):  # up2: the upstream of Airflow 2.11's scheduled DAG
    with DAG(dag_id=upstream, schedule=None, start_date=datetime(2000, 1, 1, tzinfo=UTC), catchup=False,
             default_args={"retries": 0}, tags=["coordinator-test"]):  # fmt: skip
        work()

for dag_id, days, timeout in (("e2e_scheduled_daily", 2, None), ("e2e_scheduled_timeout", 1, timedelta(seconds=20))):
    with DAG(dag_id=dag_id, schedule=DAILY, start_date=TODAY - timedelta(days=days), catchup=True,
             default_args={"retries": 0}, tags=["coordinator-test"]):  # fmt: skip
        WaitForPermitOperator(task_id="wait_for_upstreams", timeout=timeout) >> load()
