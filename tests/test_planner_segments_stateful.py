"""The state machine of test_planner_grid_stateful on random graphs of SEGMENT partitions (daily DAGs with or
without the segments eu and us: same segment, all segments, fan-out, pass-through), with crashes, clears, restarts
and asset-triggered runs that count for every partition they consumed, against an independent model of the
mapping.

The model maps a partition by the four rules written out below on (day, segment) pairs, not with any planner or
``coordinator.core.segments`` code, and judges freshness by definition from what each attempt read when it started.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from coordinator.core.model import NodeId, RunState
from coordinator.core.spec.loader import parse_spec
from tests.support.examples import examples
from tests.support.world import World
from tests.test_planner_grid_stateful import GridMachine

SEGMENTS = ("eu", "us")
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = [(START + timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in range(2)]


@st.composite
def segmented(draw: st.DrawFn) -> tuple[dict[str, bool], dict[str, list[str]]]:
    """Random acyclic graph of daily DAGs, each declaring the segments or not; edges from lower to higher index."""
    size = draw(st.integers(min_value=2, max_value=5))
    names = [f"d{i}" for i in range(size)]
    declared = {name: draw(st.booleans()) for name in names}
    edges: dict[str, list[str]] = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2))
        if ups:
            edges[names[i]] = ups
    if not edges:
        edges[names[1]] = [names[0]]
    return declared, edges


class SegmentMachine(GridMachine):
    declared: dict[NodeId, bool]

    @initialize(shape=segmented())
    def setup(self, shape: tuple[dict[str, bool], dict[str, list[str]]]) -> None:  # type: ignore[override]
        declared, edges = shape
        dags: dict[str, dict[str, object]] = {}
        for name, has in declared.items():
            partitions: dict[str, object] = {"cron": "0 0 * * *"}
            if has:
                partitions["segments"] = list(SEGMENTS)
            body: dict[str, object] = {"partitions": partitions}
            if name in edges:
                body["upstreams"] = edges[name]
            dags[name] = body
        self.world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
        self.world.adopt()
        self.consumed = {}
        self.declared = {NodeId("default", name): has for name, has in declared.items()}
        self.model_reads = {}

    # -- the independent model -----------------------------------------------------------------------------------
    def own(self, node: NodeId) -> list[str]:
        """A DAG's partitions: each day, in each segment when it declares them."""
        if self.declared[node]:
            return [f"{day}~{s}" for day in DAYS for s in SEGMENTS]
        return list(DAYS)

    def needs(self, node: NodeId, up: NodeId, partition: str) -> list[str]:
        """Same segment when both declare them; all of them when only U does; the day alone when only D does (a
        fan-out) or neither does."""
        day = partition.partition("~")[0]
        if partition not in self.own(node):
            return []
        if self.declared[node] and self.declared[up]:
            return [partition]
        if self.declared[up]:
            return [f"{day}~{s}" for s in SEGMENTS]
        return [day]

    # -- what pipelines do ----------------------------------------------------------------------------------------
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def root_runs(self, data: st.DataObject, ok: bool) -> None:
        """A root's run for one of its partitions (or a user's clear of it) completes."""
        root = data.draw(st.sampled_from(self.world.graph.roots))
        partition = data.draw(st.sampled_from(self.own(root)))
        fact = self.world.view.runs.get((root, partition))
        attempt = fact.record.clear_number + 1 if fact is not None else 0
        self.world.state(root.dag_id, partition, RunState.RUNNING, clear_number=attempt)
        self.world.state(root.dag_id, partition, RunState.SUCCESS if ok else RunState.FAILED, clear_number=attempt)

    @rule(data=st.data())
    def asset_triggered_root_runs(self, data: st.DataObject) -> None:
        """An asset-triggered run of a root that consumed events of two partitions: one run id, recorded as a
        success in each partition it consumed (a new generation in each)."""
        root = data.draw(st.sampled_from(self.world.graph.roots))
        consumed = data.draw(st.lists(st.sampled_from(self.own(root)), min_size=2, max_size=2, unique=True))
        run_id = f"asset_triggered__{self.world.rev}"
        for partition in consumed:
            self.world.state(root.dag_id, partition, RunState.SUCCESS, run_id)


SegmentMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=examples(60),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSegmentPlannerAgainstModel = SegmentMachine.TestCase
TestSegmentPlannerAgainstModel.__doc__ = "Random segment graphs: never optimistic, never duplicated, never stalled."
