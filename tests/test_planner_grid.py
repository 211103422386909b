"""Planner example tables for partition grids (semantics rule 10): identity, rollup, fan-out, offset, DST, mixed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from coordinator.core.actions import Trigger
from coordinator.core.model import RunState, TriggerAction, TriggerRecord, TriggerStatus, dump_record
from coordinator.core.planner import plan, plan_changes
from coordinator.core.spec.loader import parse_spec
from tests.support.world import World, n

DAY = "2025-03-10T00:00:00Z"
NEXT_DAY = "2025-03-11T00:00:00Z"
HOURLY = {"cron": "0 * * * *"}
DAILY = {"cron": "0 0 * * *"}


def hours(start: str, count: int) -> list[str]:
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return [(first + timedelta(hours=i)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(count)]


def world_of(dags: dict[str, object]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def rollup() -> World:
    return world_of({"hourly": {"partitions": HOURLY}, "daily": {"partitions": DAILY, "upstreams": "hourly"}})


def fan_out() -> World:
    return world_of({"daily": {"partitions": DAILY}, "hourly": {"partitions": HOURLY, "upstreams": "daily"}})


def test_same_grid_is_the_exact_date_join_with_todays_ledger() -> None:
    """Two DAGs on the same grid join equal partitions and record inputs in today's ledger form."""
    world = world_of({"a": {"partitions": DAILY}, "b": {"partitions": DAILY, "upstreams": "a"}})
    rev = world.state("a", DAY, RunState.SUCCESS)
    world.settle()
    assert world.effects == [(n("b"), DAY, "create", {"default/a": rev})]


def test_rollup_waits_for_the_whole_window_and_says_what_is_missing() -> None:
    """A daily DAG over hourly partitions waits for all 24 (no partial run) and names the missing hours."""
    world = rollup()
    for hour in hours(DAY, 24):
        if hour not in ("2025-03-10T05:00:00Z", "2025-03-10T06:00:00Z", "2025-03-10T07:00:00Z"):
            world.state("hourly", hour, RunState.SUCCESS)
    assert world.act() == 0
    verdict = world.plan([DAY]).verdicts[(n("daily"), DAY)]
    assert "hourly: 21 of 24 partitions of 2025-03-10 succeeded; missing 05:00Z-07:00Z" in verdict.summary
    for hour in ("2025-03-10T05:00:00Z", "2025-03-10T06:00:00Z"):
        world.state("hourly", hour, RunState.SUCCESS)
    assert world.act() == 0
    world.state("hourly", "2025-03-10T07:00:00Z", RunState.SUCCESS)
    world.settle()
    assert world.count("daily", DAY) == 1 and world.effects[0][2] == "create"
    inputs = world.effects[0][3]
    assert len(inputs) == 24 and "default/hourly" in inputs and "default/hourly@2025-03-10T23:00:00Z" in inputs
    assert world.count("daily", NEXT_DAY) == 0 and world.violations == []


def test_rollup_reruns_once_after_one_hour_reruns() -> None:
    """Clearing one hourly partition holds the daily DAG until it succeeds again, then reruns it exactly once."""
    world = rollup()
    for hour in hours(DAY, 24):
        world.state("hourly", hour, RunState.SUCCESS, f"scheduled__{hour}")
    world.settle()
    hour = "2025-03-10T13:00:00Z"
    world.state("hourly", hour, RunState.RUNNING, f"scheduled__{hour}", clear_number=1)
    assert world.act() == 0
    assert "missing 13:00Z" in world.plan([DAY]).verdicts[(n("daily"), DAY)].summary
    world.state("hourly", hour, RunState.SUCCESS, f"scheduled__{hour}", clear_number=1)
    world.settle()
    assert [e[2] for e in world.effects] == ["create", "clear"]
    assert world.plan().actions == ()


