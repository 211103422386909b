"""The chart refuses a graph and Airflows that disagree, rendered and linted by Helm's own SDK as in
tests/test_helm_chart.py: every instance the graph in deps.content uses (a DAG in it, or an asset route naming it, less
the "kind": "external" ones) has an entry in airflow.instances, or is "default" with airflow.url set; otherwise the
render fails naming both sides and the value to set. The chart's reading of the graph agrees with the watcher's
(coordinator.core.instance_coverage) on the repository's graphs and on every form a reference may take. Where the
chart cannot see a side (an existing ConfigMap) it renders, and the watcher's readiness says it instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from coordinator.core.instance_coverage import instances_in_use
from coordinator.core.spec.loader import parse_spec
from tests.support.openlineage_example import example
from tests.test_helm_chart import CHART, EXAMPLES, REQUIRED, ROOT, by_kind, merged, render

#: Airflow.instances entries for these names (the url is all the chart looks at).
A = {"url": "https://airflow-a.example.com"}
B = {"url": "https://airflow-b.example.com"}
#: A graph in the extended form whose references take every form the loader reads: a qualified id, a bare id of a
#: DAG declared elsewhere, a bare undeclared root (in default), an edge object, an any group and an at_least group,
#: on_failure_of and on_late_of; and an asset route.
EVERY_FORM: dict[str, Any] = {
    "version": 1,
    "instances": {"team_a": {}, "team_b": {}, "team_c": {}, "team_d": {}, "team_e": {}},
    "dags": {
        "team_a/load": {},
        "team_a/report": {
            "upstreams": [
                "load",
                "raw_feed",
                {"dag": "team_b/clean"},
                {"any": ["team_c/eu", {"dag": "team_c/us"}]},
                {"at_least": 1, "of": ["team_d/x", "team_d/y"]},
            ]
        },
        "team_a/alert": {"on_failure_of": "team_a/report"},
        "team_a/late": {"on_late_of": ["team_a/report"]},
    },
    "assets": [{"asset": "s3://lake/*", "from": "team_a", "to": ["team_e"]}],
}


def values(deps: Any, *, url: bool = False, instances: dict[str, Any] | None = None) -> dict[str, Any]:
    """The required values with the graph ``deps`` and the Airflows given: airflow.url for default when ``url``, an
    entry per name of ``instances``."""
    base = {k: v for k, v in REQUIRED.items() if k not in ("airflow", "deps")}
    airflow: dict[str, Any] = {"url": "https://airflow.example.com" if url else ""}
    if instances:
        airflow["instances"] = instances
    return merged(base, {"airflow": airflow, "deps": {"content": deps}})


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def refusal(chart: helm.Chart, given: dict[str, Any]) -> str:
    """The message of the render's failure (the test fails if it renders)."""
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, given)
    return str(refused.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            values('{"b": "a"}\n', instances={"team_a": A, "team_b": B}),
            [
                "deps.content has DAGs in instance(s) default,",
                "airflow.instances has team_a, team_b",
                "add default to airflow.instances",
                'or set airflow.url for "default"',
                '"team_a/DAG_ID"',
            ],
            id="instances-without-the-graphs-default",
        ),
        pytest.param(
            values(
                {"version": 1, "instances": {"team_a": {}}, "dags": {"team_a/x": {}, "y": {"upstreams": ["x"]}}},
                url=True,
            ),
            [
                "instance(s) team_a,",
                "airflow.instances is empty",
                'airflow.url gives the instance "default" only',
                "add team_a to airflow.instances",
            ],
            id="one-url-and-a-graph-naming-another-instance",
        ),
        pytest.param(
            values(EVERY_FORM, url=True, instances={"team_a": A, "team_b": B, "team_c": A}),
            [
                "instance(s) team_d, team_e,",
                "airflow.instances has team_a, team_b, team_c",
                "add team_d, team_e to airflow.instances",
            ],
            id="an-upstream-group-and-an-asset-route-in-unlisted-instances",
        ),
    ],
)
def test_a_graph_naming_an_instance_without_an_airflow_is_refused_naming_both_sides(
    chart: helm.Chart, given: dict[str, Any], expected: list[str]
) -> None:
    """The issue's values (instances team_a and team_b, a graph all in default), one airflow.url with a graph in
    team_a, and an upstream group and asset route in instances not listed each fail the render with one message
    naming the graph's instances without an Airflow, what airflow.instances and airflow.url give, and the fix."""
    message = refusal(chart, given)
    assert "the graph and the Airflows disagree" in message, message
    for part in expected:
        assert part in message, (part, message)


