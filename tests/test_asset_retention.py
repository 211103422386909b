"""The asset round's **Prune what is delivered** (``coordinator/watcher/assets.py``): retention deletes delivered asset
events and their delivery entries, against a real etcd and fake Airflows at the HTTP boundary (a source ``team_a``,
targets ``team_b`` and ``team_c``), the round and the streams wired as the watcher wires them
(``tests/support/asset_rig.py``: the index fed by the watch, the streams delivered through their controller). What must
hold: only events delivered everywhere, old, outside the listing window and not the newest of their asset are deleted,
each with its entries in one fenced transaction that checks nothing changed; and after a prune, later rounds re-listing
the source never record or deliver a pruned event again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.assets import MARKER, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import LeadershipLost
from coordinator.etcd import EtcdStore
from coordinator.etcd.types import DeleteResult, Fence
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from tests.support.asset_rig import AssetRig
from tests.support.fake_airflow import FakeAirflow

ORDERS = "s3://lake/orders"  # routed to team_b and team_c
REFUNDS = "s3://lake/refunds"  # routed to team_b only
DAY = timedelta(days=1)
SPEC = json.dumps(
    {
        "version": 1,
        "instances": {"team_a": {}, "team_b": {}, "team_c": {}},
        "dags": {},
        "assets": [
            {"asset": ORDERS, "from": "team_a", "to": ["team_b", "team_c"]},
            {"asset": REFUNDS, "from": "team_a", "to": ["team_b"]},
        ],
    }
)


@dataclass
class World:
    """Three fake Airflows (a source, two targets), each knowing its routed assets; the prefix's asset keys."""

    source: FakeAirflow
    b: FakeAirflow
    c: FakeAirflow
    keys: AssetKeys

    def fakes(self) -> dict[str, FakeAirflow]:
        return {"team_a": self.source, "team_b": self.b, "team_c": self.c}


@pytest.fixture
def world(etcd_prefix: str) -> Iterator[World]:
    with FakeAirflow([]) as source, FakeAirflow([]) as b, FakeAirflow([]) as c:
        for fake in (source, b):
            fake.add_asset(ORDERS, name="orders")
            fake.add_asset(REFUNDS, name="refunds")
        yield World(source, b, c, AssetKeys(etcd_prefix))


class Harness:
    """The asset round of one watcher (its own clients and leader key) and the etcd it writes, for one test."""

    def __init__(self, store: EtcdStore, world: World, fence: Fence, retention: timedelta | None) -> None:
        self.store, self.world, self.fence = store, world, fence
        self.clients = {
            name: AirflowClient(InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin")),
                                timeout_s=5.0, name=name)
            for name, fake in world.fakes().items()
        }  # fmt: skip
        self.rig = AssetRig(
            store, world.keys, parse_spec(SPEC), self.clients, lambda: self.fence, datetime.now(UTC) - 90 * DAY,
            deliveries={"error_retry_s": 3600.0}, job={"lookback_s": 30 * 86400.0, "retention": retention},
        )  # fmt: skip
        self.job = self.rig.job

    async def round(self, now: datetime) -> None:
        """One round at ``now`` and the stream attempts it led to."""
        await self.rig.round(now)

    async def close(self) -> None:
        await self.rig.close()
        for client in self.clients.values():
            await client.aclose()

    async def event_ids(self, uri: str) -> list[int]:
        """The ids of the recorded events of ``uri`` (from team_a) in etcd."""
        found = []
        for kv in (await self.store.snapshot(self.world.keys.events)).kvs:
            parsed = self.world.keys.parse_event_key(kv.key)
            if parsed is not None and parsed[1] == uri:
                found.append(parsed[2])
        return sorted(found)

    async def deliveries(self, uri: str) -> dict[tuple[str, int], tuple[str, int]]:
        """(target, event id) -> (status, mod revision) of the delivery entries of ``uri`` in etcd."""
        found = {}
        for kv in (await self.store.snapshot(self.world.keys.deliveries)).kvs:
            parsed = self.world.keys.parse_delivery_key(kv.key)
            if parsed is not None and parsed[2] == uri:
                record = DeliveryRecord.model_validate_json(kv.value)
                found[(parsed[0], parsed[3])] = (str(record.status), kv.mod_revision)
        return found


async def leader_fence(store: EtcdStore, keys: AssetKeys, holder: str = "w1") -> Fence:
    key = f"{keys.prefix}/leader"
    await store.put(key, holder.encode())
    kv = await store.get(key)
    assert kv is not None
    return Fence(key, kv.create_revision)


