"""Reading a prefix of etcd over time: consistent paged snapshots, the resilient watch, relist after compaction.

Rules (the package's **One-revision snapshot** and **Lossless watch**):
- **One-revision snapshot.** A snapshot is one revision: every page of a prefix is read at the revision of the first
  page, so a concurrent write can never produce a view that existed at no revision. Pages keep each response far below
  gRPC's 4 MB limit. etcd (3.5) counts every key from a page's start to its range end to answer ``count``, so paging one
  range of N keys costs it N²/page: at 2 million keys, minutes. ``cuts`` split the prefix into consecutive ranges (the
  watcher cuts at each DAG's keys), each paged on its own, which makes that cost linear. When the pinned revision is
  compacted while paging, the snapshot starts over (a few times) at a newer revision. ``stream_snapshot`` hands the
  pages to a sink as they arrive (the next page is already requested while the sink takes one) instead of holding them
  all: a snapshot kept whole of a million keys is a gigabyte.
- **Lossless watch.** ``watch_prefix`` never loses or repeats an event: it resumes from the last revision it handed out
  (+1), and when that revision was compacted it re-reads the prefix and hands out the difference as one ``relisted``
  batch. The difference is taken against the keys the consumer knows: the snapshot it started from (kept up to date),
  or, started from a bare revision, what the consumer's ``known`` callback says at the time of the relist. It never
  gives up on connection loss (it reconnects with :data:`WATCH_BACKOFF`; a TLS mistake is logged as ``etcd.tls_failed``
  with its fix at each attempt); it only stops on errors a retry cannot fix (permissions, closed store).
- **One compaction error.** A compaction is always :class:`~coordinator.errors.RevisionCompacted`, whether a unary call
  or a watch stream reports it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from coordinator.errors import RevisionCompacted, StoreError, StoreTlsError, StoreUnavailable
from coordinator.etcd.range_page import read_items
from coordinator.etcd.stubs import rpc
from coordinator.etcd.types import KV, Event, EventKind, Snapshot, WatchBatch
from coordinator.etcd.wire import (
    EOF,
    Conn,
    RpcError,
    decode,
    encode,
    is_refused,
    range_end,
    status_name,
    to_kv,
)
from coordinator.runtime.retry import RetryAttempt, RetryPolicy, backoff_delay, retry_call

if TYPE_CHECKING:
    from coordinator.etcd.client import EtcdStore

log = logging.getLogger(__name__)

#: 5,000 keys per page: run records are a few hundred bytes, so a page stays around 1-2 MB, well under gRPC's 4 MB.
SNAPSHOT_PAGE_SIZE = 5000
#: Ranges of a snapshot whose first page is requested while an earlier one is applied: enough to keep etcd busy
#: while this process decodes (a page takes etcd about as long to serve as it takes here to apply), few enough
#: that the pages waiting in memory stay a few MB.
SNAPSHOT_AHEAD = 4
#: A snapshot whose pinned revision is compacted while paging starts over at once at the newest revision: waiting
#: would not help (only a newer revision does). Three tries: compactions are minutes apart, so a third loss means the
#: store is being compacted in a loop, which a human should look at.
SNAPSHOT_RETRY = RetryPolicy(initial_s=0.0, max_s=0.0, max_attempts=3)
#: Watch reconnects: 0.1 s doubling to 2 s, each delay drawn from [d/2, d] so watchers cut off together do not
#: reconnect in lockstep; the 2 s cap keeps recovery quick once etcd is back. No limit: the watch never gives up.
WATCH_BACKOFF = RetryPolicy(initial_s=0.1, max_s=2.0, jitter=0.5)
#: A stream that stayed up this long was healthy: the next failure starts the backoff over.
WATCH_HEALTHY_S = 1.0
#: Pause after a failed wait for a deletion, so the caller's re-check loop never spins while the watch keeps failing.
WAIT_DELETED_PAUSE_S = 0.2


class StreamBroken(Exception):
    """The watch stream ended or was cancelled by the server for a reason a new stream may fix."""


class WatchStream:
    """One gRPC watch stream for one key range: reassembles fragments, turns cancellations into exceptions."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def _read(self) -> Any:
        try:
            response = await self._call.read()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our task really is being cancelled
            # gRPC raises CancelledError in readers when the channel is closed under the call (store.close()).
            raise StreamBroken("watch call cancelled locally") from None
        if response is EOF:
            raise StreamBroken("watch stream ended by the server")
        if response.compact_revision:
            raise RevisionCompacted(int(response.compact_revision))
        if response.canceled:
            raise StreamBroken(f"watch canceled by the server: {response.cancel_reason or 'no reason given'}")
        return response

    async def send(self, request: Any) -> None:
        await self._call.write(request)

    async def wait_created(self) -> None:
        while not (await self._read()).created:
            pass

    async def next_events(self) -> list[Any]:
        """The events of the next complete response (fragments joined); skips responses without events."""
        events: list[Any] = []
        fragments = 0
        while True:
            response = await self._read()
            events.extend(response.events)
            if response.fragment:  # etcd split one large revision; the rest follows on this stream
                fragments += 1
                continue
            if fragments:
                log.debug("watch.fragments joined=%d events=%d", fragments + 1, len(events))
            if events:
                return events

    def close(self) -> None:
        self._call.cancel()


