"""Planner example tables for condition groups (semantics `condition-groups`): when an ``any`` or ``at_least`` DAG is
due, what its run consumed, which reruns cascade (once) and which arrivals do not, driven through the real intent
protocol (tests/support/world.py)."""

from __future__ import annotations

import json

import pytest

from coordinator.core.model import RunState
from coordinator.core.planner import plan, plan_changes
from coordinator.core.spec.loader import parse_spec
from tests.support.world import P1, World, n


def world_of(upstreams: object, **more: object) -> World:
    dags: dict[str, object] = {"d": {"upstreams": upstreams}, **more}
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def succeed(world: World, dag: str, attempt: int = 0) -> int:
    """A root's run (or a user's rerun of it) ends in success; returns its generation."""
    world.state(dag, P1, RunState.RUNNING, clear_number=attempt)
    return world.state(dag, P1, RunState.SUCCESS, clear_number=attempt)


def inputs(world: World) -> list[dict[str, int]]:
    return [e[3] for e in world.effects if e[0] == n("d")]


def test_any_runs_on_the_first_member_and_records_only_it() -> None:
    """any(a, b): a's success runs d once, recording a alone; b landing afterwards does not run d again."""
    world = world_of([{"any": ["a", "b"]}])
    world.settle()
    assert inputs(world) == []
    a = succeed(world, "a")
    world.settle()
    assert inputs(world) == [{"default/a": a}]
    succeed(world, "b")
    world.settle()
    assert inputs(world) == [{"default/a": a}]
    assert plan(world.graph, world.view).verdicts[(n("d"), P1)].fresh


def test_a_rerun_of_a_consumed_member_cascades_once() -> None:
    """any(a, b) ran on a; a rerun of a reruns d once, now with both members (b had arrived)."""
    world = world_of([{"any": ["a", "b"]}])
    a = succeed(world, "a")
    world.settle()
    b = succeed(world, "b")
    world.settle()
    a2 = succeed(world, "a", attempt=1)
    world.settle()
    world.settle()
    assert inputs(world) == [{"default/a": a}, {"default/a": a2, "default/b": b}]


def test_a_rerun_of_an_unconsumed_member_does_not_cascade() -> None:
    """any(a, b) ran on a; b landing and then rerunning never runs d (its run never read b)."""
    world = world_of([{"any": ["a", "b"]}])
    succeed(world, "a")
    world.settle()
    succeed(world, "b")
    succeed(world, "b", attempt=1)
    world.settle()
    assert len(inputs(world)) == 1


def test_a_consumed_member_rerunning_holds_nothing_back_while_the_group_holds() -> None:
    """any(a, b) ran on a; while a's rerun is running d stays fresh (b satisfies the group) and is not triggered
    early; a's new success then reruns it once."""
    world = world_of([{"any": ["a", "b"]}], e={"upstreams": ["d"]})
    succeed(world, "a")
    world.settle()
    succeed(world, "b")
    world.settle()
    world.state("a", P1, RunState.RUNNING, clear_number=1)
    world.settle()
    verdict = plan(world.graph, world.view).verdicts[(n("d"), P1)]
    assert verdict.fresh and len(inputs(world)) == 1
    world.state("a", P1, RunState.SUCCESS, clear_number=1)
    world.settle()
    assert len(inputs(world)) == 2 and world.count("e") == 2


def test_members_succeeding_together_trigger_once() -> None:
    """Both members of any(a, b) succeed before the watcher looks: one run, with both recorded."""
    world = world_of([{"any": ["a", "b"]}])
    a, b = succeed(world, "a"), succeed(world, "b")
    world.settle()
    assert inputs(world) == [{"default/a": a, "default/b": b}]


def test_a_member_landing_while_the_run_is_in_flight_is_not_consumed() -> None:
    """d was triggered on a; b succeeds before d's run starts: d runs once, b stays unconsumed."""
    world = world_of([{"any": ["a", "b"]}])
    a = succeed(world, "a")
    world.act()
    succeed(world, "b")
    world.settle()
    world.settle()
    assert inputs(world) == [{"default/a": a}]


@pytest.mark.parametrize(
    ("landed", "runs"),
    [
        pytest.param(["eu"], 0, id="one-of-three"),
        pytest.param(["eu", "us"], 1, id="two-of-three"),
        pytest.param(["eu", "us", "apac"], 1, id="the-late-third-does-not-rerun"),
    ],
)
def test_at_least_two_of_three(landed: list[str], runs: int) -> None:
    """at_least 2 of eu, us, apac: due with the second success, once; a third arrival does not rerun it."""
    world = world_of([{"at_least": 2, "of": ["eu", "us", "apac"]}])
    for region in landed:
        succeed(world, region)
        world.settle()
    assert len(inputs(world)) == runs
    if runs:
        assert set(inputs(world)[0]) == {"default/eu", "default/us"}


def test_required_edge_and_any_group_together() -> None:
    """["cal", any(a, b)]: a alone waits for cal, and the verdict names both what is missing and the rule."""
    world = world_of(["cal", {"any": ["a", "b"]}])
    world.state("a", P1, RunState.RUNNING)
    verdicts = plan(world.graph, world.view).verdicts
    summary = verdicts[(n("d"), P1)].summary
    assert "needs cal: has not run" in summary
    assert "runs when any of a, b: none yet (needs a: is running" in summary
    a = succeed(world, "a")
    world.settle()
    assert inputs(world) == []
    cal = succeed(world, "cal")
    world.settle()
    assert inputs(world) == [{"default/a": a, "default/cal": cal}]


def test_a_failed_member_is_no_member_but_finished_is() -> None:
    """any(a, {b finished}): a failed satisfies nothing; b failed satisfies its member."""
    world = world_of([{"any": ["a", {"dag": "b", "condition": "finished"}]}])
    world.state("a", P1, RunState.FAILED)
    world.settle()
    assert inputs(world) == []
    b = world.state("b", P1, RunState.FAILED)
    world.settle()
    assert inputs(world) == [{"default/b": b}]


def test_a_task_member() -> None:
    """any({u task load}, v): the task's success is the member's generation, recorded under its task key."""
    world = world_of([{"any": [{"dag": "u", "task": "load"}, "v"]}])
    rev = world.task_state("u", "load", P1, RunState.SUCCESS)
    world.settle()
    assert inputs(world) == [{"default/u:load": rev}]


def test_without_a_ledger_every_newer_member_stales_d() -> None:
    """d ran on its own (no ledger) after a; b succeeding later cannot be told from a rerun: d runs once."""
    world = world_of([{"any": ["a", "b"]}])
    a = succeed(world, "a")
    world.state("d", P1, RunState.SUCCESS, "scheduled__x")
    world.settle()
    assert inputs(world) == []  # d's own success consumed a by order
    b = succeed(world, "b")
    world.settle()
    assert inputs(world) == [{"default/a": a, "default/b": b}]


def test_the_incremental_planner_agrees() -> None:
    """plan_changes on the changed member decides what a full pass decides."""
    world = world_of([{"at_least": 2, "of": ["eu", "us", "apac"]}])
    succeed(world, "eu")
    succeed(world, "us")
    full = plan(world.graph, world.view).actions
    assert full and plan_changes(world.graph, world.view, {P1: {n("us")}}).actions == full
