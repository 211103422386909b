"""The dependencies page names operators' holds (issue 51): a DAG a standing hold covers for the drawn partition says
"held by H: REASON" in its node and leads its detail with the line `why` prints; others, other partitions and
released holds say nothing of it (pure, and through the etcd-backed service)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator.core.holds import Hold, parse_selector
from coordinator.core.model import KeyLayout, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.page.holds import with_holds
from coordinator.page.model import build_page
from coordinator.page.render import render_page
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings
from tests.test_page import P, n, states_store

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def a_hold(**fields: Any) -> Hold:
    values: dict[str, Any] = {
        "id": "h-1", "selector": parse_selector("a"), "nodes": ("default/a",), "from_partition": P,
        "to_partition": P, "downstream": True, "reason": "bad customer data in a", "by": "alice",
        "created_at": NOW - timedelta(hours=1),
    }  # fmt: skip
    return Hold.model_validate({**values, **fields})


def test_a_held_dag_and_the_dags_below_say_held_by_the_hold_and_why() -> None:
    """A --downstream hold on a for P: a and b (below it) lead with "held by h-1: REASON" and the why line; r (above)
    and the drawn page of another partition say nothing of it; the rendered node's title carries it."""
    graph = parse_spec('{"a": "r", "b": "a"}', "s.json")
    view = View(KeyLayout("/p"))
    model = with_holds(build_page(graph, view, plan(graph, view, [P]), P), graph, [a_hold()], NOW)
    said = {str(node.node): node for node in model.nodes}
    for dag in ("a", "b"):
        assert said[dag].summary.startswith("held by h-1: bad customer data in a; "), said[dag].summary
        assert said[dag].why[0] == (f"hold: nothing is triggered or cleared for {dag} {P}: held by hold h-1 since "
                                    "2026-01-02T11:00:00+00:00 by alice: bad customer data in a; `coordinator "
                                    "release-hold h-1` lets each held run start once")  # fmt: skip
    assert "held by" not in said["r"].summary and not any("hold" in w for w in said["r"].why)
    other = "2026-01-03T00:00:00Z"
    elsewhere = with_holds(build_page(graph, view, plan(graph, view, [other]), other), graph, [a_hold()], NOW)
    assert not any("held by" in node.summary for node in elsewhere.nodes)
    html = render_page(model, selected=n("b"))
    assert "held by h-1: bad customer data in a" in html


def test_a_released_or_expired_hold_says_nothing() -> None:
    """Released, or past its expiry: the page is the one without the hold."""
    graph = parse_spec('{"a": "r", "b": "a"}', "s.json")
    view = View(KeyLayout("/p"))
    page = build_page(graph, view, plan(graph, view, [P]), P)
    gone = [a_hold(released_at=NOW - timedelta(minutes=1), released_by="bob"), a_hold(id="h-2", until=NOW)]
    assert with_holds(page, graph, gone, NOW) == page


def test_the_service_reads_the_holds_and_draws_them(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """Against a real etcd: with a standing hold on a recorded, the page for P names it on a and on g (below a)."""
    keys = KeyLayout(etcd_prefix)
    _, writes = states_store(keys)
    hold = a_hold(created_at=datetime.now(UTC) - timedelta(minutes=5))

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key, value, _ in writes:
                await store.put(key, value)
            await store.put(keys.hold_key(hold.id), dump_record(hold))

    arun(write())
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")
    answer = asyncio.run(asyncio.wait_for(dependencies_page(P, "default/g", instance="default", settings=settings), 30))
    assert answer.status == 200
    assert answer.html.count("held by h-1: bad customer data in a") >= 2, answer.html
    assert "hold: nothing is triggered or cleared for g " in answer.html
