"""``why`` and ``status`` on condition groups (``explain.groups``): one line per group with its rule and where each
member stands, and for a cutoff what the run at it consumed and what a late member will do, all from the plan the
planner decided (the same ``now``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.core.model import RunState
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.explain.report import status_rows, why
from tests.support.world import P1, World, n

AT = datetime(2026, 1, 1, 6, tzinfo=UTC)


def world_of(upstreams: list[Any], partitions: dict[str, str] | None = None) -> World:
    body: dict[str, Any] = {"upstreams": upstreams}
    if partitions is not None:
        body["partitions"] = partitions
    world = World(parse_spec(json.dumps({"version": 1, "dags": {"d": body}})))
    world.adopt()
    return world


def why_lines(world: World) -> list[str]:
    return why(world.graph, plan(world.graph, world.view, [P1], now=world.clock), n("d"), P1, world.view, world.clock)


def run_once(world: World) -> None:
    """The watcher's pass at the world's clock, and Airflow running what it queued."""
    world.act()
    for node, partition in world.queued():
        world.start(node.dag_id, partition)
        world.finish(node.dag_id, partition)


def test_any_with_nothing_run_says_neither() -> None:
    """An any group of two members that have not run: 'runs when any of a, b: neither has run for P'."""
    lines = why_lines(world_of([{"any": ["a", "b"]}]))
    assert f"  runs when any of a, b: neither has run for {P1}" in lines


@pytest.mark.parametrize(
    ("states", "line"),
    [
        pytest.param(
            {"eu": "success", "us": "success", "apac": "failed"},
            "2 of 3 needed, met: eu, us done; apac failed",
            id="two-done-one-failed",
        ),
        pytest.param(
            {"eu": "success", "apac": "running"},
            "1 more of 2 needed: eu done; us has not run; apac running",
            id="one-done",
        ),
    ],
)
def test_at_least_names_each_member_by_state(states: dict[str, str], line: str) -> None:
    """An at_least group lists the members done first, then the others with their state as the view has it."""
    world = world_of([{"at_least": 2, "of": ["eu", "us", "apac"]}])
    for dag, state in states.items():
        world.state(dag, P1, RunState(state))
    text = "\n".join(why_lines(world))
    want = sorted(line.split(": ", 1)[1].split("; "))
    head = f"  {line.split(': ', 1)[0]}: "
    got = next(x for x in why_lines(world) if x.startswith(head)).removeprefix(head).split("; ")
    assert sorted(got) == want, text


def test_after_a_cutoff_the_lines_count_to_its_minimum_in_english() -> None:
    """All of eu, us, apac with a cutoff at 6h and a minimum of 2, only eu in at 07:00: the reason says '1 more of 2
    needed', the group line '1 more of 2 needed: eu done; apac, us have not run', beside 'runs with at least 2'."""
    world = world_of([{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2}])
    world.state("eu", P1, RunState.SUCCESS)
    world.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    lines = why_lines(world)
    assert ": 1 more of 2 needed (needs apac: has not run; needs us: has not run)" in lines[0], lines
    assert "  1 more of 2 needed: eu done; apac, us have not run" in lines, lines
    assert "  cutoff at 06:00Z passed: runs with at least 2 (late: will rerun once)" in lines, lines
    assert not any("3 needed" in line for line in lines), lines


@pytest.mark.parametrize(
    ("late", "words"),
    [pytest.param("rerun", "will rerun once", id="rerun"), pytest.param("ignore", "ignored", id="ignore")],
)
def test_a_cutoff_run_says_what_it_consumed_and_what_the_late_one_does(late: str, words: str) -> None:
    """eu and us in at 06:00: 'cutoff at 06:00Z ran with eu, us; apac late: will rerun once' (or 'ignored');
    before the cutoff it says when it runs and with at least how many."""
    world = world_of([{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2, "late": late}])
    world.state("eu", P1, RunState.SUCCESS)
    world.state("us", P1, RunState.SUCCESS)
    world.clock = datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert f"  cutoff at 06:00Z: runs then with at least 2 (late: {words})" in why_lines(world)
    world.clock = AT
    run_once(world)
    assert f"  cutoff at 06:00Z ran with eu, us; apac late: {words}" in why_lines(world)


def test_a_time_of_day_cutoff_names_the_time_and_zone() -> None:
    """A time-of-day cutoff is shown as written, in the DAG's zone, with the UTC instant it falls on."""
    world = world_of([{"all": ["eu", "us"], "cutoff": "06:00"}], {"cron": "@daily", "timezone": "Europe/Berlin"})
    day = "2025-12-31T23:00:00Z"
    lines = why(world.graph, plan(world.graph, world.view, [day]), n("d"), day, world.view)
    assert "  cutoff at 06:00 Europe/Berlin (2026-01-02 05:00Z): runs then with at least 1 (late: will rerun once)" in (
        lines
    )


def test_status_rows_carry_the_same_lines() -> None:
    """``status --format json``'s rows hold the group lines of DAGs with groups, [] for the others."""
    world = world_of([{"any": ["a", "b"]}])
    world.state("a", P1, RunState.FAILED)
    decided = plan(world.graph, world.view)
    rows = {r.dag: r for r in status_rows(world.graph, decided, [P1], world.view)}
    assert rows["d"].conditions == ["runs when any of a, b: a failed; b has not run"]
    assert rows["a"].conditions == []
    assert rows["d"].status == "waiting"
