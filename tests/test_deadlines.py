"""Deadlines (semantics rule 13, ``coordinator.core.deadline.states``): states, causes, ETAs, learned durations and
transitions, by example and with Hypothesis against an independent model on a fake clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.deadline.eta import CauseReason
from coordinator.core.deadline.learning import LEARN_SAMPLES, Samples, learned_duration, relearn
from coordinator.core.deadline.records import DeadlineRecord, transitions
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus, deadline_states
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunState
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.near_misses import spec_warnings
from coordinator.core.spec.render import render_text
from coordinator.core.view import RunFact, View
from coordinator.errors import SpecError
from coordinator.explain.deadlines import deadline_rows, why_lines
from coordinator.explain.report import status_rows
from coordinator.page.model import build_page
from coordinator.page.render import render_page
from tests.support.examples import examples

DAY = "0 0 * * *"
P = "2026-01-05T00:00:00Z"
P0 = datetime(2026, 1, 5, tzinfo=UTC)


def node(name: str) -> NodeId:
    return NodeId("default", name)


def chain_graph(expected: dict[str, Any], *, grid: str = DAY) -> Graph:
    """a -> b -> c, daily grids; c declares ``expected``; h handles c's deadline changes."""
    parts = {"partitions": {"cron": grid}}
    return parse_spec(
        json.dumps(
            {
                "version": 1,
                "dags": {
                    "a": parts,
                    "b": {"upstreams": "a", **parts},
                    "c": {"upstreams": "b", **parts, "expected_by": expected},
                    "h": {"on_late_of": "c"},
                },
            }
        )
    )


def fact(state: RunState, start: datetime | None = None, end: datetime | None = None) -> RunFact:
    return RunFact(state, "r", 0, 1, "test", start, end)


def view_of(facts: dict[tuple[str, str], RunFact]) -> View:
    view = View(KeyLayout())
    for (name, partition), value in facts.items():
        view.runs[(node(name), partition)] = value
        view.partitions.setdefault(partition, set()).add(node(name))
    return view


def status_at(graph: Graph, view: View, now: datetime, **kwargs: Any) -> DeadlineStatus:
    return deadline_states(graph, view, now, **kwargs)[(node("c"), P)]


# The window of P ends at P0 + 1 day; the deadline is 6 hours later.
EXPECTED = {"after_end": "6h", "warn": "30m", "duration": "1h"}
DEADLINE = P0 + timedelta(days=1, hours=6)


@pytest.mark.parametrize(
    ("facts", "now", "state", "cause"),
    [
        pytest.param({}, P0 + timedelta(hours=12), DeadlineState.ON_TIME, None, id="nothing-ran-yet-early"),
        pytest.param(
            {("c", P): fact(RunState.SUCCESS, DEADLINE - timedelta(hours=2), DEADLINE - timedelta(hours=1))},
            DEADLINE + timedelta(hours=5),
            DeadlineState.ON_TIME,
            None,
            id="success-before-deadline",
        ),
        pytest.param(
            {("c", P): fact(RunState.SUCCESS, DEADLINE, DEADLINE + timedelta(minutes=20))},
            DEADLINE + timedelta(hours=1),
            DeadlineState.LATE,
            None,
            id="success-after-deadline",
        ),
        pytest.param({}, DEADLINE + timedelta(seconds=1), DeadlineState.MISSED, None, id="deadline-passed"),
        pytest.param(
            {("a", P): fact(RunState.FAILED)},
            P0 + timedelta(hours=25),
            DeadlineState.BLOCKED,
            ("a", CauseReason.FAILED),
            id="upstream-two-hops-failed",
        ),
        pytest.param(
            {("a", P): fact(RunState.SUCCESS, P0, P0 + timedelta(hours=1)), ("b", P): fact(RunState.FAILED)},
            P0 + timedelta(hours=25),
            DeadlineState.BLOCKED,
            ("b", CauseReason.FAILED),
            id="upstream-one-hop-failed",
        ),
        pytest.param(
            {("a", P): fact(RunState.RUNNING, P0 + timedelta(days=1, hours=3))},
            P0 + timedelta(days=1, hours=3, minutes=30),
            DeadlineState.AT_RISK,
            None,
            id="slow-upstream",
        ),
        pytest.param(
            {("a", P): fact(RunState.FAILED)},
            DEADLINE + timedelta(minutes=1),
            DeadlineState.MISSED,
            ("a", CauseReason.FAILED),
            id="missed-names-its-cause",
        ),
    ],
)
def test_states_by_example(
    facts: dict[tuple[str, str], RunFact],
    now: datetime,
    state: DeadlineState,
    cause: tuple[str, CauseReason] | None,
) -> None:
    """Each situation gets the state rule 2 names and, when blocked or missed, the deepest cause of rule 3."""
    graph = chain_graph(EXPECTED)
    # a, b and c each take an hour and each trigger a minute: on schedule c ends 3h02 after the window end, within
    # the 6h deadline minus the 30m warning; an a that starts 3h late predicts 6h02, after it.
    durations = {node("a"): 3600.0, node("b"): 3600.0}
    got = status_at(graph, view_of(facts), now, durations=durations)
    assert got.state is state
    if cause is None:
        assert got.cause is None
    else:
        assert got.cause is not None and (got.cause.node.dag_id, got.cause.reason) == cause
        assert got.cause.chain[0] == (node("c"), P)


