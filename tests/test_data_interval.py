"""The data interval of a triggered run (semantics `triggered-data-interval`): the core rule's example table, the
``data_interval`` field as the loader reads and refuses it, and what it changes (the trigger, not when a DAG is due)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.core.data_interval import DataInterval, IntervalKind, data_interval
from coordinator.core.grid import Grid
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError
from coordinator.runtime.graph_source import GraphSource

DAILY, HOURLY, MONTHLY = Grid("0 0 * * *"), Grid("0 * * * *"), Grid("0 0 1 * *")
BERLIN = Grid("0 0 * * *", "Europe/Berlin")
PERIOD, POINT = IntervalKind.PERIOD, IntervalKind.POINT


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def span(start: str, end: str) -> DataInterval:
    return DataInterval(at(start), at(end))


@pytest.mark.parametrize(
    ("partition", "grid", "declared", "partitioned", "expected"),
    [
        pytest.param("2025-07-01T00:00:00Z", DAILY, None, False, span("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                     id="daily-grid-default-period"),
        pytest.param("2025-07-01T00:00:00Z", DAILY, PERIOD, False, span("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                     id="daily-period-declared"),
        pytest.param("2025-07-01T00:00:00Z", DAILY, POINT, False, span("2025-07-01T00:00:00Z", "2025-07-01T00:00:00Z"),
                     id="daily-point"),
        pytest.param("2025-07-01T05:00:00Z", HOURLY, None, False, span("2025-07-01T05:00:00Z", "2025-07-01T06:00:00Z"),
                     id="hourly"),
        pytest.param("2025-02-01T00:00:00Z", MONTHLY, None, False, span("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z"),
                     id="monthly-february-28-days"),
        pytest.param("2025-03-29T23:00:00Z", BERLIN, None, False, span("2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z"),
                     id="berlin-spring-dst-day-23-hours"),
        pytest.param("2025-07-01T05:00:00Z", DAILY, None, False, None, id="off-grid-partition-no-period"),
        pytest.param("2025-07-01T05:00:00Z", DAILY, POINT, False, span("2025-07-01T05:00:00Z", "2025-07-01T05:00:00Z"),
                     id="off-grid-point"),
        pytest.param("2025-07-01T00:00:00Z", None, None, False, None, id="no-grid-nothing-sent"),
        pytest.param("2025-07-01T00:00:00Z", None, POINT, False, span("2025-07-01T00:00:00Z", "2025-07-01T00:00:00Z"),
                     id="no-grid-point"),
        pytest.param("eu", DAILY, PERIOD, False, None, id="segment-only-no-logical-date"),
        pytest.param("2025-07-01T00:00:00Z~eu", DAILY, PERIOD, False, None, id="time-and-segment-no-logical-date"),
        pytest.param("2025-07-01T00:00:00Z", DAILY, None, True, None, id="airflow-partitioned-own-timetable"),
        pytest.param("2025-07-01T00:00:00Z", DAILY, PERIOD, True, span("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"),
                     id="airflow-partitioned-declared-period"),
    ],
)  # fmt: skip
def test_the_interval_a_partition_is_triggered_with(
    partition: str, grid: Grid | None, declared: IntervalKind | None, partitioned: bool, expected: DataInterval | None
) -> None:
    """Each row of docs/dependencies.md's table: the interval sent for a partition, or None (send none)."""
    assert data_interval(partition, grid, declared, partitioned) == expected


def graph_of(dag: Mapping[str, object]) -> dict[str, object]:
    return {"version": 1, "dags": {"up": {}, "down": {"upstreams": "up", **dag}}}


