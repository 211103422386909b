"""Planner example tables for a group's cutoff (semantics `group-cutoff`, `group-late`): nothing early, a run with what
has arrived once the cutoff passes (if ``min`` holds), one rerun for the late members (``late: rerun``) or none
(``ignore``), and :func:`next_cutoff`, the time the plan changes with nothing written. ``now`` is an argument."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.actions import Trigger
from coordinator.core.conditions import GroupRule, GroupSpec, Late
from coordinator.core.model import RunState
from coordinator.core.planner import next_cutoff, plan, plan_changes
from coordinator.core.spec.loader import parse_spec
from tests.support.world import P1, World, n

START = datetime(2026, 1, 1, tzinfo=UTC)  # P1
BEFORE, AT, AFTER = START + timedelta(hours=5, minutes=59), START + timedelta(hours=6), START + timedelta(hours=9)
REGIONS = ["eu", "us", "apac", "latam"]


def world_of(**group: object) -> World:
    body = {"at_least": 3, "of": REGIONS, "cutoff": "6h", "min": 2, **group}
    world = World(parse_spec(json.dumps({"version": 1, "dags": {"rollup": {"upstreams": [body]}}})))
    world.adopt()
    return world


def settle(world: World, now: datetime | None) -> None:
    """The watcher's passes at ``now`` and the tiny Airflow running what they queue, until nothing moves."""
    for _ in range(20):
        actions = plan(world.graph, world.view, now=now).actions
        for action in actions:
            world.apply_action(action)
        queued = world.queued()
        for node, partition in queued:
            world.start(node.dag_id, partition)
            world.finish(node.dag_id, partition)
        if not actions and not queued:
            return
    raise AssertionError("did not settle")


def runs(world: World) -> list[list[str]]:
    return [sorted(k.removeprefix("default/") for k in e[3]) for e in world.effects if e[0] == n("rollup")]


def land(world: World, *regions: str) -> None:
    for region in regions:
        world.state(region, P1, RunState.SUCCESS)


def test_nothing_runs_before_the_cutoff_and_without_a_clock() -> None:
    """2 of 4 in before 06:00, or with no ``now`` at all (today's callers): the rollup waits for 3."""
    world = world_of()
    land(world, "eu", "us")
    settle(world, BEFORE)
    settle(world, None)
    assert runs(world) == []
    verdict = plan(world.graph, world.view, now=BEFORE).verdicts[(n("rollup"), P1)]
    assert "runs when 3 of apac, eu, latam, us (2 from 6h after the partition's start, late: rerun): 1 more of 3" in (
        verdict.summary
    )


def test_at_the_cutoff_it_runs_with_what_has_arrived_and_reruns_once_for_the_late() -> None:
    """06:00 with eu and us in: one run on them; apac lands: one rerun with all three; latam then: nothing."""
    world = world_of()
    land(world, "eu", "us")
    settle(world, AT)
    assert runs(world) == [["eu", "us"]]
    land(world, "apac")
    settle(world, AFTER)
    settle(world, AFTER)
    assert runs(world) == [["eu", "us"], ["apac", "eu", "us"]]
    land(world, "latam")
    settle(world, AFTER)
    assert len(runs(world)) == 2


def test_late_members_together_rerun_once() -> None:
    """Two late members landing together after the cutoff run give one rerun."""
    world = world_of()
    land(world, "eu", "us")
    settle(world, AT)
    land(world, "apac", "latam")
    settle(world, AFTER)
    assert runs(world) == [["eu", "us"], ["apac", "eu", "latam", "us"]]


def test_late_ignore_never_reruns() -> None:
    """``late: ignore``: the late members never rerun the rollup; a rerun of a consumed member still does."""
    world = world_of(late="ignore")
    land(world, "eu", "us")
    settle(world, AT)
    land(world, "apac", "latam")
    settle(world, AFTER)
    assert runs(world) == [["eu", "us"]]
    world.state("eu", P1, RunState.RUNNING, clear_number=1)
    world.state("eu", P1, RunState.SUCCESS, clear_number=1)
    settle(world, AFTER)
    assert len(runs(world)) == 2


@pytest.mark.parametrize(
    ("landed", "expected"),
    [
        pytest.param(["eu"], [], id="below-min-waits"),
        pytest.param(["eu", "us"], [["eu", "us"]], id="min-reached-after-the-cutoff-runs-then"),
    ],
)
def test_below_min_at_the_cutoff_waits_for_min(landed: list[str], expected: list[list[str]]) -> None:
    """Only eu at 06:00 (min 2): nothing; us landing at 09:00 runs it then, with both."""
    world = world_of()
    land(world, "eu")
    settle(world, AT)
    assert runs(world) == []
    land(world, *landed[1:])
    settle(world, AFTER)
    assert runs(world) == expected


@pytest.mark.parametrize(
    ("satisfied", "now", "met"),
    [
        pytest.param(3, None, True, id="need-met-without-clock"),
        pytest.param(2, None, False, id="below-need-without-clock"),
        pytest.param(2, BEFORE, False, id="below-need-before-cutoff"),
        pytest.param(2, AT, True, id="min-at-cutoff"),
        pytest.param(1, AFTER, False, id="below-min-after-cutoff"),
    ],
)
def test_a_group_is_met_by_need_or_by_min_after_its_cutoff(satisfied: int, now: datetime | None, met: bool) -> None:
    """GroupSpec.is_met: the need at any time; min only from the partition's start plus the cutoff."""
    members = tuple((n(r), None) for r in REGIONS)
    group = GroupSpec(GroupRule.AT_LEAST, 3, members, cutoff=6 * 3600, minimum=2, late=Late.RERUN)
    assert group.is_met(satisfied, P1, now) is met


def test_next_cutoff_is_when_the_plan_changes() -> None:
    """next_cutoff gives 06:00 of P1 before it, nothing after it, and nothing for a graph without cutoffs."""
    world = world_of()
    land(world, "eu")
    assert next_cutoff(world.graph, world.view, BEFORE) == AT
    assert next_cutoff(world.graph, world.view, AT) is None
    plain = World(parse_spec(json.dumps({"version": 1, "dags": {"d": {"upstreams": [{"any": ["a", "b"]}]}}})))
    plain.state("a", P1, RunState.SUCCESS)
    assert next_cutoff(plain.graph, plain.view, BEFORE) is None


def test_the_fast_paths_agree_at_the_cutoff() -> None:
    """Without verdicts, and incrementally, the cutoff decides what a full explained pass decides."""
    world = world_of()
    land(world, "eu", "us")
    full = plan(world.graph, world.view, now=AT).actions
    assert [type(a) for a in full] == [Trigger]
    assert plan(world.graph, world.view, explain=False, now=AT).actions == full
    assert plan_changes(world.graph, world.view, {P1: {n("us")}}, now=AT).actions == full