async def open_watch(store: EtcdStore, key: bytes, end: bytes, start_revision: int) -> WatchStream:
    """A created watch stream on [key, end) from ``start_revision``; raises what gRPC raises."""
    conn = await store.connection()
    stream = WatchStream(conn.watch.Watch(metadata=conn.metadata))
    try:
        create = rpc.WatchCreateRequest(key=key, range_end=end, start_revision=start_revision, fragment=True)
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result when the inner call completes as
        # the task is cancelled, swallowing the cancel (gh-86296). A watch opened that way then waits for events
        # for ever, and a loop shutting down (asyncio.run's exit, a page process stopping) waits for it for ever.
        async with asyncio.timeout(store.timeout_s):
            await stream.send(rpc.WatchRequest(create_request=create))
        async with asyncio.timeout(store.timeout_s):
            await stream.wait_created()
    except BaseException:
        stream.close()
        raise
    return stream


class SnapshotSink(Protocol):
    """Takes a snapshot page by page: ``reset`` before the first page of every attempt (a compaction while paging
    restarts the read), then ``add`` for each page in key order."""

    def reset(self) -> None: ...

    def add(self, kvs: Sequence[KV]) -> None: ...


@runtime_checkable
class ItemSink(Protocol):
    """A sink that takes each page as (key, value, mod_revision) triples instead of ``KV`` values: a ``KV`` per key
    costs a microsecond or two, seconds over the millions of keys of a big store. Where the compiled reader read the
    page, the sequence is ``etcd.range_page.PackedItems``: each triple is made when read, and a compiled loop may read
    the page's bytes in place instead (``View.load_page``)."""

    def reset(self) -> None: ...

    def add_items(self, items: Sequence[tuple[str, bytes, int]]) -> None: ...


@dataclass
class _Collect:
    """The sink of ``snapshot``: keeps every page."""

    kvs: list[KV] = field(default_factory=list)

    def reset(self) -> None:
        self.kvs.clear()

    def add(self, kvs: Sequence[KV]) -> None:
        self.kvs.extend(kvs)


async def snapshot(
    store: EtcdStore, prefix: str, page_size: int = SNAPSHOT_PAGE_SIZE, cuts: Sequence[str] = ()
) -> Snapshot:
    """Every key under ``prefix`` at one revision, read in pages pinned to the first page's revision
    (**One-revision snapshot**)."""
    sink = _Collect()
    revision, _ = await stream_snapshot(store, prefix, sink, page_size, cuts)
    return Snapshot(revision, tuple(sink.kvs))


