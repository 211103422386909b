"""The pure half of import-dags: schedules -> grids, shift text, the fitting and the translation of facts, merging.

No Airflow here: facts are built by hand the way the adapter builds them, and sample dates come from a date function
written in the test. The end-to-end proof against Airflow's own sensors is tests/test_import_dags.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.grid import Grid
from coordinator.core.importer.facts import (
    DagFact,
    DateSample,
    FindingKind,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleFact,
    ScheduleKind,
)
from coordinator.core.importer.fit import Edge, FitProblem, Fitter, format_shift
from coordinator.core.importer.merge import merge
from coordinator.core.importer.schedule import choose_grid, delta_cron, sample_partitions, zone_name
from coordinator.core.importer.translate import translate


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "start", "cron"),
    [
        (timedelta(minutes=15), at(2024, 1, 1, 0, 5), "5-59/15 * * * *"),
        (timedelta(hours=6), at(2024, 1, 1, 3, 0), "0 3-23/6 * * *"),
        (timedelta(days=1), at(2024, 1, 1, 4, 30), "30 4 * * *"),
        (timedelta(weeks=1), at(2024, 1, 3, 0, 0), "0 0 * * 3"),
        (timedelta(minutes=90), at(2024, 1, 1), None),
        (timedelta(days=2), at(2024, 1, 1), None),
    ],
    ids=["15-minutes", "6-hours", "1-day", "1-week", "90-minutes", "2-days"],
)
def test_a_timedelta_schedule_becomes_a_cron_only_when_one_has_exactly_its_points(
    delta: timedelta, start: datetime, cron: str | None
) -> None:
    """delta_cron names the UTC cron whose points are start + k * delta, or None when no cron has them."""
    assert delta_cron(delta, start) == cron
    if cron is not None:
        grid, point = Grid(cron), start
        for _ in range(50):
            assert grid.next(point) == point + delta
            point += delta


@pytest.mark.parametrize(
    ("zone", "name"),
    [("UTC", "UTC"), ("+02:00", "Etc/GMT-2"), ("-05:00", "Etc/GMT+5"), ("Europe/Berlin", "Europe/Berlin")],
    ids=["utc", "plus-2", "minus-5", "iana"],
)
def test_zones_become_iana_names(zone: str, name: str) -> None:
    """A fixed whole-hour offset maps to the POSIX-signed Etc zone; IANA names pass through."""
    assert zone_name(zone) == (name, None)


def test_a_half_hour_offset_is_reported() -> None:
    """+05:30 has no IANA Etc zone: the reason is given instead of a wrong grid."""
    assert zone_name("+05:30")[0] is None


def test_a_preset_is_written_as_the_dag_wrote_it() -> None:
    """@daily stays @daily in the file, read as 0 0 * * * for the grid."""
    choice = choose_grid(ScheduleFact(ScheduleKind.CRON, "CronTriggerTimetable", "@daily", "0 0 * * *", "UTC"))
    assert (choice.written_cron, choice.grid) == ("@daily", Grid("0 0 * * *"))


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(hours=-4), "-4h"), (timedelta(days=6), "+6d"), (timedelta(days=-1, hours=-9), "-1d9h"),
     (timedelta(minutes=-15), "-15m")],
    ids=["minus-4h", "plus-6d", "minus-1d9h", "minus-15m"],
)  # fmt: skip
def test_shifts_are_written_compactly(delta: timedelta, text: str) -> None:
    """A signed duration in the contract's compact form."""
    assert format_shift(delta) == text


def samples(grid: Grid, fn: Callable[[datetime], list[datetime]]) -> tuple[DateSample, ...]:
    return tuple(DateSample(p, tuple(fn(p))) for p in sample_partitions(grid))


DAILY_5 = Grid("0 5 * * *")
DAILY_1 = Grid("0 1 * * *")


def test_the_fit_is_the_simplest_edge_that_reproduces_every_sample() -> None:
    """A constant distance is a shift; the last day of a month is a member; the previous day's hours an offset."""
    assert Fitter(DAILY_5, DAILY_1, False).fit(samples(DAILY_5, lambda p: [p - timedelta(hours=4)])) == Edge(
        "u", shift="-4h"
    )
    monthly, daily = Grid("0 0 1 * *"), Grid("0 0 * * *")

    def month_end(p: datetime) -> list[datetime]:
        return [(p.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)]

    assert Fitter(monthly, daily, False).fit(samples(monthly, month_end)) == Edge("u", member="last")
    hourly = Grid("0 * * * *")
    fitted = Fitter(daily, hourly, False).fit(samples(daily, lambda p: [p - timedelta(hours=h) for h in range(1, 25)]))
    assert fitted == Edge("u", offset=-1)


def test_no_fit_says_where_the_plain_edge_differs() -> None:
    """Dates no candidate reproduces (every other day) give a FitProblem naming a sample."""
    daily = Grid("0 0 * * *")
    fitted = Fitter(daily, daily, False).fit(samples(daily, lambda p: [p - timedelta(days=p.day % 2)]))
    assert isinstance(fitted, FitProblem)


def dag(dag_id: str, cron: str | None = None, zone: str = "UTC") -> DagFact:
    kind = ScheduleKind.CRON if cron else ScheduleKind.NONE
    return DagFact(
        dag_id, Origin(f"{dag_id}.py", 1), ScheduleFact(kind, "CronTriggerTimetable", cron or "", cron, zone)
    )


