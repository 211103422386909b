"""Shared body of the example Airflow DAGs (01..09): one task that logs its partition and inputs and does a small,
idempotent piece of work. Not a DAG itself; the DAG files call :func:`example_dag`.

The partition is the logical date in the coordinator's form (UTC, ``...Z``); runs without one are keyed by run id.
Each run writes a marker file keyed by partition under ``$PIPELINE_OUTPUT_DIR`` (default:
``<tmp>/coordinator-pipelines``), written aside and renamed into place, so a rerun overwrites the same file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context, task

log = logging.getLogger(__name__)


def example_dag(
    dag_id: str,
    task_id: str,
    doc: str | None,
    *,
    schedule: str | None = None,
    tags: tuple[str, ...] = ("coordinator-example",),
    before_work: Callable[[str, dict[str, Any]], None] | None = None,
) -> DAG:
    """A one-task DAG; ``before_work(partition, conf)`` may raise to make the run fail on purpose."""

    @task(task_id=task_id)
    def work() -> str:
        """Log the partition and the conf inputs, work for a second, write this partition's marker file."""
        dag_run = get_current_context()["dag_run"]
        logical_date = dag_run.logical_date
        partition = (
            logical_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if logical_date else f"run-{dag_run.run_id}"
        )
        conf = dag_run.conf or {}
        log.info(
            "dag_id=%s partition=%s clear_number=%s conf=%s", dag_id, partition, dag_run.clear_number, json.dumps(conf)
        )
        if before_work is not None:
            before_work(partition, conf)
        time.sleep(1)
        out_dir = Path(os.environ.get("PIPELINE_OUTPUT_DIR") or Path(tempfile.gettempdir()) / "coordinator-pipelines")
        marker = out_dir / dag_id / f"{partition.replace(':', '-')}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"dag_id": dag_id, "partition": partition, "run_id": dag_run.run_id, "conf": conf}))
        tmp.replace(marker)
        log.info("wrote %s", marker)
        return str(marker)

    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
        catchup=False,
        default_args={"retries": 0},
        tags=list(tags),
        doc_md=doc,
    ) as dag:
        work()
    return dag
