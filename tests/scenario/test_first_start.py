"""First start on a store with history (semantics rule 9): processed once below the limit, held above it."""

from __future__ import annotations

import json

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, LAST, ROOT_DAG, SEVEN_DAGS, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def history(stack: Stack, *partitions: str) -> None:
    """The root succeeds for ``partitions`` while no watcher has ever run under this prefix."""
    for p in partitions:
        stack.trigger_root(p)
    for p in partitions:
        stack.wait_success(ROOT_DAG, p)
    stack.settle()
    assert all(stack.fake_runs(dag, p) == [] for dag in DOWNSTREAM for p in partitions)


def test_first_watcher_runs_what_succeeded_before_it_started(stack: Stack) -> None:
    """status/why say no graph was adopted; the first watcher then cascades the earlier root success once."""
    p = new_partition()
    history(stack, p)
    status = stack.status_json(p)
    assert status["adoption"]["adopted"] is False
    assert status["adoption"]["held"] is False
    assert status["adoption"]["triggers"] == len(FAN_IN)
    assert {r["dag"] for r in status["rows"] if r["due"]} == set(FAN_IN)
    text = stack.cli("status", "-p", p).stdout
    assert "no graph has been adopted" in text, text
    why = stack.cli("why", FAN_IN[0], "-p", p).stdout
    assert "no graph has been adopted" in why and "coordinator watch" in why, why

    watcher = stack.start_watcher("w1")
    watcher.wait_log(r"graph\.adopted .*first=True")
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    assert stack.status_json(p)["adoption"] == {"adopted": True}


def test_first_start_above_the_limit_holds_until_the_operator_chooses(stack: Stack) -> None:
    """Over the limit nothing is adopted or triggered and status says what to do; --adopt-since runs what it names."""
    old, recent = new_partition(), new_partition()
    history(stack, old, recent)
    limit = {"COORDINATOR_FIRST_START_LIMIT": "5"}

    watcher = stack.start_watcher("w1", **limit)
    watcher.wait_log(r"graph\.adoption_held triggers=8 partitions=2 limit=5")
    stack.settle()
    assert stack.etcd.get(stack.keys.config_key("graph")) is None, "a held adoption writes nothing"
    assert all(stack.fake_runs(dag, p) == [] for dag in DOWNSTREAM for p in (old, recent))
    status = json.loads(stack.cli("status", "--format", "json", "--first-start-limit", "5").stdout)
    assert status["adoption"]["held"] is True and status["adoption"]["triggers"] == 8
    assert any("--adopt-since" in hint for hint in status["adoption"]["next"])
    dry = stack.cli("reconcile", "--dry-run", "--first-start-limit", "5").stdout
    assert "first adoption held" in dry and "nothing to do" in dry and "held back (8)" in dry, dry
    watcher.stop()

    stack.start_watcher("w2", COORDINATOR_ADOPT_HISTORY=recent, **limit)
    stack.wait_success(LAST, recent)
    stack.settle()
    stack.assert_once(recent)
    assert all(stack.fake_runs(dag, old) == [] for dag in DOWNSTREAM), "history before --adopt-since stays"
    newer = new_partition()
    stack.trigger_root(newer)
    stack.wait_success(LAST, newer)
    stack.settle()
    stack.assert_once(newer)


def test_adopt_flags_are_checked(stack: Stack) -> None:
    """Two --adopt-* flags, a bad date or a bad COORDINATOR_ADOPT_HISTORY exit 2 with a message saying what is wrong."""
    both = stack.cli("reconcile", "--dry-run", "--adopt-all", "--adopt-none", check=False)
    assert both.returncode == 2 and "choose one of --adopt-all, --adopt-none" in both.stderr, both.stderr
    bad = stack.cli("reconcile", "--dry-run", "--adopt-since", "yesterday", check=False)
    assert bad.returncode == 2 and "invalid partition 'yesterday'" in bad.stderr, bad.stderr
    watcher = stack.start_watcher("w1", ready="none", COORDINATOR_ADOPT_HISTORY="everything")
    wait_for(lambda: not watcher.alive, "the watcher to refuse a bad COORDINATOR_ADOPT_HISTORY")
    assert "adopt_history" in watcher.log() and "expected auto, all, none or a logical date" in watcher.log()
    assert watcher.proc.returncode == 2


def test_a_later_graph_change_ignores_history_without_backfill(stack: Stack) -> None:
    """After the first adoption, a DAG added to the graph runs for new root successes only, never for history."""
    p = new_partition()
    watcher = stack.start_watcher("w1")
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    stack.fake.add_dag("08_new")
    stack.set_deps({**SEVEN_DAGS, "08_new": ROOT_DAG})
    watcher.wait_log(r"graph\.adopted .*dags=8 first=False")
    stack.settle()
    assert stack.fake_runs("08_new", p) == []
    assert "predate its definition" in stack.cli("why", "08_new", "-p", p).stdout
    p2 = new_partition()
    stack.trigger_root(p2)
    stack.wait_success("08_new", p2)
    stack.wait_success(LAST, p2)
    stack.settle()
    stack.assert_once(p2, (*DOWNSTREAM, "08_new"))