def sensor(dag_id: str, up: str, grid: Grid, fn: Callable[[datetime], list[datetime]], **kw: object) -> LinkFact:
    return LinkFact(LinkKind.SENSOR, dag_id, "wait", Origin(f"{dag_id}.py", 7), up, samples=samples(grid, fn), **kw)  # type: ignore[arg-type]


def test_translation_writes_tasks_conditions_and_reports_what_it_cannot() -> None:
    """Tasks become one edge each, [success, failed] is finished, other states and off-grid sensors are reported."""
    facts = [dag("u", "0 1 * * *"), dag("d", "0 5 * * *"), dag("e", "0 5 * * *"), dag("f", "0 5 * * *")]
    minus4 = lambda p: [p - timedelta(hours=4)]  # noqa: E731
    links = [
        sensor("d", "u", DAILY_5, minus4, tasks=("a", "b"), allowed_states=("success", "failed")),
        sensor("e", "u", DAILY_5, minus4, allowed_states=("success", "skipped")),
        sensor("f", "u", DAILY_5, lambda p: [p - timedelta(hours=3)]),
    ]
    result = translate(facts, links)
    assert result.document["dags"]["d"]["upstreams"] == [
        {"dag": "u", "shift": "-4h", "task": "a", "condition": "finished"},
        {"dag": "u", "shift": "-4h", "task": "b", "condition": "finished"},
    ]
    assert "upstreams" not in result.document["dags"]["e"]
    assert "upstreams" not in result.document["dags"]["f"]
    (bug,) = result.of(FindingKind.BUG)
    assert str(bug).startswith("f.py:7: f.wait: never satisfied")
    (inexpressible,) = result.of(FindingKind.INEXPRESSIBLE)
    assert str(inexpressible).startswith("e.py:7: e.wait: allowed_states ['success', 'skipped']")


def test_an_edge_the_loader_rejects_is_dropped_and_reported() -> None:
    """Two sensors that wait for each other's same date are a cycle: one edge is removed, with the loader's words."""
    facts = [dag("a", "0 1 * * *"), dag("b", "0 1 * * *")]
    same = lambda p: [p]  # noqa: E731
    result = translate(facts, [sensor("a", "b", DAILY_1, same), sensor("b", "a", DAILY_1, same)])
    rejected = [f for f in result.of(FindingKind.INEXPRESSIBLE) if "rejected" in f.message]
    assert rejected and "cycle" in rejected[0].message
    assert result.edge_count == 1


def test_a_mutual_pair_of_many_parallel_task_sensors_is_broken_as_one_unit() -> None:
    """Two DAGs with 23 task sensors each way (Mozilla's case): the pair's edges go in one round, nothing is raised."""
    facts = [dag("a", "0 1 * * *"), dag("b", "0 1 * * *"), dag("c", "0 1 * * *")]
    same = lambda p: [p]  # noqa: E731
    tasks = tuple(f"t{i}" for i in range(23))
    links = [
        sensor("a", "b", DAILY_1, same, tasks=tasks),
        sensor("b", "a", DAILY_1, same, tasks=tasks),
        sensor("c", "a", DAILY_1, same, tasks=("t0",)),
    ]
    result = translate(facts, links)
    rejected = [f for f in result.of(FindingKind.INEXPRESSIBLE) if "rejected" in f.message]
    assert len(rejected) == 23 and all("cycle" in f.message for f in rejected)
    assert len({f.subject for f in rejected}) == 1  # one direction of the pair, whole
    kept = {d: len(e.get("upstreams", [])) for d, e in result.document["dags"].items()}
    assert sorted(kept.values()) == [0, 1, 23]  # the other direction whole, and c's edge


def test_merge_keeps_other_dags_and_human_descriptions() -> None:
    """Imported DAGs are matched by meaning (instance field or qualified key); the rest of the file is kept."""
    existing = {"b": "a", "version_x": ["b"]}
    merged = merge(existing, {"version": 1, "dags": {"b": {"description": "imported", "upstreams": ["z"]}}})
    assert merged["dags"]["b"] == {"upstreams": ["z"], "description": "imported"}
    assert merged["dags"]["version_x"] == {"upstreams": ["b"]}
    existing2 = {"version": 1, "dags": {"etl": {"instance": "team_a", "description": "by hand", "upstreams": ["x"]}}}
    imported = {"version": 1, "instances": {"team_a": {}}, "dags": {"team_a/etl": {"description": "imported"}}}
    merged2 = merge(existing2, imported)
    assert merged2["dags"] == {"etl": {"instance": "team_a", "description": "by hand"}}
    assert merged2["instances"] == {"team_a": {}}


def test_an_asset_consumer_without_a_producer_here_is_offered_a_route() -> None:
    """A DAG scheduled on an asset no DAG of the folder produces keeps schedule=[Asset]: the finding proposes an
    "assets" route from the producing instance to this one (semantics rule 14)."""
    consumer = DagFact(
        "report",
        Origin("report.py", 3),
        ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable", assets=("s3://x",)),
    )
    result = translate([consumer], [], instance="team_b")
    (finding,) = [f for f in result.of(FindingKind.INEXPRESSIBLE) if "s3://x" in f.message]
    assert '"assets": [{"asset": "s3://x", "from": "<producing instance>", "to": ["team_b"]}]' in finding.message
