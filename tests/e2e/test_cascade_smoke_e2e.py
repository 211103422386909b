"""One cascade through a real Airflow: plugin -> etcd -> watcher subprocess -> REST triggers, for the seven pipelines.

A smoke test of the whole chain and of the fixture's watcher helpers; the detailed scenarios live beside it.
"""

from __future__ import annotations

import json
import time

import pytest

from coordinator.core.model import RunState, run_id_for
from tests.e2e.harness import E2E, REPO

pytestmark = pytest.mark.e2e


def test_one_partition_cascades_through_the_seven_pipelines(e2e: E2E) -> None:
    """Triggering 01_pipeline for a partition runs 02..05, then 06 once (fan-in), then 07, each exactly once."""
    deps = e2e.write_dependencies(json.loads((REPO / "dependencies.json").read_text()), name="cascade-smoke.json")
    watcher = e2e.start_watcher(deps, "--id", "cascade-smoke", name="cascade-smoke-watcher")
    # The graph must be adopted before 01 succeeds: a success older than its edges' adoption is history, not news
    # (on a loaded machine 01 once finished before a watcher that had not waited for this started).
    e2e.wait_for_leader(deps, "cascade-smoke")
    partition = e2e.new_partition()
    started = time.monotonic()
    e2e.stack.trigger("01_pipeline", e2e.run_id("cascade"), partition)
    timings: dict[str, float] = {}
    for dag_id in ["01_pipeline", "02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline", "06_pipeline"]:
        e2e.wait_for_run_record(dag_id, partition, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success")
        timings[dag_id] = time.monotonic() - started
    record = e2e.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success"
    )
    timings["07_pipeline"] = time.monotonic() - started
    assert watcher.poll() is None, f"watcher exited; see {e2e.work_dir / 'cascade-smoke-watcher.log'}"
    # The coordinator created the downstream runs with its deterministic run id, and each ran exactly once.
    assert record.run_id == run_id_for(partition)
    for dag_id in ["02_pipeline", "06_pipeline", "07_pipeline"]:
        downstream, _ = e2e.read_run(dag_id, partition)
        assert downstream is not None and downstream.clear_number == 0, (dag_id, downstream)
    print("\ncascade timings (s since trigger): " + " ".join(f"{d}={t:.1f}" for d, t in timings.items()))
