"""The asset round's **Record what the routes share** (``coordinator/watcher/assets.py``) and the streams' look-ups
(``coordinator/watcher/deliveries.py``) over more events than one listing returns, against a real etcd, wired as the
watcher wires them (``tests/support/asset_rig.py``): a stretch of events no route shares does not stall the rounds, and
an Airflow 2 source's backlog (its v1 listing bisected and paged oldest first, ``tests/support/fake_datasets_v1.py``)
reaches the target whole, once, in order. The job lists at most ``list_limit`` events per call: small here, 10,000 in
production."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.assets import MARKER, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.etcd.types import Fence
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from tests.support.asset_rig import AssetRig
from tests.support.fake_airflow import FakeAirflow
from tests.support.fake_datasets_v1 import FakeDatasetEventsV1

ORDERS = "s3://lake/orders"
NOISE = "s3://lake/noise"  # an asset of the source that no route shares
SPEC = parse_spec(
    json.dumps(
        {
            "version": 1,
            "instances": {"team_a": {}, "team_b": {}},
            "dags": {},
            "assets": [{"asset": ORDERS, "from": "team_a", "to": ["team_b"]}],
        }
    )
)


def settings(url: str) -> InstanceSettings:
    return InstanceSettings(url=url, username="admin", password=SecretStr("admin"))


@asynccontextmanager
async def rig_with(
    store: EtcdStore, prefix: str, clients: dict[str, AirflowClient], start: datetime
) -> AsyncIterator[AssetRig]:
    """The round of team_a -> team_b, listings of 50, its index loaded and following the watch (a term long begun:
    no term wait)."""
    leader = f"{prefix}/leader"
    await store.put(leader, b"w1")
    kv = await store.get(leader)
    assert kv is not None
    fence = Fence(leader, kv.create_revision)
    rig = AssetRig(
        store, AssetKeys(prefix), SPEC, clients, lambda: fence, start, deliveries={"list_limit": 50},
        job={"lookback_s": 86400.0, "started_at": start, "list_limit": 50},
    )  # fmt: skip
    await rig.start()
    try:
        yield rig
    finally:
        await rig.close()


def delivered(target: FakeAirflow) -> list[str]:
    return [str(e["extra"][MARKER]) for e in target.asset_events(ORDERS) if MARKER in (e["extra"] or {})]


async def entry_after_rounds(
    etcd_settings: EtcdSettings,
    prefix: str,
    fakes: tuple[FakeAirflow, FakeAirflow],
    event_id: int,
    rounds: list[datetime],
    *,
    pending: DeliveryRecord | None = None,
    call_timeout_s: float | None = None,
) -> list[DeliveryRecord]:
    """Run the job of team_a -> team_b once at each of ``rounds`` (``pending``: the ledger entry put first) and
    return the delivery entry of ``event_id`` after each round."""
    key = AssetKeys(prefix).delivery_key("team_b", "team_a", ORDERS, event_id)
    async with (
        await EtcdStore.connect(etcd_settings) as store,
        AirflowClient(settings(fakes[0].url), name="team_a") as a,
        AirflowClient(settings(fakes[1].url), name="team_b") as b,
    ):
        if pending is not None:
            await store.put(key, pending.model_dump_json().encode())
        records = []
        async with rig_with(store, prefix, {"team_a": a, "team_b": b}, rounds[0]) as rig:
            if call_timeout_s is not None:
                rig.deliveries.call_timeout_s = call_timeout_s  # the whole POST's bound (**Term wait** counts on it)
            for at in rounds:
                await rig.round(at)
                kv = await store.get(key)
                assert kv is not None
                records.append(DeliveryRecord.model_validate_json(kv.value))
        return records


def test_a_listing_full_of_events_no_route_shares_does_not_stall_the_rounds(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """120 events of an unrouted asset (more than two listings of 50) then one routed event: a few rounds later the
    routed event is in team_b, once."""
    now = datetime.now(UTC)
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS)
        source.add_asset(NOISE)
        for i in range(120):
            source.emit_asset_event(NOISE, at=now - timedelta(hours=2) + timedelta(seconds=50 * i))
        wanted = source.emit_asset_event(ORDERS, at=now - timedelta(seconds=5))

        async def go() -> None:
            async with (
                await EtcdStore.connect(etcd_settings) as store,
                AirflowClient(settings(source.url), name="team_a") as a,
                AirflowClient(settings(target.url), name="team_b") as b,
                rig_with(store, etcd_prefix, {"team_a": a, "team_b": b}, now) as rig,
            ):
                for _ in range(5):
                    await rig.round(now)

        arun(go())
        assert delivered(target) == [f"team_a:{wanted}"]


def test_an_airflow2_source_backlog_larger_than_a_listing_is_delivered_whole_once_in_order(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """An Airflow 2 source holding 1,000 events of which the 240 after the mark are routed (v1 listing: no time
    filter): rounds of listings of 50 record and deliver all 240 into team_b, each once, in the source's order."""
    now = datetime.now(UTC)
    source = FakeDatasetEventsV1(seed=5)
    first = now - timedelta(hours=6)
    ids = [source.add(first + timedelta(seconds=20 * i), uri=ORDERS) for i in range(1_000)]
    mark = now - timedelta(seconds=1 + 6400)  # the job's start less its lookback: the last 240 events
    since = [i for i, e in zip(ids, source.events, strict=True) if datetime.fromisoformat(e["timestamp"]) >= mark]
    assert len(since) == 240
    with FakeAirflow([]) as target:
        target.add_asset(ORDERS)

        async def go() -> None:
            v1 = httpx.MockTransport(source)
            async with (
                await EtcdStore.connect(etcd_settings) as store,
                AirflowClient(settings("http://airflow2.test"), transport=v1, name="team_a") as a,
                AirflowClient(settings(target.url), name="team_b") as b,
                rig_with(store, etcd_prefix, {"team_a": a, "team_b": b}, now - timedelta(seconds=1)) as rig,
            ):
                rig.job.lookback_s = 6400.0
                for _ in range(8):
                    await rig.round(now)

        arun(go())
        assert delivered(target) == [f"team_a:{i}" for i in since]


