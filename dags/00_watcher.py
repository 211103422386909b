"""00_watcher: the in-Airflow variant of the watcher, for teams that cannot run ``coordinator watch`` as a service.

Each run is ``coordinator reconcile``: one consistent snapshot of etcd, one planning pass, the due
triggers/clears through the REST API, then exit; its task log ends with ONE line saying what the pass did, e.g.
``revision 812: 4 action(s), 4 done, 0 skipped, 0 error(s) [create 02_pipeline 2026-01-01T00:00:00Z, ...]``.
Exactly-once holds as with the service (the ledger and the leader lease are the same), and a pass that finds a
``coordinator watch`` leading does nothing ("another watcher leads").

The first pass under a prefix adopts dependencies.json and processes the run states already in etcd (semantics rule
9): enabling this DAG after upstream runs finished runs their dependents, once. Over
``COORDINATOR_FIRST_START_LIMIT`` runs (100) it holds and says what to do; set ``COORDINATOR_ADOPT_HISTORY``
(``all``, ``none`` or a date) in the workers' environment to choose.

Schedule: ``COORDINATOR_WATCHER_SCHEDULE`` in the dag-processor's environment: seconds (``30``, ``30s``), minutes
(``2m``) or a cron expression (``*/5 * * * *``); default one minute.

Latency and limits versus ``coordinator watch``: each level of a cascade waits for the next pass, i.e. up to one
interval plus the task's start-up per level, so with the default minute expect a seven-DAG cascade of three levels to
take a few minutes instead of ~15 s with the service; with ``10s`` it took 25.9 s from enabling this DAG to the last
DAG's success (tests/e2e/test_first_start_e2e.py prints it). Each pass re-reads the whole prefix (the cold-start
benchmark: ~2 s at 100,000 keys), occupies a worker slot for a few seconds per interval, and stops when this Airflow
stops, so it cannot release DAGs in other instances during that Airflow's downtime. The service is the recommended mode.

Configuration comes from the worker's environment (COORDINATOR_ETCD_ENDPOINTS, COORDINATOR_DEPS,
COORDINATOR_AIRFLOW_URL, ...). Paused at creation, like every DAG: unpause it to use it.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def watcher_schedule(text: str) -> timedelta | str:
    """``30``/``30s``/``2m``/``1h`` -> an interval; anything else is a cron expression Airflow validates itself
    (a bad one shows as an import error of this file in Airflow's UI, naming the expression)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text)
    if match is None:
        return text.strip()
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds < 1:
        raise ValueError(f"COORDINATOR_WATCHER_SCHEDULE={text!r}: the interval must be at least one second")
    return timedelta(seconds=seconds)


with DAG(
    dag_id="00_watcher",
    schedule=watcher_schedule(os.environ.get("COORDINATOR_WATCHER_SCHEDULE", "1m")),
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    dagrun_timeout=timedelta(minutes=5),
    tags=["coordinator"],
    doc_md=__doc__,
):
    BashOperator(
        task_id="reconcile_once",
        # --wait 0: if a service watcher leads, this pass exits at once with "another watcher leads".
        bash_command="coordinator reconcile --wait 0",
        execution_timeout=timedelta(minutes=4),
    )
