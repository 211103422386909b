"""Deadlines through condition groups (``coordinator.core.deadline.groups``): an ``any`` group is on time when its
earliest member is, ``at_least N`` when the N-th earliest is, a cutoff bounds the predicted start, and a member
with a cause blocks the DAG only when the group can no longer hold. Pure, by example."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.conditions import GroupRule, GroupSpec, Late
from coordinator.core.deadline.eta import Eta
from coordinator.core.deadline.groups import group_blocked, group_eta
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus, deadline_states
from coordinator.core.model import KeyLayout, NodeId, RunState
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import RunFact, View

P = "2026-01-05T00:00:00Z"
P0 = datetime(2026, 1, 5, tzinfo=UTC)
NOW = P0 + timedelta(hours=1)
H = timedelta(hours=1)
A, B, C = ((NodeId("default", x), None) for x in "abc")


def group(rule: GroupRule, need: int, **cut: Any) -> GroupSpec:
    return GroupSpec(rule, need, (A, B, C), **cut)


ETAS = {A: Eta(None, P0 + 5 * H), B: Eta(None, P0 + 2 * H), C: Eta(None, P0 + 9 * H)}


@pytest.mark.parametrize(
    ("spec", "etas", "at"),
    [
        pytest.param(group(GroupRule.ANY, 1), ETAS, P0 + 2 * H, id="any-earliest"),
        pytest.param(group(GroupRule.AT_LEAST, 2), ETAS, P0 + 5 * H, id="two-of-three-second-earliest"),
        pytest.param(group(GroupRule.AT_LEAST, 3), ETAS, P0 + 9 * H, id="all-three-latest"),
        pytest.param(group(GroupRule.AT_LEAST, 2), {**ETAS, B: None}, P0 + 5 * H, id="one-done-then-next"),
        pytest.param(group(GroupRule.ANY, 1), {**ETAS, C: None}, None, id="any-already-done"),
        pytest.param(group(GroupRule.AT_LEAST, 2), {**ETAS, A: Eta(H, None)}, NOW + H, id="moving-form-ranked-now"),
    ],
)
def test_the_need_th_earliest_member_sets_the_start(
    spec: GroupSpec, etas: dict[Any, Eta | None], at: datetime | None
) -> None:
    """any: the earliest member; at_least N: the N-th earliest; members done count first (None: nothing waits)."""
    found = group_eta(spec, P, etas, NOW)
    assert (found.at(NOW) if found is not None else None) == at


@pytest.mark.parametrize(
    ("cutoff_h", "minimum", "etas", "at"),
    [
        pytest.param(6, 1, ETAS, P0 + 6 * H, id="cutoff-before-the-last-bounds-it"),
        pytest.param(6, 2, ETAS, P0 + 6 * H, id="min-two-in-by-the-cutoff"),
        pytest.param(4, 2, ETAS, P0 + 5 * H, id="min-two-lands-after-the-cutoff"),
        pytest.param(12, 1, ETAS, P0 + 9 * H, id="cutoff-after-all-changes-nothing"),
        pytest.param(6, 1, {A: None, B: None, C: Eta(None, P0 + 30 * H)}, P0 + 6 * H, id="min-done-starts-at-cutoff"),
    ],
)
def test_a_cutoff_bounds_the_predicted_start(
    cutoff_h: int, minimum: int, etas: dict[Any, Eta | None], at: datetime
) -> None:
    """With a cutoff, all-of-3 starts at the earlier of the last member and max(cutoff, the min-th earliest)."""
    spec = group(GroupRule.AT_LEAST, 3, cutoff=cutoff_h * 3600, minimum=minimum, late=Late.RERUN)
    found = group_eta(spec, P, etas, NOW)
    assert found is not None and found.at(NOW) == at


@pytest.mark.parametrize(
    ("spec", "blocked", "verdict"),
    [
        pytest.param(group(GroupRule.ANY, 1), {A, B}, False, id="any-one-left"),
        pytest.param(group(GroupRule.ANY, 1), {A, B, C}, True, id="any-none-left"),
        pytest.param(group(GroupRule.AT_LEAST, 2), {A}, False, id="two-of-three-two-left"),
        pytest.param(group(GroupRule.AT_LEAST, 2), {A, C}, True, id="two-of-three-one-left"),
        pytest.param(group(GroupRule.AT_LEAST, 3, cutoff=3600, minimum=1), {A, C}, False, id="cutoff-min-one-left"),
    ],
)
def test_a_member_with_a_cause_blocks_only_when_the_rule_cannot_hold(
    spec: GroupSpec, blocked: set[Any], verdict: bool
) -> None:
    """Blocked when fewer members than the need (min with a cutoff) are left without a cause."""
    assert group_blocked(spec, blocked) is verdict


def estate(upstreams: list[Any]) -> Any:
    """Roots a, b (daily); d waits on ``upstreams`` and must finish 6 hours after its window ends."""
    day = {"partitions": {"cron": "0 0 * * *"}}
    expected = {"after_end": "6h", "warn": "30m", "duration": "1h"}
    dags = {"a": day, "b": day, "d": {**day, "upstreams": upstreams, "expected_by": expected}}
    return parse_spec(json.dumps({"version": 1, "dags": dags}))


def view_of(facts: dict[str, RunFact]) -> View:
    view = View(KeyLayout())
    for name, value in facts.items():
        view.runs[(NodeId("default", name), P)] = value
        view.partitions.setdefault(P, set()).add(NodeId("default", name))
    return view


def status(upstreams: list[Any], facts: dict[str, RunFact], now: datetime) -> DeadlineStatus:
    durations = {NodeId("default", "a"): 3600.0, NodeId("default", "b"): 5 * 3600.0}
    found = deadline_states(estate(upstreams), view_of(facts), now, durations=durations)
    return found[(NodeId("default", "d"), P)]


END = P0 + timedelta(days=1)  # P's window end: the roots' predicted start (nothing else known)


def test_an_any_group_is_on_time_when_its_earliest_member_is() -> None:
    """a (1h) or b (5h) from the window end: any's ETA is a's path, as if d waited on a alone; all's is b's."""
    now = END - H
    alone = status(["a"], {}, now)
    either = status([{"any": ["a", "b"]}], {}, now)
    both = status(["a", "b"], {}, now)
    assert either.eta == alone.eta and either.state is DeadlineState.ON_TIME
    assert both.eta is not None and alone.eta is not None and both.eta > alone.eta


def test_a_failed_member_does_not_block_an_any_group_that_can_still_hold() -> None:
    """a failed: d with any(a, b) is not blocked (b may still run it); with a and b required it is."""
    failed = {"a": RunFact(RunState.FAILED, "r", 0, 1, "test", END, END + H)}
    assert status([{"any": ["a", "b"]}], failed, END - H).state is not DeadlineState.BLOCKED
    assert status(["a", "b"], failed, END - H).state is DeadlineState.BLOCKED


def test_a_cutoff_bounds_the_dependents_eta() -> None:
    """a done, b predicted 5h after the window end; a 2h-after-the-end cutoff with min 1 brings d's ETA forward."""
    done = {"a": RunFact(RunState.SUCCESS, "r", 0, 1, "test", END, END + H)}
    plain = status(["a", "b"], done, END + H)
    cut = status([{"all": ["a", "b"], "cutoff": "1d2h", "min": 1}], done, END + H)
    assert plain.eta is not None and cut.eta is not None
    assert cut.eta < plain.eta
    assert cut.eta == END + 2 * H + timedelta(seconds=60) + H  # the cutoff, the latency, d's own hour
