"""00_watcher: the in-Airflow variant of the watcher, for teams that cannot run ``coordinator watch`` as a service.

Every minute it runs ``coordinator reconcile --once``: one consistent snapshot of etcd, one planning pass, the due
triggers/clears through the REST API, then exit. Exactly-once holds as with the service (the ledger and the leader
lease are the same), and a pass that finds a ``coordinator watch`` leading does nothing.

Latency and limits versus ``coordinator watch``: a dependent starts up to one schedule interval plus a task start-up
later (~1 min instead of ~10 ms); each pass re-reads the whole prefix (fine up to ~100k keys, ~1-3 s); it occupies a
worker slot for a few seconds per minute; and it stops when this Airflow stops, so it cannot release DAGs in other
instances during that Airflow's downtime. The service is the recommended mode.

Configuration comes from the worker's environment (COORDINATOR_ETCD_ENDPOINTS, COORDINATOR_DEPS,
COORDINATOR_AIRFLOW_URL, ...). Paused at creation, like every DAG: unpause it to use it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="00_watcher",
    schedule=timedelta(minutes=1),
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
        bash_command="coordinator reconcile --once --wait 0",
        execution_timeout=timedelta(minutes=4),
    )
