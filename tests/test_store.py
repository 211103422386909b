"""EtcdStore against a real etcd: snapshots, the resilient watch, CAS with fences, leader election, auth and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import pytest
from pydantic import SecretStr

from coordinator.errors import ConfigError, LeadershipLost, StoreError, StoreUnavailable
from coordinator.etcd import (
    KV,
    CasResult,
    EtcdStore,
    Event,
    EventKind,
    Fence,
    Snapshot,
    WatchBatch,
)
from coordinator.etcd.watch import relist_diff
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer
from tests.support.certs import make_certs

T = TypeVar("T")

# -- helpers ------------------------------------------------------------------------------------------------------


def run_coro(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """asyncio.run under a timeout: a hung scenario fails fast instead of waiting for pytest-timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def settings_for(endpoint: str, **overrides: Any) -> EtcdSettings:
    return EtcdSettings(endpoints=parse_endpoints(endpoint), **overrides)


class Collector:
    """Consumes a watch in a background task so a test can act while it runs and wait for what it expects."""

    def __init__(self, batches: AsyncIterator[WatchBatch]) -> None:
        self.batches: list[WatchBatch] = []
        self._source = batches
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for batch in self._source:
                self.batches.append(batch)
                self._changed.set()
        finally:
            self._changed.set()

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch.events]

    @property
    def revision(self) -> int:
        return self.batches[-1].revision if self.batches else 0

    async def until(self, done: Callable[[Collector], bool], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                if self._task.done():
                    self._task.result()
                    raise AssertionError("the watch ended")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def view_of(snapshot: Snapshot) -> dict[str, tuple[bytes, int]]:
    return {kv.key: (kv.value, kv.mod_revision) for kv in snapshot.kvs}


def apply(view: dict[str, tuple[bytes, int]], batches: list[WatchBatch]) -> dict[str, tuple[bytes, int]]:
    result = dict(view)
    for batch in batches:
        for event in batch.events:
            if event.kind is EventKind.PUT:
                result[event.key] = (event.value, event.mod_revision)
            else:
                result.pop(event.key, None)
    return result


class TcpProxy:
    """A TCP relay in its own thread that can cut every connection and refuse new ones: a network partition."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._blocked = False
        self._transports: set[asyncio.BaseTransport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self._transports |= pair

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for transport in pair:  # one side gone: cut both, as a broken network would
                transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._transports -= pair

    def block(self) -> None:
        async def cut() -> None:
            self._blocked = True
            for transport in list(self._transports):
                transport.abort()

        self._call(cut())

    def unblock(self) -> None:
        async def restore() -> None:
            self._blocked = False

        self._call(restore())

    def close(self) -> None:
        self.block()

        async def shutdown() -> None:
            self._server.close()
            await self._server.wait_closed()

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def proxy(private_etcd: EtcdServer) -> Iterator[TcpProxy]:
    assert private_etcd.client_port is not None
    relay = TcpProxy(private_etcd.client_port)
    try:
        yield relay
    finally:
        relay.close()


# -- key-value and snapshots ----------------------------------------------------------------------------------------


def test_put_get_delete_round_trip(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """put returns the write's revision, get returns it with its revisions, delete reports whether the key existed."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            key = f"{etcd_prefix}/a"
            revision = await store.put(key, b"1")
            assert await store.get(key) == KV(key, b"1", revision, revision, 1)
            assert await store.current_revision() >= revision
            assert await store.delete(key) is True
            assert await store.delete(key) is False
            assert await store.get(key) is None

    run_coro(scenario())


def test_connect_to_unreachable_etcd_fails_fast() -> None:
    """Connecting to a port nobody serves raises StoreUnavailable naming the endpoint within about a second."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot reach http://127\.0\.0\.1:1"):
        run_coro(EtcdStore.connect(settings_for("http://127.0.0.1:1")))
    assert time.monotonic() - started < 3


def test_connect_tries_endpoints_in_order(etcd_endpoint: str, etcd_prefix: str) -> None:
    """With a dead endpoint listed first, the store connects through the next one."""

    async def scenario() -> None:
        async with await EtcdStore.connect(settings_for(f"http://127.0.0.1:1,{etcd_endpoint}")) as store:
            assert store.endpoint == etcd_endpoint
            await store.put(f"{etcd_prefix}/x", b"y")

    run_coro(scenario())


def test_snapshot_then_watch_from_its_revision(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A watch started from a snapshot delivers exactly the writes after it, in order, grouped per response."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(f"{etcd_prefix}/a", b"1")
            await store.put(f"{etcd_prefix}/b", b"1")
            await store.put(f"{etcd_prefix}x/outside", b"not under the prefix")
            snap = await store.snapshot(etcd_prefix + "/")
            assert [kv.key for kv in snap.kvs] == [f"{etcd_prefix}/a", f"{etcd_prefix}/b"]
            r_put = await store.put(f"{etcd_prefix}/c", b"2")
            await store.delete(f"{etcd_prefix}/a")
            r_del = await store.current_revision()
            watch = Collector(store.watch_prefix(etcd_prefix + "/", snap))
            try:
                await watch.until(lambda w: w.revision >= r_del)
            finally:
                await watch.close()
            assert watch.events == [
                Event(EventKind.PUT, f"{etcd_prefix}/c", b"2", r_put),
                Event(EventKind.DELETE, f"{etcd_prefix}/a", b"", r_del),
            ]
            assert not any(batch.relisted for batch in watch.batches)
            await store.delete(f"{etcd_prefix}x/outside")

    run_coro(scenario())


def test_paged_snapshot_of_12000_keys_equals_a_direct_read(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """12,000 keys are read in 3 pages at one revision and equal a single unpaged read by another client."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            limit = asyncio.Semaphore(64)

            async def put(i: int) -> None:
                async with limit:
                    await store.put(f"{etcd_prefix}/k{i:05d}", f'{{"state":"success","n":{i}}}'.encode())

            await asyncio.gather(*(put(i) for i in range(12_000)))
            with caplog.at_level("DEBUG", logger="coordinator.etcd"):
                snap = await store.snapshot(etcd_prefix + "/")
            assert "keys=12000 pages=3" in caplog.text

        host, port = etcd_endpoint.removeprefix("http://").split(":")
        async with aetcd.Client(host=host, port=int(port)) as client:
            direct = await client.get_prefix((etcd_prefix + "/").encode())
        assert len(direct.kvs) == 12_000
        assert [(kv.key, kv.value, kv.mod_revision, kv.create_revision, kv.version) for kv in snap.kvs] == [
            (kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision, kv.version) for kv in direct.kvs
        ]
        assert snap.revision == direct.header.revision  # nothing else wrote under or around the prefix since

    run_coro(scenario(), timeout=120)


def test_paged_snapshot_is_one_revision_under_concurrent_writes(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """Writes racing a 20-page snapshot never leak into it: it equals the prefix as of its own revision."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            keys = [f"{etcd_prefix}/k{i:04d}" for i in range(2000)]
            for start in range(0, len(keys), 100):
                await asyncio.gather(*(store.put(k, b"v0") for k in keys[start : start + 100]))
            stop = asyncio.Event()

            async def churn() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    await store.put(keys[(n * 37) % len(keys)], f"v{n}".encode())
                    await store.put(f"{etcd_prefix}/new{n:05d}", b"x")

            writer = asyncio.create_task(churn())
            await asyncio.sleep(0.05)
            try:
                snap = await store.snapshot(etcd_prefix + "/", page_size=100)
            finally:
                stop.set()
                await writer
            assert all(kv.mod_revision <= snap.revision for kv in snap.kvs)
            reference = await _range_at(store, etcd_prefix + "/", snap.revision)
            assert [(kv.key, kv.value, kv.mod_revision) for kv in snap.kvs] == reference
            assert await store.current_revision() > snap.revision  # the churn really overlapped the paging

    run_coro(scenario())


async def _range_at(store: EtcdStore, prefix: str, revision: int) -> list[tuple[str, bytes, int]]:
    """An independent unpaged read of ``prefix`` at ``revision`` straight through the gRPC stub."""
    from aetcd import rpc

    conn = await store.connection()
    request = rpc.RangeRequest(key=prefix.encode(), range_end=aetcd.utils.prefix_range_end(prefix.encode()))
    request.revision = revision
    response = await conn.kv.Range(request, timeout=10)
    return [(kv.key.decode(), kv.value, kv.mod_revision) for kv in response.kvs]


# -- the resilient watch ----------------------------------------------------------------------------------------


def test_watch_survives_server_crash_without_loss_or_duplicates(private_etcd: EtcdServer) -> None:
    """Writes before and after a SIGKILL + restart of etcd all arrive once, in revision order, without a relist."""
    settings = settings_for(private_etcd.endpoint)

    async def scenario() -> None:
        async with await EtcdStore.connect(settings) as store:
            snap = await store.snapshot("/w/")
            watch = Collector(store.watch_prefix("/w/", snap))
            expected: list[tuple[EventKind, str]] = []
            try:
                for i in range(20):
                    await store.put(f"/w/{i % 7}", f"before-{i}".encode())
                    expected.append((EventKind.PUT, f"/w/{i % 7}"))
                await store.delete("/w/3")
                expected.append((EventKind.DELETE, "/w/3"))
                last = await store.current_revision()
                await watch.until(lambda w: w.revision >= last)

                private_etcd.kill()
                await asyncio.sleep(0.3)  # the watch notices and starts backing off
                private_etcd.start()

                for i in range(20):
                    await store.put(f"/w/{i % 5}", f"after-{i}".encode())
                    expected.append((EventKind.PUT, f"/w/{i % 5}"))
                await store.delete("/w/0")
                expected.append((EventKind.DELETE, "/w/0"))
                last = await store.current_revision()
                await watch.until(lambda w: w.revision >= last)
            finally:
                await watch.close()

            revisions = [event.mod_revision for event in watch.events]
            assert revisions == sorted(set(revisions)), "events repeated or out of order"
            assert [(event.kind, event.key) for event in watch.events] == expected
            assert not any(batch.relisted for batch in watch.batches)
            assert apply(view_of(snap), watch.batches) == view_of(await store.snapshot("/w/"))

    run_coro(scenario())


def test_watch_relists_after_compaction_while_disconnected(private_etcd: EtcdServer, proxy: TcpProxy) -> None:
    """Cut off while keys change, history is compacted and etcd restarts, the watch relists the exact diff once."""
    direct = settings_for(private_etcd.endpoint)
    via_proxy = settings_for(f"http://127.0.0.1:{proxy.port}")

    async def scenario() -> None:
        async with await EtcdStore.connect(direct) as writer, await EtcdStore.connect(via_proxy) as reader:
            for name in "abcd":
                await writer.put(f"/p/{name}", b"v1")
            snap = await reader.snapshot("/p/")
            watch = Collector(reader.watch_prefix("/p/", snap))
            try:
                r_e = await writer.put("/p/e", b"v1")
                await watch.until(lambda w: w.revision >= r_e)

                proxy.block()  # the reader sees nothing from here on
                r_a = await writer.put("/p/a", b"v2")
                await writer.delete("/p/b")
                await writer.put("/p/f", b"short-lived")
                await writer.delete("/p/f")
                r_g = await writer.put("/p/g", b"v1")
                await writer.compact(await writer.current_revision())
                private_etcd.restart()
                proxy.unblock()

                await watch.until(lambda w: any(batch.relisted for batch in w.batches))
                relist = next(batch for batch in watch.batches if batch.relisted)
                assert sorted((e.kind, e.key, e.value) for e in relist.events) == [
                    (EventKind.DELETE, "/p/b", b""),
                    (EventKind.PUT, "/p/a", b"v2"),
                    (EventKind.PUT, "/p/g", b"v1"),
                ]
                assert {e.key: e.mod_revision for e in relist.events if e.kind is EventKind.PUT} == {
                    "/p/a": r_a,
                    "/p/g": r_g,
                }
                assert apply(view_of(snap), watch.batches) == view_of(await writer.snapshot("/p/"))

                r_h = await writer.put("/p/h", b"after")  # and the watch carries on after the relist
                await watch.until(lambda w: w.revision >= r_h)
                assert watch.batches[-1].events == (Event(EventKind.PUT, "/p/h", b"after", r_h),)
                assert not watch.batches[-1].relisted
            finally:
                await watch.close()

    run_coro(scenario())


def test_watch_from_a_compacted_snapshot_relists_at_once(private_etcd: EtcdServer) -> None:
    """A watch whose start revision is already compacted relists immediately instead of failing."""

    async def scenario() -> None:
        async with await EtcdStore.connect(settings_for(private_etcd.endpoint)) as store:
            await store.put("/c/old", b"1")
            snap = await store.snapshot("/c/")
            await store.delete("/c/old")
            r_new = await store.put("/c/new", b"2")
            await store.compact(r_new)
            await store.compact(r_new)  # compacting again is harmless
            watch = Collector(store.watch_prefix("/c/", snap))
            try:
                await watch.until(lambda w: bool(w.batches))
            finally:
                await watch.close()
            assert watch.batches[0] == WatchBatch(
                (Event(EventKind.PUT, "/c/new", b"2", r_new), Event(EventKind.DELETE, "/c/old", b"", r_new)),
                r_new,
                relisted=True,
            )

    run_coro(scenario())


def test_watch_joins_the_fragments_of_a_large_revision(caplog: pytest.LogCaptureFixture) -> None:
    """One revision deleting 2,000 keys, which etcd splits into fragments, arrives as one complete batch."""
    # etcd fragments watch responses above --max-request-bytes + 512 KiB of gRPC overhead: with a 64 KiB limit,
    # 2,000 deletions of 400-byte keys (~0.8 MiB) are split (the default limit would need ~2 MiB).
    with EtcdServer(extra_args=["--max-request-bytes=65536"], unsafe_no_fsync=True) as server:

        async def scenario() -> None:
            async with await EtcdStore.connect(settings_for(server.endpoint)) as store:
                names = [f"/big/{'x' * 400}-{i:05d}" for i in range(2000)]
                for start in range(0, len(names), 200):
                    await asyncio.gather(*(store.put(name, b"v") for name in names[start : start + 200]))
                snap = await store.snapshot("/big/")
                watch = Collector(store.watch_prefix("/big/", snap))
                try:
                    with caplog.at_level("DEBUG", logger="coordinator.etcd"):
                        assert await store.delete_prefix("/big/") == 2000
                        revision = await store.current_revision()
                        await watch.until(lambda w: w.revision >= revision)
                finally:
                    await watch.close()
                assert len(watch.batches) == 1
                assert {(e.kind, e.mod_revision) for e in watch.batches[0].events} == {(EventKind.DELETE, revision)}
                assert sorted(e.key for e in watch.batches[0].events) == names
                assert "watch.fragments joined=" in caplog.text

        run_coro(scenario())


def test_closing_the_store_ends_its_watch_with_store_error(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A watch whose store is closed stops with StoreError instead of reconnecting forever."""

    async def scenario() -> None:
        store = await EtcdStore.connect(etcd_settings)
        snap = await store.snapshot(etcd_prefix + "/")
        watch = Collector(store.watch_prefix(etcd_prefix + "/", snap))
        revision = await store.put(f"{etcd_prefix}/k", b"v")
        await watch.until(lambda w: w.revision >= revision)
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await watch.until(lambda w: False, timeout=5)

    run_coro(scenario())


def test_relist_diff_reports_new_changed_and_deleted_keys_only() -> None:
    """The relist batch holds PUTs for new or changed keys and DELETEs for vanished ones, nothing for the rest."""
    mirror = {"/same": 3, "/changed": 4, "/gone": 5}
    snap = Snapshot(
        20,
        (KV("/changed", b"c", 12, 4, 2), KV("/new", b"n", 15, 15, 1), KV("/same", b"s", 3, 3, 1)),
    )
    assert relist_diff(mirror, snap) == WatchBatch(
        (
            Event(EventKind.PUT, "/changed", b"c", 12),
            Event(EventKind.PUT, "/new", b"n", 15),
            Event(EventKind.DELETE, "/gone", b"", 20),
        ),
        20,
        relisted=True,
    )


# -- compare-and-swap and fences ------------------------------------------------------------------------------------


def test_cas_creates_only_when_absent_and_reports_conflicts(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """expected 0 creates only a missing key; a stale expected revision fails and returns the current key."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            key = f"{etcd_prefix}/run"
            created = await store.cas(key, b"one", 0)
            assert created.succeeded and created.current is None
            again = await store.cas(key, b"two", 0)
            assert again == CasResult(False, created.revision, KV(key, b"one", created.revision, created.revision, 1))
            updated = await store.cas(key, b"two", created.revision)
            assert updated.succeeded and updated.revision > created.revision
            stale = await store.cas(key, b"three", created.revision)
            assert not stale.succeeded and stale.current is not None and stale.current.value == b"two"
            assert (await store.get(key)) == KV(key, b"two", updated.revision, created.revision, 2)

    run_coro(scenario())


def test_public_lease_api_binds_refreshes_and_revokes(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A key created on a granted lease exists only once; keepalive refreshes it; revoking deletes it."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            key = f"{etcd_prefix}/leased"
            lease = await store.grant_lease(30)
            assert lease.id != 0 and 0 < lease.ttl <= 30
            created = await store.create(key, b"me", lease=lease.id)
            assert created.succeeded
            other = await store.create(key, b"you", lease=lease.id)
            assert not other.succeeded and other.current is not None and other.current.value == b"me"
            assert 0 < await store.keepalive_once(lease.id, timeout_s=5.0) <= 30
            deleted_at = await store.current_revision()
            waiter = asyncio.create_task(store.wait_deleted(key, deleted_at, max_wait_s=30.0))
            await store.revoke_lease(lease.id)
            await asyncio.wait_for(waiter, 30.0)
            assert await store.get(key) is None
            assert await store.keepalive_once(lease.id, timeout_s=5.0) <= 0
            await store.revoke_lease(lease.id)  # already gone: not an error

    run_coro(scenario())


def test_fenced_cas_raises_leadership_lost_once_another_leader_holds_the_key(
    etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A write fenced by an old leader's proof fails with LeadershipLost and writes nothing."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            leader_key, key = f"{etcd_prefix}/leader", f"{etcd_prefix}/ledger"
            first = store.election(leader_key, "first", ttl=5)
            assert await first.acquire(timeout=5)
            fence = first.fence
            assert (await store.cas(key, b"by-first", 0, fence=fence)).succeeded
            current = await store.get(key)
            assert current is not None

            await first.resign()
            second = store.election(leader_key, "second", ttl=5)
            assert await second.acquire(timeout=5)
            with pytest.raises(LeadershipLost, match="no longer holds"):
                await store.cas(key, b"by-first-again", current.mod_revision, fence=fence)
            assert await store.get(key) == current
            with pytest.raises(LeadershipLost):
                await store.cas(key, b"stale-and-conflicting", 0, fence=Fence(leader_key, 1))
            assert (await store.cas(key, b"by-second", current.mod_revision, fence=second.fence)).succeeded
            await second.resign()

    run_coro(scenario())


# -- leader election -----------------------------------------------------------------------------------------------

_LEADER_CHILD = """
import asyncio, sys
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints


async def main():
    store = await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(sys.argv[1])))
    election = store.election(sys.argv[2], "child", int(sys.argv[3]))
    if not await election.acquire(timeout=10):
        print("NOT-LEADER", flush=True)
        return
    print("LEADER", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from pid {proc.pid} within {timeout} s")
    return proc.stdout.readline().strip()


def test_acquire_with_timeout_returns_false_while_held(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A second contender's acquire(timeout) returns False after about the timeout while the key is held."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            holder = store.election(f"{etcd_prefix}/leader", "holder", ttl=5)
            other = store.election(f"{etcd_prefix}/leader", "other", ttl=5)
            assert await holder.acquire(timeout=5)
            assert holder.is_leader and await other.leader_identity() == "holder"
            started = time.monotonic()
            assert await other.acquire(timeout=0.5) is False
            assert 0.4 < time.monotonic() - started < 3
            assert not other.is_leader
            with pytest.raises(LeadershipLost):
                _ = other.fence
            await holder.resign()
            assert not holder.is_leader and holder.lost.is_set()

    run_coro(scenario())


def test_each_term_starts_when_its_create_was_answered(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """term_started (delivery rule 8's clock) falls between the call and the return of the acquire that won, and a
    term won again after a resignation starts later, under a higher fence revision."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            election = store.election(f"{etcd_prefix}/leader", "me", ttl=5)
            before = time.monotonic()
            assert await election.acquire(timeout=5)
            first, first_rev = election.term_started, election.fence.create_revision
            assert before <= first <= time.monotonic()
            await election.resign()
            assert await election.acquire(timeout=5)
            assert election.term_started > first and election.fence.create_revision > first_rev
            await election.resign()

    run_coro(scenario())


def test_election_hands_over_when_the_leader_process_is_killed(etcd_endpoint: str, etcd_prefix: str) -> None:
    """When the leader's process is SIGKILLed, a standby acquires within TTL + 2 s."""
    ttl = 2
    key = f"{etcd_prefix}/leader"
    child = subprocess.Popen(
        [sys.executable, "-c", _LEADER_CHILD, etcd_endpoint, key, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert _read_line(child, timeout=30) == "LEADER"

        async def standby() -> float:
            async with await EtcdStore.connect(settings_for(etcd_endpoint)) as store:
                election = store.election(key, "standby", ttl)
                assert await election.leader_identity() == "child"
                assert await election.acquire(timeout=0.2) is False
                os.kill(child.pid, signal.SIGKILL)
                killed = time.monotonic()
                assert await election.acquire(timeout=ttl + 2)
                took = time.monotonic() - killed
                assert election.is_leader and await election.leader_identity() == "standby"
                await election.resign()
                return took

        took = run_coro(standby())
        assert took <= ttl + 2
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_resign_hands_over_at_once(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """A waiting contender takes over within a fraction of a second of the leader resigning."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            leader = store.election(f"{etcd_prefix}/leader", "leader", ttl=10)
            standby = store.election(f"{etcd_prefix}/leader", "standby", ttl=10)
            assert await leader.acquire(timeout=5)
            waiting = asyncio.create_task(standby.acquire(timeout=10))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            resigned = time.monotonic()
            await leader.resign()
            assert await waiting
            assert time.monotonic() - resigned < 1.0
            assert standby.fence.create_revision > leader_fence_revision(leader)
            await standby.resign()

    def leader_fence_revision(election: Any) -> int:
        return 0 if election._fence is None else int(election._fence.create_revision)

    run_coro(scenario())


def test_leader_stops_claiming_leadership_before_its_lease_can_expire(private_etcd: EtcdServer) -> None:
    """With etcd gone, is_leader turns False at the first failed keepalive and `lost` is set before the TTL ends."""
    ttl = 3

    async def scenario() -> None:
        async with await EtcdStore.connect(settings_for(private_etcd.endpoint)) as store:
            election = store.election("/leader", "me", ttl)
            assert await election.acquire(timeout=5)
            await asyncio.sleep(ttl / 3 + 0.2)  # one successful keepalive
            assert election.is_leader
            private_etcd.kill()
            killed = time.monotonic()
            while election.is_leader:
                await asyncio.sleep(0.02)
            assert time.monotonic() - killed < ttl / 3 + 1.0
            await asyncio.wait_for(election.lost.wait(), ttl)
            assert time.monotonic() - killed < ttl
            private_etcd.start()

    run_coro(scenario())


def test_deleting_the_leader_key_ends_leadership(etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """An operator deleting the leader key (to force a hand-over) makes the leader notice at its next keepalive."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            election = store.election(f"{etcd_prefix}/leader", "me", ttl=2)
            assert await election.acquire(timeout=5)
            await store.delete(f"{etcd_prefix}/leader")
            await asyncio.wait_for(election.lost.wait(), 2)
            assert not election.is_leader

    run_coro(scenario())


# -- authentication and TLS -----------------------------------------------------------------------------------------


def _etcdctl(server: EtcdServer, *args: str) -> None:
    subprocess.run(
        [str(server.binary.with_name("etcdctl")), f"--endpoints={server.endpoint}", *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_password_auth_and_token_renewal_after_restart(private_etcd: EtcdServer) -> None:
    """With auth on the store logs in and re-logs in after a restart; a wrong password is a ConfigError."""
    _etcdctl(private_etcd, "role", "add", "root")
    _etcdctl(private_etcd, "user", "add", "root", "--new-user-password=s3cret")
    _etcdctl(private_etcd, "user", "grant-role", "root", "root")
    _etcdctl(private_etcd, "auth", "enable")
    good = settings_for(private_etcd.endpoint, username="root", password=SecretStr("s3cret"))
    bad = settings_for(private_etcd.endpoint, username="root", password=SecretStr("wrong"))

    async def scenario() -> None:
        async with await EtcdStore.connect(good) as store:
            await store.put("/auth/a", b"1")
            private_etcd.restart()  # simple tokens live in the member's memory: ours is now invalid
            await store.put("/auth/b", b"2")
            assert [kv.key for kv in (await store.snapshot("/auth/")).kvs] == ["/auth/a", "/auth/b"]
        with pytest.raises(ConfigError, match="authentication failed"):
            await EtcdStore.connect(bad)

    run_coro(scenario())


def test_rotated_password_file_is_read_at_the_next_log_in(private_etcd: EtcdServer, tmp_path: Path) -> None:
    """The etcd password file is read again at every log-in: a password changed in etcd and in the file (a rotated
    Secret) is used once the member forgets our token, by the same store, without a restart."""
    _etcdctl(private_etcd, "role", "add", "root")
    _etcdctl(private_etcd, "user", "add", "root", "--new-user-password=s3cret")
    _etcdctl(private_etcd, "user", "grant-role", "root", "root")
    _etcdctl(private_etcd, "auth", "enable")
    secret = tmp_path / "etcd-password"
    secret.write_text("s3cret\n")
    settings = settings_for(private_etcd.endpoint, username="root", password=SecretStr("s3cret"), password_file=secret)

    async def scenario() -> None:
        async with await EtcdStore.connect(settings) as store:
            await store.put("/auth/a", b"1")
            subprocess.run(
                [str(private_etcd.binary.with_name("etcdctl")), f"--endpoints={private_etcd.endpoint}",
                 "--user=root:s3cret", "user", "passwd", "root", "--interactive=false"],
                input="n3w-s3cret\n", check=True, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            secret.write_text("n3w-s3cret\n")
            private_etcd.restart()  # our simple token is gone: the store logs in again, with the file's password
            await store.put("/auth/b", b"2")
            assert [kv.key for kv in (await store.snapshot("/auth/")).kvs] == ["/auth/a", "/auth/b"]

    run_coro(scenario())


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    """Over https with client-certificate auth the store works with the CA and client pair, and is refused without."""
    tls = make_certs(tmp_path)
    with EtcdServer(tls=tls, unsafe_no_fsync=True) as server:
        assert server.endpoint.startswith("https://")
        good = settings_for(
            server.endpoint, ca_file=tls.ca_file, cert_file=tls.client_cert_file, key_file=tls.client_key_file
        )
        no_client_cert = settings_for(server.endpoint, ca_file=tls.ca_file)

        async def scenario() -> None:
            async with await EtcdStore.connect(good) as store:
                revision = await store.put("/tls/k", b"v")
                assert (await store.get("/tls/k")) == KV("/tls/k", b"v", revision, revision, 1)
            with pytest.raises(StoreError):
                await EtcdStore.connect(no_client_cert)

        run_coro(scenario())


def test_tls_files_with_an_http_endpoint_are_a_config_error(tmp_path: Path) -> None:
    """Giving TLS files for plain http endpoints is refused up front rather than silently ignored."""
    ca = tmp_path / "ca.crt"
    ca.write_text("unused")
    with pytest.raises(ConfigError, match="https://"):
        run_coro(EtcdStore.connect(settings_for("http://127.0.0.1:2379", ca_file=ca)))
