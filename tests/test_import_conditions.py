"""``import-dags`` on asset conditions (issue 50): ``|`` becomes an ``any`` group, ``&`` required edges, a
``MinimumCount`` rollup over several producers an ``at_least`` group, and what does not map exactly is reported.

The folder ``tests/import_dags/estate_conditions/`` is loaded by the real Airflow 3.3 in a child process (as
``tests/test_import_dags.py`` does); the pure half checks, over generated conditions, that whatever is written holds for
exactly the sets of updated assets Airflow's condition holds for.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.conditions import groups_met
from coordinator.core.graph import Graph
from coordinator.core.importer.conditions import one_level
from coordinator.core.importer.facts import (
    AssetCondition,
    ConditionOp,
    DagFact,
    FindingKind,
    Origin,
    ScheduleFact,
    ScheduleKind,
)
from coordinator.core.importer.translate import translate
from coordinator.core.inputs import required_inputs
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from tests.support.examples import examples
from tests.test_import_dags import HERE, Imported, airflow_env, imported
from tests.test_spec_cli import run

#: Every test here loads DAG folders with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

FOLDER = HERE / "estate_conditions"


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    tmp = tmp_path_factory.mktemp("estate_conditions")
    yield imported(Path(sys.executable), FOLDER, tmp, "--report", str(tmp / "report.json"))


def upstreams(estate: Imported, dag: str) -> object:
    return json.loads(estate.path.read_text(encoding="utf-8"))["dags"][dag].get("upstreams")


EXPECTED = {
    "or": (
        "report_any",
        [{"any": [{"dag": "feed_primary", "task": "land"}, {"dag": "feed_fallback", "task": "land"}]}],
    ),
    "and": ("report_all", [{"dag": "feed_primary", "task": "land"}, {"dag": "calendar", "task": "publish"}]),
    "required-beside-any": (
        "kpis",
        [
            {"dag": "calendar", "task": "publish"},
            {"any": [{"dag": "feed_primary", "task": "land"}, {"dag": "feed_fallback", "task": "land"}]},
        ],
    ),
    "minimum-count": (
        "global_rollup",
        [
            {
                "at_least": 3,
                "of": [
                    {"dag": "load_apac", "shift": "+12h", "task": "publish"},
                    {"dag": "load_eu", "task": "publish"},
                    {"dag": "load_latam", "shift": "+18h", "task": "publish"},
                    {"dag": "load_us", "shift": "+6h", "task": "publish"},
                ],
            }
        ],
    ),
    "deeper-than-one-level": ("deep", None),
    "or-with-an-unknown-producer": ("half_known", None),
    "minimum-count-of-one-producer": ("most_hours", [{"dag": "hourly_load", "task": "publish", "at_least": 20}]),
}


@pytest.mark.parametrize(("dag", "written"), EXPECTED.values(), ids=EXPECTED.keys())
def test_asset_conditions_become_these_upstreams(estate: Imported, dag: str, written: object) -> None:
    """Each consumer's upstreams in the written file: groups where Airflow's condition maps exactly, nothing where it
    does not; the file loads with the spec loader (the fixture loads it)."""
    assert upstreams(estate, dag) == written
    assert parse_spec(estate.path.read_text(encoding="utf-8")).dags  # the same loader as validate


FINDINGS = {
    "or": "conditions.py:42: report_any: schedule (s3://feeds/primary | s3://feeds/fallback) became any of "
    "[feed_primary.land, feed_fallback.land]",
    "required-beside-any": "kpis: schedule s3://ref/calendar & (s3://feeds/primary | s3://feeds/fallback) became "
    "s3://ref/calendar: the edge calendar.publish; (s3://feeds/primary | s3://feeds/fallback): any of "
    "[feed_primary.land, feed_fallback.land]",
    "minimum-count": "global_rollup: schedule s3://sales/regional became 3 of [load_apac.publish, load_eu.publish, "
    "load_latam.publish, load_us.publish] (RollupMapper(StartOfDayMapper, DayWindow) with MinimumCount(3)",
    "deeper": "deep: schedule (s3://feeds/primary & s3://ref/calendar) | s3://sales/orders: an AND inside an OR ((s3:"
    "//feeds/primary & s3://ref/calendar) | s3://sales/orders): groups nest one level (an any or at_least group lists "
    'edges beside the required ones): "(A and B) or C" cannot be written; keep the asset schedule',
    "unknown-producer": "half_known: (s3://feeds/primary | s3://other/deployment) not converted: asset "
    "'s3://other/deployment': no DAG in this folder produces it",
}


@pytest.mark.parametrize("text", FINDINGS.values(), ids=FINDINGS.keys())
def test_the_report_says_what_became_a_condition_and_why_the_rest_did_not(estate: Imported, text: str) -> None:
    """The report's notes say what each condition became; what is not converted is under "cannot express" with why."""
    report = json.loads((estate.path.parent / "report.json").read_text(encoding="utf-8"))
    lines = [f"{f['file']}:{f['line']}: {f['subject']}: {f['message']}" for f in report["findings"]]
    assert any(text in line for line in lines), text