def test_fan_out_triggers_every_hour_of_the_day_once() -> None:
    """One daily success makes the 24 hourly partitions of that day due; each is triggered once, reruns once."""
    world = fan_out()
    world.state("daily", DAY, RunState.SUCCESS, "scheduled__d")
    world.settle()
    assert sorted(e[1] for e in world.effects) == hours(DAY, 24)
    gen = world.view.runs[(n("daily"), DAY)].rev
    for _, hour, kind, inputs in world.effects:
        assert kind == "create" and inputs == {"default/daily" if hour == DAY else f"default/daily@{DAY}": gen}
    world.state("daily", DAY, RunState.SUCCESS, "scheduled__d", clear_number=1)
    world.settle()
    assert len(world.effects) == 48 and [e[2] for e in world.effects[24:]] == ["clear"] * 24
    assert world.violations == []


def test_fan_out_change_is_planned_in_the_partitions_it_maps_to() -> None:
    """plan_changes for a daily success returns the hourly triggers of other partitions, like a full pass."""
    world = fan_out()
    world.state("daily", DAY, RunState.SUCCESS)
    incremental = plan_changes(world.graph, world.view, {DAY: [n("daily")]})
    full = plan(world.graph, world.view, explain=False)
    assert [(a.node, a.partition) for a in incremental.actions] == [(a.node, a.partition) for a in full.actions]
    assert len(incremental.actions) == 24
    assert plan_changes(world.graph, world.view, {DAY: [n("daily")]}, skip=[DAY]).actions[0].partition != DAY


def test_offset_minus_one_needs_the_previous_period() -> None:
    """With offset -1 the report for a day runs after fx_rates of the day before, not of the same day."""
    world = world_of(
        {
            "fx": {"partitions": DAILY},
            "report": {"partitions": DAILY, "upstreams": [{"dag": "fx", "offset": -1}]},
        }
    )
    rev = world.state("fx", DAY, RunState.SUCCESS)
    world.settle()
    assert world.effects == [(n("report"), NEXT_DAY, "create", {f"default/fx@{DAY}": rev})]
    verdict = world.plan([DAY]).verdicts[(n("report"), DAY)]
    assert "needs fx for 2025-03-09T00:00:00Z: fx has not run for this partition" in verdict.summary


def test_berlin_day_over_utc_hours_on_the_dst_sunday() -> None:
    """A Berlin daily DAG needs 23 hourly partitions on the spring DST Sunday and runs once after them."""
    world = world_of(
        {
            "hourly": {"partitions": HOURLY},
            "berlin": {"partitions": {"cron": "0 0 * * *", "timezone": "Europe/Berlin"}, "upstreams": "hourly"},
        }
    )
    sunday = "2025-03-29T23:00:00Z"  # 30 March 2025, 00:00 in Berlin (CET)
    for hour in hours(sunday, 22):
        world.state("hourly", hour, RunState.SUCCESS)
    assert world.act() == 0
    summary = world.plan([sunday]).verdicts[(n("berlin"), sunday)].summary
    assert f"hourly: 22 of 23 partitions of {sunday} succeeded; missing 2025-03-30T21:00:00Z" in summary
    world.state("hourly", "2025-03-30T21:00:00Z", RunState.SUCCESS)
    world.settle()
    assert [(e[1], len(e[3])) for e in world.effects] == [(sunday, 23)]


def test_mixed_gridded_and_ungridded_edges_join_equal_dates() -> None:
    """An edge with a grid on one side only is today's exact-date join."""
    world = world_of({"hourly": {"partitions": HOURLY}, "plain": {"upstreams": "hourly"}})
    hour = "2025-03-10T05:00:00Z"
    rev = world.state("hourly", hour, RunState.SUCCESS)
    world.settle()
    assert world.effects == [(n("plain"), hour, "create", {"default/hourly": rev})]


