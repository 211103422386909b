"""Split brain: a leader frozen (SIGSTOP) with Airflow calls in flight, replaced, then thawed while new work arrives.

The frozen leader's lease runs out, the standby takes over and finishes the cascade, and when the old leader wakes up
(every timer overdue, its answers waiting in its sockets) it must not act again: its own writes are refused by the
ledger's fencing condition and it plans nothing more. What this guards against is double effect in Airflow, so the
counts come from the fake Airflow's own records, and the fake names the process that sent each request.
"""

from __future__ import annotations

import time

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario

#: Short lease: the standby may take over ~2 s after the freeze.
TTL = 2
#: How long the fake holds the frozen leader's calls: far longer than it takes to freeze it once they arrived.
HOLD_S = 4.0
#: How long the fake holds the new leader's calls while the old one is thawed.
HOLD_NEW_S = 3.0
#: Longer than the whole freeze: after the thaw the old leader reads the answers waiting for it instead of timing
#: out and retrying (a retry would be a new request; this test wants to see that nothing new is sent).
AIRFLOW_TIMEOUT_S = "60"


def test_frozen_leader_thawed_during_new_work_changes_nothing(stack: Stack) -> None:
    """A leader frozen mid-calls is replaced; thawed, it sends no create or clear: one create, one clear per DAG."""
    fake = stack.fake
    old = stack.start_watcher("old", ttl=TTL, COORDINATOR_AIRFLOW_TIMEOUT_S=AIRFLOW_TIMEOUT_S)
    new = stack.start_watcher("new", ttl=TTL, ready="loaded", COORDINATOR_AIRFLOW_TIMEOUT_S=AIRFLOW_TIMEOUT_S)
    p1, p2 = new_partition(), new_partition()

    # The old leader's four creates are in flight when it freezes: two applied with their answers held, two held
    # before they apply (they reach "Airflow" while the new leader is already acting).
    for dag, applied in zip(FAN_IN, (True, True, False, False), strict=True):
        fake.delay_next(1, HOLD_S, endpoint="trigger", dag_id=dag, after=applied)
    stack.trigger_root(p1)
    wait_for(lambda: all(fake.calls("trigger", dag) == 1 for dag in FAN_IN), "the old leader's four creates sent")
    old.freeze()
    frozen_at = time.monotonic()
    assert not old.lines(r"actuator\.created"), "the old leader got an answer before it was frozen"
    assert {str((stack.ledger(dag, p1) or {}).get("status")) for dag in FAN_IN} == {"pending"}

    new.wait_log(r"leader\.acquired watcher=new")
    stack.wait_success(LAST, p1)
    assert old.alive, "the frozen leader died"

    # New work while the old leader wakes up: p2's creates applied with their answers held, and a rerun of p1 whose
    # clears are held before they apply. Pending intents of the new leader are what a confused old leader would
    # resume, and a clear not yet applied is what it would repeat.
    for dag in FAN_IN:
        fake.delay_next(1, HOLD_NEW_S, endpoint="trigger", dag_id=dag, after=True)
        fake.delay_next(1, HOLD_NEW_S, endpoint="clear", dag_id=dag)
    stack.trigger_root(p2)
    fake.clear_run(ROOT_DAG, f"scheduled__{p1}")
    wait_for(
        lambda: all(stack.fake_runs(dag, p2) and fake.calls("clear", dag) == 1 for dag in FAN_IN),
        "the new leader's creates for p2 and clears for p1 in flight",
    )
    old.thaw()
    thawed_at = time.monotonic()

    old.wait_log(r"leader\.lost watcher=old")
    wait_for(lambda: len(old.lines(r"actuator\.fenced")) == len(FAN_IN), "the old leader's four calls fenced off")
    stack.wait_success(LAST, p2)
    stack.wait_success(LAST, p1, attempt=1)
    stack.wait_confirmed(p1)
    stack.wait_confirmed(p2)
    stack.settle()

    stack.assert_once(p1, clears=1)
    stack.assert_once(p2)
    stack.assert_order(p1, attempt=1)
    stack.assert_order(p2)
    for dag in DOWNSTREAM:
        assert (fake.creates(dag), fake.clears(dag)) == (2, 1), dag
    from_old = [r for r in fake.requests() if r.client == old.name]
    late = [r for r in from_old if r.changing and r.received >= frozen_at]
    assert late == [], "the old leader sent a create or clear after its freeze"
    assert len([r for r in from_old if r.received >= thawed_at]) > 0, "the old leader never woke up"
    assert all(r.client in (old.name, new.name) for r in fake.requests() if r.changing), "a request of unknown origin"
    intents = old.lines(r"actuator\.intent")
    assert len(intents) == len(FAN_IN) and all(p1 in line for line in intents), "the old leader decided anew"
    for dag in DOWNSTREAM:
        assert (stack.ledger(dag, p2) or {}).get("watcher") == "new", dag
    assert old.alive and new.alive
