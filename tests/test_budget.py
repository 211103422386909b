"""The trigger budget's pure rule (coordinator.core.budget, semantics rule 15) and its state in the view."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.actions import Action, Resume, Trigger
from coordinator.core.budget import apply_budget
from coordinator.core.budget_state import BudgetState, dump_budget
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.view import LedgerFact, View


def trigger(instance: str, dag: str, partition: int, cause_rev: int = 10) -> Trigger:
    return Trigger(node=NodeId(instance, dag), partition=f"2026-01-{partition:02d}T00:00:00Z", inputs={},
                   action=TriggerAction.CREATE, run_id="r", reason="", cause_rev=cause_rev, ledger_rev=0,
                   trigger_count=1)  # fmt: skip


def resume(instance: str) -> Resume:
    record = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id="r")
    fact = LedgerFact.of(record, 5, {})
    return Resume(node=NodeId(instance, "d"), partition="2026-01-01T00:00:00Z", ledger=fact, reason="")


@pytest.mark.parametrize(
    ("limit", "states", "passed", "held", "newly"),
    [
        pytest.param(3, {}, 3, 2, {"a"}, id="beyond-the-limit-the-rest-is-held"),
        pytest.param(5, {}, 5, 0, set(), id="at-the-limit-nothing-held"),
        pytest.param(0, {}, 5, 0, set(), id="zero-disables"),
        pytest.param(3, {"a": BudgetState(held=True, limit=3)}, 0, 5, set(), id="held-instance-holds-everything"),
        pytest.param(4, {"a": BudgetState(held=True, limit=3)}, 4, 1, {"a"}, id="a-raised-limit-lifts-the-hold"),
        pytest.param(3, {"a": BudgetState(held=False, released_through=10)}, 5, 0, set(), id="released-pass"),
        pytest.param(3, {"a": BudgetState(held=True, limit=3, released_through=9)}, 0, 5, set(), id="later-cause"),
    ],
)
def test_budget_rules(limit: int, states: dict[str, BudgetState], passed: int, held: int, newly: set[str]) -> None:
    """Rules b-f on five new triggers of instance a, each caused at revision 10."""
    out = apply_budget([trigger("a", "d", i) for i in range(1, 6)], limit, states)
    assert len(out.actions) == passed
    assert len(out.held.get("a", ())) == held
    assert out.newly_held == newly


def test_resumes_always_pass_and_instances_count_apart() -> None:
    """Rule a: a resume completes a recorded intent and passes even for a held instance; b's budget is its own."""
    actions: list[Action] = [resume("a"), trigger("a", "x", 1), trigger("b", "x", 1), trigger("b", "y", 1)]
    out = apply_budget(actions, 1, {"a": BudgetState(held=True, limit=1)})
    assert out.actions == (actions[0], actions[2])
    assert out.held == {"a": (actions[1],), "b": (actions[3],)} and out.newly_held == {"b"}


ACTION = st.builds(trigger, st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), st.integers(1, 28),
                   st.integers(1, 20)) | st.builds(resume, st.sampled_from(["a", "b"]))  # fmt: skip
STATE = st.builds(BudgetState, held=st.booleans(), limit=st.integers(0, 5), released_through=st.integers(0, 20))


@given(st.lists(ACTION, max_size=30), st.integers(0, 6), st.dictionaries(st.sampled_from(["a", "b"]), STATE))
def test_every_action_is_passed_or_held_exactly_once(actions: list[Action], limit: int,
                                                     states: dict[str, BudgetState]) -> None:  # fmt: skip
    """Nothing is lost or duplicated (exactly-once, rule e), order is kept, and without a release or a hold no
    instance passes more than ``limit`` new triggers in one pass."""
    out = apply_budget(actions, limit, states)
    held = [t for ts in out.held.values() for t in ts]
    assert Counter(map(id, [*out.actions, *held])) == Counter(map(id, actions))
    assert list(out.actions) == [a for a in actions if any(a is p for p in out.actions)]
    if limit:
        for instance in ("a", "b"):
            if instance not in states:
                new = [a for a in out.actions if isinstance(a, Trigger) and a.node.instance == instance]
                assert len(new) <= limit


def test_view_reads_budget_states_and_reports_bad_ones() -> None:
    """The view holds each instance's state from config/budget/{instance}; a garbage value is a problem and the
    last valid state stays; a deletion removes it."""
    keys = KeyLayout("/c")
    view = View(keys)
    view.apply(keys.budget_key("a"), dump_budget(BudgetState(held=True, limit=3)), 5)
    assert view.budget_states() == {"a": BudgetState(held=True, limit=3)}
    view.apply(keys.budget_key("a"), b"{not json", 6)
    assert view.budget_states()["a"].held and keys.budget_key("a") in view.problems
    view.apply(keys.budget_key(".."), b"{}", 7)
    assert keys.budget_key("..") in view.problems
    view.apply(keys.budget_key("a"), None, 8)
    assert view.budget_states() == {}
