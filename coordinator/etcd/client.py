"""The etcd client: connection, authentication, the one retry policy of unary calls, key-value, CAS and leases.

Rules (named as in the package docstring):
- **Mapped errors.** Callers see only the package's frozen values and the errors of ``coordinator.errors``; every gRPC
  error is mapped with ``raise ... from exc`` (:func:`coordinator.etcd.wire.map_error`). A connect that reaches no
  endpoint because of TLS raises StoreTlsError naming the problem and its fix (``tls_hint.diagnose``).
- **Brief unary retry.** Unary calls are retried briefly (:data:`UNARY_RETRY`) on UNAVAILABLE only, plus UNAUTHENTICATED
  when a user is configured (the member forgot our token: log in again). Deadline errors are not retried (a write may
  have applied). With several endpoints each retry moves to the next one, so ``connect`` tries every endpoint in order.
- **Fenced leadership.** Every leader write carries a Fence that etcd checks in the same transaction as the write
  (:meth:`EtcdStore.cas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from pydantic import SecretStr

from coordinator.errors import (
    CoordinatorError,
    LeadershipLost,
    RevisionCompacted,
    StoreError,
    StoreTlsError,
    StoreUnavailable,
)
from coordinator.etcd import probe, watch, wire
from coordinator.etcd.election import Election
from coordinator.etcd.stubs import rpc
from coordinator.etcd.tls_hint import diagnose
from coordinator.etcd.types import KV, Alarm, CasResult, DeleteResult, Fence, Lease, Snapshot, WatchBatch
from coordinator.etcd.wire import (
    Conn,
    RpcError,
    details,
    encode,
    endpoint_url,
    is_auth_not_enabled,
    is_unauthenticated,
    is_unavailable,
    range_end,
    read_tls,
    status_name,
    to_kv,
)
from coordinator.runtime.retry import RetryAttempt, RetryPolicy, retry_call
from coordinator.runtime.settings import EtcdSettings, plaintext_credentials

log = logging.getLogger(__name__)

#: Ranges per read transaction of ``get_many``: etcd refuses more than ``--max-txn-ops`` (128 by default).
GET_BATCH = 100

#: Unary calls on UNAVAILABLE: the first call after a server restart fails although the server is up. 5 attempts with
#: waits of about 0.1, 0.2, 0.4, 0.5 s, each drawn from [d/2, d] so clients restarted together do not retry in
#: lockstep: 0.6-1.2 s in all, longer than a local restart, short enough that a caller with its own (longer) retry
#: loop, such as the plugin's writer, soon takes over. One more attempt per extra endpoint (see **Brief unary retry**).
UNARY_RETRY = RetryPolicy(initial_s=0.1, max_s=0.5, jitter=0.5, max_attempts=5)
#: One attempt: for calls whose failure must be seen at once (a leader's keepalive).
NO_RETRY = RetryPolicy(initial_s=0.0, max_s=0.0, max_attempts=1)


class EtcdStore:
    """A connection to etcd. Create with ``await EtcdStore.connect(settings)``; use as an async context manager.

    gRPC channels belong to the event loop that created them: use one store per event loop (thread).
    """

    def __init__(self, settings: EtcdSettings, credentials: Any) -> None:
        self._settings = settings
        self._credentials = credentials
        self._conns: dict[int, Conn] = {}
        self._index = 0
        self._closed = False
        self._elections: list[Election] = []
        #: Told (operation, gRPC code) of each request that failed for good and each broken watch stream (metrics).
        self.on_error: Callable[[str, str], None] = lambda op, code: None

    # -- connection -----------------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, settings: EtcdSettings, *, quick: bool = False) -> EtcdStore:
        """Connect to the first endpoint that answers (authenticating if a username is set).

        ``quick``: one attempt per endpoint and no retry, for commands that must answer within seconds when etcd is
        down (``doctor``, ``check-plugin``); the caller shortens ``settings.timeout_s`` to bound a silent endpoint.
        """
        store = cls(settings, read_tls(settings))
        if plaintext_credentials(settings):
            log.warning(
                "etcd.plaintext_credentials user=%s endpoints=%s fix=%s", settings.username,
                ",".join(endpoint_url(e) for e in settings.endpoints if not e.tls),
                "serve etcd over TLS and use https:// endpoints (COORDINATOR_ETCD_CA_FILE): the password and the "
                "token etcd returns cross the network in clear",
            )  # fmt: skip
        try:
            if quick:
                await store._first_answer()
            else:
                await store.current_revision()
        except StoreTlsError:
            await store.close()
            raise
        except StoreUnavailable as exc:
            await store.close()
            where = ", ".join(endpoint_url(ep) for ep in settings.endpoints)
            cause = exc.__cause__
            detail = details(cause) if isinstance(cause, RpcError) else str(exc)
            # gRPC's words do not tell a plain etcd behind https:// (or a TLS one behind http://): a probe does.
            tls = await diagnose(detail, settings, store._index)
            if tls is not None:
                raise tls from exc
            raise StoreUnavailable(f"cannot reach {where}: {detail}") from exc
        except BaseException:
            await store.close()
            raise
        return store

    async def _first_answer(self) -> int:
        """The current revision from the first endpoint that answers, each asked once (``connect(quick=True)``)."""
        last: StoreUnavailable | None = None
        for _ in self._settings.endpoints:
            try:
                return await self.current_revision(retry=False)
            except StoreUnavailable as exc:
                last = exc
                cause = exc.__cause__
                self.after_failure(cause if cause is not None else exc)
        assert last is not None  # settings hold at least one endpoint
        raise last

    @property
    def endpoint(self) -> str:
        """The endpoint currently in use."""
        return endpoint_url(self._settings.endpoints[self._index])

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def timeout_s(self) -> float:
        """The deadline of every unary call (and of opening a watch)."""
        return self._settings.timeout_s

    async def connection(self) -> Conn:
        """The channel to the current endpoint, authenticated; for the modules of this package."""
        if self._closed:
            raise StoreError("etcd store is closed")
        conn = self._conns.get(self._index)
        if conn is None:
            conn = Conn(self._settings.endpoints[self._index], self._credentials)
            self._conns[self._index] = conn
        if self._settings.username is not None and conn.metadata is None:
            await self._authenticate(conn)
        return conn

    async def _authenticate(self, conn: Conn) -> None:
        password = await self._password()
        request = rpc.AuthenticateRequest(name=self._settings.username, password=password)
        try:
            response = await conn.auth.Authenticate(request, timeout=self.timeout_s)
        except RpcError as exc:
            if is_auth_not_enabled(exc):
                log.warning("etcd.auth_not_enabled endpoint=%s user=%s", conn.endpoint, self._settings.username)
                conn.metadata = ()
                return
            raise
        conn.metadata = (("token", str(response.token)),)

    async def _password(self) -> str:
        """The password as its file holds it now (``COORDINATOR_ETCD_PASSWORD_FILE``: a rotated Secret is used at the
        next log-in, without a restart), else as given; the last value if the file cannot be read now."""
        settings = self._settings
        if settings.password_file is not None:
            try:
                text = await asyncio.to_thread(settings.password_file.read_text, encoding="utf-8")
            except OSError as exc:
                log.warning("etcd.secret_unreadable file=%s error=%s", settings.password_file, exc.strerror)
            else:
                self._settings = settings = settings.model_copy(update={"password": SecretStr(text.rstrip("\r\n"))})
        return settings.password.get_secret_value() if settings.password else ""

    def after_failure(self, exc: BaseException) -> None:
        """Prepare the next attempt after ``exc``: log in again if the member forgot our token, else move on to
        the next endpoint (when there are several)."""
        if is_unauthenticated(exc):
            conn = self._conns.get(self._index)
            if conn is not None:
                conn.metadata = None
        elif len(self._settings.endpoints) > 1:
            self._index = (self._index + 1) % len(self._settings.endpoints)

    def _retryable(self, exc: BaseException) -> bool:
        # A TLS failure too: right after etcd restarts with a renewed certificate the channel still holds the last
        # handshake's error for a moment.
        return is_unavailable(exc) or (is_unauthenticated(exc) and self._settings.username is not None)

    def _before_retry(self, attempt: RetryAttempt) -> None:
        # INFO, not WARNING: a retry that then succeeds is routine after a restart; a final failure is raised.
        log.info(
            "etcd.retry endpoint=%s attempt=%d delay_s=%.2f error=%s",
            self.endpoint,
            attempt.number,
            attempt.delay,
            status_name(attempt.error),
        )
        self.after_failure(attempt.error)

    async def call(self, op: str, fn: Callable[[Conn], Awaitable[Any]], *, retry: bool = True) -> Any:
        """Run one unary RPC with :data:`UNARY_RETRY` (or once, without ``retry``); map gRPC errors (**Mapped errors**,
        **Brief unary retry**)."""
        policy = NO_RETRY
        if retry:
            attempts = (UNARY_RETRY.max_attempts or 1) + len(self._settings.endpoints) - 1
            policy = replace(UNARY_RETRY, max_attempts=attempts)

        async def attempt() -> Any:
            return await fn(await self.connection())

        try:
            return await retry_call(attempt, policy, self._retryable, on_retry=self._before_retry)
        except RpcError as exc:
            self.on_error(op, status_name(exc))
            raise self.map_error(op, exc) from exc

    def map_error(self, op: str, exc: BaseException) -> CoordinatorError:
        """Our error for the gRPC error ``exc`` of ``op`` on the current endpoint (**Mapped errors**)."""
        return wire.map_error(op, exc, self._settings, self._index)

    async def close(self) -> None:
        """Resign any leadership held through this store (fast hand-over), then close every channel."""
        for election in [e for e in self._elections if e.holding]:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that meets resign's answer
            # (gh-86296), and a caller cancelled while closing (a stop, a loop's end) would carry on.
            with contextlib.suppress(CoordinatorError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await election.resign()
        self._closed = True
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- key-value ------------------------------------------------------------------------------------------

    async def ping(self, key: str, timeout_s: float) -> int:
        """etcd's current revision, asked once with a deadline (``coordinator.etcd.probe.ping``)."""
        return await probe.ping(self, key, timeout_s)

    async def alarms(self, timeout_s: float) -> tuple[Alarm, ...]:
        """The alarms raised on any member, asked once with a deadline (``coordinator.etcd.probe.alarms``)."""
        return await probe.alarms(self, timeout_s)

    async def get(self, key: str, *, retry: bool = True) -> KV | None:
        """The key as stored, None when absent. Without ``retry`` a failure is raised at once."""
        request = rpc.RangeRequest(key=encode(key))
        response = await self.call(
            "get", lambda c: c.kv.Range(request, timeout=self.timeout_s, metadata=c.metadata), retry=retry
        )
        return to_kv(response.kvs[0]) if response.kvs else None

    async def get_many(self, keys: Sequence[str], *, revision: int = 0) -> tuple[int, list[KV]]:
        """The keys that exist among ``keys``, all read at ONE revision (``revision``, else the current one):
        (revision, found). Transactions of ``GET_BATCH`` ranges (etcd caps the operations of one), sent together
        once the revision is known."""

        async def batch(chunk: Sequence[str], at: int) -> tuple[int, list[KV]]:
            ops = [rpc.RequestOp(request_range=rpc.RangeRequest(key=encode(k), revision=at)) for k in chunk]
            response, _ = await self._txn("get_many", [], ops, [])
            found = [to_kv(kv) for answer in response.responses for kv in answer.response_range.kvs]
            return int(response.header.revision), found

        chunks = [keys[i : i + GET_BATCH] for i in range(0, len(keys), GET_BATCH)]
        if not revision:
            revision, first = await batch(chunks[0], 0) if chunks else (await self.current_revision(), [])
            chunks, found = chunks[1:], first
        else:
            found = []
        for _, more in await asyncio.gather(*(batch(chunk, revision) for chunk in chunks)):
            found += more
        return revision, found

    async def newest_keys(self, prefix: str, limit: int, *, revision: int = 0) -> list[str]:
        """The ``limit`` greatest keys under ``prefix`` (keys only), greatest first: one ranged read however many
        keys the prefix holds (a DAG's newest partitions)."""
        request = rpc.RangeRequest(
            key=encode(prefix), range_end=range_end(encode(prefix)), limit=limit, keys_only=True, revision=revision,
            sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.KEY,
        )  # fmt: skip
        response = await self.call(
            "newest_keys", lambda c: c.kv.Range(request, timeout=self.timeout_s, metadata=c.metadata)
        )
        return [bytes(kv.key).decode() for kv in response.kvs]

    async def newest(self, prefix: str, limit: int, *, revision: int, below: str | None = None) -> list[KV]:
        """The ``limit`` greatest keys under ``prefix`` with their values, greatest first, at ``revision``; with
        ``below``, only keys less than it (the next page of a walk back in time through one DAG's partitions)."""
        end = encode(below) if below is not None else range_end(encode(prefix))
        request = rpc.RangeRequest(
            key=encode(prefix), range_end=end, limit=limit, revision=revision,
            sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.KEY,
        )  # fmt: skip
        response = await self.call("newest", lambda c: c.kv.Range(request, timeout=self.timeout_s, metadata=c.metadata))
        return [to_kv(kv) for kv in response.kvs]

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Write unconditionally (bound to ``lease`` if given: deleted when it expires); return the revision."""
        request = rpc.PutRequest(key=encode(key), value=value, lease=lease or 0)
        response = await self.call("put", lambda c: c.kv.Put(request, timeout=self.timeout_s, metadata=c.metadata))
        return int(response.header.revision)

    async def delete(self, key: str) -> bool:
        """Delete one key; True if it existed."""
        request = rpc.DeleteRangeRequest(key=encode(key))
        response = await self.call(
            "delete", lambda c: c.kv.DeleteRange(request, timeout=self.timeout_s, metadata=c.metadata)
        )
        return int(response.deleted) > 0

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted."""
        request = rpc.DeleteRangeRequest(key=encode(prefix) or b"\0", range_end=range_end(encode(prefix)))
        response = await self.call(
            "delete_prefix", lambda c: c.kv.DeleteRange(request, timeout=self.timeout_s, metadata=c.metadata)
        )
        return int(response.deleted)

    async def _txn(self, op: str, compare: list[Any], success: list[Any], failure: list[Any]) -> tuple[Any, int]:
        """Run a transaction; return (response, number of attempts it took)."""
        request = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        attempts = 0

        async def run(conn: Conn) -> Any:
            nonlocal attempts
            attempts += 1
            return await conn.kv.Txn(request, timeout=self.timeout_s, metadata=conn.metadata)

        return await self.call(op, run), attempts

    async def cas(
        self,
        key: str,
        value: bytes,
        expected_mod_revision: int,
        *,
        fence: Fence | None = None,
        lease: int | None = None,
        also: Sequence[tuple[str, bytes]] = (),
    ) -> CasResult:
        """Write ``value`` only if the key's mod_revision is ``expected_mod_revision`` (0: the key must not exist)
        and, with a fence, only if the fence key still has the fence's create revision (else LeadershipLost).
        ``also``: more (key, value) puts in the same transaction, made only with it (a projection of ``value``, such
        as a permit: semantics `permit-not-run`).

        On success ``current`` is None; on a conflict it is the key as found.
        """
        k = encode(key)
        compare = [
            rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=k, mod_revision=expected_mod_revision)
        ]
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))]
        if fence is not None:
            fk = encode(fence.key)
            compare.append(
                rpc.Compare(
                    result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=fk, create_revision=fence.create_revision
                )
            )
            failure.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=fk)))
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease or 0))]
        success += [rpc.RequestOp(request_put=rpc.PutRequest(key=encode(key), value=more)) for key, more in also]
        response, attempts = await self._txn("cas", compare, success, failure)
        revision = int(response.header.revision)
        if response.succeeded:
            return CasResult(True, revision, None)
        found = response.responses[0].response_range.kvs
        current = to_kv(found[0]) if found else None
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

    async def put_unchanged(self, items: Sequence[tuple[str, bytes, int]]) -> CasResult:
        """Write every (key, value, expected mod_revision) of ``items`` in ONE transaction, only if each key still has
        its expected mod revision (0: absent); all or nothing. Keep ``items`` under etcd's ``--max-txn-ops``.

        On a conflict nothing is written (``current`` is None: the caller reads again). An answer lost with the
        connection whose retry then conflicts is taken for success when every key now holds exactly our value at
        one revision newer than expected (the earlier attempt applied): values that carry what they were written
        for (the receiver's do) make that unambiguous.
        """
        compare = [
            rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=encode(key), mod_revision=rev)
            for key, _, rev in items
        ]
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=encode(key), value=value)) for key, value, _ in items]
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=encode(key))) for key, _, _ in items]
        response, attempts = await self._txn("put_unchanged", compare, success, failure)
        revision = int(response.header.revision)
        if response.succeeded:
            return CasResult(True, revision, None)
        if attempts > 1:
            found = [reply.response_range.kvs for reply in response.responses]
            revisions = {int(kvs[0].mod_revision) for kvs in found if kvs}
            ours = all(kvs and bytes(kvs[0].value) == value for kvs, (_, value, _) in zip(found, items, strict=True))
            if ours and len(revisions) == 1:
                (written,) = revisions
                if all(written > rev for _, _, rev in items):
                    return CasResult(True, written, None)
        return CasResult(False, revision, None)

    async def delete_unchanged(self, items: Sequence[tuple[str, int]], *, fence: Fence | None = None) -> DeleteResult:
        """Delete every (key, mod_revision) of ``items`` in ONE transaction, only if none of them changed (and, with
        a fence, only while it holds: else LeadershipLost). Keep ``items`` under etcd's ``--max-txn-ops`` (128).

        On a conflict nothing is deleted and ``changed`` names the keys whose mod revision moved; keys found absent
        (already deleted, or deleted by an earlier attempt whose answer was lost) are in ``gone``.
        """
        compare = [
            rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, key=encode(key), mod_revision=rev)
            for key, rev in items
        ]
        success = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=encode(key))) for key, _ in items]
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=encode(key), keys_only=True)) for key, _ in items]
        if fence is not None:
            fk = encode(fence.key)
            compare.append(rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=fk,
                                       create_revision=fence.create_revision))  # fmt: skip
            failure.append(rpc.RequestOp(request_range=rpc.RangeRequest(key=fk)))
        response, _ = await self._txn("delete_unchanged", compare, success, failure)
        revision = int(response.header.revision)
        if response.succeeded:
            return DeleteResult(True, revision)
        if fence is not None:
            holder = response.responses[len(items)].response_range.kvs
            if not holder or int(holder[0].create_revision) != fence.create_revision:
                raise LeadershipLost(f"fence {fence.key}@{fence.create_revision} no longer holds; deletes refused")
        changed: list[str] = []
        gone: list[str] = []
        for (key, rev), reply in zip(items, response.responses, strict=False):
            found = reply.response_range.kvs
            if not found:
                gone.append(key)
            elif int(found[0].mod_revision) != rev:
                changed.append(key)
        return DeleteResult(False, revision, tuple(changed), tuple(gone))

    async def create(self, key: str, value: bytes, *, lease: int) -> CasResult:
        """Create ``key`` bound to ``lease`` only if it does not exist. On a conflict ``current`` is the holder.

        Unlike :meth:`cas`, a lost answer is never taken for success: the same value may be another holder's.
        """
        k = encode(key)
        response, _ = await self._txn(
            "create",
            [rpc.Compare(result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, key=k, create_revision=0)],
            [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))],
            [rpc.RequestOp(request_range=rpc.RangeRequest(key=k))],
        )
        revision = int(response.header.revision)
        if response.succeeded:
            return CasResult(True, revision, None)
        found = response.responses[0].response_range.kvs
        return CasResult(False, revision, to_kv(found[0]) if found else None)

    async def compact(self, revision: int) -> None:
        """Drop history before ``revision`` (physically, before returning). Compacting an old revision is a no-op."""
        request = rpc.CompactionRequest(revision=revision, physical=True)
        with contextlib.suppress(RevisionCompacted):
            await self.call("compact", lambda c: c.kv.Compact(request, timeout=self.timeout_s, metadata=c.metadata))

    async def current_revision(self, *, retry: bool = True) -> int:
        """The store's current revision (the revision of the latest write)."""
        response = await self.call(
            "status",
            lambda c: c.maintenance.Status(rpc.StatusRequest(), timeout=self.timeout_s, metadata=c.metadata),
            retry=retry,
        )
        return int(response.header.revision)

    # -- snapshots and watches (coordinator.etcd.watch) ------------------------------------------------------

    async def snapshot(
        self, prefix: str, *, page_size: int = watch.SNAPSHOT_PAGE_SIZE, cuts: Sequence[str] = ()
    ) -> Snapshot:
        """Every key under ``prefix`` at one revision, read in pages pinned to the first page's revision.

        ``cuts`` (keys inside the prefix) split the read into ranges: same keys, far less work for etcd on a big
        prefix when each range holds about a page (``watch.stream_snapshot``)."""
        return await watch.snapshot(self, prefix, page_size, cuts)

    async def stream_snapshot(
        self,
        prefix: str,
        sink: watch.SnapshotSink | watch.ItemSink,
        *,
        page_size: int = watch.SNAPSHOT_PAGE_SIZE,
        cuts: Sequence[str] = (),
    ) -> tuple[int, int]:
        """``snapshot``, handed to ``sink`` page by page instead of kept whole; returns (revision, keys)."""
        return await watch.stream_snapshot(self, prefix, sink, page_size, cuts)

    def watch_prefix(
        self,
        prefix: str,
        start: Snapshot | int,
        known: Callable[[], Mapping[str, int]] | None = None,
        cuts: Sequence[str] = (),
    ) -> AsyncIterator[WatchBatch]:
        """Every change under ``prefix`` after ``start``, forever, across reconnects and compactions.

        Each batch's ``revision`` is the last revision handed out; a reconnect resumes right after it. From a bare
        revision, ``known`` gives the keys (and mod revisions) the consumer knows when a compaction forces a relist;
        ``cuts`` split that relist's read as in ``snapshot``.
        """
        return watch.watch_prefix(self, prefix, start, known, cuts)

    async def wait_deleted(self, key: str, after_revision: int, max_wait_s: float) -> None:
        """Return when ``key`` is deleted after ``after_revision``, after ``max_wait_s``, or soon after watch trouble
        (the caller re-checks the key in every case, so returning early is always safe)."""
        await watch.wait_deleted(self, key, after_revision, max_wait_s)

    # -- leases and election -------------------------------------------------------------------------------

    def election(self, key: str, identity: str, ttl: int) -> Election:
        """A contender for the leader key ``key``; ``identity`` is written as its value; ``ttl`` in seconds.

        Closing the store resigns it (a standby takes over at once instead of waiting for the lease to expire).
        """
        election = Election(self, key, identity, ttl)
        self._elections.append(election)
        return election

    async def grant_lease(self, ttl: int) -> Lease:
        """A new lease of ``ttl`` seconds (etcd may grant a different TTL: see ``Lease.ttl``)."""
        response = await self.call(
            "lease_grant",
            lambda c: c.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout_s, metadata=c.metadata),
        )
        if response.error:
            raise StoreError(f"etcd lease grant: {response.error}")
        return Lease(int(response.ID), int(response.TTL))

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease (deleting every key bound to it); a lease that already expired is not an error."""
        try:
            await self.call(
                "lease_revoke",
                lambda c: c.lease.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout_s, metadata=c.metadata
                ),
            )
        except StoreError as exc:
            if "not found" not in str(exc):  # already expired: that is what we wanted
                raise

    async def keepalive_once(self, lease_id: int, timeout_s: float) -> int:
        """Refresh a lease once, without retry; return its new TTL (<= 0: the lease no longer exists)."""

        async def run(conn: Conn) -> Any:
            call = conn.lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=timeout_s, metadata=conn.metadata
            )
            try:
                async for reply in call:
                    return reply
                return None
            finally:
                call.cancel()

        # No retry: a failed keepalive must make the leader stop acting now; the election loop retries soon.
        reply = await self.call("lease_keepalive", run, retry=False)
        return int(reply.TTL) if reply is not None else 0
