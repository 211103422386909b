"""``core.rerun.preview``: what a rerun would do, decided by the planner on a copy of the view (issue 51), on the
seven-DAG example and small graphs driven through the real intent protocol (tests/support/world.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from coordinator.core.graph import Graph
from coordinator.core.holds import Hold, HoldSet, parse_selector
from coordinator.core.model import NodeId, RunState
from coordinator.core.rerun import Step, preview
from coordinator.core.spec.loader import parse_spec
from tests.support.world import P1, P2, SEVEN, World, n

NOW = datetime(2026, 1, 3, tzinfo=UTC)
ROOT = n("01_pipeline")
ROOT_RUN = f"scheduled__{P1}"


def cascaded(graph: Graph = SEVEN, root: str = "01_pipeline", partitions: tuple[str, ...] = (P1,)) -> World:
    world = World(graph)
    world.adopt()
    for p in partitions:
        world.state(root, p, RunState.SUCCESS, f"scheduled__{p}")
    world.settle()
    return world


def steps(world: World, *targets: tuple[NodeId, str], **kwargs: object) -> list[tuple[str, str, int, str]]:
    result = preview(world.graph, world.view, list(targets), now=NOW, **kwargs)  # type: ignore[arg-type]
    return [(r.node.dag_id, r.partition, r.depth, r.step.value) for r in result.runs]


def test_the_seven_dag_cascade_is_listed_depth_by_depth_once_each() -> None:
    """A rerun of 01 lists 01 at depth 0, 02..05 at 1, 06 at 2 (after all four), 07 at 3: each once, all clears."""
    world = cascaded()
    assert steps(world, (ROOT, P1)) == [
        ("01_pipeline", P1, 0, "clear"),
        *((f"0{i}_pipeline", P1, 1, "clear") for i in range(2, 6)),
        ("06_pipeline", P1, 2, "clear"),
        ("07_pipeline", P1, 3, "clear"),
    ]


def test_the_preview_writes_nothing_into_the_view_it_was_given() -> None:
    """**Pure**: the caller's view keeps its revision and facts; the preview works on a copy."""
    world = cascaded()
    revision, runs = world.view.revision, dict(world.view.runs.items())
    preview(world.graph, world.view, [(ROOT, P1)], now=NOW, no_cascade=True)
    assert world.view.revision == revision and dict(world.view.runs.items()) == runs
    assert world.view.no_cascade == {}


def test_what_the_preview_lists_is_what_the_world_then_does() -> None:
    """The runs the preview lists beyond the target are exactly the actions the planner takes once the root reruns."""
    world = cascaded()
    listed = {(r.node, r.partition, r.step.value) for r in preview(world.graph, world.view, [(ROOT, P1)], now=NOW).runs}
    done = len(world.effects)
    world.state("01_pipeline", P1, RunState.SUCCESS, ROOT_RUN, clear_number=1)
    world.settle()
    assert {(e[0], e[1], e[2]) for e in world.effects[done:]} | {(ROOT, P1, "clear")} == listed


def test_no_cascade_lists_the_target_only() -> None:
    """With ``no_cascade`` the same planner waives the rerun's success (semantics `no-cascade-once`): 01 alone."""
    world = cascaded()
    assert steps(world, (ROOT, P1), no_cascade=True) == [("01_pipeline", P1, 0, "clear")]


def test_a_middle_dag_reruns_only_its_descendants() -> None:
    """A rerun of 03 lists 03, then 06, then 07."""
    world = cascaded()
    assert [(d, depth) for d, _, depth, _ in steps(world, (n("03_pipeline"), P1))] == [
        ("03_pipeline", 0), ("06_pipeline", 1), ("07_pipeline", 2),
    ]  # fmt: skip


