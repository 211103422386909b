"""The pure rules of task-level facts: ordering by try, the named tasks of a graph value, the audit's decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.model import NodeId, RunRecord, RunState, dump_record
from coordinator.core.task_facts import (
    TaskRecord,
    audit_task_record,
    named_tasks_from_graph,
    parse_task_record,
    should_replace_task,
)

NOW = datetime(2026, 1, 2, tzinfo=UTC)
START = datetime(2026, 1, 1, 5, tzinfo=UTC)


def rec(
    state: RunState, try_number: int | None, clear_number: int = 0, run_id: str = "r1", source: str = "x"
) -> TaskRecord:
    return TaskRecord(state=state, run_id=run_id, clear_number=clear_number, try_number=try_number, source=source)


S, R, F = RunState.SUCCESS, RunState.RUNNING, RunState.FAILED


@pytest.mark.parametrize(
    ("old", "new", "replace"),
    [
        pytest.param(None, rec(S, 1), True, id="absent"),
        pytest.param(rec(S, 1), rec(S, 1), False, id="same-try-same-state"),
        pytest.param(rec(S, 1), rec(R, 1), False, id="late-running-same-try"),
        pytest.param(rec(S, 1), rec(R, 2), True, id="cleared-task-next-try-running"),
        pytest.param(rec(S, 2), rec(S, 1), False, id="older-try-success"),
        pytest.param(rec(S, 2, clear_number=1), rec(S, 2, clear_number=0), False, id="same-try-other-clear-number"),
        pytest.param(rec(S, 1), rec(F, 1), True, id="marked-failed"),
        pytest.param(rec(S, 1), rec(S, 1, run_id="r2"), True, id="other-run-id"),
        pytest.param(rec(S, None), rec(S, None), False, id="no-tries-falls-back"),
        pytest.param(rec(S, None, clear_number=1), rec(R, 5, clear_number=0), False, id="no-try-on-one-side"),
    ],
)
def test_ordering_by_try(old: TaskRecord | None, new: TaskRecord, replace: bool) -> None:
    """A newer try replaces whatever the state; within a try states never go back nor repeat; no try: should_replace."""
    assert should_replace_task(old, new) is replace


def test_task_record_is_a_run_record_value() -> None:
    """A task value parses as a run-state value (readers ignore try_number) and round-trips with its try."""
    raw = dump_record(rec(S, 3))
    assert json.loads(raw)["try_number"] == 3
    parsed, problem = parse_task_record(raw)
    assert problem is None and parsed is not None and parsed.try_number == 3
    assert RunRecord.model_validate_json(raw).state is S
    assert parse_task_record(b'{"state": "bogus", "run_id": "r"}')[0] is None


def test_named_tasks_from_graph() -> None:
    """upstream_tasks names tasks per qualified DAG; bad entries are reported and skipped; absent means none."""
    raw = json.dumps(
        {"nodes": {}, "upstream_tasks": {"team_a/up": ["load", "g.publish"], "down": ["t"], "a/b/c": ["x"]}}
    ).encode()
    named = named_tasks_from_graph(raw)
    assert named.names(NodeId("team_a", "up"), "g.publish") and not named.names(NodeId("team_a", "up"), "x")
    assert named.names(NodeId("default", "down"), "t")
    assert len(named) == 3 and len(named.problems) == 1
    assert len(named_tasks_from_graph(json.dumps({"nodes": {}}).encode())) == 0
    assert len(named_tasks_from_graph(None)) == 0
    assert named_tasks_from_graph(b"{not json").problems


def audit(existing: RunRecord | None, state: str, try_number: int = 1, run_id: str = "r1") -> TaskRecord | None:
    return audit_task_record(
        existing, run_id=run_id, state=state, try_number=try_number, start_date=START, end_date=None,
        source="audit:default", now=NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("existing", "state", "try_number", "expected"),
    [
        pytest.param(None, "success", 1, (S, 1, 0), id="missing"),
        pytest.param(None, "queued", 1, None, id="queued-never-written"),
        pytest.param(None, "up_for_retry", 1, None, id="retry-never-written"),
        pytest.param(rec(R, 1, clear_number=2), "success", 1, (S, 1, 2), id="lagging-keeps-clear-number"),
        pytest.param(rec(S, 1), "success", 1, None, id="already-known"),
        pytest.param(rec(S, 1), "success", 2, (S, 2, 0), id="missed-a-whole-try"),
        pytest.param(rec(S, 3), "success", 2, None, id="rest-older-than-etcd"),
        pytest.param(rec(S, None, source="mark"), "success", 1, None, id="mark-same-state"),
        pytest.param(rec(S, 1, run_id="other", source="mark"), "success", 1, None, id="foreign-run-id-left-alone"),
    ],
)
def test_audit_task_record(
    existing: TaskRecord | None, state: str, try_number: int, expected: tuple[RunState, int, int] | None
) -> None:
    """The audit writes only what etcd misses or lags behind in, with REST's try and the recorded clear_number."""
    got = audit(existing, state, try_number)
    if expected is None:
        assert got is None
    else:
        assert got is not None and (got.state, got.try_number, got.clear_number) == expected
        assert got.source == "audit:default"


@given(
    finals=st.lists(st.sampled_from([S, F]), min_size=1, max_size=5),
    duplicates=st.lists(st.integers(min_value=0, max_value=9), max_size=4),
    data=st.data(),
)
def test_any_delivery_order_ends_at_the_newest_try_with_one_write_per_state(
    finals: list[RunState], duplicates: list[int], data: st.DataObject
) -> None:
    """Whatever order a task's records arrive in (retries, clears, repeats), the key ends at the newest try's final
    state, and no (try, state) is ever written twice (a second success write would be a second generation)."""
    records = [rec(state, n) for n, final in enumerate(finals, start=1) for state in (R, final)]
    records += [records[i % len(records)] for i in duplicates]  # the same fact from two writers (task, api-server)
    current: TaskRecord | None = None
    written: list[tuple[int | None, RunState]] = []
    for new in data.draw(st.permutations(records)):
        if should_replace_task(current, new):
            current = new
            written.append((new.try_number, new.state))
    assert current is not None and (current.try_number, current.state) == (len(finals), finals[-1])
    assert len(written) == len(set(written))