def problems(doc: dict[str, object]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(json.dumps(doc))
    return info.value.problems


DOWN = NodeId("default", "down")


def test_the_field_is_read_and_the_graph_answers_the_rule() -> None:
    """``"data_interval": "point"`` reaches the DagSpec and the graph's answer; unwritten, a grid gives the period."""
    cron = {"partitions": {"cron": "@daily"}}
    point = parse_spec(json.dumps(graph_of({**cron, "data_interval": "point"})))
    plain = parse_spec(json.dumps(graph_of(cron)))
    assert point.dags[DOWN].data_interval is IntervalKind.POINT and plain.dags[DOWN].data_interval is None
    day = "2025-07-01T00:00:00Z"
    assert point.data_interval(DOWN, day) == span(day, day)
    assert plain.data_interval(DOWN, day) == span(day, "2025-07-02T00:00:00Z")


def test_the_field_changes_the_graph_but_not_when_a_dag_is_due() -> None:
    """Writing, changing or removing ``data_interval`` keeps every shape (nothing is re-dated) and changes the graph
    and its digest (so the watcher adopts it and ``coordinator diff`` names it)."""
    cron = {"partitions": {"cron": "0 0 * * *"}}
    graphs = [parse_spec(json.dumps(graph_of({**cron, **extra}))) for extra in
              ({}, {"data_interval": "period"}, {"data_interval": "point"})]  # fmt: skip
    assert len({g.digest for g in graphs}) == 3 and len({g.shapes[DOWN] for g in graphs}) == 1
    assert graphs[0] != graphs[2] and graphs[1] != graphs[2]


@pytest.mark.parametrize(
    ("dag", "expected"),
    [
        pytest.param({"partitions": {"cron": "@daily"}, "data_interval": "interval"},
                     '$.dags.down.data_interval: expected "period" or "point", got "interval" — write "period"',
                     id="unknown-kind"),
        pytest.param({"partitions": {"cron": "@daily"}, "data_interval": 1},
                     '$.dags.down.data_interval: expected "period" or "point", got 1', id="not-a-string"),
        pytest.param({"data_interval": "period"},
                     '$.dags.down.data_interval: "data_interval": "period" without a grid — a period is a grid\'s '
                     '[P, next P): add "partitions": {"cron": "<the DAG\'s schedule>"} or write "point"',
                     id="period-without-grid"),
    ],
)  # fmt: skip
def test_a_wrong_data_interval_is_refused_with_where_and_the_fix(dag: dict[str, object], expected: str) -> None:
    """Each mistake names the field's JSON path, what is wrong and what to write instead."""
    found = problems(graph_of(dag))
    assert len(found) == 1 and expected in found[0], found


def test_a_broken_grid_is_reported_once_not_again_as_a_period_without_a_grid() -> None:
    """A period on a DAG whose partitions are wrong reports the partitions only (the grid is not known)."""
    found = problems(graph_of({"partitions": {"cron": "0 0 * *"}, "data_interval": "period"}))
    assert len(found) == 1 and "partitions.cron" in found[0], found


def test_point_needs_no_grid() -> None:
    """A DAG without a grid may still ask for the point explicitly (sent as [P, P])."""
    graph = parse_spec(json.dumps(graph_of({"data_interval": "point"})))
    assert graph.data_interval(DOWN, "2025-07-01T00:00:00Z") == span("2025-07-01T00:00:00Z", "2025-07-01T00:00:00Z")


def test_a_running_watcher_puts_a_changed_data_interval_in_force_without_a_replan(tmp_path: Path) -> None:
    """The graph source reloads a file whose only change is ``data_interval`` (refresh answers True: a new digest
    to adopt, with every shape unchanged) and the graph in force answers the new interval for the next trigger."""
    deps = tmp_path / "dependencies.json"
    cron = {"partitions": {"cron": "0 0 * * *"}}
    deps.write_text(json.dumps(graph_of(cron)), encoding="utf-8")
    source = GraphSource(deps)
    day = "2025-07-01T00:00:00Z"
    assert source.graph.data_interval(DOWN, day) == span(day, "2025-07-02T00:00:00Z")
    deps.write_text(json.dumps(graph_of({**cron, "data_interval": "point"})), encoding="utf-8")
    os.utime(deps, ns=(time.time_ns() + 10**9,) * 2)  # a new stamp even within the file system's time resolution
    shapes = source.graph.shapes
    assert source.refresh() is True
    assert source.graph.shapes == shapes
    assert source.graph.data_interval(DOWN, day) == span(day, day)
