"""``why`` and ``status`` on condition groups (``explain.groups``): one line per group with its rule and where each
member stands, and for a cutoff what the run at it consumed and what a late member will do, all from the plan the
planner decided (the same ``now``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.model import RunRecord, RunState, dump_record
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
    ("group", "states", "line"),
    [
        pytest.param(
            {"at_least": 2, "of": ["eu", "us", "apac"]}, {"eu": "success", "us": "success", "apac": "failed"},
            "at least 2 of 3, met: eu, us done; apac failed",
            id="two-done-one-failed",
        ),
        pytest.param(
            {"at_least": 2, "of": ["eu", "us", "apac"]}, {"eu": "success", "apac": "running"},
            "at least 2 of 3, 1 more needed: eu done; us has not run; apac running",
            id="one-done",
        ),
        pytest.param(
            {"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2}, {"eu": "success"},
            "all 3, 2 more needed: eu done; apac, us have not run",
            id="all-before-its-cutoff",
        ),
        pytest.param(
            {"at_least": 3, "of": ["eu", "us", "apac", "latam"], "cutoff": "6h", "min": 2},
            {"eu": "success", "us": "success", "apac": "queued"},
            "at least 3 of 4, 1 more needed: eu, us done; apac queued; latam has not run",
            id="at-least-before-its-cutoff",
        ),
    ],
)  # fmt: skip
def test_the_rule_line_states_the_declared_rule_and_each_member(
    group: dict[str, Any], states: dict[str, str], line: str
) -> None:
    """An at_least group's line starts with its rule as declared (at least N of M, all M) and how many more it needs
    (before any cutoff: the rule's count), then the members done first and the others with their state."""
    world = world_of([group])
    for dag, state in states.items():
        world.state(dag, P1, RunState(state))
    world.clock = datetime(2026, 1, 1, 5, tzinfo=UTC)
    text = "\n".join(why_lines(world))
    want = sorted(line.split(": ", 1)[1].split("; "))
    head = f"  {line.split(': ', 1)[0]}: "
    got = next((x for x in why_lines(world) if x.startswith(head)), text).removeprefix(head).split("; ")
    assert sorted(got) == want, text


def test_after_a_cutoff_the_lines_count_to_its_minimum_beside_the_rule() -> None:
    """All of eu, us, apac with a cutoff at 6h and a minimum of 2, only eu in at 07:00: the reason says '1 more of 2
    needed', the group line 'all 3, 1 more needed (2 after the cutoff): eu done; apac, us have not run', beside 'all
    3, 2 after the cutoff at 06:00Z: passed, not run yet': the declared 3 is never lost."""
    world = world_of([{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2}])
    world.state("eu", P1, RunState.SUCCESS)
    world.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    lines = why_lines(world)
    assert ": 1 more of 2 needed (needs apac: has not run; needs us: has not run)" in lines[0], lines
    assert "  all 3, 1 more needed (2 after the cutoff): eu done; apac, us have not run" in lines, lines
    assert "  all 3, 2 after the cutoff at 06:00Z: passed, not run yet (late: will rerun once)" in lines, lines


#: The issue's group: at least 3 of 4 regions, 2 enough a minute into the partition.
REGIONS = {"at_least": 3, "of": ["eu", "us", "apac", "latam"], "cutoff": "1m", "min": 2}
HEAD = "  at least 3 of 4, 2 after the cutoff at 00:01Z"


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 1, 1, 0, minute, second, tzinfo=UTC)


def lands(world: World, dag: str, end: datetime) -> None:
    """``dag`` succeeds for P1, its run ending at ``end`` (the time the lines place it by against the cutoff)."""
    record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{dag}", start_date=end, end_date=end)
    world.write(world.keys.run_key(n(dag), P1), dump_record(record))


@pytest.mark.parametrize(
    ("late", "words"),
    [pytest.param("rerun", "will rerun once", id="rerun"), pytest.param("ignore", "ignored", id="ignore")],
)
def test_the_story_of_a_cutoff_states_the_rule_beside_what_happened(late: str, words: str) -> None:
    """at least 3 of 4 with a cutoff at 00:01Z and a minimum of 2, eu and us in by it, apac after it: every line
    carries the declared rule; it ran with eu, us at the cutoff; apac late is ignored, or reruns it once and then its
    last run used eu, us (in by the cutoff) and apac (late). Never '3 of 3 needed'."""
    world = world_of([REGIONS | {"late": late}])
    lands(world, "eu", at(0, 20))
    lands(world, "us", at(0, 40))
    story: list[tuple[datetime, list[str]]] = []
    for now, line in [
        (at(0, 50), f"{HEAD}: not passed yet (late: {words})"),
        (at(2), f"{HEAD}: passed, not run yet (late: {words})"),
    ]:
        world.clock = now
        story.append((now, why_lines(world)))
        assert line in story[-1][1], story[-1][1]
    assert "  at least 3 of 4, 1 more needed: eu, us done; apac, latam have not run" in story[0][1]
    assert "  at least 3 of 4, met (2 after the cutoff): eu, us done; apac, latam have not run" in story[1][1]
    run_once(world)
    assert f"{HEAD}: ran with eu, us at the cutoff; apac, latam late, {words}" in why_lines(world)
    world.clock = at(5)
    lands(world, "apac", at(4))
    lines = why_lines(world)
    assert f"{HEAD}: ran with eu, us at the cutoff; apac late, {words}" in lines, lines
    run_once(world)
    lines = why_lines(world)
    if late == "rerun":
        assert f"{HEAD}: its last run used eu, us (in by the cutoff) and apac (late)" in lines, lines
    else:
        assert f"{HEAD}: ran with eu, us at the cutoff; apac late, ignored" in lines, lines
    assert not any("3 of 3" in line for line in lines), lines


