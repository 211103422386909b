"""The trigger budget's pure rule (coordinator.core.budget, semantics rule 15) and its state in the view."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.actions import Action, Resume, Trigger
from coordinator.core.budget import Window, apply_budget, budget_record
from coordinator.core.budget_state import BudgetState, dump_budget
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.view import LedgerFact, View

#: A pass judged at an instant with nothing counted yet (the window's history is in the states given).
NOW = Window(600.0, 1_800_000_000.0)


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
        pytest.param(3, {"a": BudgetState(stopped=True, limit=3)}, 0, 5, set(), id="held-instance-holds-everything"),
        pytest.param(4, {"a": BudgetState(stopped=True, limit=3)}, 4, 1, {"a"}, id="a-raised-limit-lifts-the-hold"),
        pytest.param(3, {"a": BudgetState(stopped=False, released_through=10)}, 5, 0, set(), id="released-pass"),
        pytest.param(3, {"a": BudgetState(stopped=True, limit=3, released_through=9)}, 0, 5, set(), id="later-cause"),
    ],
)
def test_budget_rules(limit: int, states: dict[str, BudgetState], passed: int, held: int, newly: set[str]) -> None:
    """Rules b-f on five new triggers of instance a, each caused at revision 10."""
    out = apply_budget([trigger("a", "d", i) for i in range(1, 6)], limit, states, NOW)
    assert len(out.actions) == passed
    assert len(out.stopped.get("a", ())) == held
    assert out.newly_stopped == newly


def test_resumes_always_pass_and_instances_count_apart() -> None:
    """Rule a: a resume completes a recorded intent and passes even for a held instance; b's budget is its own."""
    actions: list[Action] = [resume("a"), trigger("a", "x", 1), trigger("b", "x", 1), trigger("b", "y", 1)]
    out = apply_budget(actions, 1, {"a": BudgetState(stopped=True, limit=1)}, NOW)
    assert out.actions == (actions[0], actions[2])
    assert out.stopped == {"a": (actions[1],), "b": (actions[3],)} and out.newly_stopped == {"b"}


ACTION = st.builds(trigger, st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), st.integers(1, 28),
                   st.integers(1, 20)) | st.builds(resume, st.sampled_from(["a", "b"]))  # fmt: skip
STATE = st.builds(BudgetState, stopped=st.booleans(), limit=st.integers(0, 5), released_through=st.integers(0, 20))


@given(st.lists(ACTION, max_size=30), st.integers(0, 6), st.dictionaries(st.sampled_from(["a", "b"]), STATE))
def test_every_action_is_passed_or_held_exactly_once(actions: list[Action], limit: int,
                                                     states: dict[str, BudgetState]) -> None:  # fmt: skip
    """Nothing is lost or duplicated (exactly-once, rule e), order is kept, and without a release or a hold no
    instance passes more than ``limit`` new triggers in the window; what passed by rule d is what is counted."""
    out = apply_budget(actions, limit, states, NOW)
    held = [t for ts in out.stopped.values() for t in ts]
    assert Counter(map(id, [*out.actions, *held])) == Counter(map(id, actions))
    assert list(out.actions) == [a for a in actions if any(a is p for p in out.actions)]
    if limit:
        for instance in ("a", "b"):
            if instance not in states:
                new = [a for a in out.actions if isinstance(a, Trigger) and a.node.instance == instance]
                assert len(new) <= limit
                assert out.counted.get(instance, 0) == len(new)


def test_view_reads_budget_states_and_reports_bad_ones() -> None:
    """The view holds each instance's state from config/budget/{instance}; a garbage value is a problem and the
    last valid state stays; a deletion removes it."""
    keys = KeyLayout("/c")
    view = View(keys)
    view.apply(keys.budget_key("a"), dump_budget(BudgetState(stopped=True, limit=3)), 5)
    assert view.budget_states() == {"a": BudgetState(stopped=True, limit=3)}
    view.apply(keys.budget_key("a"), b"{not json", 6)
    assert view.budget_states()["a"].stopped and keys.budget_key("a") in view.problems
    view.apply(keys.budget_key(".."), b"{}", 7)
    assert keys.budget_key("..") in view.problems
    view.apply(keys.budget_key("a"), None, 8)
    assert view.budget_states() == {}


def test_the_window_counts_what_earlier_passes_let_through_and_forgets_what_left_it() -> None:
    """Rule d across passes: 6 runs counted 5 minutes ago leave room for 2 of 4 new ones at a limit of 8 (held: 2);
    counted 11 minutes ago (the window is 10) they no longer count and all 4 pass."""
    four = [trigger("a", "d", i) for i in range(1, 5)]
    recent = NOW.add(BudgetState(), 6)
    later = Window(NOW.seconds, NOW.now + 300)
    out = apply_budget(four, 8, {"a": recent}, later)
    assert out.actions == tuple(four[:2]) and out.stopped == {"a": tuple(four[2:])} and out.newly_stopped == {"a"}
    gone = Window(NOW.seconds, NOW.now + 660)
    assert gone.count(recent) == 0
    assert apply_budget(four, 8, {"a": recent}, gone).actions == tuple(four)


def test_a_bucket_counts_until_all_of_it_has_left_the_window() -> None:
    """Rule g: a run counted at the end of a 60 s bucket is still counted 10 minutes later (the
    count errs on the side of holding), and not after its bucket's end has left the window."""
    start = Window(600.0, 1_800_000_059.0)
    state = start.add(BudgetState(), 3)
    assert state.started == ((1_800_000_000, 3),)
    assert Window(600.0, start.now + 600).count(state) == 3
    assert Window(600.0, 1_800_000_000.0 + 660).count(state) == 0


def test_the_record_counts_what_passed_and_the_hold_and_drops_old_buckets() -> None:
    """The leader's write: a pass that let 2 through and held 2 records both in one state; buckets that left the
    window are dropped; a pass that changes nothing writes nothing."""
    old = Window(600.0, NOW.now - 3600).add(BudgetState(released_through=4), 50)
    four = [trigger("a", "d", i) for i in range(1, 5)]
    out = apply_budget(four, 2, {"a": old}, NOW)
    at = datetime(2027, 1, 15, tzinfo=UTC)
    record = budget_record(old, out, "a", 2, NOW, at=at, by="w1")
    assert record is not None and record.stopped and record.stopped_count == 2 and record.limit == 2
    assert record.started == ((int(NOW.now // 60) * 60, 2),) and record.released_through == 4
    assert budget_record(old, apply_budget([], 2, {"a": old}, NOW), "a", 2, NOW, at=at, by="w1") is None


def test_a_count_alone_does_not_replan_but_a_hold_or_release_does() -> None:
    """The view re-plans every partition when a hold, its limit or a release changes, not when only the window's
    count moved (the leader writes it on every pass that starts runs)."""
    keys = KeyLayout("/c")
    view = View(keys)
    assert not view.apply(keys.budget_key("a"), dump_budget(NOW.add(BudgetState(), 1)), 5)
    assert not view.apply(keys.budget_key("a"), dump_budget(NOW.add(BudgetState(), 2)), 6)
    assert view.apply(keys.budget_key("a"), dump_budget(BudgetState(stopped=True, limit=3)), 7)
    assert view.apply(keys.budget_key("a"), dump_budget(BudgetState(released_through=7)), 8)
