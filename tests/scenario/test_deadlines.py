"""Deadlines on real watchers, a real etcd and the fake Airflow (semantics rule 13, ``watcher/deadlines.py``).

The graph: ``01 -> 02 -> 03`` on a daily UTC grid, ``03`` expected 20 days after its partition starts, and ``07`` the
``on_late_of`` handler of ``03``. The partition is today's (deadlines are judged against the real clock), far from
its deadline, so only a cause or a prediction can make it anything but on time.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId, canonical_partition
from tests.scenario.conftest import Stack, WatcherProc, wait_for
from tests.scenario.test_crash_points import crashed
from tests.scenario.test_metrics_health import scrape, total

pytestmark = pytest.mark.scenario

ROOT, MIDDLE, TARGET, HANDLER = "01_pipeline", "02_pipeline", "03_pipeline", "07_pipeline"
DAILY = {"partitions": {"cron": "0 0 * * *"}}
#: 0.2 s between deadline passes: a test waits for a transition, never for a timer.
FAST = {"COORDINATOR_DEADLINE_INTERVAL_S": "0.2"}
TTL = 1


def graph(root_rule: dict[str, Any] | None = None) -> dict[str, Any]:
    root: dict[str, Any] = {**DAILY}
    if root_rule is not None:
        root["expected_by"] = root_rule
    return {
        "version": 1,
        "dags": {
            ROOT: root,
            MIDDLE: {"upstreams": ROOT, **DAILY},
            TARGET: {"upstreams": MIDDLE, **DAILY, "expected_by": {"after_start": "20d", "warn": "1h"}},
            HANDLER: {"on_late_of": TARGET},
        },
    }


def today() -> str:
    now = datetime.now(UTC)
    return canonical_partition(datetime(now.year, now.month, now.day, tzinfo=UTC))


def put_run(stack: Stack, dag: str, partition: str, state: str, **extra: str) -> None:
    record = {"state": state, "run_id": f"scheduled__{partition}", "source": "test", **extra}
    stack.etcd.put(stack.run_key(dag, partition), json.dumps(record))


def transition(stack: Stack, partition: str, dag: str = TARGET) -> dict[str, Any] | None:
    raw = stack.etcd.get(stack.keys.deadline_key(NodeId(DEFAULT_INSTANCE, dag), partition))
    return None if raw is None else json.loads(raw)


def wait_state(stack: Stack, partition: str, state: str, *, alerted: bool | None = None) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        record = transition(stack, partition)
        if record is None or record["state"] != state or (alerted is not None and record["alerted"] != alerted):
            return None
        return record

    return wait_for(found, f"{TARGET} {partition} to be recorded {state}")


def handler_runs(stack: Stack) -> list[Any]:
    return stack.fake.requests("trigger", HANDLER)


def passes(watcher: WatcherProc, n: int = 5) -> None:
    """A quiet period of ``n`` more deadline passes (0.2 s apart), proving nothing more is recorded or alerted."""
    assert watcher.alive, watcher.tail()
    time.sleep(n * 0.2 + 0.3)


def test_failure_two_hops_up_blocks_and_alerts_once(stack: Stack) -> None:
    """A failed root makes 03 blocked (cause: the root) long before its deadline; the handler runs once with it."""
    stack.set_deps(graph())
    p = today()
    watcher = stack.start_watcher("w1", **FAST)
    put_run(stack, ROOT, p, "failed")
    record = wait_state(stack, p, "blocked", alerted=True)
    assert record["cause"] == f"default/{ROOT}@{p} failed"
    assert record["chain"] == f"default/{TARGET}@{p} <- default/{MIDDLE}@{p} <- default/{ROOT}@{p}"
    passes(watcher)
    runs = handler_runs(stack)
    assert len(runs) == 1, runs
    conf = stack.fake.runs(HANDLER)[0].conf["coordinator"]["deadline"]
    assert (conf["dag"], conf["partition"], conf["state"]) == (f"default/{TARGET}", p, "blocked")
    assert conf["cause"] == record["cause"]
    assert len(watcher.lines(rf"deadline\.transition dag=default/{TARGET} partition={p} ")) == 1
    samples = scrape(watcher)
    assert total(samples, "coordinator_deadline_partitions", dag=TARGET, state="blocked") == 1
    assert total(samples, "coordinator_deadline_min_slack_seconds") > 0  # blocked, but the deadline is days away


def test_status_and_why_show_deadline_eta_and_cause(stack: Stack) -> None:
    """``status`` lists 03's deadline state with its cause chain; ``why`` says blocked and names the failed root."""
    stack.set_deps(graph())
    p = today()
    put_run(stack, ROOT, p, "failed")
    rows = {(r["dag"], r["partition"]): r for r in stack.status_json()["deadlines"]}
    row = rows[(TARGET, p)]
    assert (row["state"], row["cause"]) == ("blocked", f"default/{ROOT}@{p} failed")
    assert row["chain"].endswith(f"default/{ROOT}@{p}")
    text = stack.cli("why", TARGET, "-p", p).stdout
    assert "deadline: blocked" in text and f"cause: default/{ROOT}@{p} failed" in text
    table = stack.cli("status").stdout
    assert "deadlines (expected_by)" in table and "blocked" in table


def test_leader_killed_after_the_transition_is_recorded_alerts_once(stack: Stack) -> None:
    """Dead right after recording the transition (exit 86): the standby triggers the handler once, records nothing
    new, and never alerts that transition again."""
    stack.set_deps(graph())
    p = today()
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-deadline-transition", **FAST)
    second = stack.start_watcher("second", ttl=TTL, ready="loaded", **FAST)
    put_run(stack, ROOT, p, "failed")
    crashed(first, "after-deadline-transition")
    before = transition(stack, p)
    assert before is not None and before["state"] == "blocked" and before["alerted"] is False
    after = wait_state(stack, p, "blocked", alerted=True)
    passes(second)
    assert after["sequence"] == before["sequence"] == 1
    assert after["changed_at"] == before["changed_at"]
    assert [r.client for r in handler_runs(stack)] == [second.name]
    assert not second.lines(r"deadline\.transition "), "the standby recorded the transition again"


def test_slow_upstream_makes_it_at_risk(stack: Stack) -> None:
    """A root still running whose expected duration ends after 03's deadline makes 03 at_risk, with an ETA."""
    stack.set_deps(graph({"after_start": "60d", "duration": "30d"}))
    p = today()
    stack.start_watcher("w1", **FAST)
    started = datetime.now(UTC).replace(microsecond=0)
    put_run(stack, ROOT, p, "running", start_date=started.isoformat())
    record = wait_state(stack, p, "at_risk", alerted=True)
    assert datetime.fromisoformat(record["eta"]) > datetime.fromisoformat(record["deadline"])
    assert datetime.fromisoformat(record["eta"]) >= started + timedelta(days=30)
    # Yesterday's partition has not started either, and the root would take 30 days: also at risk.
    wait_for(lambda: len(handler_runs(stack)) == 2, "the handler to run for both partitions")
    assert {r.conf["coordinator"]["deadline"]["partition"] for r in stack.fake.runs(HANDLER)} >= {p}


def test_success_before_the_deadline_raises_nothing(stack: Stack) -> None:
    """The chain succeeding long before the deadline records no transition and runs no handler."""
    stack.set_deps(graph())
    p = today()
    watcher = stack.start_watcher("w1", **FAST)
    stack.trigger_root(p)
    stack.wait_success(TARGET, p)
    stack.settle()
    passes(watcher)
    assert transition(stack, p) is None
    assert handler_runs(stack) == []
    assert not watcher.lines(r"deadline\.transition ")
