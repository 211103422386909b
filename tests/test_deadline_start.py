"""When a root starts (``core.deadline.start``) and what the deadlines make of it; times of outside writers
(semantics rule 13, issue 27)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.deadline.eta import CauseReason
from coordinator.core.deadline.learning import learned_duration
from coordinator.core.deadline.start import (
    StartRule,
    StartSource,
    Timetable,
    TimetableKind,
    scheduled,
    start_rule,
)
from coordinator.core.deadline.states import DeadlineState, deadline_states
from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import RunFact, View
from coordinator.explain.deadlines import deadline_rows, why_lines
from tests.support.examples import examples

DAY = "0 0 * * *"
HOURLY = "0 * * * *"
P = "2026-11-23T00:00:00Z"
P0 = datetime(2026, 11, 23, tzinfo=UTC)


def node(name: str) -> NodeId:
    return NodeId("default", name)


def pair(expected: dict[str, Any], grid: str = DAY) -> Graph:
    """src -> dep on one grid; dep declares ``expected``."""
    parts = {"partitions": {"cron": grid}}
    return parse_spec(json.dumps({"version": 1, "dags": {
        "src": parts, "dep": {"upstreams": "src", **parts, "expected_by": expected}}}))  # fmt: skip


def view_of(facts: dict[tuple[str, str], RunFact]) -> View:
    view = View(KeyLayout())
    for (name, partition), value in facts.items():
        view.runs[(node(name), partition)] = value
        view.partitions.setdefault(partition, set()).add(node(name))
    return view


def written(**fields: Any) -> RunFact:
    """The fact the view keeps of a run state value as a writer put it (``updated_at`` included)."""
    return RunFact.of(RunRecord.model_validate({"run_id": "ext__1", "source": "my-job", **fields}), 5)


# -- the sources, in order --------------------------------------------------------------------------------------


@settings(max_examples=examples(200), deadline=None)
@given(
    history=st.one_of(st.none(), st.floats(0, 3 * 86_400)),
    timetable=st.one_of(st.none(), st.builds(Timetable, st.sampled_from(list(TimetableKind)), st.integers(0, 7200))),
    major=st.one_of(st.none(), st.sampled_from([2, 3])),
    grid=st.sampled_from([DAY, HOURLY, "30 6 * * 1-5"]),
    day=st.integers(0, 400),
)
def test_start_comes_from_history_then_timetable_then_version(
    history: float | None, timetable: Timetable | None, major: int | None, grid: str, day: int
) -> None:
    """The predicted start is the first known of: learned history, the timetable seen, the Airflow version, and
    else the window end; each as its definition says (trigger: at P, data interval: at P's window end)."""
    dag = node("src")
    g = Grid(grid)
    point = g.floor(P0 + timedelta(days=day, hours=7))
    partition = point.strftime("%Y-%m-%dT%H:%M:%SZ")
    rule = start_rule(dag, history={dag: history} if history is not None else {},
                      timetables={dag: timetable} if timetable is not None else {},
                      majors={"default": major} if major is not None else {})  # fmt: skip
    end = g.next(point)
    if history is not None:
        expected, source = point + timedelta(seconds=history), StartSource.HISTORY
    elif timetable is not None:
        base = point if timetable.kind is TimetableKind.TRIGGER else end
        expected, source = base + timedelta(seconds=timetable.delay_s), StartSource.TIMETABLE
    elif major is not None:
        expected, source = (point if major == 3 else end), StartSource.VERSION
    else:
        expected, source = end, StartSource.DEFAULT
    assert rule.source is source
    assert rule.at(g, partition) == expected


@pytest.mark.parametrize(
    ("run_id", "taught"),
    [
        pytest.param("scheduled__2026-11-20T00:00:00+00:00", True, id="scheduled"),
        pytest.param("ext__2026-11-20", True, id="outside-writer"),
        pytest.param("manual__2026-11-20T00:00:00+00:00", False, id="manual"),
        pytest.param("backfill__2026-11-20T00:00:00+00:00", False, id="backfill"),
        pytest.param("asset_triggered__2026-11-20T00:00:00+00:00", False, id="asset"),
        pytest.param("coordinator__2026-11-20T00:00:00Z", False, id="coordinator"),
    ],
)
def test_only_runs_the_timetable_started_teach_a_start(run_id: str, taught: bool) -> None:
    """A manual, backfill, asset-triggered or coordinator run starts when asked, so it says nothing of the timetable."""
    assert scheduled(run_id) is taught


def test_history_beats_the_version_and_ignores_manual_runs() -> None:
    """Three scheduled runs that started 2 h after their logical date make the next start P + 2 h (source:
    history) on an Airflow 3 instance; a manual run at P + 0 is not counted."""
    graph = pair({"after_start": "3h"})
    facts = {("src", f"2026-11-{d}T00:00:00Z"): RunFact(RunState.SUCCESS, "scheduled__x", 0, 1, "t",
                                                        datetime(2026, 11, d, 2, tzinfo=UTC),
                                                        datetime(2026, 11, d, 2, 10, tzinfo=UTC))
             for d in (19, 20, 21)}  # fmt: skip
    facts[("src", "2026-11-22T00:00:00Z")] = RunFact(RunState.SUCCESS, "manual__x", 0, 1, "t",
                                                     datetime(2026, 11, 22, tzinfo=UTC),
                                                     datetime(2026, 11, 22, 0, 10, tzinfo=UTC))  # fmt: skip
    now = P0 + timedelta(minutes=30)
    status = deadline_states(graph, view_of(facts), now, majors={"default": 3}, partitions=[P])[(node("dep"), P)]
    assert status.start is not None and status.start.rule.source is StartSource.HISTORY
    assert status.start.at == P0 + timedelta(hours=2)
    assert learned_duration([7200.0, 7200.0, 7200.0]) == 7200.0


# -- issue 27, failure 1: Airflow 3 roots start at their logical date ------------------------------------------


@pytest.mark.parametrize("grid", [pytest.param(DAY, id="daily"), pytest.param(HOURLY, id="hourly")])
def test_airflow3_root_not_yet_started_is_not_at_risk(grid: str) -> None:
    """On Airflow 3 a root's run for P starts at P: a dependent due 6 h after P, judged at P before any state, is
    on_time with an ETA at P (plus latency), where the Airflow 2 reading puts it a whole window later."""
    graph = pair({"after_start": "6h", "warn": "30m"}, grid)
    now = P0 - timedelta(seconds=30)
    a3 = deadline_states(graph, View(KeyLayout()), now, majors={"default": 3}, partitions=[P])[(node("dep"), P)]
    assert a3.state is DeadlineState.ON_TIME
    assert a3.eta == P0 + timedelta(seconds=60)
    assert a3.start is not None and a3.start.rule.source is StartSource.VERSION and a3.start.at == P0
    a2 = deadline_states(graph, View(KeyLayout()), now, majors={"default": 2}, partitions=[P])[(node("dep"), P)]
    assert a2.eta == Grid(grid).next(P0) + timedelta(seconds=60)
    assert a2.state is (DeadlineState.AT_RISK if grid == DAY else DeadlineState.ON_TIME)


def test_overdue_root_is_the_cause_of_at_risk_not_a_day_late_eta() -> None:
    """A daily Airflow 3 root due at 00:00 with no state at 05:00, its dependent (1 h learned run) due 06:00 with 1 h
    warn: at_risk, caused by ``src@P has not started (due 00:00, 5h late)``, the ETA now + the run, not tomorrow."""
    graph = pair({"after_start": "6h", "warn": "1h", "duration": "1h"})
    now = P0 + timedelta(hours=5)
    status = deadline_states(graph, View(KeyLayout()), now, majors={"default": 3}, partitions=[P])[(node("dep"), P)]
    assert status.state is DeadlineState.AT_RISK
    assert status.cause is not None and status.cause.reason is CauseReason.NOT_STARTED
    assert status.cause.text() == f"default/src@{P} has not started (due 00:00, 5h late)"
    assert status.cause.chain_text() == f"default/dep@{P} <- default/src@{P}"
    assert status.eta == now + timedelta(seconds=60) + timedelta(hours=1)
    row = deadline_rows({(node("dep"), P): status})[0]
    assert row.cause == status.cause.text() and row.start_source == "airflow_version"
    assert any("has not started" in line for line in why_lines(status))
    assert any(line.startswith("  start: default/src@") for line in why_lines(status))


def test_an_overdue_root_alone_does_not_make_a_distant_deadline_at_risk() -> None:
    """A root five hours late whose dependent is due in 20 days stays on_time (no page for a fresh install)."""
    graph = pair({"after_start": "20d"})
    now = P0 + timedelta(hours=5)
    status = deadline_states(graph, View(KeyLayout()), now, majors={"default": 3}, partitions=[P])[(node("dep"), P)]
    assert (status.state, status.cause) == (DeadlineState.ON_TIME, None)


# -- issue 27, failure 2: outside writers' times ------------------------------------------------------------------


def test_success_without_end_date_written_after_the_deadline_is_late() -> None:
    """The documented outside-writer value (``updated_at``, no ``end_date``) written after the deadline is late, by
    ``updated_at`` minus the deadline; without ``updated_at`` either, lateness cannot be proved: on_time."""
    graph = pair({"after_start": "6h"})
    late = written(state="success", updated_at="2026-11-23T07:30:00Z")
    status = deadline_states(graph, view_of({("dep", P): late}), P0 + timedelta(hours=8), partitions=[P])
    got = status[(node("dep"), P)]
    assert (got.state, got.lateness) == (DeadlineState.LATE, 5400.0)
    unknown = written(state="success")
    status = deadline_states(graph, view_of({("dep", P): unknown}), P0 + timedelta(hours=8), partitions=[P])
    assert status[(node("dep"), P)].state is DeadlineState.ON_TIME


def test_running_without_start_date_counts_as_started_at_updated_at() -> None:
    """A ``running`` root without ``start_date`` started at its ``updated_at``: the ETA is that plus its duration."""
    graph = parse_spec(json.dumps({"version": 1, "dags": {"src": {"partitions": {"cron": DAY}, "expected_by": {
        "after_start": "6h", "duration": "2h"}}}}))  # fmt: skip
    running = written(state="running", updated_at="2026-11-23T01:00:00Z")
    assert running.started == P0 + timedelta(hours=1)
    now = P0 + timedelta(hours=1, minutes=30)
    status = deadline_states(graph, view_of({("src", P): running}), now, partitions=[P])[(node("src"), P)]
    assert (status.state, status.eta) == (DeadlineState.ON_TIME, P0 + timedelta(hours=3))


def test_plugin_writes_keep_no_stand_in_time() -> None:
    """A value with both dates keeps no ``updated_at`` (memory of a million facts); its own dates are used."""
    fact = written(state="success", start_date="2026-11-23T00:01:00Z", end_date="2026-11-23T00:09:00Z",
                   updated_at="2026-11-23T00:10:00Z")  # fmt: skip
    assert fact.seen is None and fact.finished == P0 + timedelta(minutes=9)


def test_start_rule_of_a_data_interval_timetable_with_a_delay() -> None:
    """A data-interval timetable with a 10-minute delay starts P's run at the window end plus 10 minutes."""
    rule = StartRule(StartSource.TIMETABLE, timedelta(minutes=10), at_window_end=True)
    assert rule.at(Grid(DAY), P) == P0 + timedelta(days=1, minutes=10)