@pytest.mark.parametrize(
    ("paused", "unreachable", "reason"),
    [
        pytest.param({node("a")}, set(), CauseReason.PAUSED, id="paused"),
        pytest.param(set(), {"default"}, CauseReason.UNREACHABLE, id="unreachable"),
    ],
)
def test_paused_or_unreachable_blocks(paused: set[NodeId], unreachable: set[str], reason: CauseReason) -> None:
    """A paused DAG or an unreachable instance upstream blocks the partition and is named as the deepest cause."""
    got = status_at(chain_graph(EXPECTED), view_of({}), P0 + timedelta(hours=12), paused=paused,
                    unreachable=unreachable)  # fmt: skip
    assert got.state is DeadlineState.BLOCKED
    assert got.cause is not None and got.cause.node == node("a") and got.cause.reason is reason


def test_at_deadline_follows_the_wall_clock_across_dst() -> None:
    """``at`` 10:00 Berlin the next day is 09:00Z in winter and 08:00Z on the day after the spring change."""
    parts = {"partitions": {"cron": DAY, "timezone": "Europe/Berlin"}}
    rule_spec = {"at": "10:00", "day_offset": 1}
    graph = parse_spec(json.dumps({"version": 1, "dags": {"r": {**parts, "expected_by": rule_spec}}}))
    rule = graph.dags[node("r")].expected_by
    grid = graph.dags[node("r")].grid
    assert rule is not None
    assert rule.deadline(grid, "2026-01-04T23:00:00Z") == datetime(2026, 1, 6, 9, tzinfo=UTC)
    assert rule.deadline(grid, "2026-03-28T23:00:00Z") == datetime(2026, 3, 30, 8, tzinfo=UTC)


def test_from_date_silences_history() -> None:
    """Partitions before ``from`` have no deadline, so declaring one does not alert about the past."""
    graph = chain_graph({**EXPECTED, "from": "2026-01-05"})
    states = deadline_states(graph, view_of({}), P0 + timedelta(days=3), horizon=timedelta(days=5))
    assert states and min(p for _, p in states) == P


@pytest.mark.parametrize(
    ("expected", "fragment"),
    [
        pytest.param({"after_end": "6h", "at": "10:00"}, "2 anchors", id="two-anchors"),
        pytest.param({"warn": "1h"}, "no anchor", id="no-anchor"),
        pytest.param({"at": "25:00"}, "not a wall-clock time", id="bad-at"),
        pytest.param({"after_end": "soon"}, "not a duration", id="bad-duration"),
        pytest.param({"after_end": "1h", "day_offset": 1}, '"day_offset" without "at"', id="offset-without-at"),
        pytest.param({"at": "10:00", "from": "yesterday"}, "not a date", id="bad-from"),
    ],
)
def test_bad_expected_by_is_reported(expected: dict[str, Any], fragment: str) -> None:
    """A malformed ``expected_by`` is a spec error naming the field and what to write."""
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps({"version": 1, "dags": {"x": {"expected_by": expected}}}))
    assert fragment in str(info.value) and "$.dags.x.expected_by" in str(info.value)


