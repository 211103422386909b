"""Asset streams as keys of the watcher's one queue (``coordinator/watcher/deliveries.py``), against a real etcd and
fake Airflows: a watcher in this process leads, its informer hands the controller each stream whose event or entry
the watch brought (its asset round submits each stream with a due event too), and each stream's attempt runs on its
own: a slow target holds only its own streams, a deferred stream comes back through the queue at its
``look_after``, a key handed out on a standby is dropped, the leader's own write is not acted on again before the
watch brings it, and an operator's skip request reaches the controller through the watch."""

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
from coordinator.core.assets import MARKER, AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus, SkipRequest
from coordinator.etcd import EtcdStore
from coordinator.manager import DONE, Result
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, InstanceSettings, Settings
from coordinator.watcher.assets import AssetJob
from coordinator.watcher.deliveries import OWN_WRITE_WAIT_S
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


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


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
            revision = await watcher.load()
            streams = asyncio.create_task(watcher.deliveries.controller.run())  # the controller's workers
            # The informer's watch: it brings the round's recorded event back and hands its streams to the controller.
            reflector = asyncio.create_task(watcher.reflect(revision))
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
                reflector.cancel()
                await asyncio.gather(streams, reflector, return_exceptions=True)
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


class CountingStore:
    """The real store, noting the key of every compare-and-swap tried through it."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def cas(self, key: str, value: bytes, expected: int, **kwargs: Any) -> Any:
        self.writes.append(key)
        return await self.store.cas(key, value, expected, **kwargs)


def test_the_leaders_own_delivery_write_is_not_acted_on_again_before_the_watch_brings_it(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, fakes: Fakes, tmp_path: Path,
    arun: Callable[..., Any],
) -> None:  # fmt: skip
    """A stream delivered by one attempt while the informer does not follow the store: the asset index still shows
    the event undelivered, and the stream reconciled again at once neither posts nor tries a write (its own write
    is pending) but asks to come back; once the watch brings the write, the informer hands the stream back and its
    attempt finds nothing to do: one copy in the target."""
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
            counting = CountingStore(store)
            watcher = watcher_for(settings, counting, fakes, stack)  # type: ignore[arg-type]
            revision = await watcher.load()
            reflector: asyncio.Task[None] | None = None
            try:
                assert await watcher.election.acquire(timeout=5)
                now = datetime.now(UTC)
                assert await watcher.deliveries.reconcile(stream, now) == DONE
                assert copies(b) == [f"team_a:{event_id}"]
                assert counting.writes, "the first attempt wrote its entry"
                due = watcher.assets.due_stream(stream, watcher.graphs.graph.asset_routes, now)
                assert due is not None and due.record is None, "the index shows the attempt's own write (by hand)"
                counting.writes.clear()
                again = await watcher.deliveries.reconcile(stream, datetime.now(UTC))
                assert again == Result(requeue_after=OWN_WRITE_WAIT_S)
                assert counting.writes == [] and copies(b) == [f"team_a:{event_id}"]
                reflector = asyncio.create_task(watcher.reflect(revision))
                queue = watcher.deliveries.controller.queue
                await until(lambda: watcher.executor.expectations.awaited() == 0 and len(queue) > 0)
                assert await watcher.deliveries.controller.drain_ready() == 1  # the stream the watch brought
                await watcher.executor.drain()
                assert counting.writes == [] and copies(b) == [f"team_a:{event_id}"]
                assert watcher.assets.due_stream(stream, watcher.graphs.graph.asset_routes, datetime.now(UTC)) is None
            finally:
                if reflector is not None:
                    reflector.cancel()
                    await asyncio.gather(reflector, return_exceptions=True)
                await watcher.executor.drain()
                await watcher.election.resign()

    arun(main())


def test_a_skip_request_put_into_etcd_reaches_the_streams_controller_through_the_informer(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, fakes: Fakes, tmp_path: Path,
    arun: Callable[..., Any],
) -> None:  # fmt: skip
    """A head refused with an hour to wait: an operator's skip request written into its entry reaches the leader's
    streams controller through the informer's changes (no asset round runs), and its attempt settles it as skipped
    without posting."""
    source, b, _ = fakes
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
            refused = DeliveryRecord(status=DeliveryStatus.ERROR, source="team_a", event_id=event_id, uri=ORDERS,
                                     requested_at=at, retry_at=at + timedelta(hours=1), last_error="refused",
                                     watcher="w0")  # fmt: skip
            entry = keys.delivery_key(*stream, event_id)
            await store.put(keys.event_key("team_a", ORDERS, event_id), fact.model_dump_json().encode())
            await store.put(entry, refused.model_dump_json().encode())
            watcher = watcher_for(settings, store, fakes, stack)
            revision = await watcher.load()
            reflector = asyncio.create_task(watcher.reflect(revision))
            workers: asyncio.Task[None] | None = None
            seen: list[DeliveryStatus] = []

            def status() -> DeliveryStatus | None:
                return seen[-1] if seen else None

            async def follow() -> None:
                while True:
                    kv = await store.get(entry)
                    if kv is not None:
                        seen.append(DeliveryRecord.model_validate_json(kv.value).status)
                    await asyncio.sleep(0.05)

            stack.push_async_callback(cancel, asyncio.create_task(follow()))
            try:
                assert await watcher.election.acquire(timeout=5)
                queue = watcher.deliveries.controller.queue
                assert len(queue) == 0
                skip = SkipRequest(by="operator", at=datetime.now(UTC), reason="gone for good")
                await store.put(entry, refused.model_copy(update={"skip": skip}).model_dump_json().encode())
                await until(lambda: len(queue) > 0)
                assert queue.holds(lambda key: key == stream, delayed=False) and len(queue) == 1
                # The controller's workers: the entry of an earlier term waits out this term's look-after (1 s + 2 s).
                workers = asyncio.create_task(watcher.deliveries.controller.run())
                await until(lambda: status() is DeliveryStatus.SKIPPED)
                assert copies(b) == []
            finally:
                reflector.cancel()
                if workers is not None:
                    workers.cancel()
                await asyncio.gather(*(t for t in (reflector, workers) if t is not None), return_exceptions=True)
                await watcher.executor.drain()
                await watcher.election.resign()

    arun(main())
