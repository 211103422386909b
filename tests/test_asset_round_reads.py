"""The asset round reads what changed, not the history (``coordinator/watcher/assets.py``'s **From the index**),
against a real etcd and fake Airflows: a watcher in this process loads its view and asset index once, keeps them
current from its watch, and its asset rounds then deliver each new event exactly once without a ranged read of the
recorded events or the delivery ledger; a relist removes from the index what was deleted while the watch was away."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.assets import MARKER, AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.etcd import EtcdStore
from coordinator.etcd.watch import relist_diff
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, InstanceSettings, Settings
from coordinator.watcher.assets import AssetJob
from coordinator.watcher.service import Watcher
from tests.support.fake_airflow import FakeAirflow

ORDERS = "s3://lake/orders"
HISTORY = "s3://lake/history"  # the delivered past: recorded events, each done in team_b
RECORDED = 2000


class CountingStore:
    """The real store, noting the prefix of every ranged read (``snapshot``, ``stream_snapshot``) and the key of
    every compare-and-swap made through it."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.ranged: list[str] = []
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def snapshot(self, prefix: str, **kwargs: Any) -> Any:
        self.ranged.append(prefix)
        return await self.store.snapshot(prefix, **kwargs)

    async def stream_snapshot(self, prefix: str, sink: Any, **kwargs: Any) -> Any:
        self.ranged.append(prefix)
        return await self.store.stream_snapshot(prefix, sink, **kwargs)

    async def cas(self, key: str, value: bytes, expected: int, **kwargs: Any) -> Any:
        self.writes.append(key)
        return await self.store.cas(key, value, expected, **kwargs)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeAirflow, FakeAirflow]]:
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS, name="orders")
            fake.add_asset(HISTORY, name="history")
        yield source, target


def spec(tmp_path: Path) -> Path:
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({
        "version": 1, "instances": {"team_a": {}, "team_b": {}}, "dags": {},
        "assets": [{"asset": "s3://lake/*", "from": "team_a", "to": ["team_b"]}],
    }))  # fmt: skip
    return deps


async def record_history(store: EtcdStore, keys: AssetKeys, count: int, at: datetime) -> None:
    """``count`` recorded events of HISTORY, each with its ``done`` entry in team_b (written as the job writes)."""
    puts: list[tuple[str, bytes]] = []
    for n in range(1, count + 1):
        event_id = 1_000_000 + n
        fact = AssetEventFact(event_id=event_id, uri=HISTORY, timestamp=at + timedelta(seconds=n))
        done = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=event_id, uri=HISTORY,
                              requested_at=at, done_at=at, target_event_id=n)  # fmt: skip
        puts.append((keys.event_key("team_a", HISTORY, event_id), fact.model_dump_json().encode()))
        puts.append((keys.delivery_key("team_b", "team_a", HISTORY, event_id), done.model_dump_json().encode()))
    for start in range(0, len(puts), 200):
        await asyncio.gather(*(store.put(key, value) for key, value in puts[start : start + 200]))


def watcher_for(
    settings: Settings, store: EtcdStore, fakes: tuple[FakeAirflow, FakeAirflow], stack: AsyncExitStack
) -> Watcher:
    clients: dict[str, AirflowClient] = {}
    for name, fake in zip(("team_a", "team_b"), fakes, strict=True):
        client = AirflowClient(InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin")),
                               timeout_s=5.0, name=name)  # fmt: skip
        stack.push_async_callback(client.aclose)
        clients[name] = client
    return Watcher(settings, store, GraphSource(settings.deps), clients, watcher_id="w1")


def asset_job(watcher: Watcher) -> AssetJob:
    job = watcher.jobs[AssetJob.name]
    assert isinstance(job, AssetJob)
    return job


async def asset_round(watcher: Watcher, job: AssetJob) -> None:
    """One round of the watcher's asset job and the stream attempts it submitted (keys of the streams' controller),
    run to their end."""
    await job.run_once(datetime.now(UTC))
    await watcher.deliveries.controller.drain_ready()
    await watcher.executor.drain()


def markers(fake: FakeAirflow) -> list[str]:
    return [str(e["extra"][MARKER]) for e in fake.asset_events(ORDERS) if MARKER in (e["extra"] or {})]


