"""01_pipeline: the root of the example graph in dependencies.json (02..05 wait for it).

Scheduled daily (catchup off) and can be triggered by hand; the coordinator starts its dependents per partition.
Its one task logs the partition (the logical date) and the conf inputs, sleeps about a second and writes a
marker file keyed by partition under $PIPELINE_OUTPUT_DIR (default: <tmp>/coordinator-pipelines), so a rerun
of a partition overwrites the same file.
Tests set PIPELINE_01_SCHEDULE=none so that unpausing it does not start a run nobody asked for.
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

DAG_ID = "01_pipeline"
log = logging.getLogger(__name__)
SCHEDULE = os.environ.get("PIPELINE_01_SCHEDULE", "@daily")


@task
def extract() -> str:
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
    schedule=None if SCHEDULE.lower() == "none" else SCHEDULE,
    start_date=datetime(2000, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
    tags=["coordinator-example"],
    doc_md=__doc__,
):
    extract()
