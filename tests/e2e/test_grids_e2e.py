"""Partition grids on a real Airflow 3.3: a day of hourly runs (triggered by the test) rolls up into ONE daily run
the coordinator triggers after all of them, and one cleared hourly run reruns the daily run exactly once.

e2e_hourly (hourly grid) and e2e_daily (daily grid, upstream e2e_hourly) are in SESSION_GRAPH (harness.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.core.model import RunState, canonical_partition, partition_datetime, run_id_for
from tests.e2e.harness import E2E, SESSION_GRAPH, assert_started_after
from tests.e2e.settle import wait_runs_settled

pytestmark = pytest.mark.e2e


def test_a_day_of_hourly_runs_triggers_the_daily_run_once_and_one_clear_reruns_it_once(e2e: E2E) -> None:
    """24 hourly successes trigger e2e_daily once, after all of them; clearing one hourly run reruns it once."""
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    e2e.start_watcher(deps, "--id", "e2e-grids", name="grids-watcher")
    e2e.wait_for_leader(deps, "e2e-grids")
    day = e2e.new_partition()
    hours = [canonical_partition(partition_datetime(day) + timedelta(hours=h)) for h in range(24)]
    run_ids = {hour: e2e.run_id(f"hour{i:02d}") for i, hour in enumerate(hours)}
    for hour in hours:
        e2e.stack.trigger("e2e_hourly", run_ids[hour], hour)

    e2e.wait_for_run_record(
        "e2e_daily", day, lambda r: r.state is RunState.SUCCESS, timeout_s=300, what="the daily rollup's success"
    )
    daily = e2e.only_run("e2e_daily", day)
    hourly = [e2e.only_run("e2e_hourly", hour) for hour in hours]
    assert all(run.state == "success" for run in hourly), [(r.run_id, r.state) for r in hourly]
    assert daily.run_id == run_id_for(day)
    assert_started_after(daily, hourly)
    ledger = e2e.read_ledger("e2e_daily", day)
    assert ledger is not None and len(ledger.inputs) == 24 and ledger.trigger_count == 1, ledger

    e2e.stack.clear("e2e_hourly", run_ids[hours[5]])
    e2e.wait_for_run_record(
        "e2e_daily",
        day,
        lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
        timeout_s=180,
        what="the daily rerun's success",
    )
    rerun_hour = e2e.only_run("e2e_hourly", hours[5])
    assert_started_after(e2e.only_run("e2e_daily", day), [rerun_hour])
    # A duplicate daily clear would be an action of the watcher's idle pass after the rerun's success, or before it.
    wait_runs_settled(e2e, "grids-watcher", [("e2e_daily", day), ("e2e_hourly", hours[5])])
    record, _ = e2e.read_run("e2e_daily", day)
    assert record is not None and record.clear_number == 1, "the daily DAG reran more than once"
    assert [r.run_id for r in e2e.runs("e2e_daily", day)] == [run_id_for(day)]
    ledger = e2e.read_ledger("e2e_daily", day)
    assert ledger is not None and ledger.trigger_count == 2, ledger
