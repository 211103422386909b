"""Asset streams as keys of the watcher's one queue (``coordinator/watcher/deliveries.py``), against a real etcd and
fake Airflows: a watcher in this process leads, its asset round submits each stream with a due event, and each
stream's attempt runs on its own: a slow target holds only its own streams, a deferred stream comes back through the
queue at its ``look_after``, and a key handed out on a standby is dropped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.assets import MARKER, AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.etcd import EtcdStore
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, InstanceSettings, Settings
from coordinator.watcher.assets import AssetJob
from coordinator.watcher.executor import Pool
from coordinator.watcher.keys import AssetStream
from coordinator.watcher.service import Watcher
from tests.support.fake_airflow import FakeAirflow

ORDERS = "s3://lake/orders"
Fakes = tuple[FakeAirflow, FakeAirflow, FakeAirflow]


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with FakeAirflow([]) as source, FakeAirflow([]) as b, FakeAirflow([]) as c:
        for fake in (source, b, c):
            fake.add_asset(ORDERS, name="orders")
        yield source, b, c


def settings_for(tmp_path: Path, endpoint: str, prefix: str, **extra: Any) -> Settings:
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({
        "version": 1, "instances": {"team_a": {}, "team_b": {}, "team_c": {}}, "dags": {},
        "assets": [{"asset": "s3://lake/*", "from": "team_a", "to": ["team_b", "team_c"]}],
    }))  # fmt: skip
    return Settings(etcd_endpoints=endpoint, prefix=prefix, deps=deps, http="off", **extra)


def watcher_for(settings: Settings, store: EtcdStore, fakes: Fakes, stack: AsyncExitStack) -> Watcher:
    clients: dict[str, AirflowClient] = {}
    for name, fake in zip(("team_a", "team_b", "team_c"), fakes, strict=True):
        client = AirflowClient(InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin")),
                               timeout_s=10.0, name=name)  # fmt: skip
        stack.push_async_callback(client.aclose)
        clients[name] = client
    return Watcher(settings, store, GraphSource(settings.deps), clients, watcher_id="w1")


def asset_job(watcher: Watcher) -> AssetJob:
    job = watcher.jobs[AssetJob.name]
    assert isinstance(job, AssetJob)
    return job


def copies(fake: FakeAirflow) -> list[str]:
    """The delivered copies in ``fake``: the marker of each."""
    return [str(e["extra"][MARKER]) for e in fake.asset_events(ORDERS) if MARKER in (e["extra"] or {})]


async def until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_slow_target_holds_only_its_own_stream(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, fakes: Fakes, tmp_path: Path,
    arun: Callable[..., Any],
) -> None:  # fmt: skip
    """One source event routed to two targets, team_b's POST held for 3 s: team_c's copy arrives while team_b's
    stream attempt is still in flight (counted in the streams' pool, not among the trigger actions in flight), and
    once it ends each target holds exactly one copy."""
    source, b, c = fakes
    settings = settings_for(tmp_path, etcd_endpoint, etcd_prefix)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(etcd_settings)
            stack.push_async_callback(store.close)
            watcher = watcher_for(settings, store, fakes, stack)
            await watcher.load()
            streams = asyncio.create_task(watcher.deliveries.controller.run())  # the controller's workers
            try:
                assert await watcher.election.acquire(timeout=5)
                event_id = source.emit_asset_event(ORDERS)
                b.delay_next(1, 3.0, endpoint="post_asset_event")
                await asset_job(watcher).run_once(datetime.now(UTC))
                await until(lambda: copies(c) == [f"team_a:{event_id}"])
                assert copies(b) == [], "team_c waited for team_b's POST"
                # team_c's attempt ends (its done entry written) while team_b's still waits for its POST's answer.
                await until(lambda: watcher.executor.busy_in(Pool.STREAMS) == 1)
                team_b = AssetStream("team_b", "team_a", ORDERS)
                assert copies(b) == [] and watcher.deliveries.controller.queue.processing(team_b)
                assert watcher.executor.busy == 0, "a stream attempt counted among the trigger actions"
                await watcher.executor.drain()
                assert copies(b) == [f"team_a:{event_id}"]
                assert copies(c) == [f"team_a:{event_id}"]
                await until(lambda: not watcher.deliveries.controller.queue.processing(team_b))
            finally:
                streams.cancel()
                await asyncio.gather(streams, return_exceptions=True)
                await watcher.executor.drain()
                await watcher.election.resign()

    arun(main())


def test_a_stream_deferred_by_the_term_rule_comes_back_through_the_queue_at_its_look_after(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, fakes: Fakes, tmp_path: Path,
    arun: Callable[..., Any],
) -> None:  # fmt: skip
    """A pending entry an earlier term wrote (team_b) waits out the new term's look-after (call timeout 1 s + 2 s):
    its stream key waits in the queue meanwhile, the loop hands it out when the wait ends, and the event arrives in
    team_b once, not before that time; team_c's stream, with no entry, is delivered at once."""
    source, b, c = fakes
    settings = settings_for(tmp_path, etcd_endpoint, etcd_prefix, airflow_timeout_s=1.0)
    keys = AssetKeys(etcd_prefix)
    stream = AssetStream("team_b", "team_a", ORDERS)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(etcd_settings)
            stack.push_async_callback(store.close)
            event_id = source.emit_asset_event(ORDERS)
            at = datetime.now(UTC)
            fact = AssetEventFact(event_id=event_id, uri=ORDERS, timestamp=at, recorded_by="audit:w0")
            pending = DeliveryRecord(status=DeliveryStatus.PENDING, source="team_a", event_id=event_id, uri=ORDERS,
                                     requested_at=at, watcher="w0")  # fmt: skip
            await store.put(keys.event_key("team_a", ORDERS, event_id), fact.model_dump_json().encode())
            await store.put(keys.delivery_key(*stream, event_id), pending.model_dump_json().encode())
            watcher = watcher_for(settings, store, fakes, stack)
            await watcher.load()
            streams = asyncio.create_task(watcher.deliveries.controller.run())  # the controller's workers
            try:
                assert await watcher.election.acquire(timeout=5)
                led = time.monotonic()
                await asset_job(watcher).run_once(datetime.now(UTC))
                await until(lambda: copies(c) == [f"team_a:{event_id}"])
                await until(lambda: not watcher.deliveries.controller.queue.processing(stream))
                assert watcher.deliveries.controller.queue.waiting(stream), "the deferred stream is not waiting"
                assert copies(b) == []
                while not copies(b):  # the controller's workers take the key when its delay ends
                    assert time.monotonic() - led < 15.0, "the deferred stream never came back"
                    await asyncio.sleep(0.01)
                assert time.monotonic() - led >= 3.0 - 0.1, "delivered before the term's look-after"
                await watcher.executor.drain()
                assert len(copies(b)) == 1 and len(copies(c)) == 1
            finally:
                streams.cancel()
                await asyncio.gather(streams, return_exceptions=True)
                await watcher.executor.drain()
                await watcher.election.resign()

    arun(main())


def test_a_stream_key_handed_out_on_a_standby_is_dropped(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, fakes: Fakes, tmp_path: Path,
    arun: Callable[..., Any],
) -> None:  # fmt: skip
    """A recorded event due in team_b and a watcher that does not lead: the stream key the queue hands out starts
    no attempt (none even tried to pin a term: the executor saw no lost leadership; nothing is written or posted)
    and leaves neither processing nor the queue's delays."""
    source, b, _ = fakes
    settings = settings_for(tmp_path, etcd_endpoint, etcd_prefix)
    keys = AssetKeys(etcd_prefix)
    stream = AssetStream("team_b", "team_a", ORDERS)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(etcd_settings)
            stack.push_async_callback(store.close)
            event_id = source.emit_asset_event(ORDERS)
            fact = AssetEventFact(event_id=event_id, uri=ORDERS, timestamp=datetime.now(UTC), recorded_by="audit:w0")
            await store.put(keys.event_key("team_a", ORDERS, event_id), fact.model_dump_json().encode())
            watcher = watcher_for(settings, store, fakes, stack)
            await watcher.load()
            before = await store.current_revision()
            queue = watcher.deliveries.controller.queue
            queue.add(stream)
            assert await watcher.deliveries.controller.drain_ready() == 1  # handed out, on a standby
            await watcher.executor.drain()
            assert not watcher.executor.leadership_lost.is_set(), "a standby attempted the stream"
            assert copies(b) == []
            assert await store.current_revision() == before
            assert not queue.processing(stream) and not queue.waiting(stream) and len(queue) == 0

    arun(main())