@settings(max_examples=examples(200), deadline=None)
@given(
    base=st.lists(st.integers(100, 200), min_size=5, max_size=15),
    outliers=st.lists(st.integers(601, 100_000), max_size=2),
)
def test_learned_duration_ignores_outliers(base: list[int], outliers: list[int]) -> None:
    """Runs longer than three times the median are dropped before the 90th percentile is taken (rule 5)."""
    assert learned_duration([*base, *outliers]) == learned_duration(base)
    learned = learned_duration(base)
    assert learned is not None and min(base) <= learned <= max(base)


def test_learned_duration_needs_history() -> None:
    """Fewer than three successes learn nothing."""
    assert learned_duration([10.0, 20.0]) is None


def test_kept_samples_relearn_when_the_oldest_counted_sample_changes_or_leaves() -> None:
    """``learning.relearn`` on kept samples learns what the view would: a change to the oldest of the latest
    ``LEARN_SAMPLES`` samples moves the value, a sample older than them does not, and deleting a counted one lets the
    next older sample in."""
    node = NodeId("default", "d")
    histories: dict[NodeId, Samples] = {}
    learned: dict[NodeId, float] = {}
    days = [f"2026-01-{day:02d}T00:00:00Z" for day in range(1, LEARN_SAMPLES + 3)]
    # Two old samples of 1000 s below LEARN_SAMPLES samples of 1..LEARN_SAMPLES s: only the latter count.
    seconds = {p: (1000.0 if i < 2 else float(i - 1)) for i, p in enumerate(days)}
    for partition, value in seconds.items():
        relearn(histories, learned, node, partition, value)
    latest = days[-LEARN_SAMPLES:]
    assert learned[node] == learned_duration(seconds[p] for p in latest)
    assert not relearn(histories, learned, node, days[0], 5.0), "a sample older than the window changes nothing"
    oldest_counted = latest[0]
    assert relearn(histories, learned, node, oldest_counted, 19.5), "the oldest counted sample is in the window"
    seconds[days[0]], seconds[oldest_counted] = 5.0, 19.5
    assert learned[node] == learned_duration(seconds[p] for p in latest)
    relearn(histories, learned, node, days[-1], None)
    del seconds[days[-1]]
    assert learned[node] == learned_duration(seconds[p] for p in sorted(seconds)[-LEARN_SAMPLES:])


# ---- Hypothesis against an independent model ------------------------------------------------------------------

