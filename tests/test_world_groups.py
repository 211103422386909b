"""The scenario world (``tests/support/world.py``) judges a trigger of a DAG with condition groups by the groups'
rules: a run on one member of an ``any`` group is no violation; a trigger whose group does not hold is one, and a
cutoff group counts from its ``min`` only once the world's clock passed the cutoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from coordinator.core.actions import Trigger
from coordinator.core.model import RunState
from coordinator.core.spec.loader import parse_spec
from tests.support.world import P1, World


def world_of(upstreams: list[Any]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": {"d": {"upstreams": upstreams}}})))
    world.adopt()
    return world


def test_a_run_on_one_member_of_an_any_group_is_no_violation() -> None:
    """any(a, b) with a in: the trigger applies and the world records no violation (b never ran)."""
    world = world_of([{"any": ["a", "b"]}])
    world.state("a", P1, RunState.SUCCESS)
    assert world.act() == 1
    assert world.violations == []


def test_a_trigger_whose_group_does_not_hold_is_a_violation() -> None:
    """The trigger decided with a in, applied after a turned failed: 0 of any(a, b) is recorded as a violation."""
    world = world_of([{"any": ["a", "b"]}])
    world.state("a", P1, RunState.SUCCESS)
    (action,) = world.plan().actions
    assert isinstance(action, Trigger)
    world.state("a", P1, RunState.FAILED)
    world.apply_action(action)
    assert world.violations == [f"d {P1} triggered with 0 of any of a, b"]


def test_a_cutoff_group_counts_from_min_only_after_its_cutoff() -> None:
    """2 of 3 in, cutoff 6h, min 2: the trigger the planner made at 06:00 is a violation for a world whose clock says
    05:00, none at 06:00."""
    world = world_of([{"all": ["a", "b", "c"], "cutoff": "6h", "min": 2}])
    world.state("a", P1, RunState.SUCCESS)
    world.state("b", P1, RunState.SUCCESS)
    world.clock = datetime(2026, 1, 1, 6, tzinfo=UTC)
    (action,) = world.plan().actions
    world.clock = datetime(2026, 1, 1, 5, tzinfo=UTC)
    world.apply_action(action)
    assert len(world.violations) == 1 and "triggered with 2 of 3 of a, b, c" in world.violations[0]