def test_an_asset_round_over_a_long_history_reads_neither_prefix_and_delivers_each_new_event_once(
    etcd_settings: EtcdSettings,
    etcd_endpoint: str,
    etcd_prefix: str,
    fakes: tuple[FakeAirflow, FakeAirflow],
    tmp_path: Path,
    arun: Callable[..., Any],
) -> None:
    """With thousands of delivered events recorded, a leading watcher's asset rounds make no ranged read of the
    events or deliveries prefix; the new events reach the target once each as the watch brings the round's records
    back (the informer hands their streams to the controller), and later rounds write nothing and post nothing
    again."""
    source, target = fakes
    keys = AssetKeys(etcd_prefix)
    now = datetime.now(UTC)
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=spec(tmp_path),
                        http="off")  # fmt: skip

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(etcd_settings)
            stack.push_async_callback(store.close)
            await record_history(store, keys, RECORDED, now - timedelta(days=2))
            watcher = watcher_for(settings, store, fakes, stack)
            revision = await watcher.load()
            assert len(watcher.assets.events) == RECORDED
            reflector = asyncio.create_task(watcher.reflect(revision))
            streams = asyncio.create_task(watcher.deliveries.controller.run())
            try:
                assert await watcher.election.acquire(timeout=5)
                job = asset_job(watcher)
                counting = CountingStore(store)
                job.store = counting  # type: ignore[assignment]
                emitted = [source.emit_asset_event(ORDERS, at=now - timedelta(seconds=s)) for s in (30, 20, 10)]
                await job.run_once(datetime.now(UTC))
                await until(lambda: markers(target) == [f"team_a:{i}" for i in emitted])
                await until(lambda: watcher.executor.expectations.awaited() == 0 and not busy(watcher))
                counting.writes.clear()
                for _ in range(3):  # more rounds: nothing written, nothing posted again
                    await asset_round(watcher, job)
                    await asyncio.sleep(0.1)
                assert counting.writes == [], "a later round acted on a stale entry of its own"
                assert markers(target) == [f"team_a:{i}" for i in emitted]
                assert not [p for p in counting.ranged if p.startswith((keys.events, keys.deliveries))], counting.ranged
                assert len(watcher.assets.events) == RECORDED + len(emitted)
                assert watcher.assets.pending([*watcher.graphs.graph.asset_routes]) == {"team_b": 0}
            finally:
                for task in (reflector, streams):
                    task.cancel()
                await asyncio.gather(reflector, streams, return_exceptions=True)
                await watcher.executor.drain()
                await watcher.election.resign()

    arun(main())


def busy(watcher: Watcher) -> bool:
    """Whether the streams' controller has a key queued, in work or waiting."""
    queue = watcher.deliveries.controller.queue
    return bool(len(queue)) or queue.holds(lambda _: True)


async def until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_relist_removes_from_the_asset_index_what_was_deleted_while_the_watch_was_away(
    etcd_settings: EtcdSettings,
    etcd_endpoint: str,
    etcd_prefix: str,
    fakes: tuple[FakeAirflow, FakeAirflow],
    tmp_path: Path,
    arun: Callable[..., Any],
) -> None:
    """An event and its entry deleted while the watch could not follow (a compaction forces a relist) leave the
    watcher's asset index when the relist's difference is applied: it is never due again."""
    keys = AssetKeys(etcd_prefix)
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=spec(tmp_path),
                        http="off")  # fmt: skip

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(etcd_settings)
            stack.push_async_callback(store.close)
            await record_history(store, keys, 3, datetime.now(UTC) - timedelta(days=2))
            watcher = watcher_for(settings, store, fakes, stack)
            await watcher.load()
            gone = (keys.event_key("team_a", HISTORY, 1_000_001), keys.delivery_key("team_b", "team_a", HISTORY,
                                                                                    1_000_001))  # fmt: skip
            for key in gone:
                await store.delete(key)
            # What ``watch_prefix`` hands out after a compaction: the difference between what the watcher holds and
            # a fresh read of its prefix.
            watcher._apply_batch(relist_diff(watcher.informer.known(), await store.snapshot(settings.keys.root)))
            assert not watcher.assets.has_event("team_a", HISTORY, 1_000_001)
            assert ("team_b", "team_a", HISTORY, 1_000_001) not in watcher.assets.ledger
            assert len(watcher.assets.events) == 2

    arun(main())