NAMES = ("n0", "n1", "n2", "n3")
HOUR = timedelta(hours=1)
FACTS = st.sampled_from(["none", "running", "success", "failed"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Graph, View, datetime, dict[NodeId, float]]:
    """A random gridded DAG chain-ish graph (offsets 0 or -1) with random facts and a fake clock."""
    dags: dict[str, Any] = {}
    for i, name in enumerate(NAMES):
        body: dict[str, Any] = {"partitions": {"cron": DAY}}
        ups = draw(st.lists(st.sampled_from(NAMES[:i]), unique=True, max_size=2)) if i else []
        if ups:
            body["upstreams"] = [{"dag": u, "offset": draw(st.sampled_from([0, -1]))} for u in ups]
        if i == len(NAMES) - 1 or draw(st.booleans()):
            body["expected_by"] = {"after_end": f"{draw(st.integers(0, 12))}h",
                                   "warn": f"{draw(st.integers(0, 3))}h"}  # fmt: skip
        dags[name] = body
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}))
    now = P0 + timedelta(days=2) + draw(st.integers(0, 40)) * HOUR
    view = View(KeyLayout())
    for name in NAMES:
        for day in range(-1, 4):
            partition = (P0 + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ")
            kind = draw(FACTS)
            start = P0 + timedelta(days=day + 1) + draw(st.integers(0, 30)) * HOUR
            if kind == "none" or start > now:
                continue
            end = start + draw(st.integers(1, 10)) * HOUR
            if kind == "success" and end <= now:
                view.runs[(node(name), partition)] = fact(RunState.SUCCESS, start, end)
            elif kind == "failed":
                view.runs[(node(name), partition)] = fact(RunState.FAILED, start, end)
            else:
                view.runs[(node(name), partition)] = fact(RunState.RUNNING, start)
    durations = {node(n): float(draw(st.integers(0, 5)) * 3600) for n in NAMES}
    return graph, view, now, durations


def model_needed(graph: Graph, view: View, at: tuple[NodeId, str]) -> list[tuple[NodeId, str]]:
    """Every (DAG, partition) ``at`` waits for, transitively, stopping at successes (the model's own traversal)."""
    seen: list[tuple[NodeId, str]] = []
    stack = [at]
    while stack:
        here = stack.pop()
        if here in seen:
            continue
        seen.append(here)
        current = view.runs.get(here)
        if current is not None and current.state is RunState.SUCCESS:
            continue
        for up in graph.dags[here[0]].upstreams:
            stack.extend((up, q) for q in graph.source_partitions(here[0], up, here[1]))
    return seen


def model_blocking(view: View, at: tuple[NodeId, str]) -> bool:
    current = view.runs.get(at)
    return current is not None and current.state is RunState.FAILED


def model_eta(graph: Graph, view: View, now: datetime, durations: dict[NodeId, float],
              at: tuple[NodeId, str]) -> datetime | None:  # fmt: skip
    """The ETA by the definition of rule 4, written as a plain recursion."""
    current = view.runs.get(at)
    own = timedelta(seconds=durations[at[0]])
    if current is not None and current.state is RunState.SUCCESS:
        return current.end_date
    if current is not None and current.state is RunState.RUNNING:
        assert current.start_date is not None
        return max(now, current.start_date + own)
    spec = graph.dags[at[0]]
    if not spec.upstreams:
        return max(now, model_start(graph, view, at)) + own
    ups = [model_eta(graph, view, now, durations, (u, q)) for u in spec.upstreams
           for q in graph.source_partitions(at[0], u, at[1])]  # fmt: skip
    ready = max([now, *(u + timedelta(seconds=60) for u in ups if u is not None)])
    return ready + own


def model_start(graph: Graph, view: View, at: tuple[NodeId, str]) -> datetime:
    """A gridded root's predicted start: P plus its learned start offset (the runs' start minus their partition),
    else, with no Airflow version known, P's window end."""
    dag, partition = at
    logical = datetime.strptime(partition, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    samples = sorted(((p, (f.start_date - datetime.strptime(p, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
                       .total_seconds()) for (n, p), f in view.runs.items() if n == dag and f.start_date is not None),
                     reverse=True)  # fmt: skip
    learned = learned_duration(seconds for _, seconds in samples[:20])
    if learned is not None:
        return logical + timedelta(seconds=learned)
    grid = graph.dags[dag].grid
    assert grid is not None
    return grid.next(logical)


def model_overdue(graph: Graph, view: View, at: tuple[NodeId, str]) -> datetime | None:
    """When ``at`` becomes overdue: the earliest root without a fact, reached through DAGs without a fact, five
    minutes after its predicted start; None when none is."""
    if view.runs.get(at) is not None:
        return None
    spec = graph.dags[at[0]]
    if not spec.upstreams:
        return model_start(graph, view, at) + timedelta(minutes=5)
    found = [model_overdue(graph, view, (u, q)) for u in spec.upstreams
             for q in graph.source_partitions(at[0], u, at[1])]  # fmt: skip
    return min((f for f in found if f is not None), default=None)


@settings(max_examples=examples(150), deadline=None)
@given(worlds())
def test_states_match_an_independent_model(world: tuple[Graph, View, datetime, dict[NodeId, float]]) -> None:
    """On random gridded graphs with offsets, failures and a fake clock, every state, cause and ETA is the model's."""
    graph, view, now, durations = world
    statuses = deadline_states(graph, view, now, durations=durations)
    for (dag, partition), got in statuses.items():
        rule = graph.dags[dag].expected_by
        assert rule is not None
        deadline = rule.deadline(graph.dags[dag].grid, partition)
        assert got.deadline == deadline
        current = view.runs.get((dag, partition))
        needed = model_needed(graph, view, (dag, partition))
        blockers = [at for at in needed if model_blocking(view, at)]
        if current is not None and current.state is RunState.SUCCESS:
            assert current.end_date is not None
            assert got.state is (DeadlineState.LATE if current.end_date > deadline else DeadlineState.ON_TIME)
            continue
        if now > deadline:
            assert got.state is DeadlineState.MISSED
        elif blockers:
            assert got.state is DeadlineState.BLOCKED
        if blockers:
            cause = got.cause
            assert cause is not None and (cause.node, cause.partition) in blockers
            # The deepest: nothing the cause itself waits for is blocking.
            below = model_needed(graph, view, (cause.node, cause.partition))[1:]
            assert not any(model_blocking(view, at) for at in below)
            continue
        if now > deadline:
            assert got.cause is None
            continue
        eta = model_eta(graph, view, now, durations, (dag, partition))
        overdue = model_overdue(graph, view, (dag, partition))
        if got.state is DeadlineState.AT_RISK and overdue is not None and now > overdue:
            # At risk while a root it waits for has not started: that root is the cause.
            assert got.cause is not None and got.cause.reason is CauseReason.NOT_STARTED
            assert not graph.dags[got.cause.node].upstreams and (got.cause.node, got.cause.partition) in needed
        else:
            assert got.cause is None
        assert got.eta == eta
        assert eta is not None
        warn = timedelta(seconds=rule.warn)
        assert got.state is (DeadlineState.AT_RISK if eta > deadline - warn else DeadlineState.ON_TIME)


def record_of(status: DeadlineStatus, sequence: int) -> DeadlineRecord:
    return DeadlineRecord(state=status.state, deadline=status.deadline, sequence=sequence, changed_at=P0)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.sampled_from(list(DeadlineState)), min_size=1, max_size=12), st.integers(1, 3))
def test_a_transition_is_emitted_once(sequence: list[DeadlineState], repeats: int) -> None:
    """Fed the same state over and over (passes between changes), each change is one transition, never repeated."""
    recorded: dict[tuple[NodeId, str], DeadlineRecord] = {}
    emitted: list[DeadlineState] = []
    for state in sequence:
        status = DeadlineStatus(node("c"), P, state, DEADLINE)
        for _ in range(repeats):
            for change in transitions({(node("c"), P): status}, recorded):
                emitted.append(change.status.state)
                recorded[(node("c"), P)] = record_of(change.status, change.sequence)
    changes, previous = [], DeadlineState.ON_TIME
    for state in sequence:
        if state is not previous:
            changes.append(state)
        previous = state
    assert emitted == changes
    if changes:
        assert recorded[(node("c"), P)].sequence == len(changes)


@pytest.mark.parametrize(
    ("upstream", "mine", "warned"),
    [
        pytest.param({"at": "06:00", "day_offset": 1}, {"at": "07:00", "day_offset": 1, "duration": "2h"}, True,
                     id="upstream-deadline-plus-duration-too-late"),
        pytest.param({"at": "06:00", "day_offset": 1}, {"at": "09:00", "day_offset": 1, "duration": "2h"}, False,
                     id="room-enough"),
    ],
)  # fmt: skip
def test_validate_warns_about_an_impossible_deadline(upstream: dict[str, Any], mine: dict[str, Any],
                                                     warned: bool) -> None:  # fmt: skip
    """A deadline earlier than an upstream's deadline plus this DAG's duration is a validate warning."""
    parts = {"partitions": {"cron": DAY, "timezone": "Europe/Berlin"}}
    dags = {"a": {**parts, "expected_by": upstream}, "b": {"upstreams": "a", **parts, "expected_by": mine}}
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}))
    warnings = [w for w in spec_warnings(graph) if "expected_by" in w.path]
    assert bool(warnings) is warned
    if warned:
        assert "cannot make its own" in warnings[0].message and warnings[0].path == "$.dags['b'].expected_by"


