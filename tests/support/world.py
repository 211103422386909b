"""An in-memory world for planner tests: an etcd-like revision counter, a view, and a tiny Airflow.

It applies the planner's actions the way the real actuator does (ledger intent with a CAS on the planned ledger
revision, then the Airflow effect, then the confirmation), so tests can assert exactly-once effects without I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.core.planner import Plan, Resume, Trigger, plan
from coordinator.core.view import View, adopt, dump_activation

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
    #: The intent whose effect this run last received: the real actuator tells it from a changed ``queued_at``.
    last_intent: int = 0


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

    def backfill(self, dag: str, partition: str) -> None:
        self.write(self.keys.config_key(f"backfill/default/{dag}/{partition}"), b"{}")

    # -- the actuator ---------------------------------------------------------------------------------------
    def plan(self, partitions: Iterable[str] | None = None) -> Plan:
        return plan(self.graph, self.view, partitions)

    def act(self, partitions: Iterable[str] | None = None, crash_after_intent: bool = False) -> int:
        """Plan once and apply every action; return how many actions there were."""
        current = self.plan(partitions)
        for action in current.actions:
            self.apply_action(action, crash_after_intent)
        return len(current.actions)

    def apply_action(
        self, action: Trigger | Resume, crash_after_intent: bool = False, crash_after_effect: bool = False
    ) -> None:
        at = (action.node, action.partition)
        key = self.keys.trigger_key(action.node, action.partition)
        if isinstance(action, Trigger):
            existing = self.view.ledger.get(at)
            if (existing.mod_rev if existing else 0) != action.ledger_rev:
                return  # CAS lost: someone else acted; the next pass re-plans
            for up in self.graph.dags[action.node].upstreams:
                fact = self.view.runs.get((up, action.partition))
                if fact is None or fact.record.state is not RunState.SUCCESS:
                    self.violations.append(f"{action.node} triggered while {up} not success")
            record = action.intent()
            intent_rev = self.write(key, dump_record(record))
            if crash_after_intent:
                return
        else:
            record = action.ledger.record
            intent_rev = action.ledger.intent_rev
            if action.observed:
                done = record.model_copy(update={"status": TriggerStatus.DONE, "intent_rev": intent_rev})
                self.write(key, dump_record(done))
                return
        self._airflow_effect(action.node, action.partition, record, intent_rev)
        if crash_after_effect:
            return
        done = record.model_copy(update={"status": TriggerStatus.DONE, "intent_rev": intent_rev})
        self.write(key, dump_record(done))

    def _airflow_effect(self, node: NodeId, partition: str, record: TriggerRecord, intent_rev: int) -> None:
        """Idempotent like the real protocol: an intent already applied (409 on create, changed queued_at on clear)
        is not applied again."""
        run = self.airflow.get((node, partition))
        if run is None:
            self.airflow[(node, partition)] = FakeRun(record.run_id, last_intent=intent_rev)
            self.effects.append((node, partition, "create", dict(record.inputs)))
        elif run.last_intent == intent_rev:
            return  # this intent already reached Airflow before the crash
        else:
            run.clear_number += 1
            run.state = "queued"
            run.last_intent = intent_rev
            self.effects.append((node, partition, "clear", dict(record.inputs)))

    # -- the tiny Airflow ---------------------------------------------------------------------------------
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

    # -- assertions ------------------------------------------------------------------------------------------
    def count(self, dag: str, partition: str = P1, kind: str | None = None) -> int:
        return sum(1 for e in self.effects if e[0] == n(dag) and e[1] == partition and (kind is None or e[2] == kind))

    def counts(self, partition: str = P1) -> dict[str, int]:
        return {node.dag_id: self.count(node.dag_id, partition) for node in self.graph.topo_order}


def ledger_json(world: World, dag: str, partition: str = P1) -> dict[str, object]:
    fact = world.view.ledger[(n(dag), partition)]
    return json.loads(dump_record(fact.record))


TRIGGER_KINDS = (TriggerAction.CREATE, TriggerAction.CLEAR)
