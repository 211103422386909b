"""The session's shared Airflow keeps its metadata in PostgreSQL and survives its own crashes: a scheduler that died
is found before the next test and started again, so one crash of Airflow under load fails the test it hit and not
every test after it. It parses a DAG file a test adds or changes while it runs, though it re-parses an unchanged
file only every 300 s (devtools/airflow_stack.py's PARSING_ENV: the suite's CPU)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import sqlalchemy

from coordinator.core.model import RunState
from devtools.airflow_stack import STATE_FILE
from devtools.postgres_server import PostgresServer
from tests.e2e.harness import E2E, assert_new_and_changed_dag_files_are_parsed

pytestmark = pytest.mark.e2e


def test_the_shared_airflow_keeps_its_metadata_in_the_sessions_postgresql(
    e2e: E2E, postgres_server: PostgresServer
) -> None:
    """The shared stack's metadata database is a database of its own on the session's PostgreSQL, the one its DAGs
    were parsed into (not a SQLite file in its home)."""
    url = sqlalchemy.make_url(e2e.stack.database)
    assert (url.drivername, url.host, url.port) == ("postgresql+psycopg2", "127.0.0.1", postgres_server.port)
    assert url.database in postgres_server.databases()
    assert e2e.stack.database_file is None and not (e2e.stack.home / "airflow.db").exists()
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            dag_ids = set(connection.execute(sqlalchemy.text("SELECT dag_id FROM dag")).scalars())
    finally:
        engine.dispose()
    assert {"01_pipeline", "07_pipeline"} <= dag_ids


def test_a_killed_scheduler_is_named_restarted_and_runs_the_next_trigger(e2e: E2E) -> None:
    """After kill -9 of the scheduler's process group, problem() names it, revive() restarts only it, and a run
    triggered afterwards reaches success and its run-state key."""
    pids = json.loads((e2e.stack.home / STATE_FILE).read_text(encoding="utf-8"))["pids"]
    os.killpg(pids["scheduler"], signal.SIGKILL)  # the suite started it in its own session (rule 2 of the stack)
    deadline = time.monotonic() + 30
    while (problem := e2e.stack.problem()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert problem is not None and "scheduler exited with -9" in problem

    assert e2e.stack.revive() == ["scheduler"]
    assert e2e.stack.problem() is None
    others = json.loads((e2e.stack.home / STATE_FILE).read_text(encoding="utf-8"))["pids"]
    assert others["scheduler"] != pids["scheduler"]
    assert {name: pid for name, pid in others.items() if name != "scheduler"} == {
        name: pid for name, pid in pids.items() if name != "scheduler"
    }

    partition, run_id = e2e.new_partition(), e2e.run_id("revived")
    e2e.stack.trigger("01_pipeline", run_id, partition)
    e2e.stack.wait_for_run("01_pipeline", run_id, ["success"], timeout_s=120)
    e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS, what="success")


def test_a_dag_file_added_to_the_running_stack_and_then_changed_is_parsed_each_time(e2e: E2E) -> None:
    """A DAG file copied into the shared stack's folder with an mtime older than the stack is parsed, and its DAG
    added by a rewrite of the file is parsed too, though the stack re-parses unchanged files only every 300 s."""
    assert_new_and_changed_dag_files_are_parsed(e2e.stack, "e2e_parse_probe")