async def stream_snapshot(
    store: EtcdStore,
    prefix: str,
    sink: SnapshotSink | ItemSink,
    page_size: int = SNAPSHOT_PAGE_SIZE,
    cuts: Sequence[str] = (),
) -> tuple[int, int]:
    """Every key under ``prefix`` at one revision, handed to ``sink`` page by page (**One-revision snapshot**);
    (revision, keys).

    ``cuts``: keys inside the prefix where the read may split it into ranges read one after the other
    (**One-revision snapshot**); any cuts give the same keys, only faster when they split the prefix into ranges of
    about a page each."""

    def restarting(attempt: RetryAttempt) -> None:
        log.warning("snapshot.restart prefix=%s attempt=%d reason=compacted", prefix, attempt.number)

    try:
        result: tuple[int, int] = await retry_call(
            lambda: _stream_once(store, prefix, sink, page_size, cuts),
            SNAPSHOT_RETRY,
            lambda exc: isinstance(exc, RevisionCompacted),
            on_retry=restarting,
        )
    except RevisionCompacted as exc:
        raise StoreError(f"snapshot of {prefix} kept being compacted away while paging") from exc
    return result


class _Ranges:
    """Consecutive [start, end) ranges that cover the prefix exactly, each ending at one of the ``cuts`` inside it.

    A range spans as many cuts as should hold about a page, judged from the keys per cut read so far: each range
    costs a request, and one that holds many pages costs etcd a count of the rest of it for every page."""

    def __init__(self, prefix: str, cuts: Sequence[str], page_size: int) -> None:
        self.start, self.end = encode(prefix) or b"\0", range_end(encode(prefix))
        self.cuts = sorted({c for c in map(encode, cuts) if self.start < c and (c < self.end or self.end == b"\0")})
        self.page_size = page_size
        self.next_cut = 0
        self.cursor: bytes | None = self.start
        self.keys = self.spanned = 0  # keys read in finished ranges, and the cuts those ranges spanned
        self.last = 1

    def next(self) -> tuple[bytes, bytes, int] | None:
        """The next range and how many cuts it spans; None when the prefix is covered."""
        if self.cursor is None:
            return None
        # At most twice the last span: the first ranges (the config keys, a DAG with little history) say little about
        # the rest, and a range that is too big costs etcd a count of all of it for each of its pages.
        fits = self.page_size * self.spanned // self.keys if self.keys else 2 * self.last
        span = self.last = max(1, min(fits, 2 * self.last))
        if self.next_cut + span - 1 < len(self.cuts):
            stop = self.cuts[self.next_cut + span - 1]
        else:
            stop, span = self.end, len(self.cuts) - self.next_cut + 1
        self.next_cut += span
        found = (self.cursor, stop, span)
        self.cursor = None if stop == self.end else stop
        return found

    def finished(self, keys: int, span: int) -> None:
        self.keys += keys
        self.spanned += span


class _Page(NamedTuple):
    """One page of a snapshot's range: the revision it was read at, whether more of its range follows, its last key
    (the next page starts after it), and its entries: triples for an ``ItemSink``, KVs for a ``SnapshotSink``."""

    revision: int
    more: bool
    last_key: bytes | None
    entries: Sequence[tuple[str, bytes, int]] | list[KV]


