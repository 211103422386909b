"""Per-DAG trigger allowances (semantics rule 15h): what the grids explain, what a DAG's hold holds (that DAG only),
what a release or a declared backfill lets pass, and the record that carries it (coordinator.core.budget*)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.cli.budget_cmds import _released
from coordinator.core.actions import Action, Trigger
from coordinator.core.budget import DEFAULT_TRIGGER_BUDGET, Window, apply_budget, budget_record
from coordinator.core.budget_allowance import (
    DEFAULT_DAG_ALLOWANCE_FLOOR,
    Allowances,
    dag_allowances,
    declared_backfills,
    graph_allowances,
)
from coordinator.core.budget_state import BudgetState, DagBudget, dump_budget, parse_budget
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, canonical_partition
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.diagnosis import CheckStatus
from coordinator.diagnosis.state_checks import budget_check

NOW = Window(600.0, 1_800_000_000.0)
FLOOR = Allowances(DEFAULT_DAG_ALLOWANCE_FLOOR)
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2027, 1, 15, tzinfo=UTC)


def day(n: int) -> str:
    return canonical_partition(DAY0 + timedelta(days=n))


def trigger(dag: str, partition: str, cause_rev: int = 10, instance: str = "default") -> Trigger:
    return Trigger(node=NodeId(instance, dag), partition=partition, inputs={}, action=TriggerAction.CREATE, run_id="r",
                   reason="", cause_rev=cause_rev, ledger_rev=0, trigger_count=1)  # fmt: skip


def graph(dags: dict[str, Any]) -> Any:
    return parse_spec(json.dumps({"version": 1, "dags": dags}))


def node(dag: str) -> NodeId:
    return NodeId("default", dag)


DAILY, HOURLY, MINUTE = {"cron": "0 0 * * *"}, {"cron": "0 * * * *"}, {"cron": "* * * * *"}


@pytest.mark.parametrize(
    ("dags", "dag", "allowance"),
    [
        pytest.param({"r": {}, "c": {"upstreams": ["r"]}}, "c", 40, id="no-grid-the-floor"),
        pytest.param(
            {"r": {"partitions": DAILY}, "c": {"partitions": DAILY, "upstreams": ["r"]}}, "c", 40, id="daily-the-floor"
        ),
        pytest.param(
            {"r": {"partitions": MINUTE}, "c": {"partitions": MINUTE, "upstreams": ["r"]}},
            "c",
            40,
            id="minutely-11-in-ten-minutes-twice-is-under-the-floor",
        ),
        pytest.param(
            {"r": {"partitions": DAILY}, "c": {"partitions": HOURLY, "upstreams": ["r"]}},
            "c",
            48,
            id="hourly-fan-out-of-a-daily-upstream-24-twice",
        ),
        pytest.param(
            {"r": {"partitions": MINUTE}, "c": {"partitions": {"cron": "*/2 * * * *"}, "upstreams": ["r"]}},
            "c",
            40,
            id="a-coarser-dependent-takes-its-upstreams-count",
        ),
    ],
)
def test_the_allowance_is_what_the_grids_explain_with_a_margin_and_a_floor(
    dags: dict[str, Any], dag: str, allowance: int
) -> None:
    """Rules 1-2: max(40, 2 x the largest of its sources' points in the window x their fan-out to this DAG)."""
    assert dag_allowances(graph(dags), 600.0, DEFAULT_DAG_ALLOWANCE_FLOOR)[node(dag)] == allowance


def test_the_watchers_on_demand_allowances_equal_the_table() -> None:
    """graph_allowances measures a DAG when first asked and gives what dag_allowances gives; unknown DAG: the floor."""
    g = graph({"r": {"partitions": DAILY}, "c": {"partitions": HOURLY, "upstreams": ["r"]}, "d": {"upstreams": ["r"]}})
    lazy = graph_allowances(g, 600.0, 40)
    assert {n: lazy.of(n) for n in g.dags} == dag_allowances(g, 600.0, 40) == {node("r"): 40, node("c"): 48,
                                                                                node("d"): 40}  # fmt: skip
    assert lazy.of(node("unknown")) == 40 and graph_allowances(g, 600.0, 0).of(node("c")) == 0


def test_a_floor_of_zero_turns_per_dag_holds_off() -> None:
    """Rule 2: no allowances, and apply_budget then holds nothing by DAG (the ceiling alone)."""
    g = graph({"r": {}, "c": {"upstreams": ["r"]}})
    assert dag_allowances(g, 600.0, 0) == {}
    out = apply_budget([trigger("c", day(i)) for i in range(300)], 1000, {}, NOW, Allowances(0))
    assert len(out.actions) == 300 and not out.stopped


def test_a_midnight_cascade_of_300_dags_passes_under_the_defaults() -> None:
    """300 different DAGs due once each in one instance: nothing held (the old fixed 100 held 200 of them), and
    the record counting them stays small (defaults left out of each DAG's entry)."""
    cascade = [trigger(f"d{i:03}", day(0)) for i in range(300)]
    out = apply_budget(cascade, DEFAULT_TRIGGER_BUDGET, {}, NOW, FLOOR)
    assert out.actions == tuple(cascade) and not out.stopped and not out.newly_stopped_dags and not out.newly_stopped
    record = budget_record(BudgetState(), out, "default", DEFAULT_TRIGGER_BUDGET, NOW, at=DAY0, by="w1")
    assert record is not None and len(record.dags) == 300 and len(dump_budget(record)) < 16_000  # one etcd write


def test_a_13_day_catch_up_of_an_8_dag_graph_passes() -> None:
    """13 partitions of each of 7 dependents at once (an outside writer's catch-up): nothing held."""
    catch_up = [trigger(f"d{k}", day(i)) for i in range(13) for k in range(7)]
    out = apply_budget(catch_up, DEFAULT_TRIGGER_BUDGET, {}, NOW, FLOOR)
    assert len(out.actions) == 91 and not out.stopped


def test_a_flood_of_one_dag_holds_that_dag_only() -> None:
    """300 triggers of c (a forged flood of its upstream) and one of an unrelated DAG v after them: 40 of c pass,
    260 are held by c's allowance, v passes, the instance itself is not held."""
    flood = [trigger("c", day(i)) for i in range(300)]
    other = trigger("v", day(0))
    out = apply_budget([*flood, other], DEFAULT_TRIGGER_BUDGET, {}, NOW, FLOOR)
    assert out.actions == (*flood[:40], other)
    assert out.newly_stopped_dags == {node("c")} and out.stopped_dags == {node("c"): 260} and not out.newly_stopped
    assert out.counted_dags == {node("c"): 40, node("v"): 1} and out.counted == {"default": 41}
    assert out.stopped_spans == {node("c"): (day(40), day(299))}


HELD_C = BudgetState(dags={"c": DagBudget(stopped=True, allowance=40, count=40, stopped_count=260)})


@pytest.mark.parametrize(
    ("state", "allowance", "passed_c", "newly"),
    [
        pytest.param(HELD_C, 40, 0, set(), id="a-held-dag-holds-all-of-its-triggers"),
        pytest.param(HELD_C, 48, 5, set(), id="a-larger-allowance-lifts-the-hold"),
        pytest.param(BudgetState(dags={"c": DagBudget(released_through=10)}), 40, 5, set(), id="dag-released"),
        pytest.param(
            BudgetState(dags={"c": DagBudget(stopped=True, allowance=40, released_through=9)}),
            40,
            0,
            set(),
            id="caused-after-the-dag-release",
        ),
        pytest.param(
            BudgetState(dags={"c": DagBudget(started=((1_800_000_000 - 60, 38),))}),
            40,
            2,
            {node("c")},
            id="the-dag-window-counts-earlier-passes",
        ),
    ],
)
def test_a_dag_hold_and_its_release(state: BudgetState, allowance: int, passed_c: int, newly: set[NodeId]) -> None:
    """Rules b-d per DAG on five triggers of c and one of v: c's state decides c's fate only, v always passes."""
    actions = [*(trigger("c", day(i)) for i in range(5)), trigger("v", day(0))]
    out = apply_budget(actions, DEFAULT_TRIGGER_BUDGET, {"default": state}, NOW, Allowances(40, {node("c"): allowance}))
    assert sum(a.node == node("c") for a in out.actions if isinstance(a, Trigger)) == passed_c
    assert actions[-1] in out.actions and out.newly_stopped_dags == newly


def test_a_declared_backfill_passes_its_range_and_its_descendants_uncounted() -> None:
    """Rule 3: a backfill of b over 60 days lets b's 60 triggers, and c's (below b) in that range, pass uncounted;
    c's partition after the range is counted; an unrelated DAG's is counted."""
    g = graph({"a": {"partitions": DAILY}, "b": {"partitions": DAILY, "upstreams": ["a"]},
               "c": {"partitions": DAILY, "upstreams": ["b"]}, "v": {}})  # fmt: skip
    declared = declared_backfills(g, [(node("b"), day(i)) for i in range(60)])
    actions = [trigger("b", day(i)) for i in range(60)] + [trigger("c", day(i)) for i in range(61)]
    actions.append(trigger("v", day(0)))
    out = apply_budget(actions, DEFAULT_TRIGGER_BUDGET, {}, NOW, Allowances(40), declared)
    assert out.actions == tuple(actions) and out.counted_dags == {node("c"): 1, node("v"): 1}
    assert not declared.covers(node("a"), day(3)) and declared.covers(node("c"), day(59))


def test_the_record_keeps_each_dags_count_and_hold_and_drops_idle_dags() -> None:
    """The leader's write: c's 40 counted and its hold (count 40, allowance 40, 260 held) in the instance's record;
    a DAG whose buckets left the window, not held and never released, is dropped; the instance is not held."""
    old = BudgetState(dags={"gone": DagBudget(started=((1_700_000_000, 3),)), "kept": DagBudget(released_through=4)})
    out = apply_budget([trigger("c", day(i)) for i in range(300)], DEFAULT_TRIGGER_BUDGET, {"default": old}, NOW, FLOOR)
    at = datetime(2027, 1, 15, tzinfo=UTC)
    record = budget_record(old, out, "default", DEFAULT_TRIGGER_BUDGET, NOW, at=at, by="w1", allowances=FLOOR)
    assert record is not None and not record.stopped and NOW.count(record) == 40
    assert set(record.dags) == {"c", "kept"}
    c = record.dags["c"]
    assert (c.stopped, c.count, c.allowance, c.stopped_count, c.stopped_at) == (True, 40, 40, 260, at)
    assert (c.stopped_first, c.stopped_last) == (day(40), day(299))
    assert parse_budget(dump_budget(record))[0] == record


def test_a_held_dag_records_a_wider_range_once_and_nothing_when_within_it() -> None:
    """Held by rule c, a pass holding partitions outside the recorded range widens it (one write); a pass within
    it writes nothing (a held DAG is not rewritten on every pass)."""
    held = BudgetState(dags={"c": DagBudget(stopped=True, allowance=40, stopped_first=day(40), stopped_last=day(60))})
    at = datetime(2027, 1, 15, tzinfo=UTC)

    def record(days: range) -> BudgetState | None:
        out = apply_budget([trigger("c", day(i)) for i in days], 1000, {"default": held}, NOW, FLOOR)
        assert not out.actions
        return budget_record(held, out, "default", 1000, NOW, at=at, by="w1", allowances=FLOOR)

    wider = record(range(10, 71))
    assert wider is not None and (wider.dags["c"].stopped_first, wider.dags["c"].stopped_last) == (day(10), day(70))
    assert record(range(41, 60)) is None


def test_a_released_range_passes_for_the_dag_and_those_below_it() -> None:
    """Rule 3: after c's release over days 40-299, c's and g's (below c) triggers in that range pass uncounted; a
    day after it is counted; a sibling of c (fed by the same root) is not covered."""
    g = graph({"r": {}, "c": {"upstreams": ["r"]}, "g": {"upstreams": ["c"]}, "s": {"upstreams": ["r"]}})
    declared = declared_backfills(g, [], [(node("c"), day(40), day(299))])
    actions = [trigger(d, day(i)) for d in ("c", "g") for i in range(40, 300)]
    out = apply_budget(actions, DEFAULT_TRIGGER_BUDGET, {}, NOW, FLOOR, declared)
    assert out.actions == tuple(actions) and not out.counted_dags
    assert not declared.covers(node("g"), day(300)) and not declared.covers(node("s"), day(50))


def test_a_record_written_before_per_dag_holds_still_decodes() -> None:
    """Old records (no ``dags``) decode with no DAG held; unknown fields are ignored."""
    state, problem = parse_budget(b'{"held": true, "limit": 100, "held_count": 3, "started": [[60, 2]], "x": 1}')
    assert problem is None and state is not None and state.stopped and state.dags == {} and not state.stopped_dags()


def test_a_dag_hold_or_its_release_replans_and_a_dag_count_alone_does_not() -> None:
    """The view re-plans every partition when a DAG's hold, allowance or release changes, not for its count."""
    keys, view = KeyLayout("/c"), View(KeyLayout("/c"))
    counted = BudgetState(dags={"c": DagBudget(started=((1, 1),))})
    assert not view.apply(keys.budget_key("default"), dump_budget(counted), 5)
    assert view.apply(keys.budget_key("default"), dump_budget(HELD_C), 6)
    released = BudgetState(dags={"c": DagBudget(released_through=6)})
    assert view.apply(keys.budget_key("default"), dump_budget(released), 7)


def test_release_of_one_dag_leaves_the_others_and_release_of_the_instance_frees_all() -> None:
    """``release --dag c`` frees c (released_through, count emptied, its held range now released) and keeps d held;
    ``release`` frees both and the instance, keeping each DAG's released range; releasing a DAG that is not held
    says so."""
    c = HELD_C.dags["c"].model_copy(update={"stopped_first": day(40), "stopped_last": day(299), "started": ((1, 40),)})
    state = BudgetState(dags={"c": c, "d": DagBudget(stopped=True, allowance=40, stopped_count=1, stopped_first=day(3),
                                                     stopped_last=day(3))})  # fmt: skip
    one, text = _released(state, "default", "c", 77, "me")
    freed = one.dags["c"]
    assert not freed.stopped and freed.released_through == 77 and freed.started == () and one.dags["d"].stopped
    assert (freed.released_first, freed.released_last, freed.stopped_first) == (day(40), day(299), None)
    assert "released default/c" in text and "260 run(s)" in text
    every, text = _released(state, "default", None, 78, "me")
    assert not every.stopped_anywhere() and every.released_through == 78 and "DAGs c, d" in text
    assert {d: (e.released_first, e.released_last) for d, e in every.dags.items()} == {
        "c": (day(40), day(299)), "d": (day(3), day(3))}  # fmt: skip
    with pytest.raises(LookupError, match="default/x is not held"):
        _released(state, "default", "x", 79, "me")


DAGS = st.sampled_from(["c", "d", "v"])
ACTION = st.builds(lambda dag, i, rev, inst: trigger(dag, day(i), rev, inst), DAGS, st.integers(0, 60),
                   st.integers(1, 20), st.sampled_from(["a", "b"]))  # fmt: skip
DAG_STATE = st.builds(
    DagBudget,
    stopped=st.booleans(),
    allowance=st.integers(0, 6),
    released_through=st.integers(0, 20),
    started=st.lists(st.tuples(st.just(1_800_000_000), st.integers(0, 8)), max_size=1).map(tuple),
)
STATE = st.builds(BudgetState, stopped=st.booleans(), limit=st.integers(0, 30), released_through=st.integers(0, 20),
                  dags=st.dictionaries(DAGS, DAG_STATE, max_size=3))  # fmt: skip


@given(st.lists(ACTION, max_size=60), st.integers(0, 40), st.integers(0, 6),
       st.dictionaries(st.sampled_from(["a", "b"]), STATE))  # fmt: skip
def test_every_action_is_passed_or_held_exactly_once_with_allowances(
    actions: list[Action], limit: int, floor: int, states: dict[str, BudgetState]
) -> None:
    """Nothing lost or duplicated and the order kept, with per-DAG allowances; a DAG with no recorded state passes
    at most its allowance by rule d; what passed by rule d is what is counted, per DAG and per instance."""
    out = apply_budget(actions, limit, states, NOW, Allowances(floor))
    held = [t for ts in out.stopped.values() for t in ts]
    assert Counter(map(id, [*out.actions, *held])) == Counter(map(id, actions))
    assert list(out.actions) == [a for a in actions if any(a is p for p in out.actions)]
    assert sum(out.stopped_dags.values()) <= len(held)
    assert sum(out.counted_dags.values()) == sum(out.counted.values())
    if limit and floor:
        for n, passed in Counter(a.node for a in out.actions if isinstance(a, Trigger)).items():
            if n.instance not in states:
                assert passed <= floor and out.counted_dags.get(n, 0) == passed


def test_doctor_names_the_held_dag_with_its_count_and_allowance_and_the_release_command() -> None:
    """doctor's trigger budget check warns with the held DAG, its count against its allowance and the --dag fix;
    an instance with no hold is OK."""
    keys = KeyLayout("/c")
    view = View(keys)
    assert budget_check(view).status is CheckStatus.OK
    view.apply(keys.budget_key("default"), dump_budget(HELD_C), 5)
    check = budget_check(view)
    assert check.status is CheckStatus.WARN and check.summary == "held by the trigger budget: 1 DAG(s): default/c"
    assert "40 new run(s) of it started in the window, reaching its allowance of 40" in check.details[0]
    assert check.fix is not None and "`coordinator release INSTANCE --dag DAG`" in check.fix


def rerun(dag: str, partition: str) -> Trigger:
    """A clear of a partition the coordinator triggered before (a ledger entry)."""
    return Trigger(node=node(dag), partition=partition, inputs={}, action=TriggerAction.CLEAR, run_id="r", reason="",
                   cause_rev=20, ledger_rev=7, trigger_count=2)  # fmt: skip


def hourly(n: int) -> list[str]:
    """The 24 hourly partitions of day ``n``."""
    return [canonical_partition(DAY0 + timedelta(days=n, hours=h)) for h in range(24)]


def test_a_fan_out_rerun_after_a_two_day_catch_up_passes_uncounted() -> None:
    """48 hourly runs counted (a two-day catch-up) at an allowance of 48, then a clear of one day's 24: all 24 pass,
    recorded as reruns, not against the allowance, and the DAG is not held."""
    spec = graph({"daily": {"partitions": DAILY}, "h": {"partitions": HOURLY, "upstreams": ["daily"]}})
    allow = graph_allowances(spec, NOW.seconds, 40)
    assert allow.of(node("h")) == 48
    first = apply_budget([trigger("h", p) for p in hourly(0) + hourly(1)], DEFAULT_TRIGGER_BUDGET, {}, NOW, allow)
    state = budget_record(BudgetState(), first, "default", DEFAULT_TRIGGER_BUDGET, NOW, at=AT, by="w", allowances=allow)
    assert state is not None and NOW.count(state.dags["h"]) == 48
    again = apply_budget([rerun("h", p) for p in hourly(0)], DEFAULT_TRIGGER_BUDGET, {"default": state}, NOW, allow)
    assert len(again.actions) == 24 and not again.stopped and not again.newly_stopped_dags
    assert again.reran_dags == {node("h"): 24} and not again.counted_dags and again.counted == {"default": 24}
    after = budget_record(state, again, "default", DEFAULT_TRIGGER_BUDGET, NOW, at=AT, by="w", allowances=allow)
    assert after is not None and NOW.count(after.dags["h"]) == 48 and NOW.tally(after.dags["h"].reran) == 24


def test_reruns_pass_uncounted_only_up_to_the_runs_counted() -> None:
    """A DAG with 10 new runs counted: 10 reruns pass as reruns, the next are judged against the allowance (30 more
    fill it to 40) and the rest are held; a clear without a ledger entry, or of a DAG with nothing counted, is a new
    run."""
    state = BudgetState(dags={"c": DagBudget(started=((int(NOW.now) - 60, 10),))})
    flood = [rerun("c", day(i)) for i in range(60)]
    out = apply_budget(flood, DEFAULT_TRIGGER_BUDGET, {"default": state}, NOW, FLOOR)
    assert out.reran_dags == {node("c"): 10} and out.counted_dags == {node("c"): 30}
    assert len(out.actions) == 40 and out.stopped_dags == {node("c"): 20} and out.newly_stopped_dags == {node("c")}
    fresh = apply_budget([rerun("c", day(0))], DEFAULT_TRIGGER_BUDGET, {}, NOW, FLOOR)
    assert not fresh.reran_dags and fresh.counted_dags == {node("c"): 1}
    unknown = replace(rerun("c", day(0)), ledger_rev=0)
    judged = apply_budget([unknown], DEFAULT_TRIGGER_BUDGET, {"default": state}, NOW, FLOOR)
    assert not judged.reran_dags and judged.counted_dags == {node("c"): 1}


def test_runs_airflow_ran_as_backfills_explain_a_week_of_hourly_fan_out() -> None:
    """7 days of a daily DAG recorded as Airflow backfill runs: the 168 hourly runs below it (and the 168 of the
    hourly DAG below that) pass uncounted, with no hold; without the runs' type each DAG's allowance passes (48 for h,
    the floor of 40 for h2) and the rest are held."""
    spec = graph({
        "daily": {"partitions": DAILY},
        "h": {"partitions": HOURLY, "upstreams": ["daily"]},
        "h2": {"partitions": HOURLY, "upstreams": ["h"]},
    })  # fmt: skip
    allow = graph_allowances(spec, NOW.seconds, 40)
    week = [p for d in range(7) for p in hourly(d)]
    flood = [trigger(dag, p) for dag in ("h", "h2") for p in week]
    declared = declared_backfills(spec, (), (), [(node("daily"), day(d)) for d in range(7)])
    out = apply_budget(flood, DEFAULT_TRIGGER_BUDGET, {}, NOW, allow, declared)
    assert len(out.actions) == 336 and not out.stopped and not out.counted_dags
    unexplained = apply_budget(flood, DEFAULT_TRIGGER_BUDGET, {}, NOW, allow, declared_backfills(spec, ()))
    assert unexplained.counted_dags == {node("h"): 48, node("h2"): 40}
    assert unexplained.stopped_dags == {node("h"): 120, node("h2"): 128}


def test_backfill_runs_months_apart_do_not_explain_the_months_between() -> None:
    """Backfill runs of day 0 and day 90 explain their own days' hourly partitions below, not day 45's; a week of
    adjacent days is one range."""
    spec = graph({"daily": {"partitions": DAILY}, "h": {"partitions": HOURLY, "upstreams": ["daily"]}})
    declared = declared_backfills(spec, (), (), [(node("daily"), day(0)), (node("daily"), day(90))])
    assert all(declared.covers(node("h"), p) for p in hourly(0) + hourly(90))
    assert not any(declared.covers(node("h"), p) for p in hourly(45) + hourly(1) + hourly(91))
    week = declared_backfills(spec, (), (), [(node("daily"), day(d)) for d in range(7)])
    assert len(week.ranges[node("h")]) == 1 and week.covers(node("h"), hourly(6)[-1])


def test_the_view_indexes_the_runs_airflow_ran_as_backfills() -> None:
    """A run state with run_type backfill is in ``View.run_backfills`` (by apply and by a snapshot page alike); a
    later state of another type, a delete or an unparsable value takes it out; a value without run_type never is."""
    keys = KeyLayout()
    key = keys.run_key(node("daily"), day(0))
    backfill = b'{"state":"success","run_id":"backfill__x","run_type":"backfill"}'
    view = View(keys)
    view.apply(key, backfill, 5)
    assert view.run_backfills == {(node("daily"), day(0)): 5}
    view.apply(key, b'{"state":"running","run_id":"scheduled__x","run_type":"scheduled"}', 6)
    assert view.run_backfills == {}
    view.apply(key, backfill, 7)
    view.apply(key, None, 8)
    assert view.run_backfills == {}
    view.apply(key, backfill, 9)
    view.apply(key, b"{", 10)
    assert view.run_backfills == {}
    paged = View(keys)
    paged.load(3, [(key, backfill, 3), (keys.run_key(node("daily"), day(1)), b'{"state":"success","run_id":"r"}', 2)])
    assert paged.run_backfills == {(node("daily"), day(0)): 3}


DAG_STATE = st.builds(
    DagBudget,
    started=st.integers(0, 50).map(lambda n: ((int(NOW.now) - 60, n),) if n else ()),
    reran=st.integers(0, 50).map(lambda n: ((int(NOW.now) - 60, n),) if n else ()),
)
MIXED = st.lists(
    st.builds(
        lambda d, p, again: rerun(d, day(p)) if again else trigger(d, day(p)),
        st.sampled_from(["c", "v"]),
        st.integers(0, 99),
        st.booleans(),
    ),
    max_size=120,
)


@given(MIXED, st.dictionaries(st.sampled_from(["c", "v"]), DAG_STATE))
def test_reruns_never_pass_more_than_the_runs_counted_and_nothing_is_lost(
    actions: list[Trigger], dags: dict[str, DagBudget]
) -> None:
    """Every trigger is passed or held exactly once, in order; per DAG the reruns passed uncounted never take its
    reruns in the window past its new runs counted there, and the new runs it counts never pass its allowance."""
    state = BudgetState(dags=dags)
    out = apply_budget(actions, DEFAULT_TRIGGER_BUDGET, {"default": state}, NOW, FLOOR)
    held = [t for ts in out.stopped.values() for t in ts]
    assert Counter(map(id, [*out.actions, *held])) == Counter(map(id, actions))
    assert list(out.actions) == [a for a in actions if any(a is p for p in out.actions)]
    for dag in ("c", "v"):
        entry = dags.get(dag)
        counted, reran = NOW.count(entry), 0 if entry is None else NOW.tally(entry.reran)
        assert out.reran_dags.get(node(dag), 0) <= max(0, counted - reran)
        assert counted + out.counted_dags.get(node(dag), 0) <= max(counted, FLOOR.of(node(dag)))


def test_the_stored_record_keeps_its_field_names() -> None:
    """The budget's ``stopped*`` fields are stored and read as ``held*``: the bytes are what the key always held."""
    at = datetime(2026, 11, 23, tzinfo=UTC)
    stored = (
        b'{"held":true,"limit":5,"held_count":3,"held_at":"2026-11-23T00:00:00Z","released_through":0,"by":"",'
        b'"started":[],"dags":{"c":{"held":true,"allowance":40,"held_count":2,"held_at":"2026-11-23T00:00:00Z",'
        b'"held_first":"2026-11-01","held_last":"2026-11-02"}}}'
    )
    dag = DagBudget(stopped=True, allowance=40, stopped_count=2, stopped_at=at, stopped_first="2026-11-01",
                    stopped_last="2026-11-02")  # fmt: skip
    state = BudgetState(stopped=True, limit=5, stopped_count=3, stopped_at=at, dags={"c": dag})
    assert dump_budget(state) == stored
    assert parse_budget(stored) == (state, None)
