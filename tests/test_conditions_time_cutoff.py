"""A cutoff at a time of day (semantics `group-cutoff`): ``"cutoff": "06:00"`` passes at the first 06:00 in the DAG's
zone at or after the partition's end, for daily or coarser grids only; the planner runs with what has arrived then
and ``next_cutoff`` names that instant. Pure: ``now`` is an argument."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from coordinator.core.conditions import GroupSpec, clock_text, parse_clock, time_of_day_after
from coordinator.core.grid import Grid
from coordinator.core.model import RunState
from coordinator.core.planner import next_cutoff, plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError
from tests.support.world import P1, World, n

REGIONS = ["eu", "us", "apac"]


def spec_of(partitions: dict[str, str] | None, cutoff: str = "06:00", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"upstreams": [{"all": REGIONS, "cutoff": cutoff, "min": 2, **extra}]}
    if partitions is not None:
        body["partitions"] = partitions
    return {"version": 1, "dags": {"rollup": body}}


def group_of(partitions: dict[str, str] | None, cutoff: str = "06:00") -> GroupSpec:
    return parse_spec(json.dumps(spec_of(partitions, cutoff))).dags[n("rollup")].groups[0]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("partitions", "cutoff", "partition", "at"),
    [
        pytest.param({"cron": "@daily"}, "06:00", P1, "2026-01-02T06:00", id="utc-day-cut-next-morning"),
        pytest.param({"cron": "@daily"}, "00:00", P1, "2026-01-02T00:00", id="midnight-is-the-partition-end"),
        pytest.param({"cron": "@daily"}, "23:30", P1, "2026-01-02T23:30", id="late-evening-of-the-next-day"),
        pytest.param(
            {"cron": "@daily", "timezone": "Europe/Berlin"},
            "06:00",
            "2025-12-31T23:00:00Z",
            "2026-01-02T05:00",
            id="berlin-winter-day",
        ),
        pytest.param(
            {"cron": "@daily", "timezone": "Europe/Berlin"},
            "06:00",
            "2026-03-28T23:00:00Z",
            "2026-03-30T04:00",
            id="berlin-dst-sunday-23h",
        ),
        pytest.param({"cron": "0 2 * * *"}, "06:00", "2026-01-01T02:00:00Z", "2026-01-02T06:00", id="day-from-02"),
        pytest.param({"cron": "0 2 * * *"}, "01:00", "2026-01-01T02:00:00Z", "2026-01-03T01:00", id="before-end"),
        pytest.param({"cron": "@weekly"}, "06:00", "2026-01-04T00:00:00Z", "2026-01-11T06:00", id="week"),
        pytest.param({"cron": "@monthly"}, "06:00", P1, "2026-02-01T06:00", id="month"),
        pytest.param({"cron": "0 0 * * 1-5"}, "06:00", "2026-01-02T00:00:00Z", "2026-01-05T06:00", id="friday"),
    ],
)
def test_the_cutoff_is_that_time_after_the_partitions_end(
    partitions: dict[str, str], cutoff: str, partition: str, at: str
) -> None:
    """The first HH:MM in the grid's zone at or after the partition's end (the next grid point), in UTC."""
    assert group_of(partitions, cutoff).cutoff_at(partition) == utc(at)


@pytest.mark.parametrize(
    ("partitions", "what"),
    [
        pytest.param(None, "a time-of-day cutoff needs the DAG's partitions to be days (or longer)", id="no-grid"),
        pytest.param({"cron": "@hourly"}, "not '0 * * * *' (several partitions a day)", id="hourly"),
        pytest.param({"cron": "0 0,12 * * *"}, "(several partitions a day)", id="twice-a-day"),
        pytest.param({"cron": "*/30 6 * * *"}, "(several partitions a day)", id="every-30-min-at-six"),
    ],
)
def test_finer_grids_are_refused_with_path_and_hint(partitions: dict[str, str] | None, what: str) -> None:
    """Without a daily or coarser grid a time of day has no day to fall on: refused at the cutoff, with a hint."""
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps(spec_of(partitions)))
    (problem,) = info.value.problems
    assert "$.dags.rollup.upstreams[0].cutoff: " in problem
    assert what in problem and 'use a duration after the partition\'s start, e.g. "cutoff": "6h"' in problem


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("06:00", 21600, id="hh-mm"),
        pytest.param("23:59:30", 86370, id="hh-mm-ss"),
        pytest.param("00:00", 0, id="midnight"),
        pytest.param("24:00", None, id="hour-24"),
        pytest.param("6:00", None, id="one-digit"),
        pytest.param("06:60", None, id="minute-60"),
    ],
)
def test_times_of_day_parse_and_print_back(text: str, seconds: int | None) -> None:
    """HH:MM[:SS] from 00:00 to 23:59:59 and nothing else; printed back as written."""
    if seconds is None:
        with pytest.raises(ValueError, match="not a time of day"):
            parse_clock(text)
        return
    assert parse_clock(text) == seconds
    assert clock_text(seconds) == text


def test_a_time_in_the_spring_forward_gap_falls_after_it() -> None:
    """02:30 Berlin does not exist on 2026-03-29: the cutoff is at 03:30 local (01:30Z), never before the day."""
    assert time_of_day_after(utc("2026-03-28T23:00"), parse_clock("02:30"), "Europe/Berlin") == utc("2026-03-29T01:30")


def test_the_shape_and_the_schema_carry_the_time() -> None:
    """The DAG's shape records the time as written (a change of it is a change of the definition), and the JSON
    Schema accepts it while refusing 24:00."""
    six, seven = (parse_spec(json.dumps(spec_of({"cron": "@daily"}, c))) for c in ("06:00", "07:00"))
    assert six.shapes[n("rollup")] != seven.shapes[n("rollup")]
    assert six.dags[n("rollup")].groups[0].item()[3] == "06:00"
    validator = jsonschema.Draft202012Validator(json_schema())
    assert not list(validator.iter_errors(spec_of({"cron": "@daily"})))
    assert list(validator.iter_errors(spec_of({"cron": "@daily"}, "24:00")))


def test_the_planner_runs_at_the_time_and_next_cutoff_names_it() -> None:
    """eu and us in for the UTC day P1: nothing at 05:59 the next morning, a run with both at 06:00 (next_cutoff
    says when), and one rerun when apac lands; the world saw no early trigger."""
    world = World(parse_spec(json.dumps(spec_of({"cron": "@daily"}))))
    world.adopt()
    for region in ("eu", "us"):
        world.state(region, P1, RunState.SUCCESS)
    world.clock = utc("2026-01-02T05:59")
    assert next_cutoff(world.graph, world.view, world.clock) == utc("2026-01-02T06:00")
    assert world.act() == 0
    world.clock = utc("2026-01-02T06:00")
    assert world.act() == 1
    world.start("rollup", P1)
    world.finish("rollup", P1)
    world.state("apac", P1, RunState.SUCCESS)
    assert world.act() == 1
    runs = [sorted(k.removeprefix("default/") for k in e[3]) for e in world.effects if e[0] == n("rollup")]
    assert runs == [["eu", "us"], ["apac", "eu", "us"]]
    assert world.violations == []
    assert next_cutoff(world.graph, world.view, world.clock) is None


def test_plan_without_a_clock_never_runs_early() -> None:
    """A caller with no ``now`` (today's commands) sees no cutoff pass, a time of day included."""
    world = World(parse_spec(json.dumps(spec_of({"cron": "@daily"}))))
    world.adopt()
    world.state("eu", P1, RunState.SUCCESS)
    world.state("us", P1, RunState.SUCCESS)
    assert plan(world.graph, world.view).actions == ()
    assert "2 from 06:00 after the partition's end" in plan(world.graph, world.view).verdicts[(n("rollup"), P1)].summary


def test_the_grid_step_is_the_partitions_end() -> None:
    """The rule reads the grid: a cutoff of a partition that is no grid point (a manual run at 13:00) is the time
    after the next grid point."""
    group = group_of({"cron": "@daily"})
    assert group.grid == Grid("0 0 * * *")
    assert group.cutoff_at("2026-01-01T13:00:00Z") == utc("2026-01-02T06:00")
