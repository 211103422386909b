"""An instance's "kind" in dependencies.json (coordinator.core.spec.instances): "external" declares an instance
without an Airflow, whose DAGs the coordinator never triggers; every way of making one a dependent is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from coordinator.core.spec.loader import parse_spec
from coordinator.core.spec.schema import json_schema
from coordinator.errors import SpecError
from coordinator.watcher.instance_check import check_instance
from tests.conftest import run_coro
from tests.support.openlineage_example import example

ROOT = Path(__file__).resolve().parent.parent
DAILY = {"cron": "0 0 * * *"}
#: The docs' worked example (docs/howto/openlineage.md): dbt models of the external instance analytics, waited for
#: by team_b/report.
EXAMPLE = example()
REFUSED = '"kind": "external": there is no Airflow to trigger it in'


def with_dags(**dags: Any) -> str:
    doc = {**EXAMPLE, "dags": {**EXAMPLE["dags"], **dags}}
    return json.dumps(doc, indent=1)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "deps.json")
    return list(caught.value.problems)


def test_the_worked_example_loads_with_its_external_instance() -> None:
    """The example loads; analytics is external, team_b and the implicit default have an Airflow."""
    graph = parse_spec(json.dumps(EXAMPLE))
    assert graph.external_instances == frozenset({"analytics"})
    assert not graph.has_airflow("analytics") and graph.has_airflow("team_b") and graph.has_airflow("default")


def test_a_kind_changes_nothing_that_makes_a_dag_due() -> None:
    """Declaring the kind (or "airflow" explicitly) keeps the digest: upgrading a file never re-dates a DAG."""
    without = {**EXAMPLE, "instances": {"team_b": {}, "analytics": {"description": "the jaffle dbt project"}}}
    explicit = {**EXAMPLE, "instances": {"team_b": {"kind": "airflow"}, "analytics": {"kind": "external"}}}
    digests = {parse_spec(json.dumps(doc)).digest for doc in (EXAMPLE, without, explicit)}
    assert len(digests) == 1
    assert parse_spec(json.dumps(without)).external_instances == frozenset()


def test_the_schema_accepts_the_example_and_refuses_another_kind() -> None:
    """docs/dependencies.schema.json takes "kind": "external" and refuses a kind it does not know."""
    jsonschema.validate(EXAMPLE, json_schema())
    wrong = {**EXAMPLE, "instances": {"analytics": {"kind": "openlineage"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, json_schema())


def test_an_unknown_kind_is_refused_with_the_choices() -> None:
    """A kind other than airflow or external names its path and both choices."""
    doc = {**EXAMPLE, "instances": {"team_b": {}, "analytics": {"kind": "dbt"}}}
    (problem,) = problems(json.dumps(doc, indent=1))
    assert problem.startswith('deps.json:6: $.instances.analytics.kind: expected "airflow" or "external", got "dbt"')


@pytest.mark.parametrize(
    ("dag", "why"),
    [
        pytest.param({"partitions": DAILY, "upstreams": ["team_b/report"]}, "(upstreams)", id="upstreams"),
        pytest.param({"partitions": DAILY, "upstreams": [{"dag": "analytics/late", "offset": -1}]}, "(upstreams)",
                     id="self-gate"),
        pytest.param({"on_failure_of": ["team_b/report"]}, "(on_failure_of)", id="on_failure_of"),
        pytest.param({"on_late_of": ["team_b/report"]}, "(on_late_of)", id="on_late_of"),
    ],
)  # fmt: skip
def test_a_dag_of_an_external_instance_may_not_be_a_dependent(dag: dict[str, Any], why: str) -> None:
    """A DAG of an external instance the coordinator would trigger is refused at its declaration, with the fix."""
    (problem,) = problems(with_dags(**{"analytics/late": dag}))
    assert '$.dags["analytics/late"]: analytics/late would be triggered by the coordinator ' + why in problem
    assert REFUSED in problem and 'remove "kind": "external" and add it to the instances file' in problem


def test_a_deadline_level_may_not_run_a_dag_of_an_external_instance() -> None:
    """A deadline handler in an external instance is refused like any other way of triggering it."""
    rule = {"after_end": "2h", "levels": [{"name": "page", "handlers": ["analytics/alert"]}]}
    text = with_dags(**{"analytics/alert": {}, "team_b/report": {**EXAMPLE["dags"]["team_b/report"],
                                                                  "expected_by": rule}})  # fmt: skip
    (problem,) = problems(text)
    assert "analytics/alert would be triggered by the coordinator (a deadline level names it as a handler)" in problem


def test_a_task_of_an_external_dag_is_refused_as_an_upstream_and_a_deadline() -> None:
    """No Airflow records an external DAG's tasks: an edge or a deadline naming one would wait for ever."""
    report = {"upstreams": [{"dag": "analytics/orders", "task": "load"}], "partitions": DAILY}
    orders = {"partitions": DAILY, "expected_by": {"after_end": "2h", "task": "load"}}
    found = problems(with_dags(**{"team_b/report": report, "analytics/orders": orders}))
    assert len(found) == 2, found
    assert any("edge to task 'load' of analytics/orders" in p and "would wait for ever" in p for p in found), found
    assert any("$.dags[\"analytics/orders\"].expected_by.task: a task deadline on analytics/orders" in p
               for p in found), found  # fmt: skip


def test_an_asset_route_may_not_name_an_external_instance() -> None:
    """Assets live in an Airflow: a route from or to an external instance is refused at that field."""
    doc = {**EXAMPLE, "assets": [{"asset": "s3://lake/*", "from": "team_b", "to": ["analytics"]}]}
    (problem,) = problems(json.dumps(doc, indent=1))
    assert '$.assets[0].to: asset route to \'analytics\', which is "kind": "external"' in problem


def test_the_documented_external_example_loads() -> None:
    """docs/dependencies.md's dbt example declares its instance external and loads as such."""
    text = (ROOT / "docs" / "dependencies.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL) if '"kind": "external"' in b]
    assert blocks, "no example declares an external instance"
    assert all(parse_spec(block).external_instances for block in blocks)


def test_an_instance_without_an_airflow_url_is_told_how_to_declare_it_external() -> None:
    """The start check of an instance with no URL (doctor's and the watcher's) names both fixes: the instances file,
    or "kind": "external" for an instance that has no Airflow."""
    check = run_coro(check_instance("analytics", None, ["orders"]))
    assert not check.ok and check.fix is not None
    assert "add 'analytics' to the instances file" in check.fix
    assert 'declare "analytics": {"kind": "external"} under "instances" in dependencies.json' in check.fix