def test_a_ledger_in_the_previous_format_causes_no_rerun() -> None:
    """A store written before grids existed (plain input keys, D succeeded after its trigger) plans nothing."""
    world = world_of({"a": {}, "b": {"upstreams": "a"}})
    gen = world.state("a", DAY, RunState.SUCCESS)
    # Exactly what the previous release wrote: inputs keyed by qualified id, intent_rev on the confirmation.
    old = {
        "status": "done", "action": "create", "run_id": f"coordinator__{DAY}", "inputs": {"default/a": gen},
        "reason": "all upstreams succeeded", "cause_rev": gen, "intent_rev": gen + 1, "trigger_count": 1,
    }  # fmt: skip
    world.write(world.keys.trigger_key(n("b"), DAY), json.dumps(old).encode())
    world.write(world.keys.trigger_key(n("b"), DAY), json.dumps(old).encode())
    world.state("b", DAY, RunState.SUCCESS, f"coordinator__{DAY}")
    assert world.plan().actions == ()
    assert world.plan([DAY]).verdicts[(n("b"), DAY)].fresh


def test_adding_grids_later_redates_and_reruns_nothing() -> None:
    """Declaring the same grid on both DAGs after they ran re-dates them and triggers no rerun."""
    world = world_of({"a": {}, "b": {"upstreams": "a"}})
    world.state("a", DAY, RunState.SUCCESS)
    world.settle()
    world.adopt(parse_spec(json.dumps({"version": 1, "dags": {"a": {"partitions": DAILY}, "b": {
        "partitions": DAILY, "upstreams": "a"}}})))  # fmt: skip
    assert world.plan().actions == ()
    world.adopt(parse_spec(json.dumps({"version": 1, "dags": {"a": {"partitions": HOURLY}, "b": {
        "partitions": DAILY, "upstreams": "a"}}})))  # fmt: skip
    assert world.plan().actions == ()


def test_backfill_on_a_gridded_dag_processes_its_history() -> None:
    """History that predates a gridded DAG's definition runs only when backfilled, for D's own partitions."""
    world = World(parse_spec('{"version": 1, "dags": {"daily": {"partitions": {"cron": "0 0 * * *"}}}}'))
    world.adopt()
    world.state("daily", DAY, RunState.SUCCESS)
    world.adopt(parse_spec(json.dumps({"version": 1, "dags": {"daily": {"partitions": DAILY}, "hourly": {
        "partitions": HOURLY, "upstreams": "daily"}}})))  # fmt: skip
    assert world.plan().actions == ()
    world.backfill("hourly", "2025-03-10T04:00:00Z")
    actions = world.plan().actions
    assert [(a.node, a.partition) for a in actions if isinstance(a, Trigger)] == [(n("hourly"), "2025-03-10T04:00:00Z")]


def test_a_partition_off_the_grid_waits_visibly() -> None:
    """A run of a gridded DAG at a time off its grid has no mapped inputs: it is never triggered, and says why."""
    world = rollup()
    odd = "2025-03-10T05:30:00Z"
    world.state("hourly", odd, RunState.SUCCESS)
    world.state("daily", odd, RunState.FAILED)
    assert world.plan().actions == ()
    assert "is not a point of daily's grid" in world.plan([odd]).verdicts[(n("daily"), odd)].summary


def test_failure_handler_across_grids_runs_once_per_failed_hour() -> None:
    """A daily failure handler of an hourly DAG runs once per failed hourly generation of its day."""
    world = world_of({"hourly": {"partitions": HOURLY}, "alert": {"partitions": DAILY, "on_failure_of": "hourly"}})
    world.state("hourly", "2025-03-10T03:00:00Z", RunState.FAILED)
    world.settle()
    world.state("hourly", "2025-03-10T04:00:00Z", RunState.FAILED)
    world.settle()
    assert [(e[1], e[2], len(e[3])) for e in world.effects] == [(DAY, "create", 1), (DAY, "clear", 2)]


def test_records_of_the_previous_format_still_parse() -> None:
    """A ledger record without partition-qualified inputs parses unchanged (the format only grew a key form)."""
    record = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r", inputs={"default/a": 3})
    assert json.loads(dump_record(record))["inputs"] == {"default/a": 3}
