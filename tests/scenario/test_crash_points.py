"""Deterministic crashes at the two points of the trigger protocol where a crash is dangerous.

A crash point armed by the tests (coordinator/watcher/faults.py, tests/support/crash_watcher.py) makes the watcher
exit with status 86 exactly there, instead of a SIGKILL from outside that lands some milliseconds later:
- ``after-intent``: the intent is committed in the ledger and Airflow was never called. The successor must make the
  call (the intent is not lost) exactly once (the intent is completed, not decided again).
- ``after-airflow-call``: Airflow applied the create or clear and answered, the ledger still says pending. The
  successor must find the effect (the run exists; its ``queued_at`` moved) and only confirm it. The DAGs are paused
  meanwhile, so the runs report no state and only Airflow's own record can tell the call already happened.
"""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.watcher.faults import CRASH_EXIT_CODE
from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, ROOT_DAG, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario

#: 1 s: the successor waits out the crashed watcher's lease before it may act.
TTL = 1


def crashed(watcher: WatcherProc, point: str) -> None:
    """Wait until ``watcher`` died at crash point ``point``; fail if it exited any other way."""
    wait_for(lambda: not watcher.alive, f"watcher {watcher.name} to crash at {point}")
    assert watcher.proc.returncode == CRASH_EXIT_CODE, f"exit {watcher.proc.returncode}:\n{watcher.tail()}"
    assert watcher.lines(rf"fault\.crash point={point} hit=1 "), watcher.tail()


def pending_intents(stack: Stack, partition: str) -> dict[str, dict[str, Any]]:
    """DAG -> ledger record, for every downstream DAG whose ledger entry for ``partition`` is pending."""
    records = {dag: stack.ledger(dag, partition) for dag in DOWNSTREAM}
    return {dag: rec for dag, rec in records.items() if rec is not None and rec["status"] == "pending"}


def assert_completed_not_redecided(stack: Stack, partition: str, left: dict[str, dict[str, Any]]) -> None:
    """Each intent left pending by the crash is done now, and it is the same intent (same decision time and maker)."""
    for dag, before in left.items():
        after = stack.ledger(dag, partition)
        assert after is not None and after["status"] == "done", (dag, after)
        assert (after["requested_at"], after["watcher"]) == (before["requested_at"], before["watcher"]), dag


def test_crash_after_the_intent_write_calls_airflow_once_after_restart(stack: Stack) -> None:
    """Dead right after its first intent (exit 86): no Airflow request was made; the successor creates each run once."""
    p = new_partition()
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-intent")
    stack.trigger_root(p)
    crashed(first, "after-intent")
    stack.wait_answered()

    left = pending_intents(stack, p)
    assert left, "the crash left no intent"
    assert set(left) <= set(FAN_IN), left
    assert stack.fake.requests() == [], "Airflow was called before the crash"

    second = stack.start_watcher("second", ttl=TTL)
    stack.wait_success(LAST, p)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    assert_completed_not_redecided(stack, p, left)
    for dag in left:
        assert not second.lines(rf"actuator\.intent node=\S*{dag} "), f"{dag}'s intent was decided again"
        assert [r.client for r in stack.fake.requests("trigger", dag)] == [second.name], dag


@pytest.mark.parametrize("action", ["create", "clear"])
def test_crash_after_the_airflow_call_is_confirmed_not_repeated(stack: Stack, action: str) -> None:
    """Dead right after Airflow applied a create/clear (exit 86): the successor confirms it; one create, one clear."""
    p = new_partition()
    attempt = 0 if action == "create" else 1
    endpoint = "trigger" if action == "create" else "clear"
    if action == "clear":
        setup = stack.start_watcher("setup", ttl=TTL)
        stack.trigger_root(p)
        stack.wait_success(LAST, p)
        stack.wait_confirmed(p)
        stack.settle()
        setup.stop()
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-airflow-call")
    for dag in FAN_IN:
        stack.fake.set_paused(dag, True)
    if action == "clear":
        stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    else:
        stack.trigger_root(p)
    crashed(first, "after-airflow-call")
    # Calls sent concurrently with the one the crash followed may still be applied, even after the process died:
    # what it had written into its sockets is still accepted and read by the fake. Wait until nothing arrives.
    stack.settle()
    stack.wait_answered()

    applied = {dag for dag in FAN_IN if [r for r in stack.fake_runs(dag, p) if r.clear_number == attempt]}
    left = pending_intents(stack, p)
    assert applied, f"no {action} applied before the crash"
    assert applied <= set(left), f"an applied {action} was confirmed before the crash: {applied - set(left)}"
    assert all(len(stack.fake.requests(endpoint, dag)) == 1 for dag in applied), "a call was repeated before the crash"

    second = stack.start_watcher("second", ttl=TTL)
    wait_for(lambda: not set(pending_intents(stack, p)) & set(left), "the successor to confirm what was left")
    for dag in FAN_IN:
        stack.fake.set_paused(dag, False)
    stack.wait_success(LAST, p, attempt)
    stack.wait_confirmed(p)
    stack.settle()
    stack.assert_once(p, clears=attempt)
    stack.assert_order(p, attempt)
    assert_completed_not_redecided(stack, p, left)
    for dag in DOWNSTREAM:
        assert (stack.fake.creates(dag), stack.fake.clears(dag)) == (1, attempt), dag
    found = second.lines(r"result=already_exists" if action == "create" else r"actuator\.already_cleared")
    assert {line.split("node=", 1)[1].split()[0] for line in found} == applied, found
