"""A DAG's "runs" in dependencies.json (coordinator.core.spec.scheduled): "scheduled" keeps a dependent on its own
Airflow timetable (semantics `scheduled-permit`); the graph, the activation and the schema carry it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from coordinator.core.activation import Activation, adopt, dump_activation
from coordinator.core.graph_diff import adopted_graph
from coordinator.core.model import NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError

UP, DOWN = NodeId("team_a", "up"), NodeId("team_b", "g_daily")


def doc(**down: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "instances": {"team_a": {}, "team_b": {}},
        "dags": {
            "team_a/up": {"partitions": {"cron": "@daily"}},
            "team_b/g_daily": {"upstreams": "team_a/up", "partitions": {"cron": "@daily"}, **down},
        },
    }


def problems(value: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(json.dumps(value), "deps.json")
    return list(caught.value.problems)


def test_a_scheduled_dependent_loads() -> None:
    """ "runs": "scheduled" marks the DAG scheduled; the upstream and the default stay triggered."""
    graph = parse_spec(json.dumps(doc(runs="scheduled")))
    assert graph.dags[DOWN].scheduled and not graph.dags[UP].scheduled
    assert graph.scheduled == frozenset({DOWN})
    assert not parse_spec(json.dumps(doc())).scheduled


def test_triggered_is_the_default_and_keeps_the_digest_while_scheduled_changes_the_shape() -> None:
    """Writing "triggered" changes nothing; "scheduled" changes what a trigger is, so the DAG's shape moves."""
    plain, explicit = parse_spec(json.dumps(doc())), parse_spec(json.dumps(doc(runs="triggered")))
    scheduled = parse_spec(json.dumps(doc(runs="scheduled")))
    assert plain.digest == explicit.digest
    assert scheduled.shapes[DOWN] != plain.shapes[DOWN] and scheduled.shapes[UP] == plain.shapes[UP]


def test_the_activation_records_it_so_readers_without_the_file_rebuild_it() -> None:
    """The adopted graph rebuilt from the activation alone (the page's, status's) is scheduled too, same digest."""
    graph = parse_spec(json.dumps(doc(runs="scheduled")))
    activation = adopt(graph.shapes, graph.digest, None, 7, sources=graph.dags)
    assert activation is not None
    again = Activation.model_validate_json(dump_activation(activation))
    rebuilt = adopted_graph(again, "etcd")
    assert rebuilt is not None and rebuilt.digest == graph.digest and rebuilt.scheduled == frozenset({DOWN})
    plain = parse_spec(json.dumps(doc()))
    triggered = adopt(plain.shapes, plain.digest, None, 7, sources=plain.dags)
    assert triggered is not None and b'"runs"' not in dump_activation(triggered)


@pytest.mark.parametrize(
    ("down", "expected"),
    [
        pytest.param({"runs": "sometimes"}, 'expected "triggered" or "scheduled", got', id="unknown-value"),
        pytest.param({"runs": True}, 'expected "triggered" or "scheduled", got', id="not-a-string"),
    ],
)
def test_a_bad_value_is_refused_with_the_fix(down: dict[str, Any], expected: str) -> None:
    """An unknown value names the field and both values it may take."""
    (problem,) = problems(doc(**down))
    assert '$.dags["team_b/g_daily"].runs' in problem and expected in problem and '"scheduled" (Airflow' in problem


def test_a_scheduled_dag_needs_upstreams_and_is_no_handler() -> None:
    """A scheduled root (nothing to wait for) and a scheduled failure handler are refused, each naming the fix."""
    value = doc()
    value["dags"]["team_b/root"] = {"runs": "scheduled"}
    value["dags"]["team_b/alert"] = {"on_failure_of": "team_a/up", "runs": "scheduled"}
    found = problems(value)
    assert len(found) == 2
    assert any('team_b/root is "runs": "scheduled" but has no upstreams' in p for p in found)
    assert any("team_b/alert" in p and "runs once per event (on_failure_of)" in p for p in found)


def test_the_schema_takes_it() -> None:
    """docs/dependencies.schema.json accepts both values and refuses another."""
    jsonschema.validate(doc(runs="scheduled"), json_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc(runs="cron"), json_schema())
