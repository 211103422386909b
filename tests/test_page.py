"""The dependencies page without Airflow: states from the planner, layout, rendering, and the etcd-backed service."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.graph import Graph
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.page.model import NodeState, build_page, graph_from_activation, layout
from coordinator.page.render import render_page
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings

P = "2026-01-01T00:00:00Z"
#: One DAG per state (rule 2 of coordinator.page.model); r is the root everything hangs off.
STATES_GRAPH = {"a": "r", "b": "r", "c": "r", "d": "r", "e": "r", "f": "r", "g": "a", "h": "r", "i": "h", "j": "r"}
EXPECTED = {
    "r": NodeState.SUCCEEDED,
    "a": NodeState.DUE,
    "b": NodeState.RUNNING,
    "c": NodeState.QUEUED,
    "d": NodeState.FAILED,
    "e": NodeState.TRIGGERED,
    "f": NodeState.ERROR,
    "g": NodeState.WAITING,
    "h": NodeState.DUE,
    "i": NodeState.STALE,
    "j": NodeState.TRIGGERED,  # a rerun (clear) asked for after its last run: not started yet
    "x": NodeState.NOT_RUN,
}


def n(ref: str) -> NodeId:
    return NodeId.parse(ref)


def run(state: RunState, run_id: str = "scheduled__x") -> bytes:
    return dump_record(RunRecord(state=state, run_id=run_id))


def ledger(status: TriggerStatus, intent_rev: int, **extra: Any) -> bytes:
    record = TriggerRecord(
        status=status, action=TriggerAction.CREATE, run_id=f"coordinator__{P}", intent_rev=intent_rev, **extra
    )
    return dump_record(record)


def states_store(keys: KeyLayout) -> tuple[Graph, list[tuple[str, bytes, int]]]:
    """The graph and the (key, value, revision) writes that put each DAG of STATES_GRAPH in its expected state."""
    graph = parse_spec(json.dumps({"version": 1, "dags": {**{k: {"upstreams": v} for k, v in STATES_GRAPH.items()},
                                                          "r": {}, "x": {}}}), "states.json")  # fmt: skip
    activation = adopt(graph.shapes, graph.digest, None, 1, sources=graph.dags)
    assert activation is not None
    writes = [
        (keys.config_key("graph"), dump_activation(activation), 1),
        (keys.run_key(n("h"), P), run(RunState.SUCCESS), 5),
        (keys.run_key(n("j"), P), run(RunState.SUCCESS), 8),  # older than r's success: h is stale, due again
        (keys.run_key(n("r"), P), run(RunState.SUCCESS), 10),
        (keys.trigger_key(n("d"), P), ledger(TriggerStatus.DONE, 11, inputs={"default/r": 10}), 11),
        (keys.run_key(n("d"), P), run(RunState.FAILED, f"coordinator__{P}"), 12),
        (keys.run_key(n("b"), P), run(RunState.RUNNING), 13),
        (keys.run_key(n("c"), P), run(RunState.QUEUED), 14),
        (keys.trigger_key(n("e"), P), ledger(TriggerStatus.DONE, 20, inputs={"default/r": 10}), 20),
        (keys.trigger_key(n("f"), P), ledger(TriggerStatus.ERROR, 21, last_error="DAG f not found in Airflow"), 21),
        (keys.run_key(n("i"), P), run(RunState.SUCCESS), 30),
        (
            keys.trigger_key(n("j"), P),
            ledger(TriggerStatus.DONE, 31, inputs={"default/r": 10}),
            31,
        ),  # newer than h, but h is not fresh: i is stale
    ]
    return graph, writes


def states_view() -> tuple[Graph, View]:
    keys = KeyLayout("/p")
    graph, writes = states_store(keys)
    view = View(keys)
    for key, value, rev in writes:
        view.apply(key, value, rev)
    return graph, view


def test_each_dag_gets_the_state_the_planner_implies() -> None:
    """Every state the page colours (succeeded ... error, not run) comes out of the same plan as `status`."""
    graph, view = states_view()
    model = build_page(graph, view, plan(graph, view, [P]), P)
    assert {node.node.dag_id: node.state for node in model.nodes} == EXPECTED
    g = model.get(n("g"))
    assert g is not None and g.waiting_on == (n("a"),)
    f = model.get(n("f"))
    assert f is not None and f.ledger is not None and f.ledger.last_error == "DAG f not found in Airflow"
    assert model.moving


def test_layout_puts_every_dag_right_of_its_sources() -> None:
    """Columns are topological depths; rows within a column are distinct."""
    graph = parse_spec(Path("dependencies.json").read_text(encoding="utf-8"), "dependencies.json")
    places = layout(graph)
    assert {node.dag_id: col for node, (col, _) in places.items()} == {
        "01_pipeline": 0, "02_pipeline": 1, "03_pipeline": 1, "04_pipeline": 1, "05_pipeline": 1,
        "06_pipeline": 2, "07_pipeline": 3,
    }  # fmt: skip
    assert len(set(places.values())) == len(places)


def test_graph_is_rebuilt_from_the_adopted_activation() -> None:
    """An activation with recorded sources gives back the same graph (digest); without them, None."""
    graph, view = states_view()
    rebuilt = graph_from_activation(view.activation, "adopted")
    assert rebuilt is not None and rebuilt.digest == graph.digest
    bare = adopt(graph.shapes, graph.digest, None, 1)
    assert graph_from_activation(bare, "adopted") is None


def svg_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-dag="default/([^"]+)" data-state="([^"]+)"', html))


def test_render_draws_every_dag_with_its_state_and_refreshes_while_moving() -> None:
    """The SVG holds one link per DAG with its state; a moving cascade adds a meta refresh, a settled one not."""
    graph, view = states_view()
    html = render_page(build_page(graph, view, plan(graph, view, [P]), P))
    assert svg_states(html) == {k: str(v) for k, v in EXPECTED.items()}
    assert html.count('class="edge upstream"') == len(STATES_GRAPH)
    assert '<meta http-equiv="refresh" content="5">' in html
    assert f'<option value="{P}" selected>' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from the network
    settled = parse_spec('{"b": "a"}', "s.json")
    quiet = View(KeyLayout("/p"))
    quiet.apply(KeyLayout("/p").run_key(n("a"), P), run(RunState.SUCCESS), 3)
    quiet.apply(KeyLayout("/p").run_key(n("b"), P), run(RunState.SUCCESS), 4)
    assert "http-equiv" not in render_page(build_page(settled, quiet, plan(settled, quiet, [P]), P))


def test_a_failure_handler_waits_for_a_failure_of_its_sources() -> None:
    """A failure handler whose sources did not fail is drawn waiting for a failure of them, with a dashed edge."""
    keys = KeyLayout("/p")
    graph = parse_spec('{"version": 1, "dags": {"a": {}, "h": {"on_failure_of": "a"}}}', "h.json")
    view = View(keys)
    view.apply(keys.run_key(n("a"), P), run(RunState.SUCCESS), 3)
    html = render_page(build_page(graph, view, plan(graph, view, [P]), P))
    assert svg_states(html)["h"] == "waiting"
    assert "waiting for a to fail" in html
    assert 'class="edge on-failure" data-from="default/a" data-to="default/h"' in html


def test_selected_dag_shows_why_ledger_and_a_run_link_only_for_this_airflow() -> None:
    """Clicking a DAG shows its why text and ledger entry; the run link appears only for DAGs of this instance."""
    graph, view = states_view()
    model = build_page(graph, view, plan(graph, view, [P]), P)
    html = render_page(model, selected=n("d"), instance="default", ui_base="/base")
    detail = html[html.index('id="detail"') :]
    assert "d failed for these inputs" in detail
    assert "default/r @ 10" in detail
    assert 'href="/base/dags/d/runs/coordinator__2026-01-01T00%3A00%3A00Z" target="_top"' in detail
    other = render_page(model, selected=n("d"), instance="team_b")
    assert 'id="run-link"' not in other


@pytest.mark.parametrize(
    ("attempts", "requests_row"),
    [(1, None), (3, "Airflow requests</td><td>3 for this trigger (failed ones were retried)")],
    ids=["first-request-worked", "requests-retried"],
)
def test_detail_names_each_counter_once(attempts: int, requests_row: str | None) -> None:
    """A rerun's detail shows one attempt counter (Airflow's run attempt, from clear_number), the coordinator's
    trigger number apart, and the Airflow request count only when requests were repeated."""
    keys = KeyLayout("/p")
    graph = parse_spec('{"b": "a"}', "s.json")
    view = View(keys)
    view.apply(keys.run_key(n("a"), P), run(RunState.SUCCESS), 3)
    rec = ledger(TriggerStatus.DONE, 4, attempts=attempts, trigger_count=4)
    view.apply(keys.trigger_key(n("b"), P), rec, 4)
    rerun = RunRecord(state=RunState.SUCCESS, run_id=f"coordinator__{P}", clear_number=3)
    view.apply(keys.run_key(n("b"), P), dump_record(rerun), 5)
    detail = render_page(build_page(graph, view, plan(graph, view, [P]), P), selected=n("b"))
    detail = detail[detail.index('id="detail"') :]
    assert f"coordinator__{P} (success, run attempt 4, clear_number 3)" in detail
    assert f"create coordinator__{P} (done), coordinator trigger #4" in detail
    assert detail.count("attempt") == 1
    assert (requests_row in detail) if requests_row else ("Airflow requests" not in detail)


def test_values_from_etcd_are_escaped() -> None:
    """An error text with markup in it is shown as text, never as HTML."""
    keys = KeyLayout("/p")
    graph = parse_spec('{"b": "a"}', "s.json")
    view = View(keys)
    view.apply(keys.run_key(n("a"), P), run(RunState.SUCCESS), 3)
    view.apply(keys.trigger_key(n("b"), P), ledger(TriggerStatus.ERROR, 4, last_error="<script>alert(1)</script>"), 4)
    html = render_page(build_page(graph, view, plan(graph, view, [P]), P), selected=n("b"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def page(settings: Settings, partition: str | None = None) -> tuple[int, str]:
    answer = asyncio.run(
        asyncio.wait_for(dependencies_page(partition, None, instance="default", settings=settings), 30)
    )
    return answer.status, answer.html


def test_service_reads_etcd_and_draws_the_adopted_graph(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """Against a real etcd: the graph the watcher adopted and each DAG's state for the newest partition."""
    keys = KeyLayout(etcd_prefix)
    _, writes = states_store(keys)

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key, value, _ in writes:
                await store.put(key, value)

    arun(write())
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")
    status, html = page(settings)
    assert status == 200
    assert f"graph: adopted by the watcher ({etcd_prefix}/config/graph)" in html
    # Revisions differ from the pure test's, so compare only what does not depend on them.
    states = svg_states(html)
    assert {k: states[k] for k in ("r", "b", "c", "f", "g", "x")} == {
        k: str(EXPECTED[k]) for k in ("r", "b", "c", "f", "g", "x")
    }


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("no-graph", 200, "No dependency graph yet"),
        ("bad-partition", 400, "invalid partition"),
        ("etcd-down", 503, "etcd cannot be read right now"),
    ],
    ids=["no-graph", "bad-partition", "etcd-down"],
)
def test_service_says_what_is_wrong(case: str, status: int, message: str, etcd_endpoint: str, etcd_prefix: str,
                                    tmp_path: Path) -> None:  # fmt: skip
    """No graph, a bad partition or etcd down give a page that says so, with a fitting HTTP status."""
    endpoint = "http://127.0.0.1:9" if case == "etcd-down" else etcd_endpoint
    settings = Settings(etcd_endpoints=endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")
    got_status, html = page(settings, "2026-1-1" if case == "bad-partition" else None)
    assert got_status == status
    assert message in html
    assert "127.0.0.1" not in html  # no endpoint (or credential) is ever shown


def test_page_and_diff_import_neither_airflow_nor_a_web_framework() -> None:
    """The page and the diff command load no airflow, fastapi or starlette (so the watcher can serve the page)."""
    code = (
        "import sys\n"
        "import coordinator.page.service, coordinator.cli.diff_cmds\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'fastapi', 'starlette')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