def test_inputs_of_the_converted_rollup_lists_what_airflow_waits_for(estate: Imported) -> None:
    """`coordinator inputs global_rollup` for a day lists 3 of the 4 regional runs of that day: Airflow's
    RollupMapper(StartOfDayMapper, DayWindow) expects the day's hourly keys, the four producers give one key each (at
    00, 06, 12 and 18), and MinimumCount(3) fires on three of them."""
    result = run("inputs", "global_rollup", "-p", "2024-03-10", "--deps", str(estate.path))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "global_rollup 2024-03-10T00:00:00Z waits for:\n"
        "  3 of 4 (satisfied by 3 of these 4):\n"
        "    load_apac task publish [success]: 2024-03-10T12:00:00Z\n"
        "    load_eu task publish [success]: 2024-03-10T00:00:00Z\n"
        "    load_latam task publish [success]: 2024-03-10T18:00:00Z\n"
        "    load_us task publish [success]: 2024-03-10T06:00:00Z\n"
    )
    kpis = run("inputs", "kpis", "-p", "2024-03-10T04:00:00Z", "--deps", str(estate.path), "-f", "json")
    body = json.loads(kpis.stdout)
    assert [u["dag"] for u in body["upstreams"]] == ["calendar"]
    assert [(g["rule"], [m["dag"] for m in g["members"]]) for g in body["groups"]] == [
        ("any", ["feed_fallback", "feed_primary"])
    ]


#: Which task produces each asset of the folder (the outlets of tests/import_dags/estate_conditions/conditions.py).
PRODUCED_BY = {
    "s3://feeds/primary": ("feed_primary", "land"),
    "s3://feeds/fallback": ("feed_fallback", "land"),
    "s3://ref/calendar": ("calendar", "publish"),
    "s3://sales/orders": ("orders", "load"),
}
REGIONS = ["load_apac", "load_eu", "load_latam", "load_us"]
DAYS = [f"2024-03-{day:02d}T00:00:00Z" for day in range(8, 14)] + ["2024-10-27T00:00:00Z", "2024-12-31T00:00:00Z"]


