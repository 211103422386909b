"""A lean HTTP/1.1 transport under the Airflow client's httpx.AsyncClient: asyncio protocol + h11, keep-alive pool.

Why: httpx's default transport (httpcore over anyio) cost ~1.1 ms of CPU per request on the benchmark VM, most of it
in its pool, which for every request it assigns re-checks every pooled connection (one ``poll`` syscall each). At
200 triggers/s that alone was a third of a core. This transport does the same exchange for ~0.3 ms: httpx still
builds the request and the response (auth, URL, JSON), only the socket work is done here.

Rules:
- **Complete exchanges only.** HTTP/1.1, one request at a time per connection. A connection goes back to the pool only
  after a complete exchange that both sides may continue (h11 says so: no ``Connection: close``, body fully read); any
  error, timeout or cancellation closes it.
- **No stale connection.** A pooled connection is never reused once the server has closed it or sent anything unasked
  (the event loop has already read the EOF or the bytes: checked without a syscall), nor after KEEPALIVE_EXPIRY_S idle
  (uvicorn, the Airflow 3 API server, closes idle connections after 5 s; reusing one at that moment would lose the
  request). A request that still meets a closing connection fails like with httpx's own transport
  (``RemoteProtocolError``); the caller's retry covers it (the actuator retries AirflowUnavailable, and every Airflow
  call it makes is safe to repeat).
- **httpx's errors.** Failures are httpx's own exceptions (ConnectError/ConnectTimeout, WriteError,
  ReadError/ReadTimeout, RemoteProtocolError, PoolTimeout), so the client maps them exactly as before. Timeouts come
  from the request (``httpx.Timeout``): connect, each read, and the wait for a free connection slot.
- **Only without a proxy.** Used only where httpx's transport would do nothing more: not when the environment names a
  proxy for the URL (:func:`lean_transport_for` returns None and httpx keeps its own, proxy-aware transport). TLS uses
  httpx's default context (certifi, ``SSL_CERT_FILE``/``SSL_CERT_DIR``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import h11
import httpx

#: Idle seconds after which a pooled connection is dropped rather than reused: under uvicorn's 5 s keep-alive timeout
#: (Airflow 3's API server), so that the server never closes a connection we are about to send on.
KEEPALIVE_EXPIRY_S = 4.0
#: Connections open at once per transport (httpx's default limit); more requests wait for a slot (pool timeout).
MAX_CONNECTIONS = 100
#: Idle connections kept per origin (httpx's default): more than the actuator's concurrent actions (16 by default).
MAX_IDLE = 20
_READ_SIZE = 64 * 1024

_Origin = tuple[str, str, int]


def lean_transport_for(url: str) -> LeanTransport | None:
    """The lean transport for ``url``, or None when a proxy applies to it (httpx's own transport handles those)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return LeanTransport()


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: received bytes are buffered here until the exchange asks for them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.CLIENT)
        self.buffer = bytearray()
        self.eof = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport: we never send after the server stopped sending

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, timeout_s: float | None) -> bytes:
        """What arrived since the last read (b"" once the server closed), waiting up to ``timeout_s``."""
        if not self.buffer and not self.eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._waiter
            finally:
                self._waiter = None
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def reusable(self) -> bool:
        """**No stale connection**: still open, nothing unasked buffered, and h11 ready for the next exchange."""
        return (
            not self.eof
            and not self.buffer
            and self.transport is not None
            and not self.transport.is_closing()
            and self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """The module's transport; pass it as ``httpx.AsyncClient(transport=...)``. Belongs to one event loop."""

    def __init__(
        self,
        *,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
        max_connections: int = MAX_CONNECTIONS,
        max_idle: int = MAX_IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._expiry_s = keepalive_expiry_s
        self._max_idle = max_idle
        self._clock = clock
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        #: Connections opened so far (tests and benchmarks read it to see reuse).
        self.opened = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection slot in time", request=request) from exc
        try:
            conn = self._take_idle(origin) or await self._connect(origin, request, timeouts.get("connect"))
            keep = False
            try:
                response = await self._exchange(conn, request, body, timeouts.get("read"))
                if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                    conn.h11.start_next_cycle()
                    keep = conn.reusable()
            finally:
                if keep:
                    self._put_idle(origin, conn)
                else:
                    conn.close()
            return response
        finally:
            self._slots.release()

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        now = self._clock()
        while pool:
            conn = pool.pop()  # the most recently used first: the least likely to be timed out by the server
            if now - conn.idle_since < self._expiry_s and conn.reusable():
                return conn
            conn.close()
        return None

    def _put_idle(self, origin: _Origin, conn: _Connection) -> None:
        pool = self._idle.setdefault(origin, [])
        if len(pool) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = self._clock()
        pool.append(conn)

    async def _connect(self, origin: _Origin, request: httpx.Request, timeout_s: float | None) -> _Connection:
        scheme, host, port = origin
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        self.opened += 1
        return conn

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, body: bytes, read_timeout_s: float | None
    ) -> httpx.Response:
        try:
            data = conn.h11.send(
                h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
            )
            if body:
                data = (data or b"") + (conn.h11.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        assert conn.transport is not None
        if conn.transport.is_closing():
            raise httpx.WriteError("connection closed before the request was sent", request=request)
        conn.transport.write(data)  # a few hundred bytes: the kernel takes them at once, no flow control needed
        status, headers, reason, chunks = 0, [], b"", []
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if event is h11.NEED_DATA:
                try:
                    received = await conn.read(read_timeout_s)
                except TimeoutError as exc:
                    raise httpx.ReadTimeout("timed out waiting for the response", request=request) from exc
                if not received and status == 0:
                    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
                conn.h11.receive_data(received)
            elif isinstance(event, h11.Response):
                status, headers, reason = event.status_code, event.headers.raw_items(), event.reason
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("server closed the connection mid-response", request=request)
            # InformationalResponse (1xx): keep reading for the final response.
        return httpx.Response(
            status,
            headers=headers,
            content=b"".join(chunks),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
