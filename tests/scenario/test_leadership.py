"""Several watchers at once: one leader acts, the others stand by and take over within the lease TTL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario


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
        assert {stack.ledger(dag, p)["watcher"] for dag in DOWNSTREAM} == {leader.id}  # type: ignore[index]
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
    killed_mono = time.monotonic()
    first.kill9()
    stack.trigger_root(p2)
    stack.wait_success(LAST, p2, timeout=ttl + 20)
    stack.settle()

    takeover_s = (min(stack.fake_runs(dag, p2)[0].queued_at for dag in FAN_IN) - killed_at).total_seconds()  # type: ignore[operator]
    acquired = standby.wait_log(r"leader\.acquired")
    print(f"standby's first trigger {takeover_s:.2f} s after the leader's kill (ttl {ttl} s); {acquired[11:23]}")
    assert takeover_s <= ttl + 2, f"takeover took {takeover_s:.2f} s"
    assert time.monotonic() - killed_mono < ttl + 20
    stack.assert_once(p1)
    stack.assert_once(p2)
    stack.assert_order(p2)
    assert {stack.ledger(dag, p2)["watcher"] for dag in DOWNSTREAM} == {"b"}  # type: ignore[index]
    assert acting([first, standby]) == {"a", "b"}
    assert not standby.lines(r"intent.*partition=" + p1.replace("+", r"\+"))