def ask_airflow(tmp: Path, requests: list[dict[str, object]], folder: Path = FOLDER) -> list[Any]:
    """tests/import_dags/conditions_oracle.py's answers, computed by Airflow in a child process."""
    done = subprocess.run(
        [sys.executable, str(HERE / "conditions_oracle.py"), str(folder)],
        input=json.dumps(requests),
        env=airflow_env(tmp / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("ORACLE ")] or [done.stderr[-2000:]]
    return list(json.loads(line.removeprefix("ORACLE ")))


def coordinator_runs(graph: Graph, dag: str, satisfied: set[tuple[str, str]], partition: str) -> bool:
    """Whether the written file lets ``dag`` run for ``partition`` with these members satisfied (semantics
    `group-holds`: every required edge, every group its need)."""
    spec = graph.dags[NodeId("default", dag)]
    members = {(NodeId("default", d), t) for d, t in satisfied}
    grouped = {m for g in spec.groups for m in g.members}
    required = {(e.source, e.task) for e in spec.all_edges() if not e.failure} - grouped
    return required <= members and groups_met(spec.groups, members, partition, None)


def test_converted_conditions_run_for_exactly_the_updates_airflows_scheduler_runs_them_for(
    estate: Imported, tmp_path: Path
) -> None:
    """For every subset of assets updated, the scheduler's own AssetEvaluator runs report_any, report_all and kpis
    exactly when the written groups hold with those assets' producers succeeded; for ten days, the scheduler's
    MinimumCount(3) fires global_rollup for exactly the subsets of regional runs its at_least group holds for, and
    each member waits for the very run whose key Airflow counts."""
    consumers = ["report_any", "report_all", "kpis"]
    requests: list[dict[str, object]] = [{"dag": d, "kind": "condition"} for d in consumers]
    requests.append({"dag": "global_rollup", "kind": "rollup", "producers": REGIONS, "partitions": DAYS})
    answers = ask_airflow(tmp_path, requests)
    compared = 0
    for dag, answer in zip(consumers, answers, strict=False):
        fired = [set(s) for s in answer["satisfied"]]
        for n in range(len(answer["assets"]) + 1):
            for updated in itertools.combinations(answer["assets"], n):
                producers = {PRODUCED_BY[u] for u in updated}
                assert coordinator_runs(estate.graph, dag, producers, "2024-03-10T04:00:00Z") == (
                    set(updated) in fired
                ), (dag, updated)
                compared += 1
    rollup = answers[-1]
    for day in DAYS:
        inputs = required_inputs(estate.graph, NodeId("default", "global_rollup"), day)
        assert {i.dag.dag_id: list(i.partitions) for i in inputs} == {
            p: [k + "Z"] for p, k in rollup[day]["keys"].items()
        }
        assert len(rollup[day]["in_window"]) == len(REGIONS)
        fired = [set(s) for s in rollup[day]["fired"]]
        for n in range(len(REGIONS) + 1):
            for done in itertools.combinations(REGIONS, n):
                runs = coordinator_runs(estate.graph, "global_rollup", {(p, "publish") for p in done}, day)
                assert runs == (set(done) in fired), (day, done)
                compared += 1
    assert compared == 4 + 4 + 8 + len(DAYS) * 16


# The pure half: generated conditions against their own boolean meaning.

ASSETS = ("a", "b", "c", "d")


def conditions(depth: int) -> st.SearchStrategy[AssetCondition]:
    leaf = st.sampled_from(ASSETS).map(lambda uri: AssetCondition(ConditionOp.ASSET, uri))
    if depth == 0:
        return leaf
    node = st.builds(
        lambda op, items: AssetCondition(op, items=tuple(items)),
        st.sampled_from([ConditionOp.ALL, ConditionOp.ANY]),
        st.lists(conditions(depth - 1), min_size=1, max_size=3),
    )
    return st.one_of(leaf, node)


def airflow_holds(tree: AssetCondition, updated: frozenset[str]) -> bool:
    """Airflow's meaning: an asset holds when it updated; & is all, | is any."""
    if tree.uri is not None:
        return tree.uri in updated
    found = [airflow_holds(item, updated) for item in tree.items]
    return all(found) if tree.op is ConditionOp.ALL else any(found)


SUBSETS = [frozenset(a for i, a in enumerate(ASSETS) if mask >> i & 1) for mask in range(16)]


@settings(max_examples=examples(300), deadline=None)
@given(conditions(3))
def test_a_converted_condition_holds_exactly_when_airflows_does(tree: AssetCondition) -> None:
    """Whatever one_level maps a condition to (required assets beside any groups) holds for exactly the sets of
    updated assets Airflow's condition holds for; what it refuses is deeper than one level."""
    shape = one_level(tree)
    if isinstance(shape, str):
        assert "cannot be written" in shape
        return
    required, groups = shape
    for updated in SUBSETS:
        written = all(u in updated for u in required) and all(any(u in updated for u in g) for g in groups)
        assert written == airflow_holds(tree, updated), (tree.text(), sorted(updated))


def dag(dag_id: str, schedule: ScheduleFact, outlets: tuple[tuple[str, str], ...] = ()) -> DagFact:
    return DagFact(dag_id, Origin("f.py", 1), schedule, outlets=outlets)


CRON = ScheduleFact(ScheduleKind.CRON, "CronTriggerTimetable", "0 4 * * *", "0 4 * * *", "UTC")


def test_an_or_whose_members_share_a_required_producer_writes_no_redundant_group() -> None:
    """a & (a2 | b) with a and a2 produced by one task: the group holds whenever the required edge does, so only the
    edge is written; (a | a2) of one task is that task's edge."""
    asset = lambda uri: AssetCondition(ConditionOp.ASSET, uri)  # noqa: E731
    redundant = AssetCondition(
        ConditionOp.ALL, items=(asset("a"), AssetCondition(ConditionOp.ANY, items=(asset("a2"), asset("b"))))
    )
    one_task = AssetCondition(ConditionOp.ANY, items=(asset("a"), asset("a2")))
    facts = [
        dag("p", CRON, (("t", "a"), ("t", "a2"))),
        dag("q", CRON, (("t", "b"),)),
        dag("r", ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable", condition=redundant)),
        dag("s", ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable", condition=one_task)),
    ]
    result = translate(facts, [])
    assert result.document["dags"]["r"]["upstreams"] == [{"dag": "p", "task": "t"}]
    assert result.document["dags"]["s"]["upstreams"] == [{"dag": "p", "task": "t"}]
    notes = [f.message for f in result.of(FindingKind.NOTE) if f.subject == "r"]
    assert any("holds whenever the required input does" in n for n in notes)


DATASETS_AF2 = """
from datetime import datetime
from airflow import DAG
from airflow.datasets import Dataset
from airflow.operators.empty import EmptyOperator

PRIMARY, FALLBACK, CALENDAR = Dataset("s3://feeds/primary"), Dataset("s3://feeds/fallback"), Dataset("s3://ref/cal")
for name, out in (("feed_primary", PRIMARY), ("feed_fallback", FALLBACK), ("calendar", CALENDAR)):
    with DAG(name, start_date=datetime(2024, 1, 1), schedule="0 4 * * *", catchup=False):
        EmptyOperator(task_id="land", outlets=[out])
with DAG("kpis", start_date=datetime(2024, 1, 1), schedule=(CALENDAR & (PRIMARY | FALLBACK)), catchup=False):
    EmptyOperator(task_id="work")
"""


def test_airflow2_dataset_conditions_convert_alike(tmp_path: Path) -> None:
    """Airflow 2.11's DatasetAll/DatasetAny (calendar & (primary | fallback)) become the same required edge beside an
    any group as Airflow 3's assets."""
    from devtools.airflow2_stack import ensure_venv

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "datasets.py").write_text(DATASETS_AF2, encoding="utf-8")
    result = imported(ensure_venv(), folder, tmp_path)
    assert "(Airflow 2.11." in result.stderr
    assert json.loads(result.path.read_text(encoding="utf-8"))["dags"]["kpis"]["upstreams"] == [
        {"dag": "calendar", "task": "land"},
        {"any": [{"dag": "feed_primary", "task": "land"}, {"dag": "feed_fallback", "task": "land"}]},
    ]
    assert "became s3://ref/cal: the edge calendar.land; (s3://feeds/primary | s3://feeds/fallback): any of" in (
        result.stderr
    )
