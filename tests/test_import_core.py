"""The pure half of import-dags: schedules -> grids, shift text, the fitting and the translation of facts, merging.

No Airflow here: facts are built by hand the way the adapter builds them, and sample dates come from a date function
written in the test. The end-to-end proof against Airflow's own sensors is tests/test_import_dags.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.grid import Grid
from coordinator.core.importer.facts import (
    AssetMapping,
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
from tests.support.examples import examples


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


def test_only_the_edge_that_maps_dates_differently_is_rejected_not_the_one_it_is_compared_with() -> None:
    """Three task sensors at -4h and one at -3h on the same upstream DAG: the -3h edge is rejected ("maps dates
    differently from the one at ...[0]") and the three -4h edges all stay (the first was rejected with it before:
    its path appears in the other edge's problem text)."""
    facts = [dag("u", "0 * * * *"), dag("d", "0 5 * * *")]
    links = [
        replace(sensor("d", "u", DAILY_5, lambda p: [p - timedelta(hours=4)], tasks=(task,)), task_id=f"wait_{task}")
        for task in ("a", "b", "c")
    ]
    links.append(replace(sensor("d", "u", DAILY_5, lambda p: [p - timedelta(hours=3)], tasks=("z",)), task_id="z"))
    result = translate(facts, links)
    kept = result.document["dags"]["d"]["upstreams"]
    assert [(e["task"], e["shift"]) for e in kept] == [("a", "-4h"), ("b", "-4h"), ("c", "-4h")]
    rejected = [f for f in result.of(FindingKind.INEXPRESSIBLE) if "rejected" in f.message]
    assert [f.subject for f in rejected] == ["d.z"] and "maps dates differently" in rejected[0].message


def test_a_zone_is_named_once_in_a_never_satisfied_finding() -> None:
    """An upstream on Asia/Shanghai's grid: the finding says "runs at 0 1 * * * Asia/Shanghai", the zone once."""
    facts = [dag("u", "0 1 * * *", "Asia/Shanghai"), dag("d", "0 5 * * *")]
    result = translate(facts, [sensor("d", "u", DAILY_5, lambda p: [p - timedelta(hours=3)])])
    (bug,) = result.of(FindingKind.BUG)
    assert "u runs at 0 1 * * * Asia/Shanghai" in bug.message and bug.message.count("Asia/Shanghai") == 1


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


def asset_dag(dag_id: str, consumes: str | None, produces: str | None, cron: str | None = None) -> DagFact:
    """A DAG scheduled on one asset (or a cron, or nothing) whose task ``publish`` produces another."""
    if consumes is not None:
        schedule = ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable", assets=(consumes,))
    else:
        schedule = dag(dag_id, cron).schedule
    outlets = (("publish", produces),) if produces else ()
    return DagFact(dag_id, Origin(f"{dag_id}.py", 1), schedule, outlets=outlets, task_ids=("publish",))


CHAIN_ORDERS = {
    "a-b-c": ("a_src", "b_mid", "c_end"),
    "reversed": ("z_src", "y_mid", "x_end"),
    "middle-first": ("m_src", "a_mid", "z_end"),
}


@pytest.mark.parametrize("names", CHAIN_ORDERS.values(), ids=CHAIN_ORDERS.keys())
def test_grids_are_inherited_through_a_chain_of_asset_schedules_in_any_order(names: tuple[str, str, str]) -> None:
    """A (cron) -> B (asset on A) -> C (asset on B): C gets A's grid whatever the DAG ids' order."""
    src, mid, end = names
    facts = [
        asset_dag(src, None, "s3://a", "0 4 * * *"),
        asset_dag(mid, "s3://a", "s3://b"),
        asset_dag(end, "s3://b", None),
    ]
    dags = translate(facts, []).document["dags"]
    for name in (mid, end):
        assert dags[name]["partitions"] == {"cron": "0 4 * * *", "timezone": "UTC"}, name
    assert dags[end]["upstreams"] == [{"dag": mid, "task": "publish"}]


def test_a_cycle_of_asset_schedules_gets_no_grid_and_ends() -> None:
    """Two ungridded DAGs consuming each other's assets: the inheritance terminates and neither gets a grid."""
    facts = [asset_dag("p", "s3://q", "s3://p"), asset_dag("q", "s3://p", "s3://q")]
    dags = translate(facts, []).document["dags"]
    assert "partitions" not in dags["p"] and "partitions" not in dags["q"]


def trigger(dag_id: str, target: str, upstream: tuple[str, ...] = (), template: str | None = None) -> LinkFact:
    return LinkFact(
        LinkKind.TRIGGER, dag_id, "trigger", Origin(f"{dag_id}.py", 9), target, logical_date=template,
        upstream_tasks=upstream,
    )  # fmt: skip


@pytest.mark.parametrize(("parent", "child"), [("example_external_task", "child_dag"), ("b_parent", "a_child")])
def test_an_operator_whose_edge_is_rejected_gets_one_finding_not_also_remove_this_operator(
    parent: str, child: str
) -> None:
    """Airflow's example_external_task triggers child_dag and senses it: the cycle's rejected operator is told to stay,
    never also to be removed."""
    facts = [dag(parent), dag(child)]
    links = [
        LinkFact(LinkKind.SENSOR, parent, "wait", Origin(f"{parent}.py", 7), child, tasks=("child_task",),
                 samples=tuple(DateSample(p, (p,)) for p in sample_partitions(None))),
        trigger(parent, child, ("start",), "{{ logical_date }}"),
    ]  # fmt: skip
    result = translate(facts, links)
    rejected = {f.subject: f for f in result.of(FindingKind.INEXPRESSIBLE) if "rejected" in f.message}
    assert rejected and all(f.message.endswith("keep this operator") for f in rejected.values())
    notes = {f.subject for f in result.of(FindingKind.NOTE)}
    assert not notes & set(rejected), [str(f) for f in result.findings]


@pytest.mark.parametrize("kind", [LinkKind.MARKER, LinkKind.TRIGGER], ids=["marker", "trigger"])
def test_a_marker_or_trigger_whose_target_did_not_load_claims_no_edge(kind: LinkKind) -> None:
    """A marker (or trigger) in u naming d, where d is not in the file (its file failed): no note says "written as an
    edge" or "triggered by the coordinator"; one note says no edge d <- u was written, and the file has none."""
    facts = [dag("u", "0 1 * * *")]
    link = LinkFact(kind, "u", "mark", Origin("u.py", 9), "d", tasks=("t",), trigger_rule="all_success")
    result = translate(facts, [link])
    assert "upstreams" not in result.document["dags"]["u"] and "d" not in result.document["dags"]
    notes = [f.message for f in result.of(FindingKind.NOTE)]
    assert not [n for n in notes if "written as" in n or "now also waits" in n or "is triggered by" in n], notes
    assert [n for n in notes if n.startswith("d is not in this folder: no edge d <- u written")], notes


def test_a_relay_dags_markers_become_no_edges_unless_asked_and_the_note_says_why() -> None:
    """A relay DAG whose three tasks are all markers (clearing a, b, c) writes no edge a/b/c <- relay by default, one
    note says why and how many, and the result lists it; with relay_edges the three edges are written. A DAG with a
    marker beside real work is no relay: its marker is an edge as before."""
    facts = [
        dag("relay"),
        dag("a", "0 1 * * *"),
        dag("b", "0 1 * * *"),
        dag("c", "0 1 * * *"),
        dag("work", "0 1 * * *"),
    ]
    facts[0] = replace(facts[0], task_ids=("clear_a", "clear_b", "clear_c"))
    facts[4] = replace(facts[4], task_ids=("load", "clear_c"))
    markers = [
        LinkFact(LinkKind.MARKER, "relay", f"clear_{d}", Origin("relay.py", 5), d, tasks=("t",)) for d in "abc"
    ] + [LinkFact(LinkKind.MARKER, "work", "clear_c", Origin("work.py", 9), "c", tasks=("t",))]
    default = translate(facts, markers)
    ups = {
        d: [u if isinstance(u, str) else u["dag"] for u in e.get("upstreams", [])]
        for d, e in default.document["dags"].items()
    }
    assert ups["a"] == [] and ups["b"] == [] and ups["c"] == ["work"]
    assert default.relays == (("relay", 3),)
    (note,) = [f for f in default.of(FindingKind.NOTE) if f.subject == "relay"]
    assert "relay DAG" in note.message and "--relay-edges" in note.message
    asked = translate(facts, markers, relay_edges=True)
    ups = {
        d: [u if isinstance(u, str) else u["dag"] for u in e.get("upstreams", [])]
        for d, e in asked.document["dags"].items()
    }
    assert ups["a"] == ["relay"] and ups["b"] == ["relay"] and sorted(ups["c"]) == ["relay", "work"]
    assert asked.relays == ()


def test_subdags_are_skipped_once_with_their_parent_and_their_sensors_are_the_parents() -> None:
    """Airflow 2 SubDAGs parent.a and parent.b are no entries; one note on parent names both; a sensor inside
    parent.a becomes parent's edge."""
    parent = dag("parent", "0 5 * * *")
    children = [replace(dag(f"parent.{c}", "0 5 * * *"), subdag_of="parent") for c in ("a", "b")]
    link = sensor("parent.a", "u", DAILY_5, lambda p: [p - timedelta(hours=4)])
    result = translate([dag("u", "0 1 * * *"), parent, *children], [link])
    assert sorted(result.document["dags"]) == ["parent", "u"] and result.dag_count == 2
    assert result.document["dags"]["parent"]["upstreams"] == [{"dag": "u", "shift": "-4h"}]
    (note,) = [f for f in result.of(FindingKind.NOTE) if "SubDAG" in f.message]
    assert note.subject == "parent" and "parent.a, parent.b skipped" in note.message


def test_a_rendered_trigger_template_is_fitted_and_one_that_merges_runs_is_reported() -> None:
    """{{ macros.ds_add(ds, -1) }} on a 01:00 DAG is a +1d1h shift for the untriggered target; hourly runs rendered to
    one day cannot be an edge and are reported, never written."""
    yesterday = tuple(
        DateSample(p.replace(hour=0) - timedelta(days=1), (p,)) for p in sample_partitions(DAILY_1)
    )  # fmt: skip
    hourly = Grid("0 * * * *")
    by_day: dict[datetime, list[datetime]] = {}
    for p in sample_partitions(hourly):
        by_day.setdefault(p.replace(hour=0), []).append(p)
    merged = tuple(DateSample(day, tuple(runs)) for day, runs in sorted(by_day.items()))
    links = [
        replace(trigger("u", "d", ("done",), "{{ macros.ds_add(ds, -1) }}"), samples=yesterday),
        replace(trigger("h", "e", (), "{{ ds }}"), samples=merged),
    ]
    result = translate([dag("u", "0 1 * * *"), dag("d"), dag("h", "0 * * * *"), dag("e")], links)
    assert result.document["dags"]["d"]["upstreams"] == [{"dag": "u", "shift": "+1d1h", "task": "done"}]
    assert "upstreams" not in result.document["dags"]["e"]
    (problem,) = result.of(FindingKind.INEXPRESSIBLE)
    assert problem.subject == "h.trigger" and "the same date of e" in problem.message


def partitioned(dag_id: str, *mappings: AssetMapping) -> DagFact:
    schedule = ScheduleFact(
        ScheduleKind.ASSETS, "PartitionedAssetTimetable", assets=tuple(m.uri for m in mappings), mappings=mappings
    )
    return DagFact(dag_id, Origin(f"{dag_id}.py", 3), schedule)


def test_a_rollup_consumer_gets_its_mappers_days_and_an_edge_per_window_and_a_merging_mapper_is_reported() -> None:
    """A day's rollup of an hourly producer: grid 0 0 * * * and a plain edge (the day's 24 hours); a mapping that is
    no edge is reported with its mapper's words and writes nothing."""
    hourly = Grid("0 * * * *")
    days = sorted({p.replace(hour=0) for p in sample_partitions(hourly)})
    window = tuple(DateSample(d, tuple(d + timedelta(hours=h) for h in range(24))) for d in days)
    rollup = AssetMapping("s3://h", "RollupMapper(StartOfDayMapper, DayWindow)", window, "StartOfDayMapper")
    merging = AssetMapping("s3://h", "StartOfDayMapper", problem="StartOfDayMapper gives ... one consumer key")
    producer = replace(dag("hourly", "0 * * * *"), outlets=(("publish", "s3://h"),))
    result = translate([producer, partitioned("rolled", rollup), partitioned("merged", merging)], [])
    dags = result.document["dags"]
    assert dags["rolled"]["partitions"] == {"cron": "0 0 * * *", "timezone": "UTC"}
    assert dags["rolled"]["upstreams"] == [{"dag": "hourly", "task": "publish"}]
    assert "upstreams" not in dags["merged"] and "partitions" not in dags["merged"]
    (problem,) = result.of(FindingKind.INEXPRESSIBLE)
    assert problem.subject == "merged" and "StartOfDayMapper gives" in problem.message
    assert not [f for f in result.of(FindingKind.NOTE) if f.subject == "merged"]


@settings(max_examples=examples(60), deadline=None)
@given(
    names=st.lists(st.text("abcdefgh", min_size=3, max_size=6), min_size=5, max_size=5, unique=True),
    loop=st.booleans(),
)
def test_a_chain_of_asset_schedules_inherits_the_cron_at_every_link_whatever_the_names(
    names: list[str], loop: bool
) -> None:
    """A cron DAG feeding a chain of four asset schedules (ids drawn at random, so in any order): every link gets the
    cron; with an extra pair of ungridded DAGs consuming each other, the import still ends and they get no grid."""
    src, *chain = names
    facts = [asset_dag(src, None, f"s3://{src}", "15 2 * * *")]
    facts += [asset_dag(name, f"s3://{prev}", f"s3://{name}") for prev, name in zip([src, *chain], chain, strict=False)]
    if loop:
        facts += [asset_dag("zz_p", "s3://zz_q", "s3://zz_p"), asset_dag("zz_q", "s3://zz_p", "s3://zz_q")]
    dags = translate(facts, []).document["dags"]
    for name in chain:
        assert dags[name]["partitions"] == {"cron": "15 2 * * *", "timezone": "UTC"}, name
    assert not loop or "partitions" not in dags["zz_p"]


def test_an_asset_consumer_without_a_producer_here_is_offered_a_route() -> None:
    """A DAG scheduled on an asset no DAG of the folder produces keeps schedule=[Asset]: the finding proposes an
    "assets" route from the producing instance to this one (semantics rule 16)."""
    consumer = DagFact(
        "report",
        Origin("report.py", 3),
        ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable", assets=("s3://x",)),
    )
    result = translate([consumer], [], instance="team_b")
    (finding,) = [f for f in result.of(FindingKind.INEXPRESSIBLE) if "s3://x" in f.message]
    assert '"assets": [{"asset": "s3://x", "from": "<producing instance>", "to": ["team_b"]}]' in finding.message


def runtime(dag_id: str, uri: str) -> DagFact:
    """A ``PartitionedAtRuntime`` producer of ``uri``: no schedule, keys named by its tasks."""
    schedule = ScheduleFact(ScheduleKind.NONE, "PartitionedAtRuntime", runtime_keys=True)
    return DagFact(dag_id, Origin(f"{dag_id}.py", 1), schedule, outlets=(("publish", uri),))


REGIONS = ("apac", "eu", "us")
ALLOWED = AssetMapping("s3://r", "AllowedKeyMapper", segments=REGIONS, upstream_segments=REGIONS)
ROLLUP = AssetMapping(
    "s3://r", "RollupMapper(FixedKeyMapper, SegmentWindow)", segments=("all",), upstream_segments=REGIONS,
    segment_rule="all", at_least=2,
)  # fmt: skip


def test_segment_mappings_become_segments_on_both_sides_and_segment_edges() -> None:
    """A runtime producer gets the segments its consumers read; an allowed-keys consumer the same segments and a
    plain edge, a counted segment rollup its one key and an "all" edge with at_least."""
    facts = [runtime("load", "s3://r"), partitioned("clean", ALLOWED), partitioned("rollup", ROLLUP)]
    dags = translate(facts, []).document["dags"]
    assert dags["load"]["partitions"] == {"segments": list(REGIONS)}
    assert dags["clean"] == {
        "description": "imported from clean.py:3",
        "partitions": {"segments": list(REGIONS)},
        "upstreams": [{"dag": "load", "task": "publish"}],
    }
    assert dags["rollup"]["partitions"] == {"segments": ["all"]}
    assert dags["rollup"]["upstreams"] == [{"dag": "load", "task": "publish", "segments": "all", "at_least": 2}]


def test_a_runtime_producer_an_identity_consumer_reads_keeps_no_segments_and_segment_edges_to_it_are_reported() -> None:
    """An identity consumer takes every key a runtime producer emits, which no declared list says: the producer gets
    no segments, the identity edge passes keys through, and the segment rollup over it is reported, not written."""
    identity = AssetMapping("s3://r", "IdentityMapper")
    facts = [runtime("load", "s3://r"), partitioned("copy", identity), partitioned("rollup", ROLLUP)]
    result = translate(facts, [])
    dags = result.document["dags"]
    assert "partitions" not in dags["load"]
    assert dags["copy"]["upstreams"] == [{"dag": "load", "task": "publish"}]
    assert "upstreams" not in dags["rollup"]
    (problem,) = [f for f in result.of(FindingKind.INEXPRESSIBLE) if f.subject == "rollup"]
    assert "which has no segments" in problem.message


def test_key_formats_are_written_and_an_identity_consumer_takes_its_producers() -> None:
    """A CronPartitionTimetable's key_format is written with its grid; an identity consumer on its grid takes it; a
    DAG without a grid writes none."""
    producer = replace(dag("hourly", "0 * * * *"), outlets=(("publish", "s3://h"),))
    producer = replace(producer, schedule=replace(producer.schedule, key_format="%Y-%m-%dT%H"))
    facts = [producer, partitioned("copy", AssetMapping("s3://h", "IdentityMapper"))]
    dags = translate(facts, []).document["dags"]
    hourly = {"cron": "0 * * * *", "timezone": "UTC", "key_format": "%Y-%m-%dT%H"}
    assert (dags["hourly"]["partitions"], dags["copy"]["partitions"]) == (hourly, hourly)
