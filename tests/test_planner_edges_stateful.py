"""The gridded state machine on graphs with EXTENDED edges (semantics rule 12): shifts, task-level upstreams, the
"finished" condition and self-dependency gates, with crashes, clears and restarts, against an independent model.

The model maps a shift with fixed-period arithmetic on UTC datetimes (P + offset periods + shift, kept when it is a
multiple of the upstream's period from midnight), reads task states the tiny Airflow writes before each run's end,
and judges freshness by definition from what each attempt actually read when it started; a gate is judged from the
dependent's own state in its previous period. No planner or grid code is used by the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from coordinator.core.actions import Trigger
from coordinator.core.model import KeyLayout, NodeId, RunState, TriggerStatus
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from tests.support.examples import examples
from tests.support.world import World
from tests.test_planner_grid_stateful import GRIDS, START, GridMachine, points

TASK = "t"


@dataclass(frozen=True)
class ModelEdge:
    up: NodeId
    offset: int
    shift_h: int | None
    task: str | None
    finished: bool


class TaskWorld(World):
    """The tiny Airflow also reports the task ``t`` of every run: it ends just before its run does."""

    def finish(self, dag: str, partition: str, ok: bool = True) -> None:
        run = self.airflow[(NodeId("default", dag), partition)]
        self.task_state(dag, TASK, partition, RunState.SUCCESS if ok else RunState.FAILED, run.clear_number)
        super().finish(dag, partition, ok)

    def user_clears(self, node: NodeId, partition: str) -> None:
        run = self.airflow[(node, partition)]
        self.task_state(node.dag_id, TASK, partition, RunState.RUNNING, run.clear_number + 1)
        super().user_clears(node, partition)


@st.composite
def extended(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, list[dict[str, object]]]]:
    """Random acyclic graph on the 6-hourly and daily grids; each edge a plain offset, a shift, a task and/or the
    finished condition; some DAGs gated on their own previous period. Shifts are ones that land on the upstream."""
    size = draw(st.integers(min_value=2, max_value=4))
    names = [f"d{i}" for i in range(size)]
    grids = {name: draw(st.sampled_from(sorted(GRIDS))) for name in names}
    edges: dict[str, list[dict[str, object]]] = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2))
        items: list[dict[str, object]] = []
        for up in ups:
            item: dict[str, object] = {"dag": up}
            kind = draw(st.sampled_from(["offset", "shift", "plain"]))
            if kind == "offset":
                item["offset"] = -1
            elif kind == "shift":
                item["shift"] = draw(st.sampled_from(["-1d", "0s"] if grids[up] == "day" else ["-6h", "-1d", "0s"]))
            if draw(st.booleans()):
                item["task"] = TASK
            if draw(st.sampled_from([False, False, True])):
                item["condition"] = "finished"
            items.append(item)
        if items and draw(st.booleans()):
            items.append({"dag": names[i], "offset": -1})
        if items:
            edges[names[i]] = items
    if not edges:
        edges[names[1]] = [{"dag": names[0], "task": TASK}]
    return grids, edges


def _at(partition: str) -> datetime:
    return datetime.fromisoformat(partition.replace("Z", "+00:00"))


def _key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class EdgeMachine(GridMachine):
    model_edges: dict[NodeId, list[ModelEdge]]
    gates: set[NodeId]
    edge_reads: dict[tuple[NodeId, str], dict[tuple[NodeId, str | None, str], int | None]]

    @initialize(shape=extended())
    def setup(self, shape: tuple[dict[str, str], dict[str, list[dict[str, object]]]]) -> None:  # type: ignore[override]
        grids, edges = shape
        dags: dict[str, dict[str, object]] = {}
        for name, grid in grids.items():
            body: dict[str, object] = {"partitions": {"cron": GRIDS[grid][0]}}
            if name in edges:
                body["upstreams"] = edges[name]
            dags[name] = body
        self.world = TaskWorld(parse_spec(json.dumps({"version": 1, "dags": dags})))
        self.world.adopt()
        self.consumed = {}
        self.grids = {NodeId("default", name): grid for name, grid in grids.items()}
        self.offsets = {}
        self.model_edges, self.gates, self.edge_reads = {}, set(), {}
        for name, items in edges.items():
            node = NodeId("default", name)
            for item in items:
                if item["dag"] == name:
                    self.gates.add(node)
                    continue
                shift = item.get("shift")
                hours = None if shift is None else {"-1d": -24, "-6h": -6, "0s": 0}[str(shift)]
                self.model_edges.setdefault(node, []).append(
                    ModelEdge(
                        NodeId("default", str(item["dag"])),
                        int(str(item.get("offset", 0))),
                        hours,
                        item.get("task") and TASK,
                        item.get("condition") == "finished",
                    )
                )

    # -- the independent model -----------------------------------------------------------------------------------
    def edge_needs(self, node: NodeId, edge: ModelEdge, partition: str) -> list[str]:
        down_period, up_period = GRIDS[self.grids[node]][1], GRIDS[self.grids[edge.up]][1]
        at = _at(partition)
        if (at - START) % timedelta(hours=down_period):
            return []
        start = at + timedelta(hours=down_period * edge.offset)
        if edge.shift_h is not None:
            target = start + timedelta(hours=edge.shift_h)
            return [] if (target - START) % timedelta(hours=up_period) else [_key(target)]
        end = start + timedelta(hours=down_period)
        first = start - (start - START) % timedelta(hours=up_period)
        found = []
        while first < end:
            found.append(_key(first))
            first += timedelta(hours=up_period)
        return found

    def fact(self, node: NodeId, task: str | None, partition: str) -> tuple[RunState, int] | None:
        view = self.world.view
        found = view.runs.get((node, partition)) if task is None else view.tasks.get((node, task, partition))
        return None if found is None else (found.state, found.rev)

    def fresh_with(self, node: NodeId, partition: str, state: tuple[RunState, int] | None) -> bool:
        """``node`` judged by definition with ``state`` as its latest state (a run's or a task's)."""
        if state is None or state[0] is not RunState.SUCCESS:
            return False
        if node not in self.model_edges:
            return True
        read = self.edge_reads.get((node, partition), {})
        for edge in self.model_edges[node]:
            needed = self.edge_needs(node, edge, partition)
            if not needed:
                return False
            for q in needed:
                gen = self.edge_gen(edge, q)
                if gen is None or read.get((edge.up, edge.task, q)) != gen:
                    return False
        return True

    def edge_gen(self, edge: ModelEdge, q: str) -> int | None:
        state = self.fact(edge.up, edge.task, q)
        if state is None:
            return None
        if state[0] is RunState.FAILED and edge.finished:
            return state[1]
        return state[1] if self.fresh_with(edge.up, q, state) else None

    def model_fresh(self, node: NodeId, partition: str) -> bool:
        return self.fresh_with(node, partition, self.fact(node, None, partition))

    def inputs_fresh(self, node: NodeId, partition: str) -> bool:
        edges = self.model_edges.get(node, [])
        needs = [(e, self.edge_needs(node, e, partition)) for e in edges]
        return all(q for _, q in needs) and all(self.edge_gen(e, q) is not None for e, qs in needs for q in qs)

    def gate_open(self, node: NodeId, partition: str) -> bool:
        """The previous period of a gated DAG succeeded, or nothing will ever run it."""
        if node not in self.gates:
            return True
        previous = _key(_at(partition) - timedelta(hours=GRIDS[self.grids[node]][1]))
        state = self.fact(node, None, previous)
        if state is not None:
            return state[0] is RunState.SUCCESS
        view = self.world.view
        if node in view.partitions.get(previous, ()):
            return False
        return not any(
            e.up in view.partitions.get(q, ())
            for e in self.model_edges[node]
            for q in self.edge_needs(node, e, previous)
        )

    def begin_attempt(self, node: NodeId, partition: str) -> None:
        self.edge_reads[(node, partition)] = {
            (e.up, e.task, q): self.edge_gen(e, q)
            for e in self.model_edges.get(node, [])
            for q in self.edge_needs(node, e, partition)
        }

    # -- what pipelines do ----------------------------------------------------------------------------------------
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def root_runs(self, data: st.DataObject, ok: bool) -> None:
        """A root's scheduled run (or a user's clear of it) completes; its task ``t`` ends just before it."""
        root = data.draw(st.sampled_from(self.world.graph.roots))
        partition = data.draw(st.sampled_from(points(self.grids[root])))
        fact = self.world.view.runs.get((root, partition))
        attempt = fact.record.clear_number + 1 if fact is not None else 0
        end = RunState.SUCCESS if ok else RunState.FAILED
        self.world.state(root.dag_id, partition, RunState.RUNNING, clear_number=attempt)
        self.world.task_state(root.dag_id, TASK, partition, end, attempt)
        self.world.state(root.dag_id, partition, end, clear_number=attempt)

    @rule()
    def watcher_restarts_from_snapshot(self) -> None:
        """Restart or compaction: the view is rebuilt from the latest values (task states included), plans the same."""
        before = plan(self.world.graph, self.world.view).actions
        view = self.world.view
        items = [
            *((view.keys.run_key(n, p), f.record.model_dump_json().encode(), f.rev) for (n, p), f in view.runs.items()),
            *((view.keys.task_key(n, t, p), f.record.model_dump_json().encode(), f.rev)
              for (n, t, p), f in view.tasks.items()),
            *((view.keys.trigger_key(n, p), f.record.model_dump_json().encode(), f.mod_rev)
              for (n, p), f in view.ledger.items()),
        ]  # fmt: skip
        if view.activation is not None:
            items.append((view.graph_key, view.activation.model_dump_json().encode(), view.activation_rev))
        rebuilt = View(KeyLayout())
        rebuilt.load(self.world.rev, items)
        self.world.view = rebuilt
        assert plan(self.world.graph, rebuilt).actions == before

    def check_trigger_is_safe(self, action: Trigger) -> None:
        assert self.inputs_fresh(action.node, action.partition), f"{action.node} {action.partition} triggered early"
        assert self.gate_open(action.node, action.partition), f"{action.node} {action.partition} jumped its gate"

    def teardown(self) -> None:
        """After quiescence every partition whose inputs are satisfied and whose gate is open is fresh or failed."""
        if not hasattr(self, "world"):
            return
        world = self.world
        world.quiesce(self.begin_attempt, max_rounds=300)
        unconfirmed = [
            at
            for at, f in world.view.ledger.items()
            if f.record.status is not TriggerStatus.DONE and self.inputs_fresh(*at) and self.gate_open(*at)
        ]
        assert not unconfirmed, f"intents left unconfirmed after quiescence: {unconfirmed}"
        for node in world.graph.topo_order:
            if world.graph.dags[node].is_root:
                continue
            for partition in points(self.grids[node]):
                if self.inputs_fresh(node, partition) and self.gate_open(node, partition):
                    fact = world.view.runs.get((node, partition))
                    state = fact.record.state if fact is not None else None
                    assert self.model_fresh(node, partition) or state is RunState.FAILED, (
                        f"{node} {partition} stalled: {plan(world.graph, world.view).verdicts.get((node, partition))}"
                    )


EdgeMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=examples(100),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestExtendedEdgesAgainstModel = EdgeMachine.TestCase
TestExtendedEdgesAgainstModel.__doc__ = (
    "Shifts, tasks, finished and gates: never early, never duplicated, never stalled."
)