def test_page_colours_a_blocked_dag_and_shows_its_cause_chain() -> None:
    """The dependencies page badges 03's blocked state and its detail names the deadline, ETA and cause chain."""
    graph = chain_graph(EXPECTED)
    view = view_of({("a", P): fact(RunState.FAILED)})
    now = P0 + timedelta(hours=25)
    statuses = deadline_states(graph, view, now, partitions=[P])
    model = build_page(graph, view, plan(graph, view, [P]), P, [P], statuses)
    html = render_page(model, selected=node("c"))
    assert 'data-dag="default/c" data-state' in html and 'data-deadline="blocked"' in html
    assert "default/c@2026-01-05T00:00:00Z &lt;- default/b@2026-01-05T00:00:00Z &lt;- default/a@" in html
    assert "blocked — due 2026-01-06 06:00Z, ETA -" in html
    assert html.count("data-deadline=") == 1  # a and b have no expected_by


def test_a_late_handler_is_shown_like_a_failure_handler_not_as_a_root() -> None:
    """status, the page, validate's summary and the text rendering call h a late handler that waits, never a root."""
    graph = chain_graph({"after_start": "1d"})
    view = view_of({("a", P): fact(RunState.SUCCESS)})
    the_plan = plan(graph, view, [P])
    rows = {row.dag: row for row in status_rows(graph, the_plan, [P], view)}
    assert rows["h"].status == "waiting"
    assert "root" not in rows["h"].summary and "late handler of c" in rows["h"].summary
    assert rows["a"].status == "success"
    assert graph.roots == (node("a"),)
    assert "h <- on deadline changes of c" in render_text(graph).splitlines()
    model = build_page(graph, view, the_plan, P, [P], {})
    html = render_page(model, selected=node("h"))
    assert 'data-dag="default/h" data-state="waiting"' in html


