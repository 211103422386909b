"""Several watchers at once: one leader acts, the others stand by and take over within the lease TTL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario


def ledger_watchers(stack: Stack, partition: str) -> set[str]:
    """The ``watcher`` field of every downstream DAG's ledger entry for ``partition``."""
    return {str((stack.ledger(dag, partition) or {}).get("watcher")) for dag in DOWNSTREAM}


def acting(watchers: list[WatcherProc]) -> set[str]:
    """Ids of the watchers that recorded at least one trigger intent."""
    return {w.id for w in watchers if w.lines(r"actuator\.intent")}


@pytest.mark.parametrize("count", [2, 3], ids=["two-watchers", "three-watchers"])
def test_concurrent_watchers_cascade_exactly_once(stack: Stack, count: int) -> None:
    """With 2 or 3 watchers running, each DAG is created once and a single leader made every trigger."""
    watchers = [stack.start_watcher(f"w{i}", ttl=10, ready="none") for i in range(count)]
    leader = wait_for(lambda: next((w for w in watchers if w.lines(r"leader=True")), None), "a leader")
    leader.wait_leading()
    p1, p2 = new_partition(), new_partition()
    stack.trigger_root(p1)
    stack.trigger_root(p2)
    stack.wait_success(LAST, p1)
    stack.wait_success(LAST, p2)
    stack.settle()

    for p in (p1, p2):
        stack.assert_once(p)
        stack.assert_order(p)
        assert ledger_watchers(stack, p) == {leader.id}
    assert [w.id for w in watchers if w.lines(r"leader=True")] == [leader.id]
    assert acting(watchers) == {leader.id}
    assert all(w.alive for w in watchers)


def test_standby_takes_over_within_ttl_after_leader_kill(stack: Stack) -> None:
    """After the leader is SIGKILLed, a standby triggers the next cascade within TTL + 2 s of the kill."""
    ttl = 2
    first = stack.start_watcher("a", ttl=ttl)
    standby = stack.start_watcher("b", ttl=ttl, ready="loaded")
    p1, p2 = new_partition(), new_partition()
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()
    assert acting([first, standby]) == {"a"}

    killed_at = datetime.now(UTC)
    first.kill9()
    stack.trigger_root(p2)
    stack.wait_success(LAST, p2, timeout=ttl + 20)
    stack.settle()

    first_trigger = min(run.queued_at for dag in FAN_IN for run in stack.fake_runs(dag, p2) if run.queued_at)
    takeover_s = (first_trigger - killed_at).total_seconds()
    print(f"standby's first trigger {takeover_s:.2f} s after the leader's kill (ttl {ttl} s)")
    assert takeover_s <= ttl + 2, f"takeover took {takeover_s:.2f} s"
    stack.assert_once(p1)
    stack.assert_once(p2)
    stack.assert_order(p2)
    assert ledger_watchers(stack, p1) == {"a"}
    assert ledger_watchers(stack, p2) == {"b"}
    assert not standby.lines(r"actuator\.intent .*partition=" + re.escape(p1))


def test_a_new_leader_plans_first_what_it_found_due_as_a_standby_then_everything(stack: Stack) -> None:
    """The leader frozen, a root success arrives: the standby plans its 4 dependents without acting; once the frozen
    leader is killed, the standby's first pass as leader plans only those keys (not every partition) and triggers
    them, a full pass follows, and both cascades run exactly once."""
    first = stack.start_watcher("a", ttl=2)
    standby = stack.start_watcher("b", ttl=2, ready="loaded")
    p1, p2 = new_partition(), new_partition()
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()
    first.freeze()
    stack.trigger_root(p2)
    standby.wait_log(r"reconcile .*triggers=4 .*leader=False")
    first.kill9()
    acquired = standby.wait_log(r"leader\.acquired watcher=b ttl_s=2 warm=(\d+)")
    assert int(re.findall(r"warm=(\d+)", acquired)[-1]) >= 4, acquired  # p2's 4, and p1's keys from before
    stack.wait_success(LAST, p2)
    stack.settle()
    standby.wait_log(r"reconcile .*dirty=all .*leader=True")
    leading = standby.lines(r"reconcile .*leader=True")
    assert "dirty=all" not in leading[0] and "triggers=4" in leading[0], leading[:3]
    stack.assert_once(p1)
    stack.assert_once(p2)
    assert ledger_watchers(stack, p2) == {"b"}


def test_two_watchers_with_default_settings_on_one_host_fail_over(stack: Stack) -> None:
    """Two watchers started with identical settings and no --http on one host both run (the second listens on a free
    port instead of exiting on the taken default), and after the leader is SIGKILLed the standby finishes the
    cascade: the README's high-availability recipe, as written."""
    first = stack.start_watcher("a", ttl=2, COORDINATOR_HTTP=None)
    standby = stack.start_watcher("b", ttl=2, ready="loaded", COORDINATOR_HTTP=None)
    urls = {first.http_url(), standby.http_url()}
    assert len(urls) == 2, urls
    # At most one of them can hold the default port; the other (or both, if something else holds it) gave way.
    assert len(first.lines(r"http\.default_port_taken")) + len(standby.lines(r"http\.default_port_taken")) >= 1
    p1, p2 = new_partition(), new_partition()
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    first.kill9()
    stack.trigger_root(p2)
    stack.wait_success(LAST, p2)
    stack.settle()
    stack.assert_once(p1)
    stack.assert_once(p2)
    assert ledger_watchers(stack, p2) == {"b"}
    assert standby.alive


def test_a_leader_stopped_with_an_airflow_call_hanging_resigns_within_its_bound(stack: Stack) -> None:
    """SIGTERM while a create hangs: the watcher gives up waiting after its bound, resigns, exits 0; a successor
    completes the cascade with every DAG created once (the hung create is found, not repeated)."""
    stuck = FAN_IN[0]
    p = new_partition()
    # The create is applied, its answer held far past the stop's drain bound (10 s) and the request timeout.
    leader = stack.start_watcher("a", COORDINATOR_AIRFLOW_TIMEOUT_S="60")
    stack.fake.delay_next(1, 25.0, endpoint="trigger", dag_id=stuck, after=True)
    stack.trigger_root(p)
    wait_for(lambda: [r for r in stack.fake.requests("trigger", stuck) if r.status is None], "the create to hang")

    assert leader.stop() == 0, leader.tail()
    assert leader.lines(r"watcher\.stop\.drain_timeout .*in_flight=[1-9]"), "the stop did not bound its wait"
    assert leader.lines(r"watcher\.stopped"), leader.tail()
    assert stack.etcd.get(stack.keys.leader) is None, "a stopped leader resigns"

    stack.start_watcher("b")
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
