"""``coordinator retract`` lists the asset events the withdrawn run produced that were delivered into other
deployments (issue 51: "a retracted asset event that was delivered to other deployments is listed there too"),
against a real etcd: only that run's events, each with its target and delivery status."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from coordinator.cli.incident_cmds import _delivered_from
from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.model import KeyLayout, NodeId
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings

AT = datetime(2026, 1, 1, tzinfo=UTC)
ORDERS = "s3://lake/orders"


def test_the_withdrawn_runs_delivered_asset_events_are_listed_and_no_other(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Events of team_a/load's run r1 delivered to team_b (done) and team_c (pending) are listed; an event of the
    same DAG's other run r2, and one of another DAG, are not."""
    keys, assets = KeyLayout(etcd_prefix), AssetKeys(etcd_prefix)

    def event(event_id: int, dag: str, run_id: str) -> bytes:
        return AssetEventFact(event_id=event_id, uri=ORDERS, timestamp=AT, source_dag_id=dag, source_run_id=run_id,
                              recorded_by="test").model_dump_json().encode()  # fmt: skip

    def delivered(event_id: int, status: DeliveryStatus) -> bytes:
        return DeliveryRecord(status=status, source="team_a", event_id=event_id, uri=ORDERS, requested_at=AT,
                              watcher="test").model_dump_json().encode()  # fmt: skip

    async def scenario() -> tuple[str, ...]:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(assets.event_key("team_a", ORDERS, 1), event(1, "load", "r1"))
            await store.put(assets.event_key("team_a", ORDERS, 2), event(2, "load", "r2"))
            await store.put(assets.event_key("team_a", ORDERS, 3), event(3, "other", "r1"))
            await store.put(assets.delivery_key("team_b", "team_a", ORDERS, 1), delivered(1, DeliveryStatus.DONE))
            await store.put(assets.delivery_key("team_c", "team_a", ORDERS, 1), delivered(1, DeliveryStatus.PENDING))
            await store.put(assets.delivery_key("team_b", "team_a", ORDERS, 2), delivered(2, DeliveryStatus.DONE))
            await store.put(assets.delivery_key("team_b", "team_a", ORDERS, 3), delivered(3, DeliveryStatus.DONE))
            return await _delivered_from(store, keys, NodeId("team_a", "load"), "r1")

    assert arun(scenario()) == (
        f"asset event 1 of {ORDERS} delivered to team_b (done)",
        f"asset event 1 of {ORDERS} delivered to team_c (pending)",
    )