def test_the_look_before_a_repeat_finds_the_marker_behind_more_than_one_listing_of_events(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A pending delivery (the leader died after posting) whose target asset got 120 other events between the
    intent and the marked one (listings of 50): the look-up pages on, finds it, confirms it, and posts nothing."""
    now = datetime.now(UTC)
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS)
        event_id = source.emit_asset_event(ORDERS, at=now - timedelta(minutes=5))
        intent = now - timedelta(minutes=4)
        for i in range(120):
            target.emit_asset_event(ORDERS, at=intent + timedelta(seconds=i))
        marked = target.emit_asset_event(ORDERS, at=intent + timedelta(minutes=3), extra={MARKER: f"team_a:{event_id}"})
        pending = DeliveryRecord(status=DeliveryStatus.PENDING, source="team_a", event_id=event_id, uri=ORDERS,
                                 requested_at=intent)  # fmt: skip
        (record,) = arun(entry_after_rounds(etcd_settings, etcd_prefix, (source, target), event_id, [now],
                                            pending=pending))  # fmt: skip
        assert (record.status, record.target_event_id) == (DeliveryStatus.DONE, marked)
        assert target.requests("post_asset_event") == [], "posted although the event was there"
        assert len(target.requests("list_asset_events")) >= 3  # it paged: 121 events, listings of 50


def test_a_post_left_unanswered_past_the_call_timeout_is_recorded_transient_and_found_by_the_next_look(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """team_b creates the event but answers the POST only after the job's call timeout: the round records an error
    ("no answer within"), and the next round looks before posting, finds the event and confirms it: one POST."""
    now = datetime.now(UTC)
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS)
        event_id = source.emit_asset_event(ORDERS, at=now - timedelta(seconds=5))
        target.delay_next(1, 2.0, endpoint="post_asset_event", after=True)  # created, answered 2 s later
        # The second round comes after the transient retry time.
        rounds = [now, now + timedelta(seconds=10)]
        first, second = arun(entry_after_rounds(etcd_settings, etcd_prefix, (source, target), event_id, rounds,
                                                call_timeout_s=0.5))  # fmt: skip
        assert first.status is DeliveryStatus.ERROR and "no answer within 0.5 s" in (first.last_error or ""), first
        assert second.status is DeliveryStatus.DONE, second
        assert delivered(target) == [f"team_a:{event_id}"]
        assert len(target.requests("post_asset_event")) == 1, "posted again instead of looking"


def test_a_look_that_cannot_page_past_one_instant_posts_nothing_and_records_why(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A pending delivery whose target asset holds more events at one timestamp than a listing returns (60 against
    listings of 50), none with the marker: "not there" is unproven, so nothing is posted and the entry says why."""
    now = datetime.now(UTC)
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS)
        event_id = source.emit_asset_event(ORDERS, at=now - timedelta(minutes=5))
        intent = now - timedelta(minutes=4)
        for _ in range(60):
            target.emit_asset_event(ORDERS, at=intent + timedelta(seconds=1))
        pending = DeliveryRecord(status=DeliveryStatus.PENDING, source="team_a", event_id=event_id, uri=ORDERS,
                                 requested_at=intent)  # fmt: skip
        (record,) = arun(entry_after_rounds(etcd_settings, etcd_prefix, (source, target), event_id, [now],
                                            pending=pending))  # fmt: skip
        assert record.status is DeliveryStatus.ERROR and "cannot page past" in (record.last_error or ""), record
        assert target.requests("post_asset_event") == [], "posted although the marker may be among the unread"
