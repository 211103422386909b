"""The page at estate scale: filters, a neighbourhood, pages of a large graph, and what one request reads."""

from __future__ import annotations

import json
import re

from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.plan_scope import partition_reads
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.page.model import build_page
from coordinator.page.render import render_page
from coordinator.page.select import PAGE_SIZE, Selection

P = "2026-01-01T00:00:00Z"


def chain_page(count: int, succeeded: int) -> tuple[Graph, View]:
    """A chain of ``count`` DAGs d000 -> d001 -> ...; the first ``succeeded`` succeeded in P."""
    dags = {f"d{i:03d}": {"upstreams": f"d{i - 1:03d}"} if i else {} for i in range(count)}
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}), "chain.json")
    keys = KeyLayout("/p")
    view = View(keys)
    for i in range(succeeded):
        view.apply(
            keys.run_key(NodeId.parse(f"d{i:03d}"), P),
            dump_record(RunRecord(state=RunState.SUCCESS, run_id="x")),
            i + 2,
        )
    return graph, view


def drawn(html: str) -> list[str]:
    return re.findall(r'<a class="node" [^>]*data-dag="default/([^"]+)"', html)


def render(count: int, succeeded: int, **query: str) -> str:
    graph, view = chain_page(count, succeeded)
    return render_page(build_page(graph, view, plan(graph, view, [P]), P), selection=Selection.parse(query))


def test_a_large_graph_is_drawn_a_page_at_a_time_with_every_dag_counted() -> None:
    """300 DAGs: the default view draws the first PAGE_SIZE in graph order, says so, links the next page, and the
    legend still counts all 300; page 3 draws the rest."""
    html = render(300, 10)
    assert drawn(html) == [f"d{i:03d}" for i in range(PAGE_SIZE)]
    assert f"DAGs 1-{PAGE_SIZE} of 300 shown" in html and 'id="page-next"' in html and "page=2" in html
    assert "succeeded (10)" in html and "waiting (289)" in html and "not run (1)" in html
    last = render(300, 10, page="3")
    assert drawn(last) == [f"d{i:03d}" for i in range(2 * PAGE_SIZE, 300)] and 'id="page-previous"' in last


def test_filters_by_state_name_and_neighbourhood_keep_the_partition_in_links() -> None:
    """state=succeeded draws the succeeded DAGs only; q matches a substring; around draws a DAG and its neighbours
    within depth; node links keep the filters."""
    assert drawn(render(300, 10, state="succeeded")) == [f"d{i:03d}" for i in range(10)]
    assert drawn(render(300, 10, q="d02")) == [f"d{i:03d}" for i in range(20, 30)]
    around = render(300, 10, around="default/d150", depth="2")
    assert drawn(around) == ["d148", "d149", "d150", "d151", "d152"]
    assert "around=default%2Fd150" in around and f"partition={P.replace(':', '%3A')}" in around


def test_bad_filter_values_are_ignored_not_errors() -> None:
    """An unknown state, a malformed DAG reference and a page number past the end fall back to defaults."""
    html = render(30, 3, state="purple", around="not a dag", page="999")
    assert drawn(html) == [f"d{i:03d}" for i in range(30)]


def test_one_partition_reads_only_its_own_keys_or_its_mapped_window() -> None:
    """Without grids a partition's decision reads every DAG in that partition only; through a rollup it reads the
    24 hours of the source too; a gate adds one step back (its own yesterday and its upstream there), a task edge
    the named task's keys."""
    plain = parse_spec(json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": "a"}}}), "p.json")
    a, b, g, h = (NodeId.parse(n) for n in "abgh")
    assert partition_reads(plain, P).nodes == {(a, P), (b, P)}
    assert partition_reads(plain, P).tasks == frozenset()
    hourly, daily = {"cron": "0 * * * *"}, {"cron": "0 0 * * *"}
    dags = {"h": {"partitions": hourly}, "d": {"partitions": daily, "upstreams": "h"}}
    rollup = parse_spec(json.dumps({"version": 1, "dags": dags}), "r.json")
    assert len({p for n, p in partition_reads(rollup, P).nodes if n == h}) == 24
    yesterday = "2025-12-31T00:00:00Z"
    gated = parse_spec(json.dumps({"version": 1, "dags": {
        "a": {"partitions": daily},
        "g": {"partitions": daily, "upstreams": ["a", {"dag": "g", "offset": -1}]},
    }}), "g.json")  # fmt: skip
    assert partition_reads(gated, P).nodes == {(a, P), (g, P), (g, yesterday), (a, yesterday)}
    tasked = parse_spec(json.dumps({"version": 1, "dags": {"b": {"upstreams": [{"dag": "a", "task": "load"}]}}}),
                        "t.json")  # fmt: skip
    assert partition_reads(tasked, P).tasks == {(a, "load", P)}
