"""The listener plugin inside a real Airflow 3.3: run states reach etcd from the scheduler, reruns bump the attempt."""

from __future__ import annotations

import json
import time

import pytest

from coordinator.core.model import RunState
from tests.e2e.harness import E2E

pytestmark = pytest.mark.e2e


def test_triggered_run_reaches_success_in_etcd(e2e: E2E) -> None:
    """A run triggered over REST is recorded in etcd as success with its run id, attempt 0 and the plugin as source."""
    partition, run_id = e2e.new_partition(), e2e.run_id("success")
    started = time.monotonic()
    e2e.stack.trigger("01_pipeline", run_id, partition, {"source": "e2e"})
    record = e2e.wait_for_run_record(
        "01_pipeline", partition, lambda r: r.state is RunState.SUCCESS and r.run_id == run_id, what="success"
    )
    elapsed = time.monotonic() - started
    assert record.clear_number == 0
    assert record.source == "airflow-plugin:default"
    assert record.start_date is not None and record.end_date is not None
    assert e2e.stack.wait_for_run("01_pipeline", run_id, ["success"], timeout_s=10)["state"] == "success"
    # The task did its visible, idempotent piece of work for this partition.
    marker = e2e.stack.home / "output" / "01_pipeline" / f"{partition.replace(':', '-')}.json"
    assert json.loads(marker.read_text())["conf"] == {"source": "e2e"}
    print(f"\ntrigger -> success in etcd: {elapsed:.2f} s")


def test_clear_records_the_next_attempt(e2e: E2E) -> None:
    """Clearing a finished run over REST reruns it, and etcd records the same run id with clear_number 1."""
    partition, run_id = e2e.new_partition(), e2e.run_id("clear")
    e2e.stack.trigger("02_pipeline", run_id, partition)
    e2e.wait_for_run_record("02_pipeline", partition, lambda r: r.state is RunState.SUCCESS, what="first success")
    # The listener writes before the scheduler commits: a clear sent before Airflow shows the success would clear a
    # run that is still "running" there, and the scheduler's commit then ends it with nothing to rerun.
    e2e.stack.wait_for_run("02_pipeline", run_id, ["success"], timeout_s=30)
    _, first_revision = e2e.read_run("02_pipeline", partition)
    started = time.monotonic()
    e2e.stack.clear("02_pipeline", run_id)
    e2e.wait_for_run_record("02_pipeline", partition, lambda r: r.clear_number == 1, what="with clear_number 1")
    record = e2e.wait_for_run_record(
        "02_pipeline",
        partition,
        lambda r: r.clear_number == 1 and r.state is RunState.SUCCESS,
        what="success of attempt 1",
    )
    elapsed = time.monotonic() - started
    _, second_revision = e2e.read_run("02_pipeline", partition)
    assert record.run_id == run_id
    assert second_revision > first_revision  # a new generation: dependents may rerun
    print(f"\nclear -> attempt 1 success in etcd: {elapsed:.2f} s")


def test_failed_run_is_recorded_as_failed(e2e: E2E) -> None:
    """A DAG run that fails is recorded as failed (only success satisfies a dependency)."""
    partition, run_id = e2e.new_partition(), e2e.run_id("failed")
    e2e.stack.trigger("09_flaky", run_id, partition)
    record = e2e.wait_for_run_record(
        "09_flaky", partition, lambda r: r.state is RunState.FAILED and r.run_id == run_id, what="failed"
    )
    assert record.end_date is not None


def test_report_task_and_listener_agree(e2e: E2E) -> None:
    """ReportRunStateOperator writes success from the task; the listener's identical success is then skipped."""
    partition, run_id = e2e.new_partition(), e2e.run_id("reported")
    e2e.stack.trigger("e2e_reported", run_id, partition)
    e2e.stack.wait_for_run("e2e_reported", run_id, ["success", "failed"], timeout_s=60)
    record = e2e.wait_for_run_record("e2e_reported", partition, lambda r: r.state is RunState.SUCCESS, what="success")
    _, revision = e2e.read_run("e2e_reported", partition)
    assert record.source == "airflow-task:default", record
    # Give the listener's own success hook time to arrive: it must not replace the task's record.
    time.sleep(1.0)
    assert e2e.read_run("e2e_reported", partition)[1] == revision


def test_named_task_state_is_written_while_the_run_is_still_running(e2e: E2E) -> None:
    """A task the adopted graph names has its success in etcd (source plugin, DAG run id, try 1) before its DAG run
    succeeds; the DAG's other task is not recorded; the REST audit repairs it when lost; clearing the task alone makes
    exactly one new success (try 2)."""
    with e2e.named_tasks({"default/e2e_task_level": ["produce"]}):
        time.sleep(1.2)  # the stack's task processes re-read the named tasks after 1 s (COORDINATOR_PLUGIN_TASKS_TTL_S)
        partition, run_id = e2e.new_partition(), e2e.run_id("task_level")
        e2e.stack.trigger("e2e_task_level", run_id, partition)
        record, task_revision = e2e.wait_for_task_record(
            "e2e_task_level", "produce", partition, lambda r: r.state is RunState.SUCCESS
        )
        # At that moment the run is still running (tail sleeps 4 s): the fact came from the task, not the run.
        run_record, _ = e2e.read_run("e2e_task_level", partition)
        assert run_record is None or run_record.state is not RunState.SUCCESS, run_record
        assert e2e.only_run("e2e_task_level", partition).state == "running"
        assert (record.run_id, record.clear_number, record.try_number) == (run_id, 0, 1)
        assert record.source == "airflow-plugin:default" and record.end_date is not None
        e2e.stack.wait_for_run("e2e_task_level", run_id, ["success"], timeout_s=60)
        e2e.wait_for_run_record("e2e_task_level", partition, lambda r: r.state is RunState.SUCCESS, what="success")
        _, run_revision = e2e.read_run("e2e_task_level", partition)
        assert task_revision < run_revision
        assert e2e.read_task("e2e_task_level", "tail", partition) == (None, 0)  # not named: not recorded

        # A lost write: the leader's REST audit (v2) puts the task's state back, signed audit, same try.
        assert e2e.delete_key(e2e.keys.task_key(e2e.stack_node("e2e_task_level"), "produce", partition))
        audit = e2e.audit_once({"version": 1, "dags": {"e2e_task_level": {}}}, e2e.stack)
        repaired, _ = e2e.read_task("e2e_task_level", "produce", partition)
        assert audit.errors == 0 and audit.tasks_repaired >= 1, audit
        assert repaired is not None and (repaired.state, repaired.run_id, repaired.try_number, repaired.source) == (
            RunState.SUCCESS, run_id, 1, "audit:default",
        )  # fmt: skip

        # Clear only the named task: Airflow 3 reruns it (try 2, the run's clear_number 1) in the same DAG run.
        status, body = e2e.stack.request(
            "POST",
            "/api/v2/dags/e2e_task_level/clearTaskInstances",
            {"dry_run": False, "only_failed": False, "task_ids": ["produce"], "dag_run_id": run_id},
        )
        assert status == 200, body
        rerun, rerun_revision = e2e.wait_for_task_record(
            "e2e_task_level", "produce", partition, lambda r: r.state is RunState.SUCCESS and r.try_number == 2
        )
        assert (rerun.run_id, rerun.clear_number) == (run_id, 1) and rerun_revision > run_revision
        e2e.stack.wait_for_run("e2e_task_level", run_id, ["success"], timeout_s=60)
        time.sleep(2.0)  # the run's own success hook and any late record must not rewrite the task's state
        assert e2e.read_task("e2e_task_level", "produce", partition)[1] == rerun_revision