def test_without_the_values_schema_the_mismatch_is_still_refused(chart: helm.Chart, tmp_path: Path) -> None:
    """The check is in the templates, not in values.schema.json: an install with --skip-schema-validation (the schema
    removed) is refused the same way."""
    given = values('{"b": "a"}\n', instances={"team_a": A, "team_b": B})
    copy_of_chart = tmp_path / "chart"
    copy_of_chart.mkdir()
    for path in CHART.rglob("*"):
        target = copy_of_chart / path.relative_to(CHART)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif path.name != "values.schema.json":
            target.write_bytes(path.read_bytes())
    assert "instance(s) default," in refusal(helm.Chart.load(copy_of_chart), given)


def graphs() -> dict[str, Any]:
    """Graphs the chart and the watcher must read alike: the repository's shorthand, the platform example, the
    OpenLineage example (an external instance), and EVERY_FORM."""
    return {
        "repository-shorthand": (ROOT / "dependencies.json").read_text(encoding="utf-8"),
        "platform-example": (EXAMPLES / "platform-dependencies.json").read_text(encoding="utf-8"),
        "openlineage-external": example(),
        "every-reference-form": EVERY_FORM,
    }


@pytest.mark.parametrize("name", list(graphs()))
def test_the_chart_needs_exactly_the_instances_the_watcher_needs(chart: helm.Chart, name: str) -> None:
    """For each graph, airflow.instances holding exactly the watcher's instances in use (instance_coverage) renders,
    and without any one of them the render fails naming that one: the chart and the watcher read the graph alike."""
    deps = graphs()[name]
    text = deps if isinstance(deps, str) else json.dumps(deps)
    used = sorted(instances_in_use(parse_spec(text)))
    assert used, name
    render(chart, values(deps, instances={n: A for n in used}))
    for left_out in used:
        # An Airflow the graph does not use keeps the values schema's "at least one Airflow" satisfied.
        others = {n: A for n in used if n != left_out} | {"unused": B}
        message = refusal(chart, values(deps, instances=others))
        assert f"instance(s) {left_out}," in message, message


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(values('{"b": "a"}\n', url=True, instances={"team_a": A}), id="url-for-default-and-instances"),
        pytest.param(values('{"b": "a"}\n', instances={"default": A}), id="default-in-instances"),
        pytest.param(values("{}\n", instances={"team_a": A}), id="a-graph-without-dags"),
        pytest.param(
            {k: v for k, v in values("", instances={"team_a": A}).items() if k != "deps"}
            | {"deps": {"existingConfigMap": "team-graph"}},
            id="graph-in-an-existing-configmap",
        ),
        pytest.param(
            merged(values('{"b": "a"}\n'), {"airflow": {"existingInstancesConfigMap": "team-instances"}}),
            id="instances-in-an-existing-configmap",
        ),
    ],
)
def test_graphs_the_airflows_cover_or_the_chart_cannot_see_render(chart: helm.Chart, given: dict[str, Any]) -> None:
    """airflow.url for default beside instances, default as an entry of airflow.instances, a graph with no DAG, and a
    graph or instances file in an existing ConfigMap (the chart cannot read it; the watcher's /readyz judges it)
    render a Deployment."""
    by_kind(render(chart, given), "Deployment")


def test_a_pod_that_is_not_ready_may_be_evicted(chart: helm.Chart) -> None:
    """The PodDisruptionBudget lets a drain evict pods that are not ready (unhealthyPodEvictionPolicy AlwaysAllow): a
    watcher kept not ready by a mismatch never blocks a node's drain."""
    pdb = by_kind(render(chart, REQUIRED), "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_refusal_the_kubernetes_page_shows_is_the_charts_own() -> None:
    """docs/howto/kubernetes.md's example refusal (its "must agree" section's text block) is word for word what the
    chart says for the issue's values: instances team_a and team_b, a graph all in default."""
    page = (ROOT / "docs" / "howto" / "kubernetes.md").read_text(encoding="utf-8")
    section = page.split("### The graph and the Airflows must agree", 1)[1].split("\n### ", 1)[0]
    shown = " ".join(section.split("```text\n", 1)[1].split("\n```", 1)[0].split())
    message = refusal(helm.Chart.load(CHART), values('{"b": "a"}\n', instances={"team_a": A, "team_b": B}))
    assert shown in message, (shown, message)


def test_the_notes_say_what_the_chart_could_not_check(chart: helm.Chart) -> None:
    """With the graph in an existing ConfigMap the install's notes say the instances were not checked and where a
    mismatch shows (readiness, the log line); with deps.content they say nothing of it."""

    def notes(given: dict[str, Any]) -> str:
        rendered = chart.render(given, name="coord", namespace="airflow", is_install=True)
        (text,) = [text for path, text in rendered.items() if path.endswith("NOTES.txt")]
        return text

    unseen = {k: v for k, v in REQUIRED.items() if k != "deps"} | {"deps": {"existingConfigMap": "team-graph"}}
    assert "could not check that every instance of the graph" in notes(unseen)
    assert "config.instances_missing" in notes(unseen)
    assert "could not check" not in notes(REQUIRED)