async def _stream_once(
    store: EtcdStore, prefix: str, sink: SnapshotSink | ItemSink, page_size: int, cuts: Sequence[str]
) -> tuple[int, int]:
    revision = 0  # 0 = latest for the first request; then pinned

    items = isinstance(sink, ItemSink)

    async def fetch(start: bytes, end: bytes) -> _Page:
        request = rpc.RangeRequest(key=start, range_end=end, limit=page_size, revision=revision)

        async def page(conn: Conn) -> _Page:
            if items:  # the triples straight from etcd's bytes (``etcd.range_page``)
                read = read_items(await conn.range_bytes(request, timeout=store.timeout_s, metadata=conn.metadata))
                last = encode(read.items[-1][0]) if read.items else None
                return _Page(read.revision, read.more, last, read.items)
            response = await conn.kv.Range(request, timeout=store.timeout_s, metadata=conn.metadata)
            kvs = [to_kv(raw) for raw in response.kvs]
            return _Page(int(response.header.revision), response.more, encode(kvs[-1].key) if kvs else None, kvs)

        result: _Page = await store.call("snapshot", page)
        return result

    sink.reset()
    ranges = _Ranges(prefix, cuts, page_size)
    current = ranges.next()
    assert current is not None
    first = await fetch(current[0], current[1])
    revision = first.revision
    response: _Page | None = first
    keys = pages = count = 0
    # The first pages of the next ranges are requested ahead: etcd serves them while this process applies a page.
    ahead: list[tuple[asyncio.Future[_Page], tuple[bytes, bytes, int]]] = []
    try:
        while True:
            count += 1
            while len(ahead) < SNAPSHOT_AHEAD and (following_range := ranges.next()) is not None:
                ahead.append((asyncio.ensure_future(fetch(following_range[0], following_range[1])), following_range))
            in_range = 0
            while True:
                assert response is not None
                pages += 1
                following: asyncio.Future[_Page] | None = None
                if response.more and response.last_key is not None:
                    following = asyncio.ensure_future(fetch(response.last_key + b"\0", current[1]))
                    ahead.insert(0, (following, current))  # cancelled with the others if applying this page fails
                await asyncio.sleep(0)  # let the requests go out before the CPU-bound work below
                entries, response = response.entries, None  # the sink's copy is all that lives on
                in_range += len(entries)
                if items:
                    sink.add_items(entries)  # type: ignore[union-attr,arg-type]  # items: an ItemSink, triples
                else:
                    sink.add(entries)  # type: ignore[union-attr,arg-type]  # not items: a SnapshotSink, KVs
                del entries
                if following is None:
                    break
                response = await ahead.pop(0)[0]
            keys += in_range
            ranges.finished(in_range, current[2])
            if not ahead:
                break
            future, current = ahead.pop(0)
            response = await future
    finally:
        for future, _ in ahead:
            future.cancel()
    log.debug("etcd.snapshot prefix=%s revision=%d keys=%d pages=%d ranges=%d", prefix, revision, keys, pages,
              count)  # fmt: skip
    return revision, keys


def _event(raw: Any) -> Event:
    kind = EventKind.DELETE if int(raw.type) == rpc.Event.DELETE else EventKind.PUT
    kv = raw.kv
    return Event(kind, decode(kv.key), bytes(kv.value) if kind is EventKind.PUT else b"", int(kv.mod_revision))


def relist_diff(mirror: dict[str, int], snap: Snapshot) -> WatchBatch:
    """The batch that turns the consumer's view (``mirror``: key -> mod_revision) into ``snap``."""
    events = [
        Event(EventKind.PUT, kv.key, kv.value, kv.mod_revision)
        for kv in snap.kvs
        if mirror.get(kv.key) != kv.mod_revision
    ]
    events.sort(key=lambda e: e.mod_revision)
    present = {kv.key for kv in snap.kvs}
    events += [Event(EventKind.DELETE, key, b"", snap.revision) for key in sorted(mirror.keys() - present)]
    return WatchBatch(tuple(events), snap.revision, relisted=True)


async def watch_prefix(
    store: EtcdStore,
    prefix: str,
    start: Snapshot | int,
    known: Callable[[], Mapping[str, int]] | None = None,
    cuts: Sequence[str] = (),
) -> AsyncIterator[WatchBatch]:
    """Every change under ``prefix`` after ``start``, forever, across reconnects and compactions (**Lossless watch**).

    ``start`` is the snapshot the consumer has, or only its revision: then ``known()`` (key -> mod revision of
    every key the consumer knows, asked at a relist) replaces the copy of the keys this generator would keep."""
    # What the consumer has been told, for relists; None: ask ``known`` (nothing is kept between relists).
    mirror: dict[str, int] | None = None
    if isinstance(start, Snapshot):
        mirror, last = {kv.key: kv.mod_revision for kv in start.kvs}, start.revision
    elif known is None:
        raise ValueError("watch_prefix from a bare revision needs known(): the keys to diff a relist against")
    else:
        last = start
    del start  # not kept alive by this frame for as long as the watch runs
    failures = 0
    opened: float | None = None  # when the current stream was created
    relist_from: int | None = None
    key, end = encode(prefix) or b"\0", range_end(encode(prefix))
    while True:
        relisted: WatchBatch | None = None
        try:
            if relist_from is not None:
                snap = await snapshot(store, prefix, cuts=cuts)
                told = mirror if mirror is not None else dict(known() if known else {})
                relisted = _relist(prefix, told, snap, last, relist_from)
                if mirror is not None:
                    mirror = {kv.key: kv.mod_revision for kv in snap.kvs}
                last, relist_from, failures = snap.revision, None, 0
                del snap
            else:
                stream = await open_watch(store, key, end, last + 1)
                opened = time.monotonic()
                try:
                    while True:
                        raw_events = await stream.next_events()
                        events = tuple(e for e in (_event(raw) for raw in raw_events) if e.mod_revision > last)
                        if not events:  # defensive: a replay of what was already handed out
                            continue
                        if mirror is not None:
                            for event in events:
                                if event.kind is EventKind.PUT:
                                    mirror[event.key] = event.mod_revision
                                else:
                                    mirror.pop(event.key, None)
                        last = events[-1].mod_revision
                        yield WatchBatch(events, last)
                finally:
                    stream.close()
        except RevisionCompacted as exc:
            relist_from = exc.compacted_revision
            continue
        except (RpcError, StoreUnavailable, StreamBroken, TimeoutError) as exc:
            failures = 1 if opened is not None and time.monotonic() - opened > WATCH_HEALTHY_S else failures + 1
            opened = None
            await asyncio.sleep(_reconnect_delay(store, prefix, last, exc, failures))
            continue
        except Exception as exc:
            if store.closed:  # gRPC raises assorted errors on a channel closed under a running call
                raise StoreError(f"etcd store closed while watching {prefix}") from exc
            raise
        if relisted is not None:
            yield relisted


