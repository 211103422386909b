"""Airflow applied the call, and then the answer was lost: an error status, a closed connection, or a late answer.

The watcher cannot tell these from a call that never happened, so it retries, and the retry must find the effect:
a repeated create meets a 409 and reads the run back (ours: already exists); a repeated clear first re-reads the run
and sees its ``queued_at`` moved, so the clear is never sent twice. The counts come from the fake Airflow's records.
"""

from __future__ import annotations

import pytest

from tests.scenario.conftest import DOWNSTREAM, JOIN, LAST, ROOT_DAG, Stack, new_partition

pytestmark = pytest.mark.scenario

#: The watcher's Airflow request timeout (COORDINATOR_AIRFLOW_TIMEOUT_S, settings.airflow_timeout_s) in this test.
TIMEOUT_S = 2.0
#: A late answer arrives this long after the effect: well past the timeout, so the client has given up on it.
LATE_S = 2 * TIMEOUT_S


def lose_next_answer(stack: Stack, loss: str, endpoint: str) -> None:
    """Make the fake apply JOIN's next ``endpoint`` call and then lose its answer in the way ``loss`` names."""
    if loss == "error":
        stack.fake.fail_next(1, 500, endpoint=endpoint, dag_id=JOIN, after=True)
    elif loss == "dropped":
        stack.fake.drop_next(1, endpoint=endpoint, dag_id=JOIN, after=True)
    else:
        stack.fake.delay_next(1, LATE_S, endpoint=endpoint, dag_id=JOIN, after=True)


@pytest.mark.parametrize("loss", ["error", "dropped", "late"], ids=["500-after-effect", "connection-closed", "late"])
def test_applied_call_with_lost_answer_is_not_repeated(stack: Stack, loss: str) -> None:
    """A create and a clear applied by Airflow whose answer is lost: one run, one clear, the cascade completes."""
    p = new_partition()
    watcher = stack.start_watcher(COORDINATOR_AIRFLOW_TIMEOUT_S=str(TIMEOUT_S))

    lose_next_answer(stack, loss, "trigger")
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    assert len(stack.fake.requests("trigger", JOIN)) >= 2, "the lost create was not retried"
    assert (stack.ledger(JOIN, p) or {}).get("action") == "create", "the lost create was mistaken for another run"
    assert watcher.lines(rf"actuator\.created node=\S*{JOIN} .*result=already_exists"), "the retry did not find the run"

    lose_next_answer(stack, loss, "clear")
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    stack.wait_success(LAST, p, attempt=1)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p, clears=1)
    stack.assert_order(p, attempt=1)
    assert len(stack.fake.requests("clear", JOIN)) == 1, "the clear was sent again"
    assert len(stack.fake.requests("get_run", JOIN)) >= 2, "the retry did not read the run back"

    for dag in DOWNSTREAM:
        assert (stack.fake.creates(dag), stack.fake.clears(dag)) == (1, 1), dag
    lost = r"timed out" if loss == "late" else r"status=500" if loss == "error" else r"connection failed"
    assert len(watcher.lines(rf"airflow\.request_failed .*{lost}")) >= 2, f"no {loss} answer in the log"