def test_a_running_dependent_is_cleared_after_it_ends() -> None:
    """A dependent running now (its own attempt) is listed as running: the watcher clears it again after it ends."""
    world = cascaded()
    world.user_clears(n("03_pipeline"), P1)  # 03 runs again now, by hand
    result = preview(world.graph, world.view, [(ROOT, P1)], now=NOW)
    running = [(r.node.dag_id, r.depth) for r in result.runs if r.running]
    assert running == [("03_pipeline", 1)]
    assert "cleared after it ends" in next(r.reason for r in result.runs if r.running)
    assert [r.node.dag_id for r in result.runs if r.depth == 1] == [f"0{i}_pipeline" for i in range(2, 6)]


def test_a_running_run_outside_the_cascade_is_not_listed() -> None:
    """With --no-cascade, a dependent running now is not re-cleared after it ends: it is not listed."""
    world = cascaded()
    world.user_clears(n("03_pipeline"), P1)
    assert steps(world, (ROOT, P1), no_cascade=True) == [("01_pipeline", P1, 0, "clear")]


def test_targets_without_a_run_or_running_now_are_skipped() -> None:
    """A partition with no run has nothing to clear; a target running now is not cleared (rerun it after it ends)."""
    world = cascaded()
    world.state("01_pipeline", P2, RunState.RUNNING, f"scheduled__{P2}")
    result = preview(world.graph, world.view, [(ROOT, P2), (ROOT, "2026-01-05T00:00:00Z")], now=NOW)
    assert [(r.partition, r.step) for r in result.runs] == [(P2, Step.SKIP), ("2026-01-05T00:00:00Z", Step.SKIP)]
    assert "after it ends" in result.runs[0].reason and "nothing to clear" in result.runs[1].reason
    assert result.counts() == {}


def test_runs_already_due_are_not_the_reruns_doing() -> None:
    """A trigger the planner would make anyway (a partition not cascaded yet) is not listed for the rerun of another."""
    world = cascaded()
    world.state("01_pipeline", P2, RunState.SUCCESS, f"scheduled__{P2}")  # P2's cascade is due, not acted on
    assert {p for _, p, _, _ in steps(world, (ROOT, P1))} == {P1}


def test_two_partitions_are_previewed_together() -> None:
    """A range: each partition's cascade, once each, grouped by instance and depth."""
    world = cascaded(partitions=(P1, P2))
    result = preview(world.graph, world.view, [(ROOT, P1), (ROOT, P2)], now=NOW)
    assert result.counts() == {"default": 14}
    assert [len(v) for v in result.by_instance()["default"].values()] == [2, 8, 2, 2]


def test_a_hold_in_the_way_is_named() -> None:
    """A standing hold on 06 with its downstream names itself on 06 and 07 (the watcher would not start them)."""
    world = cascaded()
    hold = Hold(
        id="h-1", selector=parse_selector("06_pipeline"), nodes=("default/06_pipeline",), downstream=True,
        reason="bad data", by="alice", created_at=NOW - timedelta(hours=1),
    )  # fmt: skip
    result = preview(world.graph, world.view, [(ROOT, P1)], now=NOW, holds=HoldSet(world.graph, [hold]))
    held = {r.node.dag_id: r.held_by for r in result.runs if r.held_by}
    assert set(held) == {"06_pipeline", "07_pipeline"}
    assert "held by hold h-1" in held["06_pipeline"]


def test_a_deadline_that_would_move_is_listed() -> None:
    """b's deadline: on time with its success, at risk once a rerun of a makes it wait for a's rerun and its own."""
    day = "2026-01-01T00:00:00Z"
    graph = parse_spec(json.dumps({"version": 1, "dags": {
        "a": {"partitions": {"cron": "0 0 * * *"}},
        "b": {"upstreams": "a", "partitions": {"cron": "0 0 * * *"},
              "expected_by": {"after_end": "6h", "warn": "30m", "duration": "5h"}},
    }}))  # fmt: skip
    world = cascaded(graph, "a", (day,))
    result = preview(graph, world.view, [(n("a"), day)], now=datetime(2026, 1, 2, 2, tzinfo=UTC))
    assert [(m.node.dag_id, m.before.state.value, m.after.state.value) for m in result.deadlines] == [
        ("b", "on_time", "at_risk")
    ]
