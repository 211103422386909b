"""Several Airflow runs of one partition (semantics `newest-run-stands`): random sequences of runs created (some with
an earlier ``run_after`` than runs made before them), cleared and deleted in Airflow, plugin writes lost, and REST
audit passes, driven through the production plugin writer (``write_run_record`` with ``should_replace``) and the
production audit pass (``audit_once``) against an independent model of which run stands.

The model knows nothing of the code's rules: the run that stands for a partition is the latest, by ``(run_after,
run_id)``, of every run any writer has seen (a plugin write that was not lost, or a run Airflow listed to an audit
pass), deleted or not.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from coordinator.airflow.runs import DagRunInfo
from coordinator.core import audit as core_audit
from coordinator.core import model as core_model
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, parse_run_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import KV
from coordinator.etcd.types import CasResult
from coordinator.watcher.audit import Refused, audit_once
from coordinator.writers.run_records import write_run_record
from tests.support.examples import examples

KEYS = KeyLayout("/coordinator")
NODE = NodeId("default", "c")
PARTITIONS = ("eu", "us")
T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)


class MemoryStore:
    """A compare-and-swap store in memory (the run-record writer uses get and cas alone), keeping every success
    written per key: the generations dependents would rerun for."""

    def __init__(self) -> None:
        self.revision = 0
        self.kvs: dict[str, KV] = {}
        self.successes: dict[str, list[RunRecord]] = {}
        self.reads = 0

    async def get(self, key: str) -> KV | None:
        self.reads += 1
        return self.kvs.get(key)

    async def cas(self, key: str, value: bytes, expected_mod_revision: int) -> CasResult:
        current = self.kvs.get(key)
        if (current.mod_revision if current is not None else 0) != expected_mod_revision:
            return CasResult(False, self.revision, current)
        self.revision += 1
        self.kvs[key] = KV(key, value, self.revision, current.create_revision if current else self.revision, 1)
        record, _ = parse_run_record(value)
        if record is not None and record.state is RunState.SUCCESS:
            self.successes.setdefault(key, []).append(record)
        return CasResult(True, self.revision, None)

    def record(self, partition: str) -> RunRecord | None:
        kv = self.kvs.get(KEYS.run_key(NODE, partition))
        return None if kv is None else parse_run_record(kv.value)[0]

    def view(self) -> View:
        view = View(KEYS)
        view.load(self.revision, ((kv.key, kv.value, kv.mod_revision) for kv in self.kvs.values()))
        return view


@dataclass
class Run:
    """One run of DAG ``c`` as Airflow holds it (every run succeeds at once: the order is what is under test)."""

    run_id: str
    partition: str
    run_after: datetime
    start: datetime
    clear_number: int = 0
    deleted: bool = False

    def info(self) -> DagRunInfo:
        return DagRunInfo(
            dag_id=NODE.dag_id, run_id=self.run_id, logical_date=None, state="success", start_date=self.start,
            end_date=self.start, run_type="manual", partition_key=self.partition, run_after=self.run_after,
        )  # fmt: skip


@dataclass
class Airflow:
    """What the audit's client reads: the runs not deleted, newest created first (Airflow's ``order_by=-id``)."""

    runs: list[Run] = field(default_factory=list)
    name: str = "default"

    async def list_runs(self, dag_id: str, since: datetime, limit: int = 1000) -> list[DagRunInfo]:
        if dag_id != NODE.dag_id:
            return []  # the graph's other DAG has no runs
        return [run.info() for run in reversed(self.runs) if not run.deleted]


class RunOrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.airflow = Airflow()
        self.now = T0
        self.graph = parse_spec('{"r": "c"}')
        #: Every run a writer has seen, by partition (the model: the latest of these stands).
        self.seen: dict[str, set[tuple[datetime, str]]] = {p: set() for p in PARTITIONS}
        self.events = 0  # successes Airflow made (creates and clears): no more generations than these
        self.refused: Refused = {}  # the leader's audit keeps it across passes

    def tick(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now

    def plugin_write(self, run: Run) -> None:
        """The listener's write of ``run``'s success, through the one run-record writer."""
        self.seen[run.partition].add((run.run_after, run.run_id))
        record = RunRecord(
            state=RunState.SUCCESS, run_id=run.run_id, clear_number=run.clear_number, updated_at=self.now,
            source="airflow-plugin:default", start_date=run.start, end_date=run.start, run_type="manual",
            run_after=run.run_after,
        )  # fmt: skip
        asyncio.run(write_run_record(self.store, KEYS.run_key(NODE, run.partition), lambda _old: record))

    def audit(self) -> int:
        """One audit pass over what Airflow lists now; the number of keys it wrote."""
        before = self.store.revision
        view = self.store.view()
        asyncio.run(audit_once(self.store, KEYS, self.graph, {"default": self.airflow}, timedelta(days=1), view,
                               now=self.now, refused=self.refused))  # fmt: skip
        return self.store.revision - before

    @rule(partition=st.sampled_from(PARTITIONS), lost=st.booleans(), backdated=st.booleans())
    def create(self, partition: str, lost: bool, backdated: bool) -> None:
        """A new run of the partition (a producer's clear made a new asset-triggered run; a key triggered again);
        ``backdated``: made now with a ``run_after`` before every run so far (a REST trigger that gives one)."""
        at = self.tick()
        run_after = T0 - timedelta(hours=len(self.airflow.runs) + 1) if backdated else at
        run = Run(f"manual__{len(self.airflow.runs)}", partition, run_after, at)
        self.airflow.runs.append(run)
        self.events += 1
        if not lost:
            self.plugin_write(run)

    @rule(data=st.data(), lost=st.booleans())
    def clear(self, data: st.DataObject, lost: bool) -> None:
        """A clear of a run still in Airflow: its next attempt succeeds (the plugin's write of it maybe lost)."""
        alive = [run for run in self.airflow.runs if not run.deleted]
        if not alive:
            return
        run = data.draw(st.sampled_from(alive))
        run.clear_number += 1
        run.start = self.tick()
        self.events += 1
        if not lost:
            self.plugin_write(run)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        """A run deleted in Airflow (its record, if it stands, stays: the older run it hid never comes back)."""
        alive = [run for run in self.airflow.runs if not run.deleted]
        if alive:
            data.draw(st.sampled_from(alive)).deleted = True

    @rule()
    def audit_pass(self) -> None:
        """An audit pass repairs what the plugin lost; a second pass over unchanged Airflow writes nothing."""
        self.tick()
        for run in self.airflow.runs:
            if not run.deleted:
                self.seen[run.partition].add((run.run_after, run.run_id))
        self.audit()
        for _ in range(3):
            assert self.audit() == 0, "an audit pass over unchanged Airflow state wrote again"
        for partition in PARTITIONS:
            runs = self.airflow.runs
            alive = [(r.run_after, r.run_id, r) for r in runs if r.partition == partition and not r.deleted]
            record = self.store.record(partition)
            if alive and record is not None and max(alive)[:2] == max(self.seen[partition]):
                newest = max(alive)[2]
                assert record.run_id == newest.run_id, f"{partition}: the newest run {newest.run_id} is not recorded"
                assert record.start_date == newest.start, f"{partition}: {newest.run_id}'s last attempt not recorded"

    @invariant()
    def the_newest_seen_run_stands(self) -> None:
        """The record names the latest run any writer has seen, never an older one."""
        for partition in PARTITIONS:
            record = self.store.record(partition)
            if not self.seen[partition]:
                assert record is None
                continue
            assert record is not None
            assert (record.run_after, record.run_id) == max(self.seen[partition]), f"{partition}: went backwards"

    @invariant()
    def generations_only_move_forward(self) -> None:
        """Each partition's successes follow the run order, one per real attempt: no more than Airflow made."""
        total = 0
        for successes in self.store.successes.values():
            total += len(successes)
            order = [(s.run_after, s.run_id) for s in successes]
            assert order == sorted(order), f"a generation of an older run followed a newer one: {order}"
            attempts = [(s.run_id, s.start_date) for s in successes]
            assert len(attempts) == len(set(attempts)), f"one attempt written twice: {attempts}"
        assert total <= self.events, f"{total} generations for {self.events} successes in Airflow"


SETTINGS = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=examples(200),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RunOrderMachine.TestCase.settings = SETTINGS
TestRunOrderAgainstModel = RunOrderMachine.TestCase
TestRunOrderAgainstModel.__doc__ = (
    "several runs per partition: the newest seen run stands, generations never go backwards, the audit converges."
)


def test_the_machine_catches_the_rule_it_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the run order removed (another run id always replaces, the rule before it existed) the machine fails."""
    monkeypatch.setattr(core_model, "comes_later", lambda new, old: True)
    monkeypatch.setattr(core_audit, "comes_later", lambda new, old: True)
    with pytest.raises(AssertionError, match=r"went backwards|wrote again|older run followed|written twice"):
        run_state_machine_as_test(
            RunOrderMachine, settings=settings(SETTINGS, max_examples=200, derandomize=True, print_blob=False)
        )


def test_a_cleared_producer_reruns_its_asset_consumer_once_then_nothing_moves() -> None:
    """Two consumer runs for one partition (the second from a producer's clear): one new generation for the second,
    then five audit passes write nothing and the key names the newer run."""
    machine = RunOrderMachine()
    machine.create("eu", lost=False, backdated=False)
    machine.create("eu", lost=False, backdated=False)
    assert len(machine.store.successes[KEYS.run_key(NODE, "eu")]) == 2
    for _ in range(5):
        machine.tick()
        assert machine.audit() == 0
    record = machine.store.record("eu")
    assert record is not None and record.run_id == "manual__1"
    machine.airflow.runs[0].clear_number += 1  # the old run cleared by hand: its late success never stands again
    machine.airflow.runs[0].start = machine.tick()
    machine.plugin_write(machine.airflow.runs[0])
    assert machine.audit() == 0
    assert len(machine.store.successes[KEYS.run_key(NODE, "eu")]) == 2


def test_a_deleted_newer_run_keeps_its_record_and_later_passes_read_nothing() -> None:
    """The newer run deleted in Airflow: its record stays, the older run is never written again, and once etcd has
    refused the older run the audit's later passes do not even read the key."""
    machine = RunOrderMachine()
    machine.create("eu", lost=False, backdated=False)
    machine.create("eu", lost=False, backdated=False)
    machine.airflow.runs[1].deleted = True
    machine.tick()
    assert machine.audit() == 0
    reads = machine.store.reads
    for _ in range(5):
        machine.tick()
        assert machine.audit() == 0
    assert machine.store.reads == reads, "the audit read a key whose refusal it already knew"
    record = machine.store.record("eu")
    assert record is not None and record.run_id == "manual__1"
