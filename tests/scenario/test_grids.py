"""A day of hourly partitions rolling up into a daily DAG through a real watcher, real etcd and the fake Airflow."""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.core.model import canonical_partition, partition_datetime
from tests.scenario.conftest import Stack, new_partition

pytestmark = pytest.mark.scenario

HOURLY, DAILY = "hourly_ingest", "daily_report"
GRIDDED = {
    "version": 1,
    "dags": {
        HOURLY: {"partitions": {"cron": "0 * * * *"}},
        DAILY: {"partitions": {"cron": "0 0 * * *"}, "upstreams": [HOURLY]},
    },
}


def test_hourly_day_rolls_up_into_one_daily_run_and_one_rerun(stack: Stack) -> None:
    """24 hourly runs trigger the daily DAG once (not before the last); one hourly rerun reruns it exactly once."""
    stack.fake.add_dag(HOURLY)
    stack.fake.add_dag(DAILY)
    stack.set_deps(GRIDDED)
    day = new_partition()
    hours = [canonical_partition(partition_datetime(day) + timedelta(hours=h)) for h in range(24)]
    stack.start_watcher()
    late = hours[13]
    for hour in hours:
        if hour != late:
            stack.trigger_root(hour, dag=HOURLY)
    for hour in hours:
        if hour != late:
            stack.wait_success(HOURLY, hour)
    stack.settle()
    assert stack.fake.creates(DAILY) == 0 and stack.fake_runs(DAILY, day) == []
    why = stack.cli("why", DAILY, "-p", day).stdout
    assert f"{HOURLY}: 23 of 24 partitions of {day[:10]} succeeded; missing 13:00Z" in why, why
    status = stack.status_json(day)
    row = next(r for r in status["rows"] if r["dag"] == DAILY)
    assert row["waiting_on"] == [HOURLY] and "missing 13:00Z" in row["summary"], row
    # An hourly partition is not one of the daily DAG's own: status shows no row for it there.
    assert [r["dag"] for r in stack.status_json(hours[3])["rows"]] == [HOURLY]

    stack.trigger_root(late, dag=HOURLY)
    stack.wait_success(DAILY, day)
    stack.settle()
    stack.assert_once(day, (DAILY,), clears=0)
    assert stack.fake.creates(DAILY) == 1
    ledger = stack.ledger(DAILY, day)
    assert ledger is not None and len(ledger["inputs"]) == 24
    assert f"default/{HOURLY}@{late}" in ledger["inputs"] and f"default/{HOURLY}" in ledger["inputs"]

    stack.fake.clear_run(HOURLY, f"scheduled__{hours[5]}")
    stack.wait_success(DAILY, day, attempt=1)
    stack.settle()
    stack.assert_once(day, (DAILY,), clears=1)
    assert stack.fake.creates(DAILY) == 1 and stack.fake.clears(DAILY) == 1
    # The coordinator never runs the hourly root, and no other day of the daily DAG was touched.
    assert stack.fake.calls("trigger", HOURLY) == 0 and stack.fake.calls("clear", HOURLY) == 0
    assert [r.logical_date for r in stack.fake.runs(DAILY)] == [partition_datetime(day)]
