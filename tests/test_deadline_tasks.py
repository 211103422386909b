"""Task deadlines (semantics rule 13 "Task deadlines", ``core.deadline.states`` rule 8): reading, the graph's named
tasks, and the state judged on the task's facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.activation import NodeActivation
from coordinator.core.deadline.eta import CauseReason
from coordinator.core.deadline.rules import ExpectedBy
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus, deadline_states
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunState
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import RunFact, View
from coordinator.errors import SpecError
from coordinator.explain.deadlines import _parse_cause, deadline_rows, why_lines

P = "2026-01-05T00:00:00Z"
P0 = datetime(2026, 1, 5, tzinfo=UTC)
#: ``after_start: 6h``: the deadline of P.
DEADLINE = P0 + timedelta(hours=6)
C = NodeId("default", "c")


def graph_of(expected: dict[str, Any], *, edge_task: bool = False) -> Graph:
    """a -> c (daily), c declares ``expected``; optionally d waits for c's task ``publish``."""
    dags: dict[str, Any] = {
        "a": {"partitions": {"cron": "0 0 * * *"}},
        "c": {"upstreams": "a", "partitions": {"cron": "0 0 * * *"}, "expected_by": expected},
    }
    if edge_task:
        dags["d"] = {"upstreams": [{"dag": "c", "task": "publish"}]}
    return parse_spec(json.dumps({"version": 1, "dags": dags}, indent=1))


def fact(state: RunState, start: datetime | None = None, end: datetime | None = None) -> RunFact:
    return RunFact(state, "r", 0, 1, "test", start, end)


def view_of(runs: dict[tuple[str, str], RunFact], tasks: dict[tuple[str, str, str], RunFact]) -> View:
    view = View(KeyLayout())
    for (name, partition), value in runs.items():
        view.runs[(NodeId("default", name), partition)] = value
        view.partitions.setdefault(partition, set()).add(NodeId("default", name))
    for (name, task, partition), value in tasks.items():
        view.tasks[(NodeId("default", name), task, partition)] = value
    return view


def status(expected: dict[str, Any], runs: dict[tuple[str, str], RunFact],
           tasks: dict[tuple[str, str, str], RunFact], now: datetime) -> DeadlineStatus:  # fmt: skip
    return deadline_states(graph_of(expected), view_of(runs, tasks), now)[(C, P)]


RULE = {"after_start": "6h", "task": "load"}
RUNNING = {("a", P): fact(RunState.SUCCESS, P0, P0 + timedelta(minutes=5)),
           ("c", P): fact(RunState.RUNNING, P0 + timedelta(minutes=10))}  # fmt: skip


def test_a_task_is_read_and_a_rule_without_one_keeps_its_item_and_digest() -> None:
    """``task`` is kept on the rule; without it the item is the nine fields it always was, so the digest is too."""
    rule = graph_of(RULE).dags[C].expected_by
    assert rule is not None and rule.task == "load"
    plain = graph_of({"after_start": "6h"})
    plain_rule = plain.dags[C].expected_by
    assert plain_rule is not None and plain_rule.item() == ("after_start", 21600, 0, 0, 0, 0, None, False, None)
    assert plain.digest != graph_of(RULE).digest


def test_a_task_survives_the_activation_record() -> None:
    """A task rule read back from the activation (JSON, pydantic) equals the rule, levels or none."""
    for expected in (RULE, {**RULE, "levels": [{"name": "page", "handlers": ["a"]}]}):
        spec = graph_of(expected).dags[C]
        record = NodeActivation.model_validate_json(
            NodeActivation(shape=spec.shape(), since=1, deadline=spec.deadline_item()).model_dump_json()
        )
        assert record.deadline is not None and record.deadline[0] is not None
        assert ExpectedBy.from_item(record.deadline[0]) == spec.expected_by


@pytest.mark.parametrize("task", ["two words", 3, "", "..", "a/b", None])
def test_a_malformed_task_is_reported_with_path_and_line(task: Any) -> None:
    """A task id that cannot be an Airflow task id in a key is a spec error naming the file, line and JSON path."""
    with pytest.raises(SpecError) as caught:
        graph_of({"after_start": "6h", "task": task})
    text = str(caught.value)
    assert "is not a task id" in text and "$.dags.c.expected_by.task" in text and "dependencies.json:" in text


def test_the_graph_names_the_deadline_task_for_the_plugin() -> None:
    """The task joins the tasks the graph publishes (``upstream_tasks``), beside an edge's task of the same DAG."""
    assert graph_of(RULE).upstream_tasks == {"default/c": ("load",)}
    assert graph_of(RULE, edge_task=True).upstream_tasks == {"default/c": ("load", "publish")}
    assert graph_of({"after_start": "6h"}).upstream_tasks == {}


def test_a_task_ending_after_the_deadline_is_late_while_the_run_still_runs() -> None:
    """The task's end decides: 30 min after the deadline is ``late`` by 1800 s though the DAG run has not ended."""
    end = DEADLINE + timedelta(minutes=30)
    found = status(RULE, RUNNING, {("c", "load", P): fact(RunState.SUCCESS, P0 + timedelta(hours=1), end)},
                   DEADLINE + timedelta(hours=1))  # fmt: skip
    assert (found.state, found.lateness, found.task, found.succeeded) == (DeadlineState.LATE, 1800.0, "load", True)


