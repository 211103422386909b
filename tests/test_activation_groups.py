"""The activation records a DAG's condition groups (rule, need, members, cutoff): a changed group is a changed
definition (re-dated like any edge, semantics `activation`), the record rebuilds the groups exactly, a DAG without
groups writes what it always wrote, and values written before groups were recorded still parse."""

from __future__ import annotations

import json
from typing import Any

from coordinator.core.activation import Activation, adopt, dump_activation
from coordinator.core.graph import Graph
from coordinator.core.spec.loader import parse_spec
from tests.support.world import n


def graph_of(rollup: dict[str, Any]) -> Graph:
    return parse_spec(json.dumps({"version": 1, "dags": {"rollup": rollup, "report": {"upstreams": ["calendar"]}}}))


GROUPED = {"partitions": {"cron": "@daily", "timezone": "Europe/Berlin"}, "upstreams": [
    "calendar", {"at_least": 2, "of": ["eu", {"dag": "us", "task": "load"}, "apac"], "cutoff": "06:00", "min": 1},
]}  # fmt: skip


def adopted(graph: Graph, current: Activation | None = None, revision: int = 10) -> Activation:
    act = adopt(graph.shapes, graph.digest, current, revision, sources=graph.dags)
    assert act is not None
    return Activation.model_validate_json(dump_activation(act))


def test_groups_are_recorded_and_rebuild_exactly() -> None:
    """The stored value holds the groups as the shape writes them; read back they equal the graph's, the
    time-of-day cutoff with its zone included."""
    graph = graph_of(GROUPED)
    stored = json.loads(dump_activation(adopted(graph)))
    assert stored["nodes"]["default/rollup"]["groups"] == [
        ["at_least", 2, [["default/apac", None], ["default/eu", None], ["default/us", "load"]], "06:00", 1, "rerun"]
    ]
    entry = adopted(graph).nodes["default/rollup"]
    assert entry.group_specs() == graph.dags[n("rollup")].groups
    assert entry.group_specs()[0].cutoff_at("2025-12-31T23:00:00Z") is not None


def test_a_dag_without_groups_writes_no_groups_field() -> None:
    """A DAG without groups writes exactly the fields it wrote before groups were recorded."""
    stored = json.loads(dump_activation(adopted(graph_of(GROUPED))))
    assert "groups" not in stored["nodes"]["default/report"]
    assert "groups" not in stored["nodes"]["default/calendar"]


def test_a_changed_group_re_dates_the_dag_and_an_unrelated_edit_does_not() -> None:
    """Changing the cutoff (06:00 to 07:00) adopts the rollup anew at the new revision with the new group recorded;
    the report, unchanged, keeps its date."""
    first = adopted(graph_of(GROUPED))
    later = {**GROUPED, "upstreams": ["calendar", {**GROUPED["upstreams"][1], "cutoff": "07:00"}]}  # type: ignore[dict-item]
    second = adopted(graph_of(later), first, revision=20)
    assert second.nodes["default/rollup"].since == 20
    assert second.nodes["default/rollup"].groups is not None
    assert second.nodes["default/rollup"].groups[0][3] == "07:00"
    assert second.nodes["default/report"].since == 10


def test_an_old_value_without_groups_parses_and_gains_them_without_re_dating() -> None:
    """A value written before groups were recorded parses (no groups known); adopting the same graph again adds
    them to the entry and keeps its since."""
    graph = graph_of(GROUPED)
    old = json.loads(dump_activation(adopted(graph)))
    del old["nodes"]["default/rollup"]["groups"]
    old["digest"] = "older"
    current = Activation.model_validate_json(json.dumps(old))
    assert current.nodes["default/rollup"].groups is None
    assert current.nodes["default/rollup"].group_specs() == ()
    again = adopted(graph, current, revision=30)
    assert again.nodes["default/rollup"].since == 10
    assert again.nodes["default/rollup"].group_specs() == graph.dags[n("rollup")].groups