def harness(
    etcd_settings: EtcdSettings, world: World, retention: timedelta | None, arun: Callable[..., Any]
) -> Callable[[Callable[[Harness], Any]], Any]:
    """Run ``body(harness)`` with a connected store, a leader key held by this watcher and the job's clients."""

    def go(body: Callable[[Harness], Any]) -> Any:
        async def main() -> Any:
            async with await EtcdStore.connect(etcd_settings) as store:
                h = Harness(store, world, await leader_fence(store, world.keys), retention)
                await h.rig.start()
                try:
                    return await body(h)
                finally:
                    await h.close()

        return arun(main())

    return go


def markers(fake: FakeAirflow, uri: str) -> list[str]:
    """The coordinator's copies in a target, in creation order: one marker per delivered source event."""
    return [str(e["extra"][MARKER]) for e in fake.asset_events(uri) if MARKER in (e["extra"] or {})]


def test_a_prune_deletes_old_events_delivered_everywhere_and_keeps_the_newest_the_refused_and_the_pending(
    etcd_settings: EtcdSettings, world: World, arun: Callable[..., Any]
) -> None:
    """Old refunds delivered to team_b are deleted with their entries, but never the newest refund (even old), nor
    orders that team_c refused (error) or holds pending while team_b has them done."""
    now = datetime.now(UTC)
    src = world.source
    refunds = [src.emit_asset_event(REFUNDS, at=now - age) for age in (5 * DAY, 4 * DAY, 3 * DAY)]
    # Orders: team_c does not know the asset, so its first delivery is refused (error, retried in an hour).
    orders = [src.emit_asset_event(ORDERS, at=now - age) for age in (5 * DAY, 4 * DAY)]
    # Two recent orders (not old enough to prune); the newest sets where the source's next listing starts.
    window = src.emit_asset_event(ORDERS, at=now - timedelta(seconds=40))
    newest = src.emit_asset_event(ORDERS, at=now - timedelta(seconds=10))

    async def body(h: Harness) -> None:
        # A round prunes only what it read at its start: the first records and delivers, the second prunes.
        await h.round(now)
        assert await h.event_ids(REFUNDS) == refunds
        await h.round(now)
        assert await h.event_ids(REFUNDS) == [refunds[-1]], "old delivered refunds stay, or the newest went"
        assert sorted(await h.deliveries(REFUNDS)) == [("team_b", refunds[-1])]
        assert await h.event_ids(ORDERS) == [*orders, window, newest]
        got = await h.deliveries(ORDERS)
        assert {k: s for k, (s, _) in got.items() if k[0] == "team_c"} == {("team_c", orders[0]): "error"}
        assert all(s == "done" for k, (s, _) in got.items() if k[0] == "team_b")
        # A pending entry for team_c (as a leader that died after its intent leaves it), behind the refused head:
        pending = DeliveryRecord(status=DeliveryStatus.PENDING, source="team_a", event_id=orders[1], uri=ORDERS,
                                 requested_at=now)  # fmt: skip
        key = world.keys.delivery_key("team_c", "team_a", ORDERS, orders[1])
        await h.store.put(key, pending.model_dump_json().encode())
        await h.round(now)
        assert await h.event_ids(ORDERS) == [*orders, window, newest], "an order not delivered to team_c was pruned"
        assert (await h.deliveries(ORDERS))[("team_c", orders[1])][0] == "pending"

    harness(etcd_settings, world, DAY, arun)(body)
    assert markers(world.b, REFUNDS) == [f"team_a:{i}" for i in refunds]
    assert markers(world.b, ORDERS) == [f"team_a:{i}" for i in [*orders, window, newest]]


def test_an_event_inside_the_listing_window_stays_however_short_the_retention(
    etcd_settings: EtcdSettings, world: World, arun: Callable[..., Any]
) -> None:
    """With a one-second retention, a delivered refund 50 s older than the source's newest event stays (the next
    listing still returns it), and one 5 minutes older goes."""
    now = datetime.now(UTC)
    src = world.source
    old = src.emit_asset_event(REFUNDS, at=now - timedelta(minutes=5))
    inside = src.emit_asset_event(REFUNDS, at=now - timedelta(seconds=60))
    last = src.emit_asset_event(REFUNDS, at=now - timedelta(seconds=10))

    async def body(h: Harness) -> None:
        await h.round(now)
        await h.round(now)
        assert await h.event_ids(REFUNDS) == [inside, last]
        for _ in range(3):  # later rounds list from (newest - 1 min): the kept event is seen, nothing comes back
            await h.round(now)
        assert await h.event_ids(REFUNDS) == [inside, last]

    harness(etcd_settings, world, timedelta(seconds=1), arun)(body)
    assert markers(world.b, REFUNDS) == [f"team_a:{i}" for i in (old, inside, last)]


