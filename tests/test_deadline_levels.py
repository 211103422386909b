"""Escalation levels of a deadline (semantics rule 13 "Escalation", ``core.deadline.levels``)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.activation import NodeActivation
from coordinator.core.deadline.alerts import AlertPolicy, mark_alerted, plan_alert
from coordinator.core.deadline.eta import Cause, CauseReason, Eta
from coordinator.core.deadline.levels import LevelKey, level_run_id, level_state, level_transitions
from coordinator.core.deadline.records import DeadlineRecord, late_run_id
from coordinator.core.deadline.rules import ExpectedBy, Level
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus, Judgement
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError
from coordinator.explain.deadlines import deadline_rows, level_text, why_lines

P = "2026-01-05T00:00:00Z"
DEADLINE = datetime(2026, 1, 6, 6, tzinfo=UTC)
LEVELS = [{"name": "warn", "slack": "2h", "handlers": ["notify"]}, {"name": "page", "handlers": "pager"}]


def node(name: str) -> NodeId:
    return NodeId("default", name)


def graph_of(expected: dict[str, Any]) -> Graph:
    return parse_spec(json.dumps({"version": 1, "dags": {
        "c": {"partitions": {"cron": "0 0 * * *"}, "expected_by": expected}, "notify": {}, "pager": {},
    }}, indent=1))  # fmt: skip


def test_levels_are_read_with_their_handlers_resolved() -> None:
    """Each level keeps its name, its slack in seconds and its handlers as qualified DAG names, in spec order."""
    rule = graph_of({"at": "06:00", "levels": LEVELS}).dags[node("c")].expected_by
    assert rule is not None
    assert rule.levels == (Level("warn", 7200, ("default/notify",)), Level("page", 0, ("default/pager",)))


def test_a_rule_without_levels_keeps_its_item_and_digest() -> None:
    """The single-level form's item (the graph digest's input) is the nine fields it always was."""
    plain = {"at": "06:00", "warn": "30m"}
    rule = graph_of(plain).dags[node("c")].expected_by
    assert rule is not None and rule.item() == ("at", 0, 6, 0, 0, 1800, None, False, None)
    assert graph_of(plain).digest != graph_of({**plain, "levels": LEVELS}).digest


def test_levels_survive_the_activation_record() -> None:
    """A rule with levels read back from the activation (JSON, pydantic) equals the rule, so the page decides alike."""
    spec = graph_of({"at": "06:00", "hold": "5m", "levels": LEVELS}).dags[node("c")]
    record = NodeActivation.model_validate_json(
        NodeActivation(shape=spec.shape(), since=1, deadline=spec.deadline_item()).model_dump_json()
    )
    assert record.deadline == spec.deadline_item()
    assert record.deadline is not None and record.deadline[0] is not None
    assert ExpectedBy.from_item(record.deadline[0]) == spec.expected_by


@pytest.mark.parametrize(
    ("levels", "fragment"),
    [
        pytest.param([], "levels: expected a non-empty list", id="empty"),
        pytest.param("warn", "levels: expected a non-empty list of levels, got str", id="not-a-list"),
        pytest.param([3], "levels[0]: expected an object", id="not-an-object"),
        pytest.param([{"name": "w", "handlers": ["notify"], "colour": "red"}], "levels[0].colour: unknown field",
                     id="unknown-field"),
        pytest.param([{"name": "1st", "handlers": ["notify"]}], "levels[0].name: '1st' is not a level name",
                     id="bad-name"),
        pytest.param([{"handlers": ["notify"]}], "levels[0].name: None is not a level name", id="no-name"),
        pytest.param([{"name": "w", "handlers": ["notify"]}, {"name": "w", "handlers": ["pager"]}],
                     "levels[1].name: level 'w' is listed twice", id="duplicate"),
        pytest.param([{"name": "w", "slack": "soon", "handlers": ["notify"]}], "levels[0].slack: 'soon'",
                     id="bad-slack"),
        pytest.param([{"name": "w", "slack": "-1h", "handlers": ["notify"]}], "levels[0].slack: '-1h' is negative",
                     id="negative-slack"),
        pytest.param([{"name": "w"}], "levels[0].handlers: expected a non-empty list of dag ids", id="no-handlers"),
        pytest.param([{"name": "w", "handlers": ["c"]}], "levels[0].handlers[0]: self-dependency", id="self"),
    ],
)  # fmt: skip
def test_bad_levels_are_reported_with_path_and_line(levels: Any, fragment: str) -> None:
    """A malformed level is a spec error naming the file, line and JSON path of the field and what to write."""
    with pytest.raises(SpecError) as caught:
        graph_of({"at": "06:00", "levels": levels})
    text = str(caught.value)
    assert fragment in text
    assert "dependencies.json:" in text and "$.dags.c.expected_by.levels" in text


durations = st.integers(min_value=-3 * 3600, max_value=12 * 3600).map(lambda s: timedelta(seconds=s))


@given(
    ahead=st.none() | durations, fixed=st.none() | durations, warn=durations.map(abs), slack=durations.map(abs),
    now_before=durations, blocked=st.booleans(),
)  # fmt: skip
def test_a_level_is_the_dags_rule_judged_at_its_slack(
    ahead: timedelta | None,
    fixed: timedelta | None,
    warn: timedelta,
    slack: timedelta,
    now_before: timedelta,
    blocked: bool,
) -> None:
    """A level's state equals rule 2 with the level's slack as ``warn``, whatever the DAG's own ``warn`` is."""
    now = DEADLINE - now_before
    cause = Cause(node("a"), P, CauseReason.FAILED) if blocked else None
    eta = Eta(ahead, DEADLINE + fixed if fixed is not None else None)
    own = Judgement(node("c"), P, DEADLINE, warn, None, cause, eta)
    at_slack = Judgement(node("c"), P, DEADLINE, slack, None, cause, eta)
    assert level_state(own.status(now), slack) is at_slack.status(now).state


