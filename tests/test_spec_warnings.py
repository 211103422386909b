"""Warnings about valid dependency files (coordinator.core.spec.near_misses): near-miss DAG names and exact-date edges
across grids, as tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.near_misses import (
    RULES,
    CloseDags,
    SpecWarning,
    exact_dates_across_grids,
    near_miss_references,
    near_misses,
    spec_warnings,
)
from tests.test_spec_cli import run

SEVEN = {
    "02_pipeline": "01_pipeline",
    "03_pipeline": "01_pipeline",
    "04_pipeline": "01_pipeline",
    "05_pipeline": "01_pipeline",
    "06_pipeline": ["02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"],
    "07_pipeline": "06_pipeline",
}


def warnings_of(doc: dict[str, Any]) -> list[str]:
    return [w.format("d.json") for w in spec_warnings(parse_spec(json.dumps(doc), "d.json"))]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(SEVEN, [], id="the-example-graph-is-clean"),
        pytest.param(
            {**SEVEN, "06_pipeline": ["02_pipeline", "03_pipeline", "04_pipline", "05_pipeline"]},
            ["d.json: $.06_pipeline[2]: warning: '04_pipline' is declared nowhere in this file, so it is a root "
             "that 06_pipeline waits for — did you mean '04_pipeline'?"],
            id="shorthand-missing-letter",
        ),
        pytest.param(
            {"version": 1, "dags": {"load": {}, "report": {"upstreams": ["laod"]}}},
            ["d.json: $.dags.report.upstreams[0]: warning: 'laod' is declared nowhere in this file, so it is a "
             "root that report waits for — did you mean 'load'?"],
            id="extended-swapped-letters",
        ),
        pytest.param(
            {"version": 1, "dags": {"load": {}, "alert": {"on_failure_of": "lod"}}},
            ["d.json: $.dags.alert.on_failure_of: warning: 'lod' is declared nowhere in this file, so it is a root "
             "that alert handles the failures of — did you mean 'load'?"],
            id="failure-source",
        ),
        pytest.param(
            {"version": 1, "instances": {"team_a": {}},
             "dags": {"team_a/04_pipeline": {}, "report": {"upstreams": "04_pipline"}}},
            ["d.json: $.dags.report.upstreams: warning: '04_pipline' is declared nowhere in this file, so it is a "
             "root that report waits for — did you mean 'team_a/04_pipeline'?"],
            id="close-to-a-dag-of-another-instance",
        ),
        pytest.param(
            {"version": 1, "dags": {"06_pipeline": {}, "07_pipeline": {"upstreams": "6_pipeline"}}},
            ["d.json: $.dags.07_pipeline.upstreams: warning: '6_pipeline' is declared nowhere in this file, so it is "
             "a root that 07_pipeline waits for — did you mean '06_pipeline'?"],
            id="leading-zero-is-the-same-number",
        ),
        pytest.param(
            {"b": "extract", "c": "extract", "d": "extrcat"},
            ["d.json: $.d: warning: 'extrcat' is declared nowhere in this file, so it is a root that d waits for "
             "— did you mean 'extract'?"],
            id="the-rarer-of-two-undeclared-spellings",
        ),
        pytest.param(
            {"b": "extract", "c": "extrcat"},
            ["d.json: $.b: warning: 'extract' is declared nowhere in this file, so it is a root that b waits for "
             "— did you mean 'extrcat'?",
             "d.json: $.c: warning: 'extrcat' is declared nowhere in this file, so it is a root that c waits for "
             "— did you mean 'extract'?"],
            id="two-undeclared-spellings-used-equally-are-both-suspects",
        ),
        pytest.param({"b": "load_a", "c": "load_b"}, [], id="short-labels-are-a-series"),
        pytest.param({"b": "etl", "c": "etl2"}, [], id="a-number-makes-another-dag"),
        pytest.param({"report": "load", "loads": "load"}, [], id="a-root-written-more-often-is-meant"),
    ],
)  # fmt: skip
def test_near_miss_references(doc: dict[str, Any], expected: list[str]) -> None:
    """An undeclared DAG whose id is a near miss of another DAG's id warns at each reference, with the suggestion."""
    assert warnings_of(doc) == expected


@pytest.mark.parametrize(
    ("name", "candidates", "expected"),
    [
        pytest.param("04_pipline", ["04_pipeline", "05_pipeline"], ["04_pipeline"], id="one-insertion"),
        pytest.param("6_pipeline", ["06_pipeline", "07_pipeline"], ["06_pipeline"], id="leading-zero"),
        pytest.param("01_pipeline", ["02_pipeline"], [], id="another-number"),
        pytest.param("report", ["reprot", "reports", "export"], ["reports", "reprot"], id="closest-then-by-name"),
        pytest.param("Load", ["load"], ["load"], id="case"),
        pytest.param("abc", ["xyz"], [], id="nothing-close"),
        pytest.param("daily_reprot_x", ["daily_report_x"], ["daily_report_x"], id="long-names-allow-two-edits"),
        pytest.param("load", ["load"], [], id="never-itself"),
    ],
)
def test_near_misses(name: str, candidates: list[str], expected: list[str]) -> None:
    """near_misses keeps the candidates within a typo's distance that are not another member of a series."""
    assert near_misses(name, candidates) == expected


