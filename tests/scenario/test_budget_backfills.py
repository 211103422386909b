"""The trigger budget recognises backfills and reruns (semantics `budget-explained-pass`, `budget-rerun-pass`) through
real watchers, real etcd and the fake Airflow, under the default settings: a fan-out rerun after a two-day catch-up
runs all its hourly reruns, and a week of runs recorded as Airflow backfills runs its 168 hourly dependents, each once
and with no hold. (The forged flood of 300 successes that must still be held is
``test_budget_dags.py::test_a_flood_of_one_roots_successes_holds_its_dependents_only_and_release_dag_starts_them_once``.)
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from coordinator.core.model import canonical_partition, partition_datetime
from tests.scenario.conftest import Stack, new_partition, wait_for
from tests.scenario.test_budget_dags import SLOW, budget, held_dags

pytestmark = pytest.mark.scenario

DAILY = {"cron": "0 0 * * *"}
HOURLY = {"cron": "0 * * * *"}
HELD = r"budget\.(dag_)?held "


def hours(day: str) -> list[str]:
    """The 24 hourly partitions of ``day``."""
    start = partition_datetime(day)
    return [canonical_partition(start + timedelta(hours=h)) for h in range(24)]


def fan_out(stack: Stack, daily: str, hourly: str) -> None:
    """A daily DAG with an hourly DAG below it (a daily partition fans out to 24): the hourly one's allowance is 48."""
    stack.fake.add_dag(daily)
    stack.fake.add_dag(hourly)
    stack.set_deps({
        "version": 1,
        "dags": {daily: {"partitions": DAILY}, hourly: {"partitions": HOURLY, "upstreams": [daily]}},
    })  # fmt: skip


def test_a_fan_out_rerun_after_a_two_day_catch_up_runs_all_24_hourly_reruns(stack: Stack) -> None:
    """A daily upstream succeeds for two days at once (48 hourly runs of g_enrich, its whole allowance); a rerun of
    one of those days then reruns its 24 hourly runs, each cleared once, with no hold: the earlier runs explain it."""
    fan_out(stack, "g_daily", "g_enrich")
    days = [new_partition(), new_partition()]
    both = [h for d in days for h in hours(d)]
    watcher = stack.start_watcher()
    for day in days:
        stack.trigger_root(day, dag="g_daily")
    wait_for(lambda: stack.all_succeeded(("g_enrich", h) for h in both) or watcher.lines(HELD),
             "48 g_enrich successes", timeout=SLOW, interval=0.5)  # fmt: skip
    stack.settle()
    assert not watcher.lines(HELD), watcher.lines(HELD)
    assert stack.fake.creates("g_enrich") == 48 and budget(stack, days[0])["dags"]["g_enrich"]["started"]

    stack.fake.clear_run("g_daily", f"scheduled__{days[1]}")
    rerun = hours(days[1])
    wait_for(lambda: stack.all_succeeded((("g_enrich", h) for h in rerun), attempt=1) or watcher.lines(HELD),
             "24 g_enrich reruns", timeout=SLOW, interval=0.5)  # fmt: skip
    stack.settle(confirmed=True)
    assert not watcher.lines(HELD), watcher.lines(HELD)
    assert not held_dags(budget(stack, days[0]))
    assert stack.fake.creates("g_enrich") == 48 and stack.fake.clears("g_enrich") == 24
    assert all(len(stack.fake_runs("g_enrich", h)) == 1 for h in both)
    assert all(len(stack.executions("g_enrich", h)) == 2 for h in rerun), "a rerun ran twice or not at all"
    assert all(len(stack.executions("g_enrich", h)) == 1 for h in hours(days[0]))


def test_a_week_of_airflow_backfill_runs_runs_its_168_hourly_dependents_with_no_hold(stack: Stack) -> None:
    """7 days of a daily DAG recorded as Airflow backfill runs (run_type backfill, run ids backfill__..., as the
    plugin records an `airflow backfill`): all 168 runs of the hourly DAG below it start once each, with no hold,
    beyond its allowance of 48."""
    fan_out(stack, "b_daily", "b_hourly")
    week = [new_partition() for _ in range(7)]
    below = [h for d in week for h in hours(d)]
    watcher = stack.start_watcher()
    for day in week:
        record = {"state": "success", "run_id": f"backfill__{day}", "clear_number": 0,
                  "source": "airflow-plugin:default", "run_type": "backfill"}  # fmt: skip
        stack.etcd.put(stack.run_key("b_daily", day), json.dumps(record))
    wait_for(lambda: stack.all_succeeded(("b_hourly", h) for h in below) or watcher.lines(HELD),
             "168 b_hourly successes", timeout=SLOW, interval=0.5)  # fmt: skip
    stack.settle(confirmed=True)
    assert not watcher.lines(HELD), watcher.lines(HELD)
    assert not held_dags(budget(stack, week[0]))
    assert all(len(stack.fake_runs("b_hourly", h)) == 1 for h in below)
    assert stack.fake.creates("b_hourly") == 168 and stack.fake.clears("b_hourly") == 0
