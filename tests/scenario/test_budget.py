"""The trigger budget (semantics rule 15) through a real watcher: beyond the limit it holds, says so in status,
doctor's view of the store and a metric, and `coordinator release` lets the held runs start, each exactly once."""

from __future__ import annotations

import subprocess

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, QUIET_S, ROOT_DAG, Stack, new_partition, wait_for
from tests.scenario.test_metrics_health import scrape, total

pytestmark = pytest.mark.scenario


def release(stack: Stack, instance: str) -> subprocess.CompletedProcess[str]:
    return stack.command("release", instance, "--etcd", stack.endpoint, "--prefix", stack.prefix)


def test_budget_holds_the_runs_beyond_it_until_release_then_each_runs_once(stack: Stack) -> None:
    """A budget of 3 and 01's success (4 dependents due at once): 3 start, 1 is held, the instance is recorded as
    held (status, metric), nothing more starts; `coordinator release default` starts the held one and the cascade
    ends with every DAG run exactly once."""
    p = new_partition()
    watcher = stack.start_watcher(COORDINATOR_TRIGGER_BUDGET="3")
    stack.trigger_root(p)
    wait_for(lambda: any(s["held"] for s in stack.status_json(p)["budget"]), "the budget to hold default")
    wait_for(lambda: sum(len(stack.fake_runs(d, p)) for d in FAN_IN) == 3, "three fan-in runs")
    watcher.wait_log(r"budget\.held instance=default held=1 limit=3 ")
    assert total(scrape(watcher), "coordinator_triggers_held", instance="default") == 1
    stack.settle(quiet=QUIET_S * 2)
    assert sum(len(stack.fake_runs(d, p)) for d in FAN_IN) == 3, "a held run started"
    held = [d for d in FAN_IN if not stack.fake_runs(d, p)]
    assert len(held) == 1 and stack.ledger(held[0], p) is None, "a held trigger wrote an intent"
    text = stack.cli("status", "-p", p).stdout
    assert "instance default is held by the trigger budget" in text and "coordinator release default" in text

    done = release(stack, "default")
    assert done.returncode == 0 and "released default" in done.stdout, done.stdout + done.stderr
    stack.wait_success(DOWNSTREAM[-1], p)
    stack.settle()
    stack.assert_once(p)
    assert not any(s["held"] for s in stack.status_json(p)["budget"])
    again = release(stack, "default")
    assert again.returncode == 0 and "not held" in again.stdout, again.stdout


def fan_in_runs(stack: Stack, partitions: list[str]) -> int:
    return sum(len(stack.fake_runs(d, p)) for d in FAN_IN for p in partitions)


def test_runs_counted_by_earlier_passes_and_a_killed_leader_count_toward_the_window(stack: Stack) -> None:
    """A budget of 8: the first partition's cascade (6 runs over three passes) is counted in etcd; after the leader's
    kill -9 the next leader, judging the second partition's 4 fan-in runs, starts 2 and holds 2 (a per-pass count
    would start all 4); `coordinator release default` starts the held 2 and both cascades end with every DAG run
    exactly once. Slow by design: the successor waits out the killed leader's 3 s lease."""
    first, second = new_partition(), new_partition()
    leader = stack.start_watcher("w1", COORDINATOR_TRIGGER_BUDGET="8")
    stack.trigger_root(first)
    stack.wait_success(LAST, first)
    stack.settle()
    leader.kill9()
    follower = stack.start_watcher("w2", COORDINATOR_TRIGGER_BUDGET="8")
    stack.trigger_root(second)
    follower.wait_log(r"budget\.held instance=default held=2 limit=8 ")
    stack.settle(quiet=QUIET_S * 2, confirmed=True)
    assert fan_in_runs(stack, [second]) == 2, "the window did not count the first partition's runs"
    assert any(s["held"] for s in stack.status_json(second)["budget"])

    done = release(stack, "default")
    assert done.returncode == 0 and "released default" in done.stdout, done.stdout + done.stderr
    stack.wait_success(LAST, second)
    stack.settle()
    stack.assert_once(first)
    stack.assert_once(second)


def test_a_flood_written_one_success_at_a_time_is_held_at_the_budget(stack: Stack) -> None:
    """A writer puts 30 root successes one after another (120 fan-in runs due, over many passes): with a budget of
    10 exactly 10 runs start, the hold is recorded (status, metrics: the window's count is 10), and nothing more
    starts while it stands."""
    watcher = stack.start_watcher(COORDINATOR_TRIGGER_BUDGET="10")
    partitions = [new_partition() for _ in range(30)]
    for partition in partitions:
        stack.trigger_root(partition)
    watcher.wait_log(r"budget\.held instance=default ")
    for partition in partitions:
        stack.wait_success(ROOT_DAG, partition)
    wait_for(lambda: fan_in_runs(stack, partitions) >= 10, "the 10 runs the budget allows")
    stack.settle(quiet=QUIET_S * 2, confirmed=True)
    assert fan_in_runs(stack, partitions) == 10
    assert any(s["held"] for s in stack.status_json(partitions[0])["budget"])
    samples = scrape(watcher)
    assert total(samples, "coordinator_triggers_held", instance="default") >= 1
    assert total(samples, "coordinator_trigger_budget_used", instance="default") == 10
    assert watcher.lines(r"reconcile .*leader=True") and len(watcher.lines(r"budget\.held ")) == 1


def test_release_refuses_a_bad_instance_name(stack: Stack) -> None:
    """`coordinator release ..` exits 2 naming the value, writing nothing."""
    done = release(stack, "..")
    assert done.returncode == 2 and "'..' is not a valid instance name" in done.stderr, done.stderr
    assert stack.etcd.items(stack.keys.budgets) == {}
