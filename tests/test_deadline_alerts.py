"""No flapping (``core.deadline.alerts``, semantics rule 13): a state alerts once per partition, after its hold."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.deadline.alerts import AlertPolicy, due, mark_alerted, plan_alert
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.rules import ExpectedBy
from coordinator.core.deadline.states import DeadlineState
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError
from tests.support.examples import examples

T0 = datetime(2026, 11, 23, tzinfo=UTC)
DEADLINE = T0 + timedelta(hours=6)

#: One pass: the state the judgement gives, minutes since the last pass, and whether the leader dies after
#: triggering the handlers and before marking the record alerted.
PASSES = st.lists(
    st.tuples(st.sampled_from(list(DeadlineState)), st.integers(0, 30), st.booleans()), min_size=1, max_size=30
)


def simulate(passes: list[tuple[DeadlineState, int, bool]], policy: AlertPolicy) -> tuple[list[Any], list[Any]]:
    """The shell's protocol over the passes (``watcher/deadlines.py``): alert what is due, record the transition,
    alert what is due; alerting triggers the handler run (Airflow refuses a run id it has: the id names the
    sequence) and then marks the record alerted, unless the leader dies in between, which ends that pass. Returns
    the handler runs Airflow created, each as (state, sequence, when), and the transitions as (state, when)."""
    record: DeadlineRecord | None = None
    created: dict[int, tuple[DeadlineState, int, datetime]] = {}
    recorded: list[tuple[DeadlineState, datetime]] = []
    now = T0

    def alert(crash: bool) -> bool:
        nonlocal record
        if record is not None and due(record, now):
            created.setdefault(record.sequence, (record.state, record.sequence, now))
            if crash:
                return False
            record = mark_alerted(record)
        return True

    for state, minutes, crash in passes:
        now += timedelta(minutes=minutes)
        if not alert(crash):
            continue
        previous = record.state if record is not None else DeadlineState.ON_TIME
        if state is not previous:
            plan = plan_alert(record, state, now, policy, handlers=True)
            record = DeadlineRecord(
                state=state, deadline=DEADLINE, sequence=(record.sequence + 1) if record else 1, changed_at=now,
                alerted=plan.alerted, alerted_states=plan.alerted_states, alert_after=plan.alert_after,
                repeat=plan.repeat,
            )  # fmt: skip
            recorded.append((state, now))
        alert(crash)
    return list(created.values()), recorded


@settings(max_examples=examples(500), deadline=None)
@given(PASSES, st.sampled_from([0, 1, 10]))
def test_no_sequence_alerts_a_state_twice_in_a_partition(passes: list[tuple[DeadlineState, int, bool]],
                                                         hold: int) -> None:  # fmt: skip
    """Whatever the states, clock steps and crashes between trigger and mark, each state runs its handlers at most
    once per partition, never for on_time, and only after it held for ``hold`` minutes."""
    runs, recorded = simulate(passes, AlertPolicy(timedelta(minutes=hold)))
    per_state = Counter(state for state, _, _ in runs)
    assert all(n == 1 for n in per_state.values()), runs
    assert DeadlineState.ON_TIME not in per_state
    changed = dict(enumerate(recorded, start=1))
    for state, sequence, when in runs:
        assert changed[sequence][0] is state
        assert when >= changed[sequence][1] + timedelta(minutes=hold)


@settings(max_examples=examples(300), deadline=None)
@given(PASSES)
def test_realert_alerts_every_transition_and_no_transition_twice(passes: list[tuple[DeadlineState, int, bool]]) -> None:
    """With ``realert``, every transition to a state other than on_time runs its handlers exactly once (crashes
    included), the property the run ids had before anti-flapping."""
    runs, recorded = simulate(passes, AlertPolicy(realert=True))
    wanted = [i for i, (state, _) in enumerate(recorded, start=1) if state is not DeadlineState.ON_TIME]
    assert sorted(sequence for _, sequence, _ in runs) == wanted


def test_at_risk_on_time_at_risk_alerts_once_then_missed_alerts() -> None:
    """The issue's flap: at_risk, on_time, at_risk, missed gives handler runs for at_risk once and missed once."""
    states = [DeadlineState.AT_RISK, DeadlineState.ON_TIME, DeadlineState.AT_RISK, DeadlineState.MISSED]
    runs, _ = simulate([(s, 5, False) for s in states], AlertPolicy())
    assert [state for state, _, _ in runs] == [DeadlineState.AT_RISK, DeadlineState.MISSED]


def test_a_state_shorter_than_its_hold_never_alerts() -> None:
    """at_risk for 5 minutes under a 10-minute hold, then on_time: nothing runs; at_risk again, held: one run."""
    passes = [(DeadlineState.AT_RISK, 1, False), (DeadlineState.AT_RISK, 5, False), (DeadlineState.ON_TIME, 1, False)]
    assert simulate(passes, AlertPolicy(timedelta(minutes=10)))[0] == []
    passes += [(DeadlineState.AT_RISK, 1, False), (DeadlineState.AT_RISK, 10, False)]
    assert [s for s, _, _ in simulate(passes, AlertPolicy(timedelta(minutes=10)))[0]] == [DeadlineState.AT_RISK]


def spec(expected: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "dags": {"a": {"partitions": {"cron": "0 0 * * *"}, "expected_by": expected}}}


def test_hold_and_realert_are_read_and_kept_in_the_rule_item() -> None:
    """``hold`` and ``realert`` parse, survive the activation's item round trip, and a rule without them keeps the
    item it had (the graph digest of existing deployments does not change)."""
    graph = parse_spec(json.dumps(spec({"after_end": "2h", "hold": "10m", "realert": True})))
    rule = graph.dags[next(iter(graph.dags))].expected_by
    assert rule is not None and (rule.hold, rule.realert) == (600, True)
    assert ExpectedBy.from_item(rule.item()) == rule
    plain = ExpectedBy("after_end", 7200)
    assert len(plain.item()) == 9 and ExpectedBy.from_item(plain.item()) == plain


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("hold", "-5m", "negative", id="negative-hold"),
        pytest.param("hold", 5, "expected a duration string", id="hold-not-a-string"),
        pytest.param("realert", "yes", "expected true or false", id="realert-not-a-bool"),
    ],
)
def test_bad_hold_or_realert_is_refused_with_its_path(field: str, value: Any, message: str) -> None:
    """A bad ``hold`` or ``realert`` is a spec error naming its JSON path."""
    with pytest.raises(SpecError) as caught:
        parse_spec(json.dumps(spec({"after_end": "2h", field: value})))
    text = "\n".join(caught.value.problems)
    assert f"expected_by.{field}" in text and message in text


def test_the_stored_record_keeps_its_field_names() -> None:
    """A record's ``alert_after`` is stored and read as ``hold_until``, byte for byte what the key always held."""
    from coordinator.core.model import dump_record

    stored = (
        b'{"state":"at_risk","deadline":"2026-11-23T06:00:00Z","sequence":2,"changed_at":"2026-11-23T00:00:00Z",'
        b'"alerted":false,"watcher":"","alerted_states":[],"hold_until":"2026-11-23T00:10:00Z","repeat":false}'
    )
    record = DeadlineRecord.model_validate_json(stored)
    assert record.alert_after == T0 + timedelta(minutes=10)
    assert dump_record(record) == stored
    assert dump_record(record.model_copy(update={"alert_after": None})) == stored.replace(
        b',"hold_until":"2026-11-23T00:10:00Z"', b""
    )
