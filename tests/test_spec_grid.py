"""Partition grids and edge offsets in dependencies.json: loading, validation, schema, rendering, digest stability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.grid import Grid
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.render import render_dot, render_mermaid, render_text
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError
from coordinator.runtime.spec_file import load_spec
from tests.test_spec_cli import run

ROOT = Path(__file__).resolve().parent.parent

#: The contract of issue 9, verbatim.
CONTRACT = """{"version": 1, "dags": {
  "hourly_ingest": {"partitions": {"cron": "0 * * * *"}},
  "daily_report":  {"partitions": {"cron": "0 0 * * *", "timezone": "Europe/Berlin"},
                    "upstreams": ["hourly_ingest", {"dag": "fx_rates", "offset": -1}]},
  "fx_rates":      {"partitions": {"cron": "0 0 * * *"}},
  "hourly_enrich": {"partitions": {"cron": "0 * * * *"}, "upstreams": [{"dag": "fx_rates"}]}
}}"""


def node(dag_id: str) -> NodeId:
    return NodeId("default", dag_id)


def errors(doc: dict[str, Any] | str) -> list[str]:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(SpecError) as info:
        parse_spec(text, "deps.json")
    return info.value.problems


def test_the_contract_loads_with_grids_and_offsets() -> None:
    """The issue's example loads: grids with their zones, the offset on fx_rates, an edge object without offset."""
    graph = parse_spec(CONTRACT)
    report = graph.dags[node("daily_report")]
    assert report.grid == Grid("0 0 * * *", "Europe/Berlin")
    assert report.upstreams == (node("fx_rates"), node("hourly_ingest"))
    assert report.offset(node("fx_rates")) == -1 and report.offset(node("hourly_ingest")) == 0
    assert graph.dags[node("hourly_ingest")].grid == Grid("0 * * * *", "UTC")
    enrich = graph.dags[node("hourly_enrich")]
    assert enrich.upstreams == (node("fx_rates"),) and enrich.offsets == ()
    assert set(graph.mapped_edges) == {node("daily_report"), node("hourly_enrich")}


def test_graphs_without_grids_keep_their_digest() -> None:
    """Digests computed by the release before grids existed are unchanged, so an upgrade re-dates no DAG."""
    assert load_spec(ROOT / "dependencies.json").digest == "850eb2a188cf676a"
    assert parse_spec('{"b": "a", "c": ["a", "b"]}').digest == "746bf13379af91e8"
    extended = '{"version":1,"instances":{"t":{}},"dags":{"t/x":{"upstreams":["a"]},"h":{"on_failure_of":"t/x"}}}'
    assert parse_spec(extended).digest == "7fd85c43adda1f41"
    edge_object = parse_spec('{"version": 1, "dags": {"b": {"upstreams": [{"dag": "a"}]}}}')
    assert edge_object.digest == parse_spec('{"b": "a"}').digest


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"cron": "0 1 * * *"}, "grid", id="cron"),
        pytest.param({"cron": "0 0 * * *", "timezone": "Asia/Tokyo"}, "grid", id="timezone"),
    ],
)
def test_grid_changes_change_the_shape(change: dict[str, str], field: str) -> None:
    """Changing a DAG's cron or zone changes its shape (adoption re-dates it) and the digest."""
    before = parse_spec(CONTRACT)
    doc = json.loads(CONTRACT)
    doc["dags"]["daily_report"]["partitions"] = change
    after = parse_spec(json.dumps(doc))
    assert after.shapes[node("daily_report")] != before.shapes[node("daily_report")]
    assert after.shapes[node("hourly_ingest")] == before.shapes[node("hourly_ingest")]
    assert after.digest != before.digest


def test_offset_changes_change_the_shape() -> None:
    """Changing an edge's offset changes the dependent's shape and nothing else's."""
    before = parse_spec(CONTRACT)
    after = parse_spec(CONTRACT.replace('"offset": -1', '"offset": -2'))
    assert after.shapes[node("daily_report")] != before.shapes[node("daily_report")]
    assert after.shapes[node("fx_rates")] == before.shapes[node("fx_rates")]


def test_adding_a_grid_changes_the_shape() -> None:
    """A DAG that gains a grid gets a new shape; an explicit offset 0 equals no offset."""
    plain = parse_spec('{"version": 1, "dags": {"b": {"upstreams": "a"}}}')
    gridded = parse_spec('{"version": 1, "dags": {"b": {"upstreams": "a", "partitions": {"cron": "0 0 * * *"}}}}')
    assert plain.shapes[node("b")] != gridded.shapes[node("b")]
    zero = CONTRACT.replace('"offset": -1', '"offset": 0')
    assert parse_spec(zero).dags[node("daily_report")].offsets == ()


