"""The state machine of test_planner_stateful on random GRIDDED graphs (6-hourly and daily grids, offsets 0 and -1):
rollups, fan-outs and offsets with crashes, clears and restarts, against an independent model of the mapping.

The model maps partitions with fixed-period arithmetic on UTC datetimes (a window of ``period`` hours starting at a
multiple of it), not with croniter or any planner code, and judges freshness by definition from what each attempt
actually read when it started.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from coordinator.core.actions import Trigger
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from tests.support.examples import examples
from tests.support.world import World
from tests.test_planner_stateful import PlannerMachine

#: Grid name -> (cron, period in hours). Both are aligned on UTC midnight.
GRIDS = {"6h": ("0 */6 * * *", 6), "day": ("0 0 * * *", 24)}
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 2


def key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def points(grid: str) -> list[str]:
    period = GRIDS[grid][1]
    return [key(START + timedelta(hours=h)) for h in range(0, 24 * DAYS, period)]


@st.composite
def gridded(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Random acyclic graph: each node a grid, each edge (lower -> higher index) an offset of 0 or -1."""
    size = draw(st.integers(min_value=2, max_value=5))
    names = [f"d{i}" for i in range(size)]
    grids = {name: draw(st.sampled_from(sorted(GRIDS))) for name in names}
    edges: dict[str, dict[str, int]] = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2))
        if ups:
            edges[names[i]] = {up: draw(st.sampled_from([0, 0, -1])) for up in ups}
    if not edges:
        edges[names[1]] = {names[0]: 0}
    return grids, edges


class GridMachine(PlannerMachine):
    grids: dict[NodeId, str]
    offsets: dict[tuple[NodeId, NodeId], int]

    @initialize(shape=gridded())
    def setup(self, shape: tuple[dict[str, str], dict[str, dict[str, int]]]) -> None:  # type: ignore[override]
        grids, edges = shape
        dags: dict[str, dict[str, object]] = {}
        for name, grid in grids.items():
            body: dict[str, object] = {"partitions": {"cron": GRIDS[grid][0]}}
            if name in edges:
                body["upstreams"] = [{"dag": up, "offset": k} for up, k in edges[name].items()]
            dags[name] = body
        self.world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
        self.world.adopt()
        self.consumed = {}
        self.grids = {NodeId("default", name): grid for name, grid in grids.items()}
        self.offsets = {
            (NodeId("default", d), NodeId("default", u)): k for d, ups in edges.items() for u, k in ups.items()
        }
        self.model_reads: dict[tuple[NodeId, str], dict[tuple[NodeId, str], int | None]] = {}

    # -- the independent model -----------------------------------------------------------------------------------
    def own(self, node: NodeId) -> list[str]:
        """A DAG's partitions: the points of its grid (the machines built on this one have their own)."""
        return points(self.grids[node])

    def needs(self, node: NodeId, up: NodeId, partition: str) -> list[str]:
        """Upstream partitions D's partition needs: windows of fixed length, overlapping D's shifted window."""
        down_period, up_period = GRIDS[self.grids[node]][1], GRIDS[self.grids[up]][1]
        at = datetime.fromisoformat(partition.replace("Z", "+00:00"))
        if (at - START) % timedelta(hours=down_period):
            return []
        start = at + timedelta(hours=down_period * self.offsets[(node, up)])
        end = start + timedelta(hours=down_period)
        first = start - (start - START) % timedelta(hours=up_period)
        found = []
        while first < end:
            found.append(key(first))
            first += timedelta(hours=up_period)
        return found

    def model_fresh(self, node: NodeId, partition: str) -> bool:
        fact = self.world.view.runs.get((node, partition))
        if fact is None or fact.record.state is not RunState.SUCCESS:
            return False
        spec = self.world.graph.dags[node]
        if spec.is_root:
            return True
        read = self.model_reads.get((node, partition), {})
        for up in spec.upstreams:
            needed = self.needs(node, up, partition)
            if not needed:
                return False
            for q in needed:
                if not self.model_fresh(up, q) or read.get((up, q)) != self.gen(up, q):
                    return False
        return True

    def inputs_fresh(self, node: NodeId, partition: str) -> bool:
        ups = self.world.graph.dags[node].upstreams
        return all(self.needs(node, up, partition) for up in ups) and all(
            self.model_fresh(up, q) for up in ups for q in self.needs(node, up, partition)
        )

    def begin_attempt(self, node: NodeId, partition: str) -> None:
        self.model_reads[(node, partition)] = {
            (up, q): self.gen(up, q)
            for up in self.world.graph.dags[node].upstreams
            for q in self.needs(node, up, partition)
        }

    # -- what pipelines do ----------------------------------------------------------------------------------------
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def root_runs(self, data: st.DataObject, ok: bool) -> None:
        """A root's scheduled run for a point of its grid (or a user's clear of it) completes."""
        root = data.draw(st.sampled_from(self.world.graph.roots))
        partition = data.draw(st.sampled_from(points(self.grids[root])))
        fact = self.world.view.runs.get((root, partition))
        attempt = fact.record.clear_number + 1 if fact is not None else 0
        self.world.state(root.dag_id, partition, RunState.RUNNING, clear_number=attempt)
        self.world.state(root.dag_id, partition, RunState.SUCCESS if ok else RunState.FAILED, clear_number=attempt)

    def check_trigger_is_safe(self, action: Trigger) -> None:
        assert self.inputs_fresh(action.node, action.partition), f"{action.node} {action.partition} triggered early"

    def teardown(self) -> None:
        """After quiescence every partition whose mapped inputs are all fresh is fresh or failed (nothing stalls)."""
        if not hasattr(self, "world"):
            return
        world = self.world
        world.quiesce(self.begin_attempt, max_rounds=300)
        unconfirmed = [
            at
            for at, f in world.view.ledger.items()
            if f.record.status is not TriggerStatus.DONE and self.inputs_fresh(*at)
        ]
        assert not unconfirmed, f"intents left unconfirmed after quiescence: {unconfirmed}"
        for node in world.graph.topo_order:
            if world.graph.dags[node].is_root:
                continue
            for partition in self.own(node):
                if self.inputs_fresh(node, partition):
                    fact = world.view.runs.get((node, partition))
                    state = fact.record.state if fact is not None else None
                    assert self.model_fresh(node, partition) or state is RunState.FAILED, (
                        f"{node} {partition} stalled: {plan(world.graph, world.view).verdicts.get((node, partition))}"
                    )


GridMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=examples(100),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestGriddedPlannerAgainstModel = GridMachine.TestCase
TestGriddedPlannerAgainstModel.__doc__ = "Random gridded graphs: never optimistic, never duplicated, never stalled."