def test_a_task_ending_before_the_deadline_is_on_time_though_the_run_goes_on_past_it() -> None:
    """The same run judged on its DAG would be missed at that ``now``; judged on its task it is ``on_time``."""
    task = {("c", "load", P): fact(RunState.SUCCESS, P0 + timedelta(hours=1), P0 + timedelta(hours=2))}
    now = DEADLINE + timedelta(hours=1)
    assert status(RULE, RUNNING, task, now).state is DeadlineState.ON_TIME
    assert status({"after_start": "6h"}, RUNNING, task, now).state is DeadlineState.MISSED


def test_a_failed_task_blocks_with_the_task_as_cause() -> None:
    """A failed task is ``blocked`` before the deadline, the cause naming the task; the text parses back."""
    found = status(RULE, RUNNING, {("c", "load", P): fact(RunState.FAILED, P0, P0 + timedelta(minutes=30))},
                   P0 + timedelta(hours=1))  # fmt: skip
    assert found.state is DeadlineState.BLOCKED and found.cause is not None
    assert found.cause.reason is CauseReason.FAILED and found.cause.task == "load"
    assert found.cause.text() == f"default/c@{P} task load failed"
    assert _parse_cause(found.cause.text(), found.cause.chain_text()) == found.cause


def test_a_running_task_is_at_risk_by_its_declared_duration() -> None:
    """A task started at 02:00 with a declared 5 h duration finishes at 07:00, after a 06:00 deadline: at_risk."""
    tasks = {("c", "load", P): fact(RunState.RUNNING, P0 + timedelta(hours=2))}
    found = status({**RULE, "duration": "5h"}, RUNNING, tasks, P0 + timedelta(hours=3))
    assert (found.state, found.eta) == (DeadlineState.AT_RISK, P0 + timedelta(hours=7))
    assert status({**RULE, "duration": "3h"}, RUNNING, tasks, P0 + timedelta(hours=3)).state is DeadlineState.ON_TIME


def test_a_running_task_is_at_risk_by_its_learned_duration_not_the_dags() -> None:
    """The task learns 5 h from its own three past successes (the DAG's runs took 10 min): at_risk at 07:00."""
    runs = dict(RUNNING)
    tasks = {("c", "load", P): fact(RunState.RUNNING, P0 + timedelta(hours=2))}
    for days in (1, 2, 3):
        day = P0 - timedelta(days=days)
        past = day.strftime("%Y-%m-%dT%H:%M:%SZ")
        runs[("c", past)] = fact(RunState.SUCCESS, day, day + timedelta(minutes=10))
        tasks[("c", "load", past)] = fact(RunState.SUCCESS, day, day + timedelta(hours=5))
    found = status({**RULE, "duration": "learned"}, runs, tasks, P0 + timedelta(hours=3))
    assert (found.state, found.eta) == (DeadlineState.AT_RISK, P0 + timedelta(hours=7))


def test_without_a_task_fact_the_run_stands_in() -> None:
    """No task state yet: a succeeded run decides (it ended by then); a running run predicts its start plus the
    task's duration, not the DAG's; an upstream's failure blocks the task too."""
    late_run = {**RUNNING, ("c", P): fact(RunState.SUCCESS, P0, DEADLINE + timedelta(minutes=1))}
    assert status(RULE, late_run, {}, DEADLINE + timedelta(hours=1)).state is DeadlineState.LATE
    found = status({**RULE, "duration": "1h"}, RUNNING, {}, P0 + timedelta(minutes=20))
    assert (found.state, found.eta) == (DeadlineState.ON_TIME, P0 + timedelta(minutes=70))
    failed_up = {("a", P): fact(RunState.FAILED, P0, P0 + timedelta(minutes=5))}
    blocked = status(RULE, failed_up, {}, P0 + timedelta(hours=1))
    assert blocked.state is DeadlineState.BLOCKED and blocked.cause is not None and blocked.cause.task is None


def test_status_and_why_show_the_task() -> None:
    """The status row carries the task and ``why`` says the deadline is judged on it."""
    tasks = {("c", "load", P): fact(RunState.SUCCESS, P0, DEADLINE + timedelta(minutes=30))}
    statuses = deadline_states(graph_of(RULE), view_of(RUNNING, tasks), DEADLINE + timedelta(hours=1))
    (row,) = [r for r in deadline_rows(statuses) if r.dag == str(C) and r.partition == P]
    assert (row.state, row.task) == ("late", "load")
    lines = why_lines(statuses[(C, P)])
    assert lines[0].startswith("deadline: late")
    assert "  task: load (the deadline is judged on this task's state)" in lines


def test_a_task_deadlines_duration_is_the_tasks_not_the_dags_its_dependents_read() -> None:
    """c's declared 5 h is its task's: e (below c) predicts from c's learned 10-min runs, not from 5 h."""
    day = {"partitions": {"cron": "0 0 * * *"}}
    graph = parse_spec(json.dumps({"version": 1, "dags": {
        "c": {**day, "expected_by": {**RULE, "duration": "5h"}},
        "e": {"upstreams": "c", **day, "expected_by": {"after_start": "6h", "duration": "1h"}},
    }}, indent=1))  # fmt: skip
    runs = {("c", P): fact(RunState.RUNNING, P0)}
    for days in (1, 2, 3):
        past = P0 - timedelta(days=days)
        runs[("c", past.strftime("%Y-%m-%dT%H:%M:%SZ"))] = fact(RunState.SUCCESS, past, past + timedelta(minutes=10))
    statuses = deadline_states(graph, view_of(runs, {}), P0 + timedelta(minutes=1))
    below = statuses[(NodeId("default", "e"), P)]
    assert below.state is DeadlineState.ON_TIME and below.eta is not None and below.eta < P0 + timedelta(hours=2)
    assert statuses[(C, P)].eta == P0 + timedelta(hours=5)
