"""An in-memory world for planner tests: an etcd-like revision counter, a view, and a tiny Airflow.

It applies the planner's actions with the shipped intent protocol (``coordinator/core/intent.py``): it performs each
instruction against its etcd (a CAS on the expected ledger revision) and its Airflow (one run per logical date, a
``queued_at`` that changes on every clear) and feeds the answer back, exactly as the actuator does, so tests assert
exactly-once effects of the real protocol without I/O. A crash is simulated by stopping after a step.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coordinator.core import intent
from coordinator.core.actions import Plan, Resume, Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.conditions import Member
from coordinator.core.effects import End, LedgerMoved, LedgerWritten, RecordError, WriteLedger
from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    dump_record,
)
from coordinator.core.permit import Permit, permit_of
from coordinator.core.planner import plan
from coordinator.core.view import View

#: The world's wall clock: the protocol only writes it into records.
NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: The actuator's default refusal delay (the world has no clock: an error is retried on the next pass).
ERROR_RETRY_S = 30.0

P1 = "2026-01-01T00:00:00Z"
P2 = "2026-01-02T00:00:00Z"


def n(dag: str) -> NodeId:
    return NodeId.parse(dag)


def make_graph(edges: Mapping[str, Iterable[str]], failures: Mapping[str, Iterable[str]] | None = None) -> Graph:
    """Graph from {downstream: [upstreams]} plus {handler: [sources]}; every mentioned dag becomes a node."""
    failures = failures or {}
    names: set[str] = set(edges) | set(failures)
    for ups in [*edges.values(), *failures.values()]:
        names |= set(ups)
    dags = {
        n(name): DagSpec(
            n(name),
            upstreams=tuple(sorted(n(u) for u in edges.get(name, ()))),
            on_failure_of=tuple(sorted(n(u) for u in failures.get(name, ()))),
        )
        for name in names
    }
    return Graph(dags=dags, instances=frozenset({"default"}))


SEVEN = make_graph(
    {
        "02_pipeline": ["01_pipeline"],
        "03_pipeline": ["01_pipeline"],
        "04_pipeline": ["01_pipeline"],
        "05_pipeline": ["01_pipeline"],
        "06_pipeline": ["02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"],
        "07_pipeline": ["06_pipeline"],
    }
)


@dataclass
class FakeRun:
    run_id: str
    clear_number: int = 0
    state: str = "queued"  # queued -> running -> success/failed, as Airflow shows it
    #: Changes on every clear, as Airflow's does: the protocol proves a clear happened by it.
    queued_at: str = ""


@dataclass
class World:
    """A graph, a view fed by numbered writes, and an Airflow that records every create/clear."""

    graph: Graph
    keys: KeyLayout = field(default_factory=KeyLayout)
    rev: int = 0
    view: View = field(init=False)
    airflow: dict[tuple[NodeId, str], FakeRun] = field(default_factory=dict)
    #: Every effect on Airflow, in order: (node, partition, "create"|"clear", inputs).
    effects: list[tuple[NodeId, str, str, dict[str, int]]] = field(default_factory=list)
    #: Every run start, in order: (node, partition, revision it started at).
    starts: list[tuple[NodeId, str, int]] = field(default_factory=list)
    #: Every upstream-not-fresh violation found at action time (must stay empty).
    violations: list[str] = field(default_factory=list)
    #: Every error the protocol recorded on the ledger (an active run it would not clear, a refusal).
    errors: list[str] = field(default_factory=list)
    #: The watcher's clock: ``now`` of :meth:`plan`/:meth:`act` and of the group check in :meth:`apply_action`. None:
    #: no cutoff has passed for the planner, and the check allows a cutoff group from its ``min`` (a caller that
    #: plans with a ``now`` of its own).
    clock: datetime | None = None
    #: Semantics `permit-not-run`: each scheduled DAG's permit as last written (with its ledger write), and every
    #: permit write in order.
    permits: dict[tuple[NodeId, str], Permit] = field(default_factory=dict)
    permit_writes: list[tuple[NodeId, str, Permit]] = field(default_factory=list)
    _stamps: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.view = View(self.keys)

    # -- etcd -------------------------------------------------------------------------------------------------
    def write(self, key: str, value: bytes | None) -> int:
        self.rev += 1
        self.view.apply(key, value, self.rev)
        return self.rev

    def adopt(self, graph: Graph | None = None) -> None:
        """Adopt the graph (what the leader does at start or after dependencies.json changed)."""
        if graph is not None:
            self.graph = graph
        act = adopt(self.graph.shapes, self.graph.digest, self.view.activation, self.rev)
        if act is not None:
            self.write(self.view.graph_key, dump_activation(act))

    def state(
        self, dag: str, partition: str, state: RunState | str, run_id: str | None = None, clear_number: int = 0
    ) -> int:
        """A pipeline (or the plugin) reports a state."""
        record = RunRecord(state=RunState(state), run_id=run_id or f"manual__{partition}", clear_number=clear_number)
        return self.write(self.keys.run_key(n(dag), partition), dump_record(record))

    def task_state(self, dag: str, task: str, partition: str, state: RunState | str, clear_number: int = 0) -> int:
        """The plugin reports a task instance's state (``{prefix}/tasks/...``, the run-state value format)."""
        record = RunRecord(state=RunState(state), run_id=f"manual__{partition}", clear_number=clear_number)
        return self.write(self.keys.task_key(n(dag), task, partition), dump_record(record))

    def backfill(self, dag: str, partition: str) -> None:
        self.write(self.keys.config_key(f"backfill/default/{dag}/{partition}"), b"{}")

    # -- the actuator ---------------------------------------------------------------------------------------
    def plan(self, partitions: Iterable[str] | None = None) -> Plan:
        return plan(self.graph, self.view, partitions, now=self.clock)

    def act(self, partitions: Iterable[str] | None = None, crash_after_intent: bool = False) -> int:
        """Plan once and apply every action; return how many actions there were."""
        current = self.plan(partitions)
        for action in current.actions:
            self.apply_action(action, crash_after_intent)
        return len(current.actions)

    def _check_inputs(self, action: Trigger) -> None:
        """Record a violation when ``action`` triggers its DAG before its condition holds: every required edge
        satisfied (in every partition it maps to), and each condition group with its need of satisfied members, or
        its ``min`` once its cutoff passed (semantics `group-holds`, `group-cutoff`)."""
        spec = self.graph.dags[action.node]
        grouped = {m for group in spec.groups for m in group.members}
        satisfied: set[Member] = set()
        for edge in spec.all_edges():
            if edge.failure or edge.source == action.node:
                continue  # failure sources and gates are no inputs
            up = edge.source
            missing = []
            # Partition grids: the upstream partitions the trigger's partition needs (itself without grids).
            for q in self.graph.source_partitions(action.node, up, action.partition):
                fact = self.view.runs.get((up, q)) if edge.task is None else self.view.tasks.get((up, edge.task, q))
                ok = {RunState.SUCCESS} | ({RunState.FAILED} if edge.condition == "finished" else set())
                if fact is None or fact.record.state not in ok:
                    missing.append(q)
            window = len(self.graph.source_partitions(action.node, up, action.partition))
            if edge.count is not None and window:
                # semantics `partition-count`: at_least of the window (all by default), min once its cutoff passed
                have = window - len(missing)
                base = min(edge.count.at_least or window, window)
                cut = edge.count.cutoff_at(action.partition)
                passed = cut is not None and (self.clock is None or self.clock >= cut)
                if have < base and not (passed and have >= edge.count.minimum):
                    self.violations.append(
                        f"{action.node} {action.partition} triggered with {have} of {window} of {up}"
                    )
                continue
            if not missing:
                satisfied.add((up, edge.task))
            elif (up, edge.task) not in grouped:
                self.violations += [
                    f"{action.node} {action.partition} triggered while {up} {q} not success" for q in missing
                ]
        for group in spec.groups:
            count = sum(m in satisfied for m in group.members)
            early = group.cutoff_at(action.partition) is not None and self.clock is None and count >= group.minimum
            if not early and not group.is_met(count, action.partition, self.clock):
                self.violations.append(f"{action.node} {action.partition} triggered with {count} of {group.describe()}")

    def apply_action(
        self,
        action: Trigger | Resume,
        crash_after_intent: bool = False,
        crash_after_effect: bool = False,
        lose_answer: bool = False,
    ) -> None:
        """Run the intent protocol for one action; a crash stops it after the intent write or after the first
        Airflow call that may change Airflow (a create or a clear), as a killed watcher would. ``lose_answer``: the
        first create or clear takes effect but its answer is lost, so the actuator's retry loop calls again (the
        retry of a clear re-reads the run first and asks ``intent.clear_needed``, as the actuator does)."""
        at = (action.node, action.partition)
        key = self.keys.trigger_key(action.node, action.partition)
        scheduled = action.node in self.graph.scheduled
        if isinstance(action, Trigger):
            existing = self.view.ledger.get(at)
            if (existing.mod_rev if existing else 0) != action.ledger_rev:
                return  # CAS lost: someone else acted; the next pass re-plans
            self._check_inputs(action)
            state, instruction = intent.start_trigger(action, NOW, "world", ERROR_RETRY_S, scheduled=scheduled)
        else:
            current = self.view.ledger.get(at)
            found = intent.IntentFound(
                current.record if current else None, current.mod_rev if current else 0, action.observed
            )
            start = intent.start_resume(action.partition, ERROR_RETRY_S, scheduled=scheduled, withdraw=action.withdraw,
                                        definition=action.definition)  # fmt: skip
            state, instruction = intent.step(start, found, NOW)
        while not isinstance(instruction, End):
            event: intent.Event
            if isinstance(instruction, WriteLedger):  # the driver's (Executor.drive): a fenced compare-and-swap
                current = self.view.ledger.get(at)
                if (current.mod_rev if current else 0) != instruction.expected_rev:
                    event = LedgerMoved()  # CAS lost: the attempt ends (semantics `trigger-intent-first`)
                else:
                    event = LedgerWritten(self.write(key, dump_record(instruction.record)))
                    if scheduled:  # the same transaction (the executor's Ledger ``also``)
                        self.permits[at] = permit_of(instruction.record)
                        self.permit_writes.append((*at, self.permits[at]))
                if isinstance(instruction, RecordError):
                    self.errors.append(instruction.error)
                    return  # the driver ends the attempt on an error record, whatever the compare answered
                if isinstance(instruction, intent.RecordIntent) and crash_after_intent:
                    return
            else:
                assert state.record is not None
                if lose_answer and isinstance(instruction, (intent.CallCreate, intent.CallClear)):
                    lose_answer = False
                    self._airflow_answer(action.node, action.partition, instruction, state.record)  # answer lost
                event = self._airflow_answer(action.node, action.partition, instruction, state.record)
                if crash_after_effect and isinstance(instruction, (intent.CallCreate, intent.CallClear)):
                    return
            state, instruction = intent.step(state, event, NOW)

    def _airflow_answer(
        self, node: NodeId, partition: str, instruction: intent.Instruction, record: TriggerRecord
    ) -> intent.Event:
        """What the tiny Airflow answers to one instruction of the protocol (one run per logical date)."""
        run = self.airflow.get((node, partition))
        if isinstance(instruction, intent.CallCreate):
            if run is None:
                self.airflow[(node, partition)] = FakeRun(instruction.run_id, queued_at=self.stamp())
                self.effects.append((node, partition, "create", dict(instruction.record.inputs)))
                return intent.Created(instruction.run_id)
            if run.run_id == instruction.run_id:
                return intent.ConflictSameRun(run.run_id)
            return intent.ConflictOtherRun(run.run_id)
        shown = None if run is None else intent.AirflowRun(run.run_id, run.state, run.queued_at)
        if isinstance(instruction, intent.ReadQueuedAt):  # by id only: the protocol asks for the date's run next
            return intent.RunObserved(shown if shown is not None and shown.run_id == instruction.run_id else None)
        if isinstance(instruction, intent.FindRunByDate):  # the one run this partition's logical date has
            return intent.RunObserved(shown)
        if isinstance(instruction, intent.CallClear):
            if run is None or run.run_id != instruction.run_id:
                return intent.Refused(f"AirflowNotFound: no run {instruction.run_id}")
            if intent.clear_needed(instruction, shown):  # the actuator's guard, the very function
                run.clear_number += 1
                run.state = "queued"
                run.queued_at = self.stamp()
                self.effects.append((node, partition, "clear", dict(record.inputs)))
            return intent.Cleared()
        if isinstance(instruction, intent.CheckPaused):
            return intent.PausedChecked(None)
        raise AssertionError(f"not an Airflow instruction: {instruction!r}")

    # -- the tiny Airflow ---------------------------------------------------------------------------------
    def stamp(self) -> str:
        """A new ``queued_at``."""
        return f"q{next(self._stamps)}"

    def user_clears(self, node: NodeId, partition: str) -> None:
        """A user clears a finished run in the UI: a new attempt starts at once (and queued_at moves)."""
        run = self.airflow[(node, partition)]
        run.clear_number += 1
        run.state = "running"
        run.queued_at = self.stamp()
        self.state(node.dag_id, partition, RunState.RUNNING, run.run_id, run.clear_number)

    def schedule(self, dag: str, partition: str) -> None:
        """A scheduled DAG's timetable makes its run of ``partition``; it starts and its wait task waits."""
        run = FakeRun(f"scheduled__{partition}", state="running", queued_at=self.stamp())
        self.airflow[(n(dag), partition)] = run
        self.state(dag, partition, RunState.RUNNING, run.run_id)

    def start(self, dag: str, partition: str) -> None:
        run = self.airflow[(n(dag), partition)]
        assert run.state == "queued"
        run.state = "running"
        rev = self.state(dag, partition, RunState.RUNNING, run.run_id, run.clear_number)
        self.starts.append((n(dag), partition, rev))

    def finish(self, dag: str, partition: str, ok: bool = True) -> None:
        run = self.airflow[(n(dag), partition)]
        run.state = "success" if ok else "failed"
        self.state(dag, partition, RunState.SUCCESS if ok else RunState.FAILED, run.run_id, run.clear_number)

    def queued(self) -> list[tuple[NodeId, str]]:
        return sorted(at for at, run in self.airflow.items() if run.state == "queued")

    def settle(self, fail: Iterable[str] = (), max_steps: int = 100) -> None:
        """Act and run every queued run to the end (``fail``: dags whose runs fail) until nothing moves."""
        failing = set(fail)
        for _ in range(max_steps):
            moved = self.act()
            for node, partition in self.queued():
                self.start(node.dag_id, partition)
                self.finish(node.dag_id, partition, ok=node.dag_id not in failing)
                moved += 1
            if not moved:
                return
        raise AssertionError("world did not settle")

    def quiesce(
        self,
        before_start: Callable[[NodeId, str], object],
        max_rounds: int,
        after_finish: Callable[[NodeId, str, int], object] = lambda node, partition, attempt: None,
    ) -> None:
        """The state machines' teardown: apply every planned action, start every queued run (``before_start`` lets
        the model note the attempt) and let every running one succeed (``after_finish`` gets the attempt that
        succeeded, as a machine's own finishing rule would), until nothing moves or ``max_rounds``."""
        for _ in range(max_rounds):
            for action in plan(self.graph, self.view).actions:
                self.apply_action(action)
            moved = False
            for node, partition in self.queued():
                before_start(node, partition)
                self.start(node.dag_id, partition)
                moved = True
            for at, run in sorted(self.airflow.items()):
                if run.state == "running":
                    self.finish(at[0].dag_id, at[1], ok=True)
                    after_finish(at[0], at[1], run.clear_number)
                    moved = True
            if not moved and not plan(self.graph, self.view).actions:
                return

    # -- assertions ------------------------------------------------------------------------------------------
    def count(self, dag: str, partition: str = P1, kind: str | None = None) -> int:
        return sum(1 for e in self.effects if e[0] == n(dag) and e[1] == partition and (kind is None or e[2] == kind))

    def counts(self, partition: str = P1) -> dict[str, int]:
        return {node.dag_id: self.count(node.dag_id, partition) for node in self.graph.topo_order}


def ledger_json(world: World, dag: str, partition: str = P1) -> dict[str, object]:
    fact = world.view.ledger[(n(dag), partition)]
    return json.loads(dump_record(fact.record))


TRIGGER_KINDS = (TriggerAction.CREATE, TriggerAction.CLEAR)
