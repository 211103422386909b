"""The dependencies page draws shared assets as nodes of its graph (coordinator.page.assets, semantics rules
16-17): producer DAG -> asset -> one small node per target instance with delivered / pending counts from the
delivery ledger, a detail panel per asset (``?asset=``), only for users who may read a DAG of an instance the asset
names (coordinator.page.access rule 4)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.assets import (
    AssetEventFact,
    AssetKeys,
    DeliveryRecord,
    DeliveryStatus,
    Ledger,
    SourceEvent,
)
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.planner import plan
from coordinator.etcd import EtcdStore
from coordinator.page.access import Access, restrict
from coordinator.page.assets import (
    MAX_DRAWN,
    AssetFilter,
    AssetNode,
    AssetTarget,
    TargetState,
    asset_nodes,
    place,
)
from coordinator.page.model import PageModel, build_page
from coordinator.page.render import render_page
from coordinator.page.select import Selection
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings
from tests.test_page import P, states_store, states_view
from tests.test_page_select import chain_page

AT = datetime(2026, 3, 1, tzinfo=UTC)
ORDERS = "s3://lake/orders"


def fact(event_id: int, uri: str = ORDERS, dag: str | None = None) -> AssetEventFact:
    return AssetEventFact(event_id=event_id, uri=uri, timestamp=AT, source_dag_id=dag)


def delivery(
    source: str, event_id: int, status: DeliveryStatus, uri: str = ORDERS, error: str | None = None
) -> DeliveryRecord:
    return DeliveryRecord(status=status, source=source, event_id=event_id, uri=uri, requested_at=AT, last_error=error,
                          retry_at=AT if status is DeliveryStatus.ERROR else None)  # fmt: skip


def sample() -> tuple[list[SourceEvent], Ledger]:
    """team_a's orders 1-3 (made by DAG r): team_b has 1 and 2 (3 is an intent), team_c has 1 and was refused 2;
    team_a's refunds 9 is routed nowhere."""
    events = [SourceEvent("team_a", fact(i, dag="r")) for i in (1, 2, 3)]
    events.append(SourceEvent("team_a", fact(9, "s3://x/refunds")))
    entries = {
        ("team_b", "team_a", ORDERS, 1): (delivery("team_a", 1, DeliveryStatus.DONE, error="timeout, retried"), 10),
        ("team_b", "team_a", ORDERS, 2): (delivery("team_a", 2, DeliveryStatus.DONE), 11),
        ("team_b", "team_a", ORDERS, 3): (delivery("team_a", 3, DeliveryStatus.PENDING), 12),
        ("team_c", "team_a", ORDERS, 1): (delivery("team_a", 1, DeliveryStatus.DONE), 13),
        ("team_c", "team_a", ORDERS, 2): (delivery("team_a", 2, DeliveryStatus.ERROR, error="403 Forbidden"), 14),
    }
    return events, Ledger(entries)


def test_one_node_per_routed_asset_with_each_targets_counts_next_event_and_last_error() -> None:
    """Per target of team_a's orders: the done events, the rest pending, the oldest pending one with its ledger
    status, and the newest recorded error; the producing DAG from the events; refunds (no delivery) is no node."""
    events, ledger = sample()
    (node,) = asset_nodes(events, ledger)
    assert (node.uri, node.source, node.producers, node.key) == (ORDERS, "team_a", ("r",), f"team_a:{ORDERS}")
    team_b, team_c = node.targets
    assert team_b == AssetTarget("team_b", 2, 1, 3, DeliveryStatus.PENDING, None, "timeout, retried")
    assert team_c == AssetTarget("team_c", 1, 2, 2, DeliveryStatus.ERROR, AT, "403 Forbidden")
    assert (team_b.state, team_c.state) == (TargetState.PENDING, TargetState.REFUSED)
    assert AssetTarget("team_d", 3, 0).state is TargetState.DELIVERED


def placed_model(shared: tuple[AssetNode, ...]) -> PageModel:
    """The states page of test_page (instance "default", root r) with ``shared`` assets."""
    graph, view = states_view()
    return replace(build_page(graph, view, plan(graph, view, [P]), P), assets=shared)


#: default's orders made by DAG r (a node of the graph), delivered to team_b; team_x's secret made outside it.
LINKED = AssetNode(ORDERS, "default", (AssetTarget("team_b", 2, 1, 3, DeliveryStatus.PENDING),), ("r",))
UNLINKED = AssetNode("s3://x/secret", "team_x", (AssetTarget("team_y", 5, 0),), ("export_secret",))


