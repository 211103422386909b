"""``coordinator/page/asset_feed.py`` against a real etcd: the page's shared assets come from an asset index loaded
at the first view and kept current by a watch, so later views read neither asset prefix and still show what changed."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.model import KeyLayout
from coordinator.etcd import EtcdStore
from coordinator.informer.read_model import Family, load
from coordinator.page.asset_feed import AssetFeed, shared_assets
from coordinator.page.assets import AssetNode
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer

ORDERS = "s3://lake/orders"
AT = datetime(2026, 1, 1, tzinfo=UTC)


def event(event_id: int) -> bytes:
    return (
        AssetEventFact(event_id=event_id, uri=ORDERS, timestamp=AT, source_dag_id="producer").model_dump_json().encode()
    )


def entry(event_id: int, status: DeliveryStatus) -> bytes:
    record = DeliveryRecord(status=status, source="team_a", event_id=event_id, uri=ORDERS, requested_at=AT)
    return record.model_dump_json().encode()


def counts(nodes: tuple[AssetNode, ...]) -> list[tuple[str, int, int]]:
    return [(t.instance, t.delivered, t.pending) for node in nodes for t in node.targets]


def test_views_after_the_first_read_neither_asset_prefix_and_show_what_the_watch_brought(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first view loads the index; later views make no ranged read of the events or deliveries prefix, and a
    delivery confirmed and an event recorded since appear in them once the watch brought them."""
    keys = AssetKeys(etcd_prefix)
    ranged: list[str] = []
    real = EtcdStore.snapshot

    async def counting(self: EtcdStore, prefix: str, **kwargs: Any) -> Any:
        ranged.append(prefix)
        return await real(self, prefix, **kwargs)

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.event_key("team_a", ORDERS, 1), event(1))
            await store.put(keys.delivery_key("team_b", "team_a", ORDERS, 1), entry(1, DeliveryStatus.PENDING))
            assert counts(await shared_assets(etcd_settings, etcd_prefix)) == [("team_b", 0, 1)]
            monkeypatch.setattr(EtcdStore, "snapshot", counting)
            await store.put(keys.delivery_key("team_b", "team_a", ORDERS, 1), entry(1, DeliveryStatus.DONE))
            await store.put(keys.event_key("team_a", ORDERS, 2), event(2))
            deadline = time.monotonic() + 10
            while (seen := counts(await shared_assets(etcd_settings, etcd_prefix))) != [("team_b", 1, 1)]:
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.05)
            await store.delete(keys.event_key("team_a", ORDERS, 2))
            while (seen := counts(await shared_assets(etcd_settings, etcd_prefix))) != [("team_b", 1, 0)]:
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.05)
        assert not [p for p in ranged if p.startswith((keys.events, keys.deliveries))], ranged

    arun(main())


def test_a_loop_that_ends_right_after_a_view_always_ends(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A view in a short-lived event loop (``asyncio.run``, as the one-decision test calls the page; a page process
    stopping) leaves a watch opening or open; the loop's end cancels it and always finishes, whichever await the
    cancel meets (600 loops ending 0-6 ms after the view). Python 3.11's ``wait_for`` around the watch's creation
    swallowed that cancel about once in 30-130 loops, and the loop's end then waited for ever."""
    rng = random.Random(35)

    async def view(linger_s: float) -> None:
        await shared_assets(etcd_settings, etcd_prefix)
        await asyncio.sleep(linger_s)

    for attempt in range(600):
        linger_s = rng.uniform(0, 0.006)
        loop_ended = threading.Event()

        def run_one(linger_s: float = linger_s, loop_ended: threading.Event = loop_ended) -> None:
            asyncio.run(view(linger_s))
            loop_ended.set()

        worker = threading.Thread(target=run_one, name=f"page-view-{attempt}", daemon=True)
        worker.start()
        worker.join(60)  # a loop's end takes milliseconds; a cancel swallowed never ends (the worker stays behind)
        assert loop_ended.is_set(), f"loop {attempt} (ending {linger_s * 1000:.1f} ms after its view) never ended"


def test_a_relist_of_one_asset_prefix_removes_what_was_deleted_there_and_leaves_the_other_prefix_alone(
    private_etcd: EtcdServer, arun: Callable[..., Any]
) -> None:
    """An event and a delivery entry deleted (and an event recorded) while the feed's watches were away, with those
    revisions compacted: the events watch relists, dropping the deleted event and adding the new one, and leaves the
    delivery entries alone (a relist diffs its own prefix only, rule 1); the deliveries watch's relist then drops the
    deleted entry, and the index holds what a fresh load holds."""
    prefix = "/feed-relist"
    keys = AssetKeys(prefix)
    settings = EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))

    async def follow_until(
        feed: AssetFeed, store: EtcdStore, watched: str, revision: int, done: Callable[[], bool]
    ) -> None:
        task = asyncio.create_task(feed.follow(store, watched, revision))
        try:
            async with asyncio.timeout(30):
                while not done():
                    assert not task.done(), task
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def main() -> None:
        async with await EtcdStore.connect(settings) as store:
            for n in (1, 2):
                await store.put(keys.event_key("team_a", ORDERS, n), event(n))
                await store.put(keys.delivery_key("team_b", "team_a", ORDERS, n), entry(n, DeliveryStatus.DONE))
            feed = AssetFeed(settings, keys)
            start = await feed.load(store)
            await store.delete(keys.event_key("team_a", ORDERS, 2))
            await store.delete(keys.delivery_key("team_b", "team_a", ORDERS, 1))
            now = await store.put(keys.event_key("team_a", ORDERS, 3), event(3))
            await store.compact(now)

            def event_ids() -> set[int]:
                return {key[2] for key in feed.index.events}

            def entries() -> set[str]:
                return {key for key in feed.index.known() if key.startswith(keys.deliveries)}

            both = {keys.delivery_key("team_b", "team_a", ORDERS, n) for n in (1, 2)}
            assert entries() == both
            await follow_until(feed, store, keys.events, start[keys.events], lambda: event_ids() == {1, 3})
            assert entries() == both  # the events relist left the other prefix's keys alone
            await follow_until(feed, store, keys.deliveries, start[keys.deliveries], lambda: len(entries()) == 1)
            assert entries() == {keys.delivery_key("team_b", "team_a", ORDERS, 2)}
            fresh = (await load(store, KeyLayout(prefix), {Family.ASSETS})).assets
            assert fresh is not None and feed.index.known() == fresh.known()

    arun(main())