@given(eta=durations, small=durations.map(abs), extra=durations.map(abs))
def test_more_slack_is_never_less_alarmed(eta: timedelta, small: timedelta, extra: timedelta) -> None:
    """A level with more slack is at risk whenever one with less is (``warn`` fires no later than ``page``)."""
    status = DeadlineStatus(node("c"), P, DeadlineState.ON_TIME, DEADLINE, DEADLINE + eta)
    if level_state(status, small) is DeadlineState.AT_RISK:
        assert level_state(status, small + extra) is DeadlineState.AT_RISK


def test_success_miss_and_block_are_the_same_for_every_level() -> None:
    """Only at_risk depends on a level's slack: late, missed and blocked reach every level."""
    for state in (DeadlineState.LATE, DeadlineState.MISSED, DeadlineState.BLOCKED):
        status = DeadlineStatus(node("c"), P, state, DEADLINE, None, succeeded=state is DeadlineState.LATE)
        assert {level_state(status, timedelta(hours=h)) for h in (0, 2, 9)} == {state}


LEVEL_OBJECTS = (Level("warn", 7200, ("default/notify",)), Level("page", 0, ("default/pager",)))


def _record(state: DeadlineState, sequence: int, plan_alerted: bool, states: tuple[DeadlineState, ...],
            alert_after: datetime | None, repeat: bool) -> DeadlineRecord:  # fmt: skip
    return DeadlineRecord(
        state=state, deadline=DEADLINE, sequence=sequence, changed_at=DEADLINE, alerted=plan_alerted,
        alerted_states=states, alert_after=alert_after, repeat=repeat,
    )  # fmt: skip


def test_each_level_fires_at_its_own_slack_once() -> None:
    """An ETA 1h before the deadline puts ``warn`` (2h slack) at risk and not ``page``; recorded, nothing repeats;
    an ETA past the deadline then moves ``page`` only."""
    levels = {node("c"): LEVEL_OBJECTS}
    recorded: dict[LevelKey, DeadlineRecord] = {}
    early = DeadlineStatus(node("c"), P, DeadlineState.ON_TIME, DEADLINE, DEADLINE - timedelta(hours=1))
    found = level_transitions([early], levels, recorded)
    assert [(t.level.name, t.previous, t.state, t.sequence) for t in found] == [
        ("warn", DeadlineState.ON_TIME, DeadlineState.AT_RISK, 1)
    ]
    for t in found:
        recorded[t.key] = _record(t.state, t.sequence, True, (t.state,), None, False)
    assert level_transitions([early], levels, recorded) == []
    behind = DeadlineStatus(node("c"), P, DeadlineState.AT_RISK, DEADLINE, DEADLINE + timedelta(minutes=5))
    assert [(t.level.name, t.state) for t in level_transitions([behind], levels, recorded)] == [
        ("page", DeadlineState.AT_RISK)
    ]


