"""The dependencies page draws a condition group as one joint with its rule (``any``, ``2 of 3``, ``cutoff 6h``):
the members' edges meet at it before the dependent; the DAG's detail says where each member stands; and the page in
Airflow's api-server rebuilds the groups from the activation (no dependencies.json there)."""

from __future__ import annotations

import json
import re

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.page.model import build_page, graph_from_activation
from coordinator.page.render import render_page

P = "2026-01-01T00:00:00Z"
DAILY = {"cron": "@daily"}
GRAPH = parse_spec(json.dumps({"version": 1, "dags": {
    "report": {"upstreams": ["calendar", {"any": ["primary", "fallback"]}]},
    "rollup": {"partitions": DAILY, "upstreams": [{"at_least": 2, "of": ["eu", "us", "apac"]}]},
    "late": {"partitions": DAILY, "upstreams": [{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2}]},
    "morning": {"partitions": DAILY, "upstreams": [{"all": ["eu", "us"], "cutoff": "06:00"}]},
}}))  # fmt: skip


def page_html(view: View) -> str:
    return render_page(build_page(GRAPH, view, plan(GRAPH, view, [P]), P))


def empty_view() -> View:
    view = View(KeyLayout("/p"))
    view.apply(view.graph_key, dump_activation(adopt(GRAPH.shapes, GRAPH.digest, None, 1, sources=GRAPH.dags)), 1)
    return view


def test_each_group_is_one_joint_with_its_rule() -> None:
    """One joint per group, labelled any / 2 of 3 / 3 of 3, cutoff 6h / 2 of 2, cutoff 06:00, pointing at its DAG."""
    joints = dict(
        re.findall(r'<g class="joint" data-to="default/([^"]+)" data-rule="([^"]+)">', page_html(empty_view()))
    )
    assert joints == {
        "report": "any",
        "rollup": "2 of 3",
        "late": "3 of 3, cutoff 6h",
        "morning": "2 of 2, cutoff 06:00",
    }


def test_member_edges_end_at_the_joint_and_one_arrow_goes_on() -> None:
    """A member's edge carries no arrow (it ends at the joint); a required edge (calendar) keeps its own; each joint
    draws one arrow on to the dependent."""
    html = page_html(empty_view())
    pattern = r'<path class="edge upstream" data-from="default/([^"]+)" data-to="default/([^"]+)"[^>]*>'
    tags = {(m.group(1), m.group(2)): m.group(0) for m in re.finditer(pattern, html)}
    assert "marker-end" in tags[("calendar", "report")]
    assert "marker-end" not in tags[("primary", "report")]
    assert "marker-end" not in tags[("eu", "rollup")]
    assert len(re.findall(r'<g class="joint"[^>]*><path [^>]*marker-end="url\(#arrow\)"', html)) == 4


def test_the_detail_says_where_each_member_stands() -> None:
    """The selected DAG's why lines include its group's line, as ``why`` prints it."""
    view = empty_view()
    view.apply(
        KeyLayout("/p").run_key(NodeId.parse("eu"), P), dump_record(RunRecord(state=RunState.SUCCESS, run_id="x")), 2
    )
    model = build_page(GRAPH, view, plan(GRAPH, view, [P]), P)
    rollup = model.get(NodeId.parse("rollup"))
    assert rollup is not None
    assert "  at least 2 of 3, 1 more needed: eu done; apac, us have not run" in rollup.why


def test_a_page_without_groups_draws_no_joint() -> None:
    """A graph without groups is drawn as it always was: no joint."""
    plain = parse_spec('{"b": "a"}', "s.json")
    view = View(KeyLayout("/p"))
    assert "joint" not in render_page(build_page(plain, view, plan(plain, view, [P]), P))


def test_the_adopted_graph_is_rebuilt_with_its_groups() -> None:
    """Without dependencies.json (Airflow's api-server) the page rebuilds the groups from the activation: same digest,
    same groups, so it draws the same joints."""
    rebuilt = graph_from_activation(empty_view().activation, "adopted")
    assert rebuilt is not None and rebuilt.digest == GRAPH.digest
    assert {n: s.groups for n, s in rebuilt.dags.items()} == {n: s.groups for n, s in GRAPH.dags.items()}
