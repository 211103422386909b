"""08_on_failure: the failure handler of 09_flaky, for the failure-handler scenario. NOT in the top-level
dependencies.json: the end-to-end tests' own dependencies file starts it when 09_flaky FAILED for a partition.

A real handler would alert or clean up the partition's partial output; this one logs what it was given (the
partition and the conf) and writes a marker file keyed by partition. Started only by the coordinator (schedule=None).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, get_current_context, task

DAG_ID = "08_on_failure"
log = logging.getLogger(__name__)


@task
def handle_failure() -> str:
    """Log the partition and the conf inputs, work for a second, write this partition's marker file."""
    dag_run = get_current_context()["dag_run"]
    # The partition is the logical date in the coordinator's form (UTC, "...Z"); runs without one are keyed by run id.
    logical_date = dag_run.logical_date
    partition = logical_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if logical_date else f"run-{dag_run.run_id}"
    conf = dag_run.conf or {}
    log.info(
        "dag_id=%s partition=%s clear_number=%s conf=%s", DAG_ID, partition, dag_run.clear_number, json.dumps(conf)
    )
    time.sleep(1)
    # Idempotent by partition: a rerun overwrites the same file (written aside, then renamed into place).
    out_dir = Path(os.environ.get("PIPELINE_OUTPUT_DIR") or Path(tempfile.gettempdir()) / "coordinator-pipelines")
    marker = out_dir / DAG_ID / f"{partition.replace(':', '-')}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"dag_id": DAG_ID, "partition": partition, "run_id": dag_run.run_id, "conf": conf}))
    tmp.replace(marker)
    log.info("wrote %s", marker)
    return str(marker)


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-test"],
    doc_md=__doc__,
):
    handle_failure()