def test_level_run_ids_never_collide() -> None:
    """Two levels, and the DAG's own handlers, get distinct deterministic run ids for the same transition number."""
    ids = {level_run_id(node("c"), P, "warn", 1), level_run_id(node("c"), P, "page", 1), late_run_id(node("c"), P, 1)}
    assert len(ids) == 3
    assert level_run_id(node("c"), P, "warn", 1) == level_run_id(node("c"), P, "warn", 1)


def test_a_level_record_has_its_own_key_that_old_readers_skip() -> None:
    """The level key parses back to (DAG, partition, level); readers of the partition's key see no record there."""
    keys = KeyLayout()
    key = keys.deadline_level_key(node("c"), P, "page")
    assert key == keys.deadline_key(node("c"), P) + "/page"
    assert keys.parse_deadline_level_key(key) == (node("c"), P, "page")
    assert keys.parse_deadline_key(key) is None
    assert keys.parse_deadline_level_key(keys.deadline_key(node("c"), P)) is None


@given(
    steps=st.lists(st.tuples(st.integers(min_value=-4 * 60, max_value=4 * 60), st.booleans()), max_size=25),
    hold=st.sampled_from([0, 600]),
)
def test_no_level_alerts_a_state_twice_in_a_partition(steps: list[tuple[int, bool]], hold: int) -> None:
    """Whatever the ETA does (minutes around the deadline) and whether a leader dies between triggering and marking,
    each level runs its handlers at most once per state in the partition (anti-flap per level, realert off)."""
    levels = {node("c"): LEVEL_OBJECTS}
    policy = AlertPolicy(timedelta(seconds=hold))
    recorded: dict[LevelKey, DeadlineRecord] = {}
    runs: Counter[tuple[str, DeadlineState]] = Counter()
    run_ids: set[str] = set()
    now = DEADLINE - timedelta(hours=5)

    def alert(crash: bool) -> None:
        for key, record in list(recorded.items()):
            if record.alerted or (record.alert_after is not None and now < record.alert_after):
                continue
            run_id = level_run_id(key[0], key[1], key[2], record.sequence)
            if run_id not in run_ids:  # Airflow refuses a second run with the same id
                run_ids.add(run_id)
                runs[(key[2], record.state)] += 1
            if not crash:
                recorded[key] = mark_alerted(record)

    for minutes, crash in steps:
        now += timedelta(minutes=7)
        status = DeadlineStatus(node("c"), P, DeadlineState.ON_TIME, DEADLINE, DEADLINE + timedelta(minutes=minutes))
        if now > DEADLINE:
            status = DeadlineStatus(node("c"), P, DeadlineState.MISSED, DEADLINE, None)
        alert(crash=False)  # the shell completes what a dead leader left before recording (alerts rule 5)
        for t in level_transitions([status], levels, recorded):
            plan = plan_alert(recorded.get(t.key), t.state, now, policy, True)
            recorded[t.key] = _record(t.state, t.sequence, plan.alerted, plan.alerted_states, plan.alert_after,
                                      plan.repeat)  # fmt: skip
        alert(crash)
    assert all(count == 1 for count in runs.values()), runs


def test_status_and_why_show_which_level_fires() -> None:
    """An ETA one hour before the deadline: status's row and why's lines say ``warn`` is at risk and ``page`` not."""
    status = DeadlineStatus(node("c"), P, DeadlineState.ON_TIME, DEADLINE, DEADLINE - timedelta(hours=1), slack=3600)
    row = deadline_rows({(node("c"), P): status}, levels={node("c"): LEVEL_OBJECTS})[0]
    assert row.levels == {"warn": "at_risk", "page": "on_time"}
    assert level_text(row.levels) == "warn at_risk, page on_time"
    lines = why_lines(status, None, LEVEL_OBJECTS)
    assert lines[1] == "  levels: warn at_risk (slack 2h), page on_time (slack 0s)"
    assert deadline_rows({(node("c"), P): status})[0].levels is None  # no levels: the row it always was


def test_the_json_schema_agrees_on_levels() -> None:
    """The published schema accepts a document with levels and rejects a level without handlers, like the loader."""
    import jsonschema

    from coordinator.core.spec.schema import json_schema

    def doc(levels: Any) -> dict[str, Any]:
        return {"version": 1, "dags": {"c": {"expected_by": {"at": "06:00", "levels": levels}}, "notify": {},
                                       "pager": {}}}  # fmt: skip

    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid(doc(LEVELS))
    assert not validator.is_valid(doc([{"name": "warn"}]))