def _relist(prefix: str, told: dict[str, int], snap: Snapshot, last: int, compacted: int) -> WatchBatch:
    """**Lossless watch** after a compaction: the snapshot's difference from what the consumer was ``told``, logged."""
    relisted = relist_diff(told, snap)
    log.warning(
        "etcd.watch_relist prefix=%s from_rev=%d compact_rev=%d new_rev=%d puts=%d deletes=%d",
        prefix,
        last + 1,
        compacted,
        snap.revision,
        sum(e.kind is EventKind.PUT for e in relisted.events),
        sum(e.kind is EventKind.DELETE for e in relisted.events),
    )
    return relisted


def _reconnect_delay(store: EtcdStore, prefix: str, last: int, exc: Exception, failures: int) -> float:
    """How long to wait before the watch reopens after ``exc`` (the ``failures``-th in a row), said in the log and
    counted; raises instead when the store was closed or etcd refused the watch (no retry fixes that)."""
    if store.closed:
        raise StoreError(f"etcd store closed while watching {prefix}") from exc
    if is_refused(exc):
        raise store.map_error("watch", exc) from exc
    delay = backoff_delay(WATCH_BACKOFF, failures, random.random())
    log.warning(
        "etcd.watch_reconnect prefix=%s from_rev=%d endpoint=%s delay=%.2f error=%s",
        prefix,
        last + 1,
        store.endpoint,
        delay,
        status_name(exc),
    )
    tls = store.map_error("watch", exc) if isinstance(exc, RpcError) else exc
    if isinstance(tls, StoreTlsError):
        # Not given up on (a certificate may be rotated back), but named: "UNAVAILABLE" alone says nothing.
        log.error("etcd.tls_failed endpoint=%s problem=%s detail=%r fix=%r", store.endpoint, tls.problem,
                  str(tls), tls.fix)  # fmt: skip
    store.on_error("watch", status_name(exc) if isinstance(exc, RpcError) else type(exc).__name__)
    store.after_failure(exc)
    return delay


async def wait_deleted(store: EtcdStore, key: str, after_revision: int, max_wait_s: float) -> None:
    """Return when ``key`` is deleted after ``after_revision``, after ``max_wait_s``, or soon after watch trouble
    (the caller re-checks the key in every case, so returning early is always safe)."""
    try:
        async with asyncio.timeout(max_wait_s):
            stream = await open_watch(store, encode(key), b"", after_revision + 1)
            try:
                while True:
                    events = await stream.next_events()
                    if any(int(e.type) == rpc.Event.DELETE for e in events):
                        return
            finally:
                stream.close()
    except TimeoutError:
        return
    except (RpcError, StoreError, StreamBroken):
        await asyncio.sleep(min(max_wait_s, WAIT_DELETED_PAUSE_S))
