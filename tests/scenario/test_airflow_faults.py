"""An unreliable or unhelpful Airflow: errors, timeouts, lost responses, a missing DAG and a paused DAG."""

from __future__ import annotations

import time

import pytest

from tests.scenario.conftest import DOWNSTREAM, JOIN, LAST, ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def row(stack: Stack, partition: str, dag: str) -> dict[str, object]:
    return next(r for r in stack.status_json(partition)["rows"] if r["dag"] == dag)


def test_errors_timeouts_and_lost_responses_never_duplicate_a_run(stack: Stack) -> None:
    """500/502/503/429 answers, hung requests and lost responses: each DAG created once, cleared once; errors logged."""
    p = new_partition()
    # 1 s Airflow timeout so that 2 s delays are timeouts.
    watcher = stack.start_watcher(COORDINATOR_AIRFLOW_TIMEOUT_S="1")
    fake = stack.fake
    fake.fail_next(2, 500, endpoint="trigger", dag_id="02_pipeline")
    fake.delay_next(1, 2.0, endpoint="trigger", dag_id="03_pipeline")  # hangs, then applies: a timeout
    fake.delay_next(1, 2.0, endpoint="trigger", dag_id="04_pipeline", after=True)  # applies, answer lost
    fake.fail_next(1, 429, endpoint="trigger", dag_id="05_pipeline")
    fake.fail_next(1, 503, endpoint="trigger", dag_id=JOIN)
    fake.delay_next(1, 2.0, endpoint="trigger", dag_id=LAST, after=True)
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)

    fake.fail_next(1, 503, endpoint="clear", dag_id="02_pipeline")
    fake.delay_next(1, 2.0, endpoint="clear", dag_id="03_pipeline", after=True)  # cleared, answer lost
    fake.delay_next(1, 2.0, endpoint="get_run", dag_id="04_pipeline")
    fake.fail_next(1, 502, endpoint="get_run", dag_id="05_pipeline")
    fake.delay_next(1, 2.0, endpoint="clear", dag_id=JOIN, after=True)
    fake.fail_next(1, 500, endpoint="clear", dag_id=LAST)
    fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    stack.wait_success(LAST, p, attempt=1)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p, clears=1)
    stack.assert_order(p, attempt=1)
    for dag in DOWNSTREAM:
        assert (fake.creates(dag), fake.clears(dag)) == (1, 1), dag

    for status in ("500", "503", "429", "502"):
        assert watcher.lines(rf"airflow\.request_failed .*status={status}"), f"no {status} in the log"
    assert watcher.lines(r"airflow\.request_failed .*timed out")
    assert fake.calls("trigger", "02_pipeline") == 3


def test_missing_dag_is_reported_retried_slowly_then_triggered(stack: Stack) -> None:
    """A DAG missing in Airflow shows its 404 in status, is retried ~1/s (no busy loop), and runs once it appears."""
    p = new_partition()
    stack.start_watcher()
    stack.fake.set_missing("03_pipeline")
    stack.trigger_root(p)
    wait_for(lambda: (stack.ledger("03_pipeline", p) or {}).get("status") == "error", "03's trigger error")
    before = stack.fake.calls("trigger", "03_pipeline")
    time.sleep(3.0)  # measuring a rate needs a fixed window
    retries = stack.fake.calls("trigger", "03_pipeline") - before
    assert 1 <= retries <= 6, f"{retries} create calls in 3 s with a 1 s retry interval"

    error = row(stack, p, "03_pipeline")["last_error"]
    assert isinstance(error, str) and "404" in error and "03_pipeline" in error, error
    assert row(stack, p, JOIN)["waiting_on"] == ["03_pipeline"]
    assert stack.fake_runs(JOIN, p) == []

    stack.fake.set_missing("03_pipeline", False)
    stack.wait_success(LAST, p)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    ledger = stack.ledger("03_pipeline", p)
    assert ledger is not None and ledger["status"] == "done" and not ledger.get("last_error"), ledger


def test_paused_target_dag_is_flagged(stack: Stack) -> None:
    """A trigger of a paused DAG is recorded with a 'paused' warning that status shows; unpausing lets it run."""
    p = new_partition()
    stack.fake.set_paused("02_pipeline", True)
    stack.start_watcher()
    stack.trigger_root(p)
    wait_for(lambda: (stack.ledger("02_pipeline", p) or {}).get("status") == "done", "02's trigger confirmed")
    stack.settle()

    status = row(stack, p, "02_pipeline")
    assert "paused" in str(status["last_error"]), status
    assert row(stack, p, JOIN)["waiting_on"] == ["02_pipeline"]
    assert stack.fake_runs("02_pipeline", p)[0].state == "queued"

    stack.fake.set_paused("02_pipeline", False)
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