#: Names over a small alphabet with digits (series) and separators, long enough to allow two edits.
_NAMES = st.text(alphabet="abAB01_", min_size=1, max_size=12)


@st.composite
def _typos(draw: st.DrawFn, name: str) -> str:
    """``name`` after up to three random edits (insert, delete, substitute, swap neighbours)."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(name)))
        op = draw(st.sampled_from(["insert", "delete", "substitute", "swap"]))
        char = draw(st.sampled_from("abAB01_"))
        if op == "insert":
            name = name[:at] + char + name[at:]
        elif op == "delete" and at < len(name) and len(name) > 1:
            name = name[:at] + name[at + 1 :]
        elif op == "substitute" and at < len(name):
            name = name[:at] + char + name[at + 1 :]
        elif op == "swap" and at + 1 < len(name):
            name = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
    return name


@given(data=st.data(), name=st.text(alphabet="abAB01_", min_size=6, max_size=12), others=st.lists(_NAMES, max_size=10))
def test_the_index_of_close_dags_answers_as_a_scan_of_every_dag(
    data: st.DataObject, name: str, others: list[str]
) -> None:
    """CloseDags (the deletion index a whole file's check uses) finds exactly what near_misses over every DAG finds,
    in the same order, across instances: typos of up to three edits and unrelated names alike."""
    ids = data.draw(st.lists(_typos(name), max_size=20)) + others
    nodes = [NodeId(instance, dag_id) for dag_id in ids for instance in ("default", "other")[: 1 + len(dag_id) % 2]]
    by_id: dict[str, list[NodeId]] = {}
    for node in nodes:
        by_id.setdefault(node.dag_id, []).append(node)
    scanned = [node for close in near_misses(name, by_id) for node in sorted(by_id[close])]
    assert CloseDags(nodes).of(name) == scanned
    assert CloseDags(nodes).of(f"default/{name}") == scanned


def test_a_graph_not_read_from_a_file_has_no_near_miss_warnings() -> None:
    """A graph without provenance (the adopted graph rebuilt from etcd) yields no warnings, whatever its names."""
    a, b = NodeId("default", "load"), NodeId("default", "laod")
    graph = Graph({a: DagSpec(a), b: DagSpec(b, upstreams=(a,))}, frozenset({"default"}))
    assert near_miss_references(graph) == []


def test_rules_are_independent_and_run_in_order() -> None:
    """spec_warnings runs every rule given, in order; the default list holds the near-miss rule."""
    graph = parse_spec(json.dumps({"b": "lod", "load": "x"}), "d.json")
    extra = SpecWarning("$", "extra", "hint")
    assert spec_warnings(graph, (lambda g: [extra], near_miss_references))[0] == extra
    assert [w.path for w in spec_warnings(graph, (lambda g: [extra], near_miss_references))] == ["$", "$.b"]
    assert near_miss_references in RULES


# -- rule 5: exact dates across grids --------------------------------------------------------------------------


def grid_warnings_of(dags: dict[str, Any]) -> list[SpecWarning]:
    doc = {"version": 1, "dags": dags}
    return [w for w in spec_warnings(parse_spec(json.dumps(doc))) if "exact same logical date" in w.message]


def test_an_exact_date_edge_with_one_grid_is_warned_at_its_path() -> None:
    """An edge without shift between a gridded and an ungridded DAG is named with its JSON path and a hint."""
    found = grid_warnings_of({"u": {"partitions": {"cron": "0 1 * * *"}}, "x": {}, "d": {"upstreams": ["x", "u"]}})
    assert [w.path for w in found] == ["$.dags.d.upstreams[1]"]
    assert found[0].message == (
        "d waits for u on the exact same logical date, but only u has partitions (0 1 * * *): d is triggered at u's "
        "logical dates, which d's own schedule has only if the two schedules line up"
    )
    assert 'add "shift"' in found[0].hint and "coordinator inputs d -p DATE" in found[0].hint


def test_mapped_edges_and_same_sided_grids_are_not_warned() -> None:
    """Two grids, no grids, an explicit shift and a self gate are all deliberate: no warning."""
    assert (
        grid_warnings_of(
            {
                "u": {"partitions": {"cron": "0 1 * * *"}},
                "a": {"partitions": {"cron": "@daily"}, "upstreams": ["u", {"dag": "a", "offset": -1}]},
                "b": {"upstreams": [{"dag": "u", "shift": "-1h"}, "c"]},
                "c": {},
            }
        )
        == []
    )
    assert exact_dates_across_grids(parse_spec('{"b": "a"}')) == []


def test_validate_prints_warnings_on_stderr_and_exits_0(tmp_path: Path) -> None:
    """validate keeps exit 0 and the summary on stdout, and prints `file: path: warning: what — hint` on stderr."""
    path = tmp_path / "deps.json"
    dags = {"u": {"partitions": {"cron": "@hourly"}}, "d": {"upstreams": [{"dag": "u", "task": "load"}]}}
    path.write_text(json.dumps({"version": 1, "dags": dags}), encoding="utf-8")
    result = run("validate", str(path))
    assert result.returncode == 0 and result.stdout.endswith("valid — 2 DAGs, 1 edge, 1 root (u), 1 instance\n")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: $.dags.d.upstreams[0]: warning: d waits for u")
    assert " — declare " in lines[0]
