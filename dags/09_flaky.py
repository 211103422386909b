"""09_flaky: a DAG that fails on demand, for the failure-handler scenario (see 08_on_failure). NOT in the
top-level dependencies.json: the end-to-end tests use their own dependencies file.

It fails unless told otherwise: trigger conf {"fail": false}, or the Airflow Variable ``09_flaky_fail`` set to
"false" (a Variable, unlike conf, can be changed before a clear, so the same run can fail and then succeed).
Started only by hand or by the coordinator (schedule=None).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, Variable, get_current_context, task

DAG_ID = "09_flaky"
log = logging.getLogger(__name__)


@task
def flaky_step() -> str:
    """Log the partition and the conf inputs, work for a second, write this partition's marker file."""
    dag_run = get_current_context()["dag_run"]
    # The partition is the logical date in the coordinator's form (UTC, "...Z"); runs without one are keyed by run id.
    logical_date = dag_run.logical_date
    partition = logical_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if logical_date else f"run-{dag_run.run_id}"
    conf = dag_run.conf or {}
    log.info(
        "dag_id=%s partition=%s clear_number=%s conf=%s", DAG_ID, partition, dag_run.clear_number, json.dumps(conf)
    )
    if "fail" in conf:
        should_fail = bool(conf["fail"])
    else:
        should_fail = str(Variable.get("09_flaky_fail", default="true")).lower() != "false"
    if should_fail:
        raise RuntimeError(f"09_flaky fails on demand for partition {partition}")
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
    flaky_step()
