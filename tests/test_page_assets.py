"""The dependencies page draws shared assets as nodes (coordinator.page.assets, semantics rules 16-17): source
instance -> asset -> target instances with delivered / pending counts from the delivery ledger, only for users who
may read a DAG of an instance the asset names (coordinator.page.access rule 4)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.core.assets import (
    AssetEventFact,
    AssetKeys,
    DeliveryRecord,
    DeliveryStatus,
    Ledger,
    SourceEvent,
)
from coordinator.core.model import KeyLayout
from coordinator.core.planner import plan
from coordinator.etcd import EtcdStore
from coordinator.page.access import Access, restrict
from coordinator.page.assets import AssetNode, AssetTarget, asset_nodes
from coordinator.page.model import build_page
from coordinator.page.render import render_page
from coordinator.settings import EtcdSettings, Settings
from tests.test_page import page, states_store, states_view

AT = datetime(2026, 3, 1, tzinfo=UTC)
ORDERS = "s3://lake/orders"


def fact(event_id: int, uri: str = ORDERS) -> AssetEventFact:
    return AssetEventFact(event_id=event_id, uri=uri, timestamp=AT)


def delivery(source: str, event_id: int, status: DeliveryStatus, uri: str = ORDERS) -> DeliveryRecord:
    return DeliveryRecord(status=status, source=source, event_id=event_id, uri=uri, requested_at=AT)


def sample() -> tuple[list[SourceEvent], Ledger]:
    """team_a's orders 1-3: team_b has 1 and 2 (3 is an intent), team_c has 1; team_a's refunds 9 is routed nowhere."""
    events = [SourceEvent("team_a", fact(i)) for i in (1, 2, 3)] + [SourceEvent("team_a", fact(9, "s3://x/refunds"))]
    entries = {
        ("team_b", "team_a", ORDERS, 1): (delivery("team_a", 1, DeliveryStatus.DONE), 10),
        ("team_b", "team_a", ORDERS, 2): (delivery("team_a", 2, DeliveryStatus.DONE), 11),
        ("team_b", "team_a", ORDERS, 3): (delivery("team_a", 3, DeliveryStatus.PENDING), 12),
        ("team_c", "team_a", ORDERS, 1): (delivery("team_a", 1, DeliveryStatus.DONE), 13),
    }
    return events, Ledger(entries)


def test_one_node_per_routed_asset_with_each_targets_delivered_and_pending_counts() -> None:
    """The ledger's targets of team_a's orders, each with its done events and the rest of the recorded ones pending;
    an asset without any delivery (refunds) is no node."""
    events, ledger = sample()
    assert asset_nodes(events, ledger) == (
        AssetNode(ORDERS, "team_a", (AssetTarget("team_b", 2, 1), AssetTarget("team_c", 1, 2))),
    )


def asset_page(access: Access | None) -> str:
    """The states page of test_page with two shared assets (team_a -> team_b, team_x -> team_y), for ``access``."""
    graph, view = states_view()
    shared = (
        AssetNode(ORDERS, "team_a", (AssetTarget("team_b", 2, 1),)),
        AssetNode("s3://x/secret", "team_x", (AssetTarget("team_y", 5, 0),)),
    )
    model = replace(build_page(graph, view, plan(graph, view, ["2026-01-01T00:00:00Z"]), None), assets=shared)
    if access is not None:
        model = restrict(model, access)
    return render_page(model, instance="team_a")


def drawn_assets(html: str) -> set[str]:
    return set(re.findall(r'data-asset="([^"]+)"', html))


def test_asset_nodes_show_source_asset_and_targets_with_counts() -> None:
    """Without an access check both assets are drawn: source -> asset -> target with delivered / pending."""
    html = asset_page(None)
    assert drawn_assets(html) == {f"team_a:{ORDERS}", "team_x:s3://x/secret"}
    assert "team_b · delivered 2 · pending 1" in html


def test_an_asset_is_drawn_only_for_users_who_may_read_a_dag_of_an_instance_it_names() -> None:
    """On team_a's page, a user who may read a team_a DAG sees team_a's asset; team_x's (other instances not
    shared) is counted, never named; a user who may read no DAG here sees no asset; sharing other instances shows
    both."""
    html = asset_page(Access("team_a", frozenset({"r"})))
    assert drawn_assets(html) == {f"team_a:{ORDERS}"}
    assert "s3://x/secret" not in html and "team_y" not in html
    assert "1 shared asset(s) of instances you may not read are not shown" in html
    nothing = asset_page(Access("team_a", frozenset()))
    assert drawn_assets(nothing) == set() and ORDERS not in nothing
    assert "2 shared asset(s) of instances you may not read are not shown" in nothing
    shared = asset_page(Access("team_a", frozenset({"r"}), other_instances=True))
    assert drawn_assets(shared) == {f"team_a:{ORDERS}", "team_x:s3://x/secret"}


def test_service_draws_the_shared_assets_recorded_in_etcd(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """Against a real etcd: recorded events and ledger entries under the prefix become the page's asset node."""
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
    status, html = page(Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json"))
    assert status == 200
    assert drawn_assets(html) == {f"team_a:{ORDERS}"}
    assert "team_b · delivered 2 · pending 1" in html and "team_c · delivered 1 · pending 2" in html
