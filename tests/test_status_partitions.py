"""``status`` lists, for a partition, only the DAGs that can have it by their grids and segments
(``core/segments.py``'s **Own partitions**)."""

from __future__ import annotations

import json

import pytest

from coordinator.core.model import RunState
from coordinator.core.planner import plan
from coordinator.core.segments import can_have
from coordinator.core.spec.loader import parse_spec
from coordinator.explain.report import status_rows
from tests.support.world import World

#: The platform engineer's estate: an hourly CronPartitionTimetable, its daily rollup, regions keyed by segment alone
#: (PartitionedAtRuntime) and a per-region consumer, and an ungridded DAG.
GRAPH = {
    "version": 1,
    "dags": {
        "hourly_ingest": {"partitions": {"cron": "0 * * * *"}},
        "daily_rollup": {"partitions": {"cron": "0 0 * * *"}, "upstreams": ["hourly_ingest"]},
        "regions": {"partitions": {"segments": ["eu", "us"]}},
        "per_region": {"partitions": {"segments": ["eu", "us"]}, "upstreams": ["regions"]},
        "regional_daily": {"partitions": {"cron": "0 0 * * *", "segments": ["eu", "us"]}},
        "anything": {},
    },
}
DAY = "2026-11-27T00:00:00Z"
HOUR = "2026-11-27T05:00:00Z"


def _world() -> World:
    world = World(parse_spec(json.dumps(GRAPH)))
    world.adopt()
    return world


@pytest.mark.parametrize(
    ("dag", "partition", "expected"),
    [
        ("daily_rollup", "eu", False),  # a daily grid never has a segment alone
        ("daily_rollup", DAY, True),
        ("daily_rollup", HOUR, False),  # not a point of its grid
        ("daily_rollup", f"{DAY}~eu", True),  # a segment passes through a DAG that declares none
        ("per_region", DAY, False),  # segments alone: no time
        ("per_region", "eu", True),
        ("per_region", "apac", False),  # not one of its segments
        ("regional_daily", f"{DAY}~eu", True),
        ("regional_daily", "eu", False),  # its partitions carry a time
        ("regional_daily", f"{HOUR}~eu", False),
        ("anything", "eu", True),
        ("anything", HOUR, True),
    ],
)
def test_a_dag_can_have_only_partitions_of_its_grid_and_segments(dag: str, partition: str, expected: bool) -> None:
    """``can_have`` answers by the DAG's grid and declared segments."""
    world = _world()
    spec = next(spec for node, spec in world.graph.dags.items() if node.dag_id == dag)
    assert can_have(spec.grid, spec.segments, partition) is expected


def test_status_for_a_segment_or_a_day_lists_only_the_dags_that_can_have_it() -> None:
    """``status -p eu`` has no row for the daily or hourly DAGs, ``status -p DAY`` none for the DAGs of segments
    alone; a DAG with a run of its own there keeps its row whatever its grid says."""
    world = _world()
    world.state("regions", "eu", RunState.SUCCESS)
    rows = status_rows(world.graph, plan(world.graph, world.view, ["eu"]), ["eu"], world.view)
    assert sorted(row.dag for row in rows) == ["anything", "per_region", "regions"]
    rows = status_rows(world.graph, plan(world.graph, world.view, [DAY]), [DAY], world.view)
    assert sorted(row.dag for row in rows) == ["anything", "daily_rollup", "hourly_ingest"]
    world.state("per_region", DAY, RunState.SUCCESS)  # a run recorded there (a writer's mistake) is still shown
    rows = status_rows(world.graph, plan(world.graph, world.view, [DAY]), [DAY], world.view)
    assert "per_region" in {row.dag for row in rows}
