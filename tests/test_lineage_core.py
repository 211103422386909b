"""The pure core of OpenLineage upstreams (semantics rule 18a-c): events read, runs placed, what an event writes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.grid import Grid
from coordinator.core.lineage.events import EventType, Refusal, RunEvent, parse_body
from coordinator.core.lineage.facts import LineageRun, NoPartition, Outcome, judge
from coordinator.core.lineage.mapping import LineageJob, PartitionSource, Slot, match
from coordinator.core.model import NodeId, RunRecord

SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
DAILY = Grid("0 0 * * *")
ENTRY = LineageJob("dbt_prod", "jaffle.*", "analytics", grid=DAILY)
NODE = NodeId("analytics", "orders")
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def raw(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "eventType": "COMPLETE", "eventTime": T0.isoformat(), "producer": "https://example.com", "schemaURL": SCHEMA,
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "dbt_prod", "name": "jaffle.orders"},
    }  # fmt: skip
    doc.update(over)
    return doc


def ev(kind: EventType, run_id: str, at: datetime, **over: Any) -> RunEvent:
    return RunEvent(kind, at, run_id, "dbt_prod", "jaffle.orders", "https://example.com", **over)


def test_a_single_event_and_a_batch_read_alike() -> None:
    """One event, and an array of them on the batch path, give the same RunEvents."""
    doc = raw()
    single = parse_body(json.dumps(doc).encode(), batch=False)
    batch = parse_body(json.dumps([doc, doc]).encode(), batch=True)
    assert single.events[0].event_type is EventType.COMPLETE and batch.events == single.events * 2


@pytest.mark.parametrize(
    ("doc", "reason", "words"),
    [
        (raw(schemaURL="https://openlineage.io/spec/3-0-0/OpenLineage.json#/$defs/RunEvent"), "unknown_spec", "3.x"),
        (raw(schemaURL="https://example.com/x.json"), "invalid_event", "not an OpenLineage spec URL"),
        (raw(eventTime="2026-11-21T02:00:00"), "invalid_event", "has no offset"),
        (raw(run={"runId": "run-1"}), "invalid_event", "is not a UUID"),
        (raw(eventType="DONE"), "invalid_event", "is not one of START"),
        (raw(job={"namespace": "dbt_prod", "name": "a\nb"}), "invalid_name", "control character"),
        (raw(job={"namespace": "..", "name": "a"}), "invalid_name", "'..' path segment"),
        (raw(job={"namespace": "dbt_prod"}), "invalid_event", "job.name is required"),
    ],
)
def test_a_bad_event_is_refused_with_its_reason(doc: dict[str, Any], reason: str, words: str) -> None:
    """Each spec violation names the field and a reason word (the receiver's 400 and its metric label)."""
    with pytest.raises(Refusal) as refused:
        parse_body(json.dumps(doc).encode(), batch=False)
    assert refused.value.reason == reason and words in refused.value.detail


def test_dataset_and_job_events_are_valid_and_carry_no_run() -> None:
    """A DatasetEvent is counted as valid, not read as a run; a missing eventType reads as OTHER."""
    dataset = {"eventTime": T0.isoformat(), "producer": "p", "dataset": {"namespace": "n", "name": "d"},
               "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"}  # fmt: skip
    untyped = raw()
    del untyped["eventType"]
    body = parse_body(json.dumps([dataset, untyped]).encode(), batch=True)
    assert body.other == 1 and [e.event_type for e in body.events] == [EventType.OTHER]


def test_slots_place_a_run_on_its_grid() -> None:
    """Slot previous gives the interval that ended (Airflow's logical date), slot current the one that began."""
    assert ENTRY.place(T0) == datetime(2026, 11, 20, tzinfo=UTC)
    current = LineageJob("dbt_prod", "jaffle.*", "analytics", slot=Slot.CURRENT, grid=DAILY)
    assert current.place(T0) == datetime(2026, 11, 21, tzinfo=UTC)


def test_the_first_matching_entry_names_the_node() -> None:
    """Entries are tried in order; without a dag the job's name is the dag id, and an invalid one is no node."""
    fixed = LineageJob("dbt_prod", "jaffle.orders", "analytics", dag="orders", grid=DAILY)
    jobs = (fixed, ENTRY)
    assert match(jobs, "dbt_prod", "jaffle.orders") is fixed and match(jobs, "spark", "jaffle.orders") is None
    assert ENTRY.node_for("jaffle.customers") == NodeId("analytics", "jaffle.customers")
    assert ENTRY.node_for("jaffle customers") is None


def test_duplicates_and_out_of_order_events_write_once_and_never_go_back() -> None:
    """A second COMPLETE is a duplicate; a START after the COMPLETE is recorded and leaves the success."""
    run = str(uuid.uuid4())
    first = judge(ev(EventType.COMPLETE, run, T0), ENTRY, NODE, None, None, None)
    assert first.outcome is Outcome.ACCEPTED and first.run_state is not None and first.run_state.state == "success"
    assert judge(ev(EventType.COMPLETE, run, T0), ENTRY, NODE, first.record, None, first.run_state).outcome is (
        Outcome.DUPLICATE
    )
    late = judge(ev(EventType.START, run, T0 - timedelta(minutes=5)), ENTRY, NODE, first.record, None, first.run_state)
    assert late.outcome is Outcome.RECORDED and late.run_state is None and late.record is not None
    assert late.record.events.keys() == {EventType.START, EventType.COMPLETE}


def test_a_rerun_replaces_and_an_older_run_never_hides_it() -> None:
    """A new runId that started later writes its state; the older run's late FAIL is recorded only."""
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    a = judge(ev(EventType.START, old, T0), ENTRY, NODE, None, None, None)
    b = judge(ev(EventType.START, new, T0 + timedelta(hours=1)), ENTRY, NODE, None, None, a.run_state)
    assert b.outcome is Outcome.ACCEPTED and b.partition == a.partition
    late = judge(ev(EventType.FAIL, old, T0 + timedelta(minutes=3)), ENTRY, NODE, a.record, None, b.run_state)
    assert late.outcome is Outcome.RECORDED and late.run_state is None


def test_the_later_of_two_terminal_events_is_the_state() -> None:
    """FAIL then a later COMPLETE of the same run (a retried task) ends in success, with the COMPLETE's time."""
    run = str(uuid.uuid4())
    failed = judge(ev(EventType.FAIL, run, T0), ENTRY, NODE, None, None, None)
    done = judge(ev(EventType.COMPLETE, run, T0 + timedelta(minutes=1)), ENTRY, NODE, failed.record, None,
                 failed.run_state)  # fmt: skip
    assert done.run_state is not None and done.run_state.state == "success"
    assert done.run_state.end_date == T0 + timedelta(minutes=1)


def test_partitions_come_from_the_nominal_time_then_the_parent_then_the_event_time() -> None:
    """nominalTime wins (floored on the grid); else a recorded parent's partition; a nominal-only entry refuses."""
    nominal = judge(ev(EventType.COMPLETE, str(uuid.uuid4()), T0, nominal_start=datetime(2026, 11, 1, tzinfo=UTC)),
                    ENTRY, NODE, None, None, None)  # fmt: skip
    assert nominal.partition == "2026-11-01T00:00:00Z"
    parent = LineageRun(namespace="dbt_prod", job="dbt-run", dag="run", partition="2026-11-19T00:00:00Z", anchor=T0)
    child = judge(ev(EventType.COMPLETE, str(uuid.uuid4()), T0), ENTRY, NODE, None, parent, None)
    assert child.partition == "2026-11-19T00:00:00Z"
    strict = LineageJob("dbt_prod", "jaffle.*", "analytics", partition=PartitionSource.NOMINAL)
    with pytest.raises(NoPartition):
        judge(ev(EventType.COMPLETE, str(uuid.uuid4()), T0), strict, NODE, None, None, None)


def test_the_run_state_follows_the_writers_rules() -> None:
    """The value: runId as run_id, clear_number 0, the START and terminal times, source openlineage:<namespace>, and
    the run's earliest event as its place among the partition's runs (run_after)."""
    run = str(uuid.uuid4())
    start = judge(ev(EventType.START, run, T0), ENTRY, NODE, None, None, None)
    end = judge(ev(EventType.COMPLETE, run, T0 + timedelta(minutes=2)), ENTRY, NODE, start.record, None,
                start.run_state)  # fmt: skip
    assert end.run_state == RunRecord(state="success", run_id=run, clear_number=0, source="openlineage:dbt_prod",
                                      updated_at=T0 + timedelta(minutes=2), start_date=T0,
                                      end_date=T0 + timedelta(minutes=2), run_after=T0)  # fmt: skip


def test_an_entry_with_a_segment_records_its_runs_at_the_time_and_that_segment() -> None:
    """ "segment": "eu" places a run at its nominal or grid time joined with eu (a dbt job per region)."""
    eu = LineageJob("dbt_prod", "jaffle.*", "analytics", grid=DAILY, segment="eu")
    nominal = judge(ev(EventType.COMPLETE, str(uuid.uuid4()), T0, nominal_start=datetime(2026, 11, 1, tzinfo=UTC)),
                    eu, NODE, None, None, None)  # fmt: skip
    assert nominal.partition == "2026-11-01T00:00:00Z~eu"
    placed = judge(ev(EventType.COMPLETE, str(uuid.uuid4()), T0), eu, NODE, None, None, None)
    assert placed.partition == "2026-11-20T00:00:00Z~eu"
