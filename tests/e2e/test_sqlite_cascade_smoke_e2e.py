"""One cascade through a real Airflow ON SQLITE: plugin -> etcd -> watcher subprocess -> REST triggers, for the seven
pipelines.

A smoke test of the whole chain and of the fixture's watcher helpers; the detailed scenarios live beside it. Every
other Airflow of the suite keeps its metadata in PostgreSQL (tests/e2e/conftest.py); this module's Airflow is its
own, on the SQLite file ``make demo`` uses (``AirflowStack`` without ``database_url``), so that path stays covered.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing

import pytest

from coordinator.core.model import RunState, run_id_for
from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from tests.e2e import stacks_summary
from tests.e2e.harness import E2E, PIPELINES, PLUGIN_ENV, REPO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sqlite_airflow(
    etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[E2E]:
    """An Airflow of this module's own on SQLite (make demo's database) with the seven pipelines, unpaused; stopped
    by PID (watchers first), even on failure."""
    base = tmp_path_factory.mktemp("sqlite_smoke")
    dags = base / "dags"
    dags.mkdir()
    tmp = base / "tmp"  # the plugin's cache of named tasks goes with the test's files, as in the shared stack
    tmp.mkdir()
    for name in [*PIPELINES, "example_pipeline"]:  # example_pipeline: the DAGs' shared task body
        shutil.copy2(REPO / "dags" / f"{name}.py", dags)
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        etcd_endpoints=etcd_server.endpoint,
        prefix=f"/e2e-sqlite-{uuid.uuid4().hex[:8]}",
        extra_env={"PIPELINE_01_SCHEDULE": "none", **PLUGIN_ENV, "TMPDIR": str(tmp)},
    )
    env = E2E(stack=stack, etcd_endpoint=etcd_server.endpoint, prefix=stack.prefix, work_dir=base)
    try:
        stack.start()
        stack.wait_for_dags(PIPELINES)
        stack.unpause(PIPELINES)
        print(f"\nsqlite airflow up in {stack.started_in_s:.1f} s at {stack.url}, database {stack.database}")
        stacks_summary.record(pytestconfig, "sqlite smoke", stack.database)
        yield env
    finally:
        env.stop_watchers()
        stack.stop()


@pytest.fixture
def e2e(sqlite_airflow: E2E) -> Iterator[E2E]:
    """This module's SQLite Airflow for one test (not the session's), revived first if a component died; watchers
    started by the test are stopped afterwards."""
    sqlite_airflow.revive_if_needed()
    try:
        yield sqlite_airflow
    finally:
        sqlite_airflow.stop_watchers()


def test_the_sqlite_airflow_uses_the_write_ahead_log(e2e: E2E) -> None:
    """The SQLite stack's database file is in write-ahead-log mode: its many readers never block the scheduler's
    writes. Slow by design when it runs first: the module's fixture starts its own Airflow on SQLite."""
    database = e2e.stack.database_file
    assert database is not None and database.is_file() and e2e.stack.database == str(database)
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_on_sqlite_one_partition_cascades_through_the_seven_pipelines(e2e: E2E) -> None:
    """Triggering 01_pipeline for a partition runs 02..05, then 06 once (fan-in), then 07, each exactly once.
    Slow by design: seven real Airflow runs (and, when it runs first, the module's own Airflow starting)."""
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