def test_assets_are_placed_right_of_their_producers_and_targets_right_of_them_without_moving_a_dag() -> None:
    """The asset made by r sits in the column after r's, its target one further; the asset whose producer is no
    DAG of the graph starts a column of its own (column 0, below the DAGs there); DAG places are untouched."""
    model = placed_model((LINKED, UNLINKED))
    dags = {n.node: (n.column, n.row) for n in model.nodes}
    (linked, unlinked), matched = place(model.assets, dags, set(dags), AssetFilter())
    assert matched == 2
    r_col = dags[NodeId("default", "r")][0]
    below = {c: 1 + max(r for cc, r in dags.values() if cc == c) for c, _ in dags.values()}
    assert (linked.column, linked.row) == (r_col + 1, below[r_col + 1])
    assert [(t.column, t.row) for t in linked.targets] == [(r_col + 2, below[r_col + 2])]
    assert linked.linked == (NodeId("default", "r"),) and linked.unlinked == ()
    assert (unlinked.column, unlinked.row) == (0, below[0]) and unlinked.unlinked == ("export_secret",)


def svg(html: str) -> str:
    return html[html.index("<svg") : html.index("</svg>")]


def test_assets_are_nodes_of_the_svg_graph_with_edges_from_producer_and_to_each_target() -> None:
    """Both assets are drawn inside the SVG as pills (not a DAG node), r -> orders -> team_b with the counts on
    team_b's node marked pending (waiting colours), secret's producer named as text; legend entries for assets."""
    html = render_page(placed_model((LINKED, UNLINKED)), instance="default")
    graph = svg(html)
    assert set(re.findall(r'<a class="asset" [^>]*data-asset="([^"]+)"', graph)) == {
        f"default:{ORDERS}",
        "team_x:s3://x/secret",
    }
    assert f'data-from="default/r" data-to="default:{ORDERS}"' in graph
    assert f'data-from="default:{ORDERS}" data-to="default:{ORDERS}&gt;team_b"' in graph
    target = re.search(r'<a class="asset-target" [^>]*data-asset-target="team_b" data-state="pending">.*?</a>', graph)
    assert target is not None and "delivered 2 · pending 1" in target.group(0)
    assert 'fill="#ffffff" stroke="#b0b0b0"' in target.group(0)  # a waiting DAG's colours
    assert "from team_x/export_secret" in graph
    assert "shared asset (2)" in html and "target: pending" in html
    assert "Shared assets</h2>" not in html


def dag_boxes(html: str) -> list[str]:
    return re.findall(r'<a class="node" .*?</a>', html)


def test_a_page_without_routes_is_the_page_it_was() -> None:
    """No asset: no asset element, legend entry or marker anywhere; with assets, every DAG box is drawn exactly
    where and as it was (a route moves no DAG)."""
    plain = render_page(placed_model(()), instance="default")
    assert "asset" not in plain
    with_assets = render_page(placed_model((LINKED, UNLINKED)), instance="default")
    assert dag_boxes(with_assets) == dag_boxes(plain)


def test_clicking_an_asset_shows_its_detail_panel_and_links_keep_the_view() -> None:
    """An asset's link is ?asset=source:uri with the partition and the filters; ?asset= shows per target delivered,
    pending, the next pending event and the last error, and the `why asset` command."""
    events, ledger = sample()
    (orders,) = asset_nodes(events, ledger)
    model = placed_model((orders,))
    html = render_page(model, instance="default", selection=Selection.parse({"q": "team"}))
    href = re.search(r'<a class="asset" href="([^"]+)"', html)
    assert href is not None
    assert href.group(1) == "?partition=2026-01-01T00%3A00%3A00Z&amp;asset=team_a%3As3%3A%2F%2Flake%2Forders&amp;q=team"
    detail = render_page(model, instance="default", selected_asset=orders.key)
    panel = detail[detail.index('<div class="detail"') :]
    rows = re.findall(r'<tr data-asset-target="([^"]+)"><td>[^<]+</td><td>(\d+)</td><td>(\d+)</td><td>([^<]*)</td>'
                      r"<td>([^<]*)</td>", panel)  # fmt: skip
    assert rows == [
        ("team_b", "2", "1", "#3: intent recorded, being delivered", "timeout, retried"),
        ("team_c", "1", "2", "#2: refused, retried at 2026-03-01T00:00:00+00:00", "403 Forbidden"),
    ]
    assert "coordinator why asset s3://lake/orders" in panel and "produced by</td><td>r<" in panel


def test_filters_and_pages_draw_an_asset_with_its_producer() -> None:
    """On a 300-DAG chain, an asset made by d130 is drawn on page 2 (where d130 is) and not on page 1; one made
    outside the graph only on page 1 and not under a state filter; q matching its URI keeps it."""
    graph, view = chain_page(300, 10)
    made_here = AssetNode("s3://lake/d130", "default", (AssetTarget("team_b", 1, 0),), ("d130",))
    outside = AssetNode("s3://lake/other", "team_x", (AssetTarget("default", 1, 0),), ("x",))
    model = replace(build_page(graph, view, plan(graph, view, [P]), P), assets=(made_here, outside))

    def drawn(**query: str) -> set[str]:
        html = svg(render_page(model, selection=Selection.parse(query)))
        return set(re.findall(r'<a class="asset" [^>]*data-asset="([^"]+)"', html))

    assert drawn() == {"team_x:s3://lake/other"}
    assert drawn(page="2") == {"default:s3://lake/d130"}
    assert drawn(state="succeeded") == set()
    assert drawn(q="lake/other") == {"team_x:s3://lake/other"}
    assert drawn(q="d13") == {"default:s3://lake/d130"}  # d130 drawn, so its asset with it
    assert drawn(instance="team_x") == {"team_x:s3://lake/other"}


