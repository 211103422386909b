"""The etcd adapter: consistent snapshots, a resilient watch, fenced compare-and-swap and leader election.

This is the only module that imports the etcd client (``aetcd``). It uses aetcd's generated gRPC stubs and messages
over a channel it builds itself, not ``aetcd.Client``, because the client cannot do what the coordinator relies on:
it has no TLS, cannot page a range at a fixed revision, flattens watch responses (losing their grouping and
fragments), and its lock enters on timeout without holding the lock.

Rules:
1. Callers see only this module's frozen values (KV, Snapshot, Event, WatchBatch, Fence, CasResult) and the errors of
   ``coordinator.errors``; every gRPC error is mapped here with ``raise ... from exc``.
2. Unary calls are retried briefly (a few attempts, 50-500 ms) on UNAVAILABLE only: the first call after a server
   restart fails although the server is up. Deadline errors are not retried (a write may have applied). With several
   endpoints each retry moves to the next one, so ``connect`` tries every endpoint in order.
3. A snapshot is one revision: every page of a prefix is read at the revision of the first page, so a concurrent
   write can never produce a view that existed at no revision. Pages keep each response far below gRPC's 4 MB limit.
4. ``watch_prefix`` never loses or repeats an event: it resumes from the last revision it handed out (+1), and when
   that revision was compacted it re-reads the prefix and hands out the difference as one ``relisted`` batch.
   It never gives up on connection loss; it only stops on errors a retry cannot fix (permissions, closed store).
5. Leadership is a lease-bound key created only if absent. A leader stops claiming leadership (``is_leader``) as soon
   as a keepalive fails and for good once ``last keepalive + TTL - margin`` has passed, i.e. before any standby can
   acquire the key; every leader write carries a Fence that etcd checks in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aetcd import rpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from coordinator.errors import (
    ConfigError,
    CoordinatorError,
    LeadershipLost,
    RevisionCompacted,
    StoreError,
    StoreUnavailable,
)
from coordinator.settings import Endpoint, EtcdSettings

log = logging.getLogger(__name__)

#: 5,000 keys per page: run records are a few hundred bytes, so a page stays around 1-2 MB, well under gRPC's 4 MB.
SNAPSHOT_PAGE_SIZE = 5000
#: Attempts per unary call on UNAVAILABLE; with 50 ms doubling waits this spans ~0.8 s, longer than a local restart.
RETRY_ATTEMPTS = 5
#: Watch reconnect backoff: exponential from 50 ms with full jitter, capped at 2 s so recovery is quick after an outage.
WATCH_BACKOFF_START_S = 0.05
# 50, 100, 200, 400 ms (+ up to 50 ms jitter so clients restarted together do not retry in lockstep).
_RETRY_WAIT = wait_exponential(multiplier=0.05, max=0.5) + wait_random(0, 0.05)
WATCH_BACKOFF_MAX_S = 2.0

_CHANNEL_OPTIONS = (
    # A page or a big watch revision must never be refused by the client's default 4 MB receive limit.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # gRPC's default reconnect backoff grows to 120 s; a restarted etcd must be found again within a second.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
    # Pings detect a dead peer (no RST) under an idle watch within ~15 s. etcd accepts pings every >= 5 s but only
    # while a call is active, hence no pings without calls.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
)


class EventKind(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class KV:
    """One key as stored, with its revisions (``mod_revision`` is the generation of the value)."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key under a prefix as of exactly ``revision``, sorted by key."""

    revision: int
    kvs: tuple[KV, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one key. For a DELETE ``value`` is empty; in a relisted batch its ``mod_revision`` is the relist
    revision (the real deletion revision was compacted away)."""

    kind: EventKind
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events that arrived together. After applying them the consumer's view is complete up to ``revision``.

    ``relisted`` marks the diff produced by a re-read after compaction: the view is then exactly the prefix at
    ``revision``, though intermediate changes were skipped.
    """

    events: tuple[Event, ...]
    revision: int
    relisted: bool = False


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of leadership: the leader key exists and still has this create revision."""

    key: str
    create_revision: int


@dataclass(frozen=True, slots=True)
class CasResult:
    """Outcome of a compare-and-swap. On a conflict ``current`` is the key as found (None when absent)."""

    succeeded: bool
    revision: int
    current: KV | None


def _b(key: str) -> bytes:
    # surrogateescape round-trips keys that other writers stored as non-UTF-8 bytes instead of crashing on them.
    return key.encode("utf-8", "surrogateescape")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _range_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range sharing ``prefix`` (``\\0`` = to the end when there is no upper bound)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _kv(raw: Any) -> KV:
    return KV(
        key=_s(raw.key),
        value=bytes(raw.value),
        mod_revision=int(raw.mod_revision),
        create_revision=int(raw.create_revision),
        version=int(raw.version),
    )


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE


def _map_error(op: str, endpoint: str, exc: Any) -> CoordinatorError:
    """A CoordinatorError for a gRPC error (``exc`` is a grpc.aio.AioRpcError)."""
    code = exc.code()
    details = exc.details() or ""
    where = f"{op} at {endpoint}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return StoreUnavailable(f"{where}: {code.name}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT and "authentication failed" in details:
        return ConfigError(f"{where}: authentication failed; check the etcd username and password")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return RevisionCompacted(0)  # etcd does not say up to where; 0 = unknown
    return StoreError(f"{where}: {code.name}: {details}")


class _Conn:
    """One channel to one endpoint, with the auth token etcd gave on that member (tokens are per member)."""

    def __init__(self, endpoint: str, channel: Any) -> None:
        self.endpoint = endpoint
        self.channel = channel
        #: gRPC metadata carrying the auth token; None = not authenticated yet.
        self.metadata: tuple[tuple[str, str], ...] | None = None
        self.kv = rpc.KVStub(channel)
        self.lease = rpc.LeaseStub(channel)
        self.watch = rpc.WatchStub(channel)
        self.maintenance = rpc.MaintenanceStub(channel)


def _read_tls(settings: EtcdSettings) -> Any:
    """gRPC channel credentials for https endpoints (None when no endpoint uses TLS); ConfigError on bad files."""
    uses_tls = any(ep.tls for ep in settings.endpoints)
    files = (settings.ca_file, settings.cert_file, settings.key_file)
    if not uses_tls:
        if any(files):
            raise ConfigError("etcd TLS files are set but every endpoint is http://; use https:// endpoints")
        return None
    if (settings.cert_file is None) != (settings.key_file is None):
        raise ConfigError("etcd client certificate and key must be given together (cert file and key file)")

    def read(path: Any, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return bytes(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read etcd {what} {path}: {exc.strerror}") from exc

    return grpc.ssl_channel_credentials(
        root_certificates=read(settings.ca_file, "CA file"),
        private_key=read(settings.key_file, "key file"),
        certificate_chain=read(settings.cert_file, "certificate file"),
    )


class _Compacted(Exception):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"compacted at {compact_revision}")
        self.compact_revision = compact_revision


class _StreamBroken(Exception):
    """The watch stream ended or was cancelled by the server for a reason a new stream may fix."""


class EtcdStore:
    """A connection to etcd. Create with ``await EtcdStore.connect(settings)``; use as an async context manager.

    gRPC channels belong to the event loop that created them: use one store per event loop (thread).
    """

    def __init__(self, settings: EtcdSettings, credentials: Any) -> None:
        self._settings = settings
        self._credentials = credentials
        self._conns: dict[int, _Conn] = {}
        self._index = 0
        self._closed = False
        self._elections: set[Election] = set()

    # -- connection -----------------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, settings: EtcdSettings) -> EtcdStore:
        """Connect to the first endpoint that answers (authenticating if a username is set)."""
        store = cls(settings, _read_tls(settings))
        try:
            await store.current_revision()
        except StoreUnavailable as exc:
            await store.close()
            where = ", ".join(store._endpoint_url(ep) for ep in settings.endpoints)
            cause = exc.__cause__
            detail = cause.details() if isinstance(cause, grpc.aio.AioRpcError) else str(exc)
            raise StoreUnavailable(f"cannot reach {where}: {detail}") from exc
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def endpoint(self) -> str:
        """The endpoint currently in use."""
        return self._endpoint_url(self._settings.endpoints[self._index])

    def _endpoint_url(self, ep: Endpoint) -> str:
        return f"{'https' if ep.tls else 'http'}://{ep.host}:{ep.port}"

    async def _conn(self) -> _Conn:
        if self._closed:
            raise StoreError("etcd store is closed")
        conn = self._conns.get(self._index)
        if conn is None:
            ep = self._settings.endpoints[self._index]
            host = f"[{ep.host}]" if ":" in ep.host else ep.host
            target = f"{host}:{ep.port}"
            if ep.tls:
                channel = grpc.aio.secure_channel(target, self._credentials, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
            conn = _Conn(self._endpoint_url(ep), channel)
            self._conns[self._index] = conn
        if self._settings.username is not None and conn.metadata is None:
            await self._authenticate(conn)
        return conn

    async def _authenticate(self, conn: _Conn) -> None:
        password = self._settings.password.get_secret_value() if self._settings.password else ""
        request = rpc.AuthenticateRequest(name=self._settings.username, password=password)
        try:
            response = await rpc.AuthStub(conn.channel).Authenticate(request, timeout=self._settings.timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "not enabled" in (exc.details() or ""):
                log.warning("etcd.auth_not_enabled endpoint=%s user=%s", conn.endpoint, self._settings.username)
                conn.metadata = ()
                return
            raise
        conn.metadata = (("token", str(response.token)),)

    async def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        # INFO, not WARNING: a retry that then succeeds is routine after a restart; a final failure is raised.
        log.info(
            "etcd.retry endpoint=%s attempt=%d error=%s",
            self.endpoint,
            state.attempt_number,
            exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else exc,
        )
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            # The member forgot our token (restart, token TTL): log in to it again on the next attempt.
            conn = self._conns.get(self._index)
            if conn is not None:
                conn.metadata = None
        elif len(self._settings.endpoints) > 1:
            self._index = (self._index + 1) % len(self._settings.endpoints)

    async def _call(self, op: str, fn: Callable[[_Conn], Awaitable[Any]], *, retry: bool = True) -> Any:
        """Run one unary RPC with the short UNAVAILABLE retry (unless ``retry`` is False); map gRPC errors."""

        def retryable(exc: BaseException) -> bool:
            if _is_transient(exc):
                return True
            return (
                isinstance(exc, grpc.aio.AioRpcError)
                and exc.code() == grpc.StatusCode.UNAUTHENTICATED
                and self._settings.username is not None
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS + len(self._settings.endpoints) - 1 if retry else 1),
            wait=_RETRY_WAIT,
            retry=retry_if_exception(retryable),
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    conn = await self._conn()
                    return await fn(conn)
        except grpc.aio.AioRpcError as exc:
            raise _map_error(op, self.endpoint, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def close(self) -> None:
        """Resign any leadership held through this store (fast hand-over), then close every channel."""
        for election in list(self._elections):
            with contextlib.suppress(CoordinatorError, TimeoutError):
                await asyncio.wait_for(election.resign(), timeout=1.0)
        self._closed = True
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- key-value ------------------------------------------------------------------------------------------

    def _timeout(self) -> float:
        return self._settings.timeout_s

    async def _range(self, op: str, request: Any) -> Any:
        return await self._call(op, lambda c: c.kv.Range(request, timeout=self._timeout(), metadata=c.metadata))

    async def snapshot(self, prefix: str, *, page_size: int = SNAPSHOT_PAGE_SIZE) -> Snapshot:
        """Every key under ``prefix`` at one revision, read in pages pinned to the first page's revision."""
        for attempt in range(1, 4):
            try:
                return await self._snapshot_once(prefix, page_size)
            except RevisionCompacted:
                # The first page's revision was compacted while paging: start over at a newer revision.
                log.warning("snapshot.restart prefix=%s attempt=%d reason=compacted", prefix, attempt)
        raise StoreError(f"snapshot of {prefix} kept being compacted away while paging")

    async def _snapshot_once(self, prefix: str, page_size: int) -> Snapshot:
        start = _b(prefix) or b"\0"
        end = _range_end(_b(prefix))
        revision = 0  # 0 = latest for the first page; then pinned
        kvs: list[KV] = []
        pages = 0
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=page_size, revision=revision)
            response = await self._range("snapshot", request)
            pages += 1
            if revision == 0:
                revision = int(response.header.revision)
            kvs.extend(_kv(raw) for raw in response.kvs)
            if not response.more or not response.kvs:
                break
            start = bytes(response.kvs[-1].key) + b"\0"  # the smallest key after the last one read
        log.debug("snapshot prefix=%s revision=%d keys=%d pages=%d", prefix, revision, len(kvs), pages)
        return Snapshot(revision, tuple(kvs))

    async def get(self, key: str) -> KV | None:
        return await self._get(key)

    async def _get(self, key: str, *, retry: bool = True) -> KV | None:
        request = rpc.RangeRequest(key=_b(key))
        response = await self._call(
            "get", lambda c: c.kv.Range(request, timeout=self._timeout(), metadata=c.metadata), retry=retry
        )
        return _kv(response.kvs[0]) if response.kvs else None

    async def put(self, key: str, value: bytes) -> int:
        """Write unconditionally; return the write's revision."""
        request = rpc.PutRequest(key=_b(key), value=value)
        response = await self._call("put", lambda c: c.kv.Put(request, timeout=self._timeout(), metadata=c.metadata))
        return int(response.header.revision)

    async def delete(self, key: str) -> bool:
        """Delete one key; True if it existed."""
        request = rpc.DeleteRangeRequest(key=_b(key))
        response = await self._call(
            "delete", lambda c: c.kv.DeleteRange(request, timeout=self._timeout(), metadata=c.metadata)
        )
        return int(response.deleted) > 0

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""
        request = rpc.DeleteRangeRequest(key=_b(prefix) or b"\0", range_end=_range_end(_b(prefix)))
        response = await self._call(
            "delete_prefix", lambda c: c.kv.DeleteRange(request, timeout=self._timeout(), metadata=c.metadata)
        )
        return int(response.deleted)

    async def _txn(self, op: str, compare: list[Any], success: list[Any], failure: list[Any]) -> tuple[Any, int]:
        """Run a transaction; return (response, number of attempts it took)."""
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        attempts = 0

        async def run(conn: _Conn) -> Any:
            nonlocal attempts
            attempts += 1
            return await conn.kv.Txn(request, timeout=self._timeout(), metadata=conn.metadata)

        return await self._call(op, run), attempts

    async def cas(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int,
        *,
        fence: Fence | None = None,
        lease: int | None = None,
    ) -> CasResult:
        """Write ``value`` only if the key's mod_revision is ``expected_mod_revision`` (0: the key must not exist)
        and, with a fence, only if the fence key still has the fence's create revision (else LeadershipLost).

        On success ``current`` is None; on a conflict it is the key as found.
        """
        k = _b(key)
        compare = [
            rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=k, mod_revision=expected_mod_revision)
        ]
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))]
        if fence is not None:
            fk = _b(fence.key)
            compare.append(
                rpc.Compare(
                    result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=fk, create_revision=fence.create_revision
                )
            )
            failure.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=fk)))
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease or 0))]
        response, attempts = await self._txn("cas", compare, success, failure)
        revision = int(response.header.revision)
        if response.succeeded:
            return CasResult(True, revision, None)
        found = response.responses[0].response_range.kvs
        current = _kv(found[0]) if found else None
        if (
            attempts > 1
            and current is not None
            and current.value == value
            and current.mod_revision > expected_mod_revision
        ):
            # An earlier attempt applied but its answer was lost with the connection: that write is ours.
            return CasResult(True, current.mod_revision, None)
        if fence is not None:
            holder = response.responses[1].response_range.kvs
            if not holder or int(holder[0].create_revision) != fence.create_revision:
                now = int(holder[0].create_revision) if holder else 0
                raise LeadershipLost(
                    f"fence {fence.key}@{fence.create_revision} no longer holds (leader key create revision now "
                    f"{now}); write to {key} refused"
                )
        return CasResult(False, revision, current)

    async def compact(self, revision: int) -> None:
        """Drop history before ``revision`` (physically, before returning). Compacting an old revision is a no-op."""
        request = rpc.CompactionRequest(revision=revision, physical=True)
        with contextlib.suppress(RevisionCompacted):
            await self._call("compact", lambda c: c.kv.Compact(request, timeout=self._timeout(), metadata=c.metadata))

    async def current_revision(self) -> int:
        """The store's current revision (the revision of the latest write)."""
        response = await self._call(
            "status",
            lambda c: c.maintenance.Status(rpc.StatusRequest(), timeout=self._timeout(), metadata=c.metadata),
        )
        return int(response.header.revision)

    # -- watch ---------------------------------------------------------------------------------------------

    async def watch_prefix(self, prefix: str, start: Snapshot) -> AsyncIterator[WatchBatch]:
        """Every change under ``prefix`` after ``start``, forever, across reconnects and compactions (see rule 4).

        Each batch's ``revision`` is the last revision handed out; a reconnect resumes right after it.
        """
        mirror = {kv.key: kv.mod_revision for kv in start.kvs}  # what the consumer has been told, for relists
        last = start.revision
        failures = 0
        opened: float | None = None  # when the current stream was created
        relist_from: int | None = None
        key, end = _b(prefix) or b"\0", _range_end(_b(prefix))
        while True:
            relisted: WatchBatch | None = None
            try:
                if relist_from is not None:
                    snap = await self.snapshot(prefix)
                    relisted = _relist(mirror, snap)
                    log.warning(
                        "watch.relist prefix=%s from_rev=%d compact_rev=%d new_rev=%d puts=%d deletes=%d",
                        prefix,
                        last + 1,
                        relist_from,
                        snap.revision,
                        sum(e.kind is EventKind.PUT for e in relisted.events),
                        sum(e.kind is EventKind.DELETE for e in relisted.events),
                    )
                    mirror = {kv.key: kv.mod_revision for kv in snap.kvs}
                    last, relist_from, failures = snap.revision, None, 0
                else:
                    stream = await self._open_watch(key, end, last + 1)
                    opened = time.monotonic()
                    try:
                        while True:
                            raw_events = await stream.next_events()
                            events = tuple(e for e in (_event(raw) for raw in raw_events) if e.mod_revision > last)
                            if not events:  # defensive: a replay of what was already handed out
                                continue
                            for event in events:
                                if event.kind is EventKind.PUT:
                                    mirror[event.key] = event.mod_revision
                                else:
                                    mirror.pop(event.key, None)
                            last = events[-1].mod_revision
                            yield WatchBatch(events, last)
                    finally:
                        stream.close()
            except _Compacted as exc:
                relist_from = exc.compact_revision
                continue
            except (grpc.aio.AioRpcError, StoreUnavailable, _StreamBroken, TimeoutError) as exc:
                if self._closed:
                    raise StoreError(f"etcd store closed while watching {prefix}") from exc
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    raise _map_error("watch", self.endpoint, exc) from exc
                # A stream that stayed up a while was healthy: start the backoff over.
                failures = 1 if opened is not None and time.monotonic() - opened > 1.0 else failures + 1
                opened = None
                delay = random.uniform(0.5, 1.0) * min(WATCH_BACKOFF_MAX_S, WATCH_BACKOFF_START_S * 2**failures)
                log.warning(
                    "watch.reconnect prefix=%s from_rev=%d endpoint=%s delay=%.2f error=%s",
                    prefix,
                    last + 1,
                    self.endpoint,
                    delay,
                    exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else repr(exc),
                )
                conn = self._conns.get(self._index)
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAUTHENTICATED and conn:
                    conn.metadata = None  # the member forgot our token: log in again
                elif len(self._settings.endpoints) > 1:
                    self._index = (self._index + 1) % len(self._settings.endpoints)
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                if self._closed:  # gRPC raises assorted errors on a channel closed under a running call
                    raise StoreError(f"etcd store closed while watching {prefix}") from exc
                raise
            if relisted is not None:
                yield relisted

    async def _open_watch(self, key: bytes, range_end: bytes, start_revision: int) -> _WatchStream:
        conn = await self._conn()
        call = conn.watch.Watch(metadata=conn.metadata)
        stream = _WatchStream(call)
        try:
            create = rpc.WatchCreateRequest(key=key, range_end=range_end, start_revision=start_revision, fragment=True)
            await asyncio.wait_for(call.write(rpc.WatchRequest(create_request=create)), self._timeout())
            await asyncio.wait_for(stream.wait_created(), self._timeout())
        except BaseException:
            stream.close()
            raise
        return stream

    # -- leases and election ---------------------------------------------------------------------------------

    def election(self, key: str, identity: str, ttl: int) -> Election:
        """A contender for the leader key ``key``; ``identity`` is written as its value; ``ttl`` in seconds."""
        return Election(self, key, identity, ttl)

    async def _grant(self, ttl: int) -> tuple[int, int]:
        response = await self._call(
            "lease_grant",
            lambda c: c.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self._timeout(), metadata=c.metadata),
        )
        if response.error:
            raise StoreError(f"etcd lease grant: {response.error}")
        return int(response.ID), int(response.TTL)

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self._call(
                "lease_revoke",
                lambda c: c.lease.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease_id), timeout=self._timeout(), metadata=c.metadata
                ),
            )
        except StoreError as exc:
            if "not found" not in str(exc):  # already expired: that is what we wanted
                raise

    async def _keepalive(self, lease_id: int, rpc_timeout_s: float) -> int:
        """Refresh a lease once; return its new TTL (<= 0: the lease no longer exists)."""

        async def run(conn: _Conn) -> Any:
            call = conn.lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=rpc_timeout_s, metadata=conn.metadata
            )
            try:
                async for reply in call:
                    return reply
                return None
            finally:
                call.cancel()

        # No retry: a failed keepalive must make the leader stop acting now; the election loop retries soon.
        reply = await self._call("lease_keepalive", run, retry=False)
        return int(reply.TTL) if reply is not None else 0

    async def _wait_deleted(self, key: str, after_revision: int, max_wait_s: float) -> None:
        """Return when ``key`` is deleted after ``after_revision``, after ``max_wait_s``, or soon after watch trouble
        (the caller re-checks the key in every case, so returning early is always safe)."""
        try:
            async with asyncio.timeout(max_wait_s):
                stream = await self._open_watch(_b(key), b"", after_revision + 1)
                try:
                    while True:
                        events = await stream.next_events()
                        if any(int(e.type) == rpc.Event.DELETE for e in events):
                            return
                finally:
                    stream.close()
        except TimeoutError:
            return
        except (grpc.aio.AioRpcError, StoreError, _StreamBroken, _Compacted):
            await asyncio.sleep(min(max_wait_s, 0.2))  # no hot loop while the watch keeps failing