@pytest.mark.parametrize(
    ("own", "recorded", "shown"),
    [
        pytest.param(RunState.RUNNING, ("blocked", "paused"), "blocked", id="leader-knows-a-paused-dag"),
        pytest.param(None, ("blocked", "unreachable"), "blocked", id="leader-knows-an-unreachable-instance"),
        pytest.param(None, ("blocked", "failed"), "on_time", id="a-failure-status-would-see-itself"),
        pytest.param(RunState.SUCCESS, ("blocked", "paused"), "on_time", id="a-success-outranks-an-old-record"),
        pytest.param(None, ("at_risk", None), "on_time", id="only-blocked-records-count"),
    ],
)
def test_status_shows_the_leaders_judgement_only_for_causes_it_cannot_see(
    own: RunState | None, recorded: tuple[str, str | None], shown: str
) -> None:
    """status/why take the leader's recorded blocked state only when its cause is paused or unreachable and they
    would say on_time/at_risk without a success themselves."""
    graph = chain_graph({"after_start": "3d"})
    view = view_of({("c", P): fact(own, P0, P0 + timedelta(hours=1))} if own is not None else {})
    now = P0 + timedelta(hours=2)
    statuses = deadline_states(graph, view, now, partitions=[P])
    state, reason = recorded
    cause = f"default/a@{P} {reason}" if reason else None
    record = DeadlineRecord(state=DeadlineState(state), deadline=P0 + timedelta(days=1), cause=cause, changed_at=now)
    rows = deadline_rows(statuses, [P], {(node("c"), P): record})
    assert [row.state for row in rows] == [shown]
    assert rows[0].judged_by == ("leader" if shown != "on_time" else "local")
    lines = why_lines(statuses[(node("c"), P)], record)
    assert lines[0].startswith(f"deadline: {shown}") and (
        ("judged by the watcher" in lines[-1]) == (shown != "on_time")
    )


def test_failure_two_hops_up_an_ungridded_chain_gives_the_dag_its_partition() -> None:
    """Ungridded a -> b -> c: a failed, b never ran; c still has a status for that partition, blocked by a (rule 1)."""
    graph = parse_spec(
        json.dumps(
            {
                "version": 1,
                "dags": {
                    "a": {},
                    "b": {"upstreams": "a"},
                    "c": {"upstreams": "b", "expected_by": {"after_start": "6h"}},
                },
            }
        )
    )
    states = deadline_states(graph, view_of({("a", P): fact(RunState.FAILED)}), P0 + timedelta(hours=1))
    got = states[(node("c"), P)]
    assert got.state is DeadlineState.BLOCKED
    assert got.cause is not None and got.cause.node == node("a")
    assert [n.dag_id for n, _ in got.cause.chain] == ["c", "b", "a"]