class RacingStore:
    """The real store, but right before the first prune's transaction another writer rewrites ``key`` (same value,
    new mod revision): the entry changed between the round's read and its delete."""

    def __init__(self, store: EtcdStore, key: str) -> None:
        self.store, self.key, self.raced = store, key, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def delete_unchanged(self, items: Any, *, fence: Fence | None = None) -> DeleteResult:
        if not self.raced and any(k == self.key for k, _ in items):
            self.raced = True
            kv = await self.store.get(self.key)
            assert kv is not None
            await self.store.put(self.key, kv.value)
        return await self.store.delete_unchanged(items, fence=fence)


def test_an_entry_changed_between_the_read_and_the_delete_is_not_deleted(
    etcd_settings: EtcdSettings, world: World, arun: Callable[..., Any]
) -> None:
    """A delivery entry rewritten while the round runs makes that event's delete fail as a whole (event and entries
    stay); the next round, reading it afresh, prunes it."""
    now = datetime.now(UTC)
    src = world.source
    first = src.emit_asset_event(REFUNDS, at=now - 3 * DAY)
    second = src.emit_asset_event(REFUNDS, at=now - 2 * DAY)
    src.emit_asset_event(REFUNDS, at=now - timedelta(seconds=5))

    async def body(h: Harness) -> None:
        # The first round delivers without retention, the second prunes with one rewrite racing it.
        h.job.retention = None
        await h.round(now)
        h.job.retention = DAY
        racing = RacingStore(h.store, world.keys.delivery_key("team_b", "team_a", REFUNDS, first))
        h.rig.use_executor(h.rig.executor_on(racing))
        await h.round(now)
        assert racing.raced
        ids = await h.event_ids(REFUNDS)
        assert first in ids and second not in ids, ids
        assert ("team_b", first) in await h.deliveries(REFUNDS)
        await h.round(now)
        assert first not in await h.event_ids(REFUNDS)
        assert ("team_b", first) not in await h.deliveries(REFUNDS)

    harness(etcd_settings, world, DAY, arun)(body)


def test_a_watcher_that_no_longer_leads_deletes_nothing(
    etcd_settings: EtcdSettings, world: World, arun: Callable[..., Any]
) -> None:
    """After another watcher took the leader key, a round with this watcher's old fence raises LeadershipLost at
    its prune and every event and entry is still in etcd."""
    now = datetime.now(UTC)
    src = world.source
    for age in (3 * DAY, 2 * DAY, timedelta(seconds=5)):
        src.emit_asset_event(REFUNDS, at=now - age)

    async def body(h: Harness) -> None:
        h.job.retention = None
        await h.round(now)  # delivered everything while leading
        before = (await h.event_ids(REFUNDS), await h.deliveries(REFUNDS))
        await h.store.delete(h.fence.key)
        await leader_fence(h.store, world.keys, holder="w2")  # a new leader key: a new create revision
        h.job.retention = DAY
        with pytest.raises(LeadershipLost):
            await h.round(now)
        assert (await h.event_ids(REFUNDS), await h.deliveries(REFUNDS)) == before
        assert len(before[0]) == 3

    harness(etcd_settings, world, DAY, arun)(body)


def test_after_prunes_later_rounds_never_record_or_deliver_a_pruned_event_again(
    etcd_settings: EtcdSettings, world: World, arun: Callable[..., Any]
) -> None:
    """Rounds a minute apart (the clock an input), events every round, a 30-second retention (shorter than the
    listing overlap): events are pruned as
    they age, and team_b holds each source event exactly once, in order, whatever the rounds re-list."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    src = world.source
    emitted: list[int] = []

    async def body(h: Harness) -> None:
        pruned_some = False
        for minute in range(20):
            now = start + timedelta(minutes=minute)
            for second in (5, 30, 50):  # three per minute, the last 10 s before the round
                emitted.append(src.emit_asset_event(REFUNDS, at=now - timedelta(seconds=60 - second)))
            await h.round(now)
            kept = await h.event_ids(REFUNDS)
            pruned_some |= kept[0] != emitted[0]
            assert kept == sorted(kept) and kept[-1] == emitted[-1]
        assert pruned_some, "nothing was ever pruned: the test proves nothing"
        assert len(await h.event_ids(REFUNDS)) < len(emitted) / 2

    harness(etcd_settings, world, timedelta(seconds=30), arun)(body)
    assert markers(world.b, REFUNDS) == [f"team_a:{i}" for i in emitted]