def asset_page(access: Access | None, selected_asset: str | None = None) -> str:
    """team_a's page: orders of team_a made by DAG ingest_secret, delivered to team_b; team_x's secret asset."""
    graph, view = states_view()
    shared = (
        AssetNode(ORDERS, "team_a", (AssetTarget("team_b", 2, 1, last_error="ingest_secret said no"),),
                  ("ingest_secret", "r")),
        AssetNode("s3://x/secret", "team_x", (AssetTarget("team_y", 5, 0),)),
    )  # fmt: skip
    model = replace(build_page(graph, view, plan(graph, view, [P]), None), assets=shared)
    if access is not None:
        model = restrict(model, access)
    return render_page(model, instance="team_a", selected_asset=selected_asset)


def drawn_assets(html: str) -> set[str]:
    return set(re.findall(r'<a class="asset" [^>]*data-asset="([^"]+)"', html))


def test_an_asset_is_drawn_only_for_users_who_may_read_a_dag_of_an_instance_it_names() -> None:
    """On team_a's page, a user who may read team_a's r sees team_a's asset but not its producer ingest_secret
    (not in the node, its title, the panel or the error); team_x's asset is counted, never named, not even when
    asked for by ?asset=; a user who may read no DAG here sees no asset; sharing other instances shows both."""
    everything = asset_page(None)
    assert drawn_assets(everything) == {f"team_a:{ORDERS}", "team_x:s3://x/secret"}
    assert "ingest_secret" in everything
    html = asset_page(Access("team_a", frozenset({"r"})), selected_asset=f"team_a:{ORDERS}")
    assert drawn_assets(html) == {f"team_a:{ORDERS}"}
    assert "s3://x/secret" not in html and "team_y" not in html and "team_x" not in html
    assert "ingest_secret" not in html, html
    assert "1 shared asset(s) of instances you may not read are not shown" in html
    asked = asset_page(Access("team_a", frozenset({"r"})), selected_asset="team_x:s3://x/secret")
    assert "s3://x/secret" not in asked and "team_y" not in asked and 'id="detail-missing"' in asked
    nothing = asset_page(Access("team_a", frozenset()))
    assert drawn_assets(nothing) == set() and ORDERS not in nothing
    assert "2 shared asset(s) of instances you may not read are not shown" in nothing
    shared = asset_page(Access("team_a", frozenset({"r"}), other_instances=True))
    assert drawn_assets(shared) == {f"team_a:{ORDERS}", "team_x:s3://x/secret"}


@pytest.mark.parametrize("selected", [None, f"team_a:{ORDERS}"], ids=["graph", "detail-panel"])
def test_service_draws_the_shared_assets_recorded_in_etcd(
    selected: str | None,
    arun: Callable[..., Any],
    etcd_settings: EtcdSettings,
    etcd_endpoint: str,
    etcd_prefix: str,
    tmp_path: Path,
) -> None:
    """Against a real etcd: recorded events and ledger entries under the prefix become the page's asset node with
    its targets' counts, and ?asset= in the request's query opens its panel."""
    keys, assets = KeyLayout(etcd_prefix), AssetKeys(etcd_prefix)
    _, writes = states_store(keys)
    events, ledger = sample()
    writes += [(assets.event_key(e.source, e.fact.uri, e.fact.event_id), e.fact.model_dump_json().encode(), 0)
               for e in events]  # fmt: skip
    writes += [(assets.delivery_key(*key), record.model_dump_json().encode(), 0)
               for key, (record, _) in ledger.entries.items()]  # fmt: skip

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key, value, _ in writes:
                await store.put(key, value)

    arun(write())
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")
    query = {"asset": selected} if selected else {}
    answer = asyncio.run(
        asyncio.wait_for(dependencies_page(None, None, instance="default", settings=settings, query=query), 30)
    )
    assert answer.status == 200
    assert drawn_assets(answer.html) == {f"team_a:{ORDERS}"}
    assert "delivered 2 · pending 1" in answer.html and "delivered 1 · pending 2" in answer.html
    assert ('id="why-command"' in answer.html) is (selected is not None)


def test_at_most_max_drawn_assets_are_drawn_per_view_and_the_page_says_how_many_matched() -> None:
    """70 assets made outside the graph: the first MAX_DRAWN (by source, URI) are drawn and the page counts the
    rest; a name filter finds one of the others."""
    many = tuple(AssetNode(f"s3://lake/t{i:02d}", "team_x", (AssetTarget("default", 1, 0),)) for i in range(70))
    model = placed_model(many)
    html = render_page(model)
    assert len(drawn_assets(html)) == MAX_DRAWN
    assert f"shared assets: {MAX_DRAWN} of 70 drawn" in html
    found = render_page(model, selection=Selection.parse({"q": "lake/t69"}))
    assert drawn_assets(found) == {"team_x:s3://lake/t69"} and 'id="asset-pager"' not in found
