"""Planner example tables for segment partitions and counted edges (semantics `segment-partitions`,
`partition-count`): pass-through, same, all (rollup), fan-out, segments without a time, 20 of 24, a cutoff and its
late rule, a rerun cascading once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.model import RunState
from coordinator.core.planner import next_cutoff
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError
from tests.support.world import World, n

DAY = "2025-03-10T00:00:00Z"
DAILY = {"cron": "0 0 * * *"}
REGIONS = ["apac", "eu", "us"]


def world_of(dags: dict[str, object]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def creates(world: World) -> list[tuple[str, str]]:
    return sorted((node.dag_id, partition) for node, partition, kind, _ in world.effects if kind == "create")


def test_a_segment_passes_through_dags_that_declare_none() -> None:
    """Runs keyed eu and us release their dependents once per segment, with nothing declared."""
    world = world_of({"load": {"upstreams": "extract"}})
    world.state("extract", "eu", RunState.SUCCESS)
    world.state("extract", "us", RunState.SUCCESS)
    world.settle()
    assert creates(world) == [("load", "eu"), ("load", "us")] and world.violations == []


def test_a_time_and_segment_passes_through_a_daily_rollup_of_hours() -> None:
    """Hourly runs of a day in eu release the daily DAG for that day in eu, and nothing for us."""
    world = world_of(
        {"hourly": {"partitions": {"cron": "0 * * * *"}}, "daily": {"partitions": DAILY, "upstreams": "hourly"}}
    )
    start = datetime(2025, 3, 10, tzinfo=UTC)
    for hour in range(24):
        at = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
        world.state("hourly", f"{at}~eu", RunState.SUCCESS)
    world.settle()
    assert creates(world) == [("daily", f"{DAY}~eu")]


def test_a_rollup_of_all_segments_waits_for_every_one_and_reruns_once() -> None:
    """A daily total over regions runs when all three are in, once; a rerun of one region reruns it once."""
    world = world_of(
        {
            "regions": {"partitions": {**DAILY, "segments": REGIONS}},
            "total": {"partitions": DAILY, "upstreams": "regions"},
        }
    )
    world.state("regions", f"{DAY}~eu", RunState.SUCCESS, "r_eu")
    world.state("regions", f"{DAY}~us", RunState.SUCCESS, "r_us")
    assert world.act() == 0
    verdict = world.plan([DAY]).verdicts[(n("total"), DAY)]
    assert "apac" in verdict.summary
    world.state("regions", f"{DAY}~apac", RunState.SUCCESS, "r_apac")
    world.settle()
    assert creates(world) == [("total", DAY)]
    world.state("regions", f"{DAY}~us", RunState.SUCCESS, "r_us", clear_number=1)
    world.settle()
    assert [e[2] for e in world.effects] == ["create", "clear"] and world.violations == []


def test_a_fan_out_runs_each_segment_once() -> None:
    """One daily upstream partition releases the per-region dependent in each of its three segments, once each."""
    world = world_of(
        {
            "per_region": {"partitions": {**DAILY, "segments": REGIONS}, "upstreams": "daily"},
            "daily": {"partitions": DAILY},
        }
    )
    world.state("daily", DAY, RunState.SUCCESS)
    world.settle()
    assert creates(world) == [("per_region", f"{DAY}~{r}") for r in REGIONS]
    world.settle()
    assert len(world.effects) == 3


def test_segments_without_a_time_join_the_same_segment() -> None:
    """Two DAGs declaring segments alone join eu to eu; a segment neither lists maps to nothing."""
    world = world_of(
        {
            "a": {"partitions": {"segments": REGIONS}},
            "b": {"partitions": {"segments": REGIONS}, "upstreams": "a"},
        }
    )
    world.state("a", "eu", RunState.SUCCESS)
    world.state("a", "latam", RunState.SUCCESS)
    world.settle()
    assert creates(world) == [("b", "eu")]


def test_twenty_of_twenty_four_hours_are_enough() -> None:
    """A daily rollup counting at_least 20 of its hours runs at the 20th, not the 19th, and not again at the 24th."""
    world = world_of(
        {
            "hourly": {"partitions": {"cron": "0 * * * *"}},
            "daily": {"partitions": DAILY, "upstreams": [{"dag": "hourly", "at_least": 20}]},
        }
    )
    start = datetime(2025, 3, 10, tzinfo=UTC)
    keys = [(start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(24)]
    for key in keys[:19]:
        world.state("hourly", key, RunState.SUCCESS)
    assert world.act() == 0
    assert "needs 20 of 24 partitions" in world.plan([DAY]).verdicts[(n("daily"), DAY)].reasons[0]
    world.state("hourly", keys[19], RunState.SUCCESS)
    world.settle()
    assert creates(world) == [("daily", DAY)] and len(world.effects[0][3]) == 20
    for key in keys[20:]:
        world.state("hourly", key, RunState.SUCCESS)
    world.settle()
    assert len(world.effects) == 1


@pytest.mark.parametrize(("late", "runs"), [("rerun", ["create", "clear"]), ("ignore", ["create"])])
def test_two_of_three_regions_at_the_cutoff_and_the_late_rule(late: str, runs: list[str]) -> None:
    """All three regions before the 6h cutoff, two after it; the third region late reruns it once or is ignored."""
    world = world_of(
        {
            "regions": {"partitions": {**DAILY, "segments": REGIONS}},
            "total": {"partitions": DAILY, "upstreams": [{"dag": "regions", "cutoff": "6h", "min": 2, "late": late}]},
        }
    )
    world.state("regions", f"{DAY}~eu", RunState.SUCCESS)
    world.state("regions", f"{DAY}~us", RunState.SUCCESS)
    world.clock = datetime(2025, 3, 10, 5, tzinfo=UTC)
    assert world.act() == 0
    assert next_cutoff(world.graph, world.view, world.clock) == datetime(2025, 3, 10, 6, tzinfo=UTC)
    world.clock = datetime(2025, 3, 10, 6, tzinfo=UTC)
    world.settle()
    assert creates(world) == [("total", DAY)] and len(world.effects[0][3]) == 2
    world.state("regions", f"{DAY}~apac", RunState.SUCCESS)
    world.settle()
    assert [e[2] for e in world.effects] == runs and world.violations == []
    world.settle()
    assert [e[2] for e in world.effects] == runs


@pytest.mark.parametrize(
    ("dags", "message"),
    [
        (
            {"a": {"partitions": {"segments": REGIONS}}, "b": {"partitions": DAILY, "upstreams": "a"}},
            "taking all of the upstream's segments needs times on both sides",
        ),
        (
            {"a": {"partitions": DAILY}, "b": {"partitions": {"segments": REGIONS}, "upstreams": "a"}},
            "a fan-out from the upstream's times to segments without a time",
        ),
        (
            {"b": {"upstreams": [{"dag": "a", "segments": "all"}]}},
            '"segments": "all" but a declares no segments',
        ),
        ({"a": {"partitions": {"segments": ["eu", "2026-01-01"]}}}, "reads as a date"),
        ({"a": {"partitions": {"segments": REGIONS, "key_format": "%Y"}}}, '"key_format" without "cron"'),
        (
            {
                "a": {"partitions": {"segments": REGIONS}},
                "b": {"partitions": {"segments": REGIONS}, "upstreams": [{"dag": "a", "cutoff": "6h", "min": 1}]},
            },
            "whose partitions are segments without a time",
        ),
    ],
)
def test_edges_that_cannot_relate_their_partitions_are_refused(dags: dict[str, object], message: str) -> None:
    """validate refuses an edge between a time and a segment alone, an all without segments, a date as a segment."""
    with pytest.raises(SpecError) as caught:
        parse_spec(json.dumps({"version": 1, "dags": dags}))
    assert message in str(caught.value)


def test_a_key_format_and_segments_make_the_airflow_partition_key() -> None:
    """The trigger's partition_key: the segment alone, the time in the DAG's format and zone (without one: canonical
    UTC with its Z), or both joined by |."""
    graph = parse_spec(json.dumps({"version": 1, "dags": {
        "seg": {"partitions": {"segments": REGIONS}},
        "hourly": {"partitions": {"cron": "0 * * * *", "timezone": "Europe/Berlin", "key_format": "%Y-%m-%dT%H:%M:%S"}},
        "plain": {"upstreams": "hourly"},
    }}))  # fmt: skip
    assert graph.partition_key(n("seg"), "eu") == "eu"
    assert graph.partition_key(n("hourly"), "2026-01-01T10:00:00Z") == "2026-01-01T11:00:00"
    assert graph.partition_key(n("plain"), "2026-01-01T10:00:00Z") is None
    assert graph.partition_key(n("plain"), "2026-01-01T10:00:00Z~eu") == "2026-01-01T10:00:00Z|eu"


def test_a_deadline_on_segments_without_a_time_is_refused() -> None:
    """validate refuses expected_by on a DAG whose partitions are segments alone: nothing to count it from."""
    dags = {"a": {"partitions": {"segments": REGIONS}, "expected_by": {"after_start": "6h"}}}
    with pytest.raises(SpecError, match="a deadline on a, whose partitions are segments without a time"):
        parse_spec(json.dumps({"version": 1, "dags": dags}))