@pytest.mark.parametrize(
    ("ends", "line"),
    [
        pytest.param(
            {"eu": at(0, 10), "us": at(0, 20), "apac": at(0, 30)},
            f"{HEAD}: its last run used apac, eu, us, all in by the cutoff",
            id="all-in-before-the-cutoff",
        ),
        pytest.param(
            {"eu": at(0, 10), "us": at(3)},
            f"{HEAD}: ran with eu, us after the cutoff; apac, latam late, will rerun once",
            id="the-minimum-came-after-the-cutoff",
        ),
        pytest.param(
            {"eu": at(3), "us": at(3), "apac": at(3)},
            f"{HEAD}: its last run used apac, eu, us, all after the cutoff",
            id="all-after-the-cutoff",
        ),
    ],
)  # fmt: skip
def test_a_cutoff_line_says_when_what_the_run_used_came(ends: dict[str, datetime], line: str) -> None:
    """What the last run used, placed by each member's end against the cutoff: all in by it (the cutoff changed
    nothing), the minimum reached only after it, or everything after it."""
    world = world_of([REGIONS])
    for dag, end in ends.items():
        lands(world, dag, end)
    world.clock = max(ends.values()) + timedelta(seconds=1)
    run_once(world)
    world.clock = max(world.clock, at(2))
    lines = why_lines(world)
    assert line in lines, lines


def test_a_run_before_the_cutoff_says_what_it_used() -> None:
    """The rule met before the cutoff: 'not passed yet; its last run used apac, eu, us'."""
    world = world_of([REGIONS])
    for dag in ("eu", "us", "apac"):
        lands(world, dag, at(0, 10))
    world.clock = at(0, 30)
    run_once(world)
    assert f"{HEAD}: not passed yet; its last run used apac, eu, us" in why_lines(world)


def test_a_short_run_whose_members_have_no_end_says_once_the_cutoff_passed() -> None:
    """eu and us written without an end (an outside writer), run at the cutoff with them: 'ran with eu, us once the
    cutoff passed', nothing said of whether they were in by it."""
    world = world_of([REGIONS])
    for dag in ("eu", "us"):
        world.state(dag, P1, RunState.SUCCESS)
    world.clock = at(2)
    run_once(world)
    assert f"{HEAD}: ran with eu, us once the cutoff passed; apac, latam late, will rerun once" in why_lines(world)


def test_a_member_rerun_since_the_run_is_not_placed_by_its_new_end() -> None:
    """eu, us and apac used by a run before the cutoff, then apac rerun (a new result ending after it, not consumed
    yet): the line says what the run used and places none of them by the new end (never 'apac (late)')."""
    world = world_of([REGIONS])
    for dag in ("eu", "us", "apac"):
        lands(world, dag, at(0, 10))
    world.clock = at(0, 30)
    run_once(world)
    world.clock = at(9)
    lands(world, "apac", at(8))
    lines = why_lines(world)
    assert f"{HEAD}: its last run used apac, eu, us" in lines, lines


def test_a_run_whose_members_have_no_end_says_only_what_it_used() -> None:
    """Members written without an end (an outside writer): the line says what the run used, not when they came."""
    world = world_of([REGIONS])
    for dag in ("eu", "us", "apac"):
        world.state(dag, P1, RunState.SUCCESS)
    world.clock = at(2)
    run_once(world)
    assert f"{HEAD}: its last run used apac, eu, us" in why_lines(world)


def test_a_time_of_day_cutoff_names_the_time_and_zone() -> None:
    """A time-of-day cutoff is shown as written, in the DAG's zone, with the UTC instant it falls on."""
    world = world_of([{"all": ["eu", "us"], "cutoff": "06:00"}], {"cron": "@daily", "timezone": "Europe/Berlin"})
    day = "2025-12-31T23:00:00Z"
    lines = why(world.graph, plan(world.graph, world.view, [day]), n("d"), day, world.view)
    assert (
        "  all 2, 1 after the cutoff at 06:00 Europe/Berlin (2026-01-02 05:00Z): not passed yet (late: will rerun once)"
        in (lines)
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