def _event(raw: Any) -> Event:
    kind = EventKind.DELETE if int(raw.type) == rpc.Event.DELETE else EventKind.PUT
    kv = raw.kv
    return Event(kind, _s(kv.key), bytes(kv.value) if kind is EventKind.PUT else b"", int(kv.mod_revision))


def _relist(mirror: dict[str, int], snap: Snapshot) -> WatchBatch:
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


class _WatchStream:
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
            raise _StreamBroken("watch call cancelled locally") from None
        if response is grpc.aio.EOF:
            raise _StreamBroken("watch stream ended by the server")
        if response.compact_revision:
            raise _Compacted(int(response.compact_revision))
        if response.canceled:
            raise _StreamBroken(f"watch canceled by the server: {response.cancel_reason or 'no reason given'}")
        return response

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


class Election:
    """Leader election on one key; see rule 5. Create with :meth:`EtcdStore.election`."""

    def __init__(self, store: EtcdStore, key: str, identity: str, ttl: int) -> None:
        if ttl < 1:
            raise ConfigError(f"leader TTL must be at least 1 s, got {ttl}")
        self._store = store
        self.key = key
        self.identity = identity
        self.ttl = ttl
        #: Set when leadership ends (lease lost, key deleted or replaced, keepalives failing past the deadline, resign).
        self.lost = asyncio.Event()
        self._fence: Fence | None = None
        self._lease_id = 0
        self._deadline = 0.0  # monotonic time after which etcd may already have expired our lease
        self._suspect = False  # the last keepalive failed; not leading until one succeeds
        self._task: asyncio.Task[None] | None = None

    def _margin(self, granted_ttl: int) -> float:
        # Stop acting this long before etcd could expire the lease: covers clock-rate drift and the time a standby's
        # create needs, so two leaders never act at once. 20% of the TTL, between 0.5 s and 2 s.
        return min(2.0, max(0.5, granted_ttl * 0.2))

    @property
    def is_leader(self) -> bool:
        return (
            self._fence is not None
            and not self.lost.is_set()
            and not self._suspect
            and time.monotonic() < self._deadline
        )

    @property
    def fence(self) -> Fence:
        """The proof to pass to fenced writes; raises LeadershipLost if leadership was never acquired."""
        if self._fence is None:
            raise LeadershipLost(f"{self.identity} does not hold {self.key}")
        return self._fence

    # A timeout parameter, not asyncio.timeout: running out of time is an answer (False), not an error.
    async def acquire(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Become leader; wait up to ``timeout`` seconds (None: forever). True when acquired."""
        if self.is_leader:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        key = _b(self.key)
        waited = False
        while True:
            sent = time.monotonic()
            lease_id, granted = await self._store._grant(self.ttl)
            response, _ = await self._store._txn(
                "election",
                [rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=key, create_revision=0)],
                [rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=self.identity.encode(), lease=lease_id))],
                [rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
            )
            revision = int(response.header.revision)
            if response.succeeded:
                self._won(Fence(self.key, revision), lease_id, sent + granted - self._margin(granted))
                return True
            # Someone holds it. Give our lease back (no keepalives while waiting) and wait for the key to go.
            with contextlib.suppress(StoreError):
                await self._store._revoke(lease_id)
            holder = response.responses[0].response_range.kvs
            log.log(
                logging.DEBUG if waited else logging.INFO,
                "election.wait key=%s identity=%s holder=%s",
                self.key,
                self.identity,
                _s(holder[0].value) if holder else "?",
            )
            waited = True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # Re-check at least every TTL even without a delete event, in case the watch misses it.
            wait = self.ttl if remaining is None else min(remaining, self.ttl)
            await self._store._wait_deleted(self.key, revision, wait)

    def _won(self, fence: Fence, lease_id: int, deadline: float) -> None:
        self._fence, self._lease_id, self._deadline, self._suspect = fence, lease_id, deadline, False
        self.lost = asyncio.Event()
        self._store._elections.add(self)
        self._task = asyncio.create_task(self._keep_alive(), name=f"election-keepalive:{self.key}")
        log.info(
            "election.acquired key=%s identity=%s create_rev=%d lease=%x",
            self.key,
            self.identity,
            fence.create_revision,
            lease_id,
        )

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            log.warning("election.lost key=%s identity=%s reason=%s", self.key, self.identity, reason)
            self.lost.set()
        self._store._elections.discard(self)

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        fence = self._fence
        assert fence is not None
        try:
            while True:
                await asyncio.sleep(min(interval, 0.25) if self._suspect else interval)
                now = time.monotonic()
                if now >= self._deadline:
                    self._lose("no successful keepalive before the lease deadline")
                    break
                try:
                    ttl = await asyncio.wait_for(
                        self._store._keepalive(self._lease_id, rpc_timeout_s=self._deadline - now), self._deadline - now
                    )
                    holder = await asyncio.wait_for(
                        self._store._get(self.key, retry=False), max(0.05, self._deadline - now)
                    )
                except (StoreError, TimeoutError) as exc:
                    self._suspect = True
                    log.warning(
                        "election.keepalive_failed key=%s identity=%s left_s=%.2f error=%s",
                        self.key,
                        self.identity,
                        self._deadline - time.monotonic(),
                        exc,
                    )
                    continue
                if ttl <= 0:
                    self._lose("lease expired")
                    break
                if holder is None or holder.create_revision != fence.create_revision:
                    self._lose("leader key deleted or replaced")
                    break
                self._deadline = now + ttl - self._margin(ttl)
                self._suspect = False
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an unexpected bug must not leave a leader that believes it leads
            self._lose(f"keepalive task failed: {exc!r}")
            raise
        # Lost: give the lease back so a standby does not wait for it to expire (best effort).
        with contextlib.suppress(CoordinatorError, TimeoutError):
            await asyncio.wait_for(self._store._revoke(self._lease_id), 1.0)

    async def resign(self) -> None:
        """Stop leading and delete the key (by revoking its lease) so a standby takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._fence is not None:
            self.lost.set()
            self._store._elections.discard(self)
            self._fence = None
            await self._store._revoke(self._lease_id)
            log.info("election.resigned key=%s identity=%s", self.key, self.identity)

    async def leader_identity(self) -> str | None:
        """The identity written by the current leader, None when nobody leads."""
        kv = await self._store.get(self.key)
        return _s(kv.value) if kv is not None else None