BAD = [
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {"cron": "0 * * *"}}}},
        ["deps.json:1: $.dags.a.partitions.cron: invalid cron '0 * * *'", "expected 5 fields", "hourly"],
        id="cron-fields",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {"cron": "0 25 * * *"}}}},
        ["$.dags.a.partitions.cron: invalid cron '0 25 * * *'", "croniter cannot parse it"],
        id="cron-range",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {"cron": 5}}}},
        ["$.dags.a.partitions.cron: expected a cron expression, got 5"],
        id="cron-type",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {}}}},
        ['$.dags.a.partitions: missing "cron"'],
        id="cron-missing",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {"cron": "0 0 * * *", "timezone": "Europe/Berlni"}}}},
        ["$.dags.a.partitions.timezone: unknown time zone 'Europe/Berlni'", "IANA name"],
        id="timezone",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": {"cron": "0 0 * * *", "tz": "UTC"}}}},
        ["$.dags.a.partitions.tz: unknown field 'tz'", "allowed: cron, timezone"],
        id="partitions-unknown-key",
    ),
    pytest.param(
        {"version": 1, "dags": {"a": {"partitions": "daily"}}},
        ['$.dags.a.partitions: expected an object, got "daily"'],
        id="partitions-type",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "offset": -1}]}}},
        ["$.dags.b.upstreams[0].offset: offset on an edge without grids on both sides (b has no partitions)"],
        id="offset-no-grid-downstream",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"partitions": {"cron": "0 0 * * *"}, "upstreams": {"dag": "a", "offset": 1}}}},
        ["$.dags.b.upstreams.offset: offset on an edge without grids on both sides (a has no partitions)"],
        id="offset-no-grid-upstream",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "offset": 1.5}]}}},
        ["$.dags.b.upstreams[0].offset: expected an integer offset, got 1.5", "whole number"],
        id="offset-float",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "offset": "-1"}]}}},
        ['$.dags.b.upstreams[0].offset: expected an integer offset, got "-1"'],
        id="offset-string",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "offset": -5000}]}}},
        ["$.dags.b.upstreams[0].offset: offset -5000 is out of range", "at most 1000"],
        id="offset-range",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "ofset": -1}]}}},
        ["$.dags.b.upstreams[0].ofset: unknown field 'ofset'", "did you mean 'offset'?"],
        id="edge-unknown-key",
    ),
    pytest.param(
        {"version": 1, "dags": {"b": {"on_failure_of": [{"offset": -1}]}}},
        ['$.dags.b.on_failure_of[0]: missing "dag"'],
        id="edge-missing-dag",
    ),
    pytest.param(
        {"b": [{"dag": "a"}]},
        ["$.b[0]: expected a dag id, got an object"],
        id="shorthand-edge-object",
    ),
]


@pytest.mark.parametrize(("doc", "pieces"), BAD)
def test_bad_grids_and_edges_are_reported_with_path_and_hint(doc: dict[str, Any], pieces: list[str]) -> None:
    """Each mistake is one problem naming the file, the JSON path, what is wrong and how to fix it."""
    problems = errors(doc)
    assert any(all(piece in p for piece in pieces) for p in problems), problems
    assert all(" — " in p for p in problems)


def test_schema_accepts_the_contract_and_rejects_bad_edges() -> None:
    """The JSON Schema accepts the contract and rejects an unknown edge key, a float offset and a grid typo."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid(json.loads(CONTRACT))
    for bad in (
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "of": 1}]}}},
        {"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "offset": 1.5}]}}},
        {"version": 1, "dags": {"b": {"partitions": {"crn": "0 0 * * *"}}}},
    ):
        assert not validator.is_valid(bad), bad


def test_graph_renderings_show_grids_and_offsets() -> None:
    """`coordinator graph` shows each DAG's grid and each non-zero offset in every format."""
    graph = parse_spec(CONTRACT)
    text = render_text(graph)
    assert "daily_report [0 0 * * * Europe/Berlin] <- fx_rates [offset -1], hourly_ingest\n" in text
    assert "hourly_ingest [0 * * * *] (root)\n" in text
    assert "offset -1" in render_mermaid(graph) and "0 0 * * * Europe/Berlin" in render_mermaid(graph)
    assert 'label="offset -1"' in render_dot(graph) and "0 0 * * * Europe/Berlin" in render_dot(graph)


def test_validate_and_graph_commands_on_grids(tmp_path: Path) -> None:
    """`coordinator validate` reports grid mistakes with path and hint, no traceback; `graph` shows grids."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"version": 1, "dags": {"a": {"partitions": {"cron": "0 0 * *", "timezone": "Mars/Base"}}}}),
        encoding="utf-8",
    )
    result = run("validate", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "$.dags.a.partitions.cron: invalid cron '0 0 * *'" in result.stderr
    assert "$.dags.a.partitions.timezone: unknown time zone 'Mars/Base'" in result.stderr
    good = tmp_path / "good.json"
    good.write_text(CONTRACT, encoding="utf-8")
    assert run("validate", str(good)).returncode == 0
    shown = run("graph", "--deps", str(good))
    assert shown.returncode == 0, shown.stderr
    assert "daily_report [0 0 * * * Europe/Berlin] <- fx_rates [offset -1], hourly_ingest" in shown.stdout
