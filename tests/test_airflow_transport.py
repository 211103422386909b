"""The Airflow client's keep-alive transport (coordinator.airflow.transport) against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.transport import LeanTransport, lean_transport_for
from coordinator.errors import AirflowUnavailable
from coordinator.runtime.settings import InstanceSettings

BODY = json.dumps({"version": "3.3.2"}).encode()


@dataclass
class Server:
    """A tiny HTTP/1.1 server. ``mode`` says how it answers the next requests:

    keep (Content-Length, connection kept), close (``Connection: close``), chunked (chunked + gzip body),
    hang (never answers), drop (closes without an answer), answer_then_close (answers, then closes the connection
    without saying so: an idle timeout on the server side).
    """

    mode: str = "keep"
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head.split(b"\r\n")[0] + b" " + body)
                if self.mode == "hang":
                    await asyncio.sleep(3600)
                if self.mode == "drop":
                    break
                if self.mode == "chunked":
                    payload = gzip.compress(BODY)
                    half = len(payload) // 2
                    chunks = b"".join(
                        f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (payload[:half], payload[half:])
                    )
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
                    )
                    await writer.drain()
                    continue
                close = b"Connection: close\r\n" if self.mode == "close" else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + close
                    + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY
                )  # fmt: skip
                await writer.drain()
                if self.mode in ("close", "answer_then_close"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def with_server(test: Callable[[Server, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Server()
        url = await server.start()
        try:
            await test(server, url)
        finally:
            await server.stop()

    asyncio.run(main())


def client_for(url: str, transport: LeanTransport, timeout_s: float = 5.0) -> AirflowClient:
    return AirflowClient(InstanceSettings(url=url, api="v2"), timeout_s=timeout_s, transport=transport)


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    """Requests one after the other reuse the one open connection."""

    async def test(server: Server, url: str) -> None:
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            versions = [await client.version() for _ in range(5)]
        assert versions == ["3.3.2"] * 5
        assert (server.accepted, transport.opened) == (1, 1)

    with_server(test)


def test_concurrent_requests_each_get_a_connection_and_all_are_pooled() -> None:
    """Concurrent requests run on separate connections, which are all reused by the next round."""

    async def test(server: Server, url: str) -> None:
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            for _ in range(3):
                assert await asyncio.gather(*(client.version() for _ in range(8))) == ["3.3.2"] * 8
        assert transport.opened == server.accepted
        assert server.accepted <= 8

    with_server(test)


def test_connection_close_answers_are_never_reused() -> None:
    """A server that answers ``Connection: close`` gets a new connection per request, and every request succeeds."""

    async def test(server: Server, url: str) -> None:
        server.mode = "close"
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            assert [await client.version() for _ in range(3)] == ["3.3.2"] * 3
        assert server.accepted == 3

    with_server(test)


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """After the server silently closes an idle connection, the next request opens a new one instead of failing."""

    async def test(server: Server, url: str) -> None:
        server.mode = "answer_then_close"
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            assert await client.version() == "3.3.2"
            for _ in range(100):  # the close reaches our event loop within a few ms
                if server.accepted == 1 and not any(c.reusable() for p in transport._idle.values() for c in p):
                    break
                await asyncio.sleep(0.01)
            server.mode = "keep"
            assert await client.version() == "3.3.2"
        assert server.accepted == 2

    with_server(test)


def test_an_idle_connection_older_than_the_expiry_is_dropped() -> None:
    """A connection idle longer than the keep-alive expiry is closed and replaced, never reused."""

    async def test(server: Server, url: str) -> None:
        now = [0.0]
        transport = LeanTransport(keepalive_expiry_s=4.0, clock=lambda: now[0])
        async with client_for(url, transport) as client:
            await client.version()
            now[0] = 3.9
            await client.version()  # still fresh: reused
            now[0] = 8.0
            await client.version()  # idle 4.1 s: a new connection
        assert transport.opened == 2

    with_server(test)


def test_chunked_gzip_bodies_are_decoded() -> None:
    """A chunked, gzip-encoded answer (a proxy in front of Airflow may send one) reads as its JSON."""

    async def test(server: Server, url: str) -> None:
        server.mode = "chunked"
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            assert [await client.version() for _ in range(2)] == ["3.3.2"] * 2
        assert server.accepted == 1

    with_server(test)


def test_request_bodies_and_query_strings_reach_the_server() -> None:
    """The method, path, query and JSON body are sent as httpx built them."""

    async def test(server: Server, url: str) -> None:
        transport = LeanTransport()
        async with httpx.AsyncClient(base_url=url, transport=transport) as http:
            response = await http.post("/api/v2/dags/a%3Ab/dagRuns", params={"x": "1 2"}, json={"k": "v"})
        assert response.json() == {"version": "3.3.2"}
        assert server.requests == [b'POST /api/v2/dags/a%3Ab/dagRuns?x=1+2 HTTP/1.1 {"k":"v"}']

    with_server(test)


def test_a_read_timeout_is_unavailable_and_the_connection_is_discarded() -> None:
    """No answer within the timeout -> AirflowUnavailable (retried by the actuator); that connection is closed."""

    async def test(server: Server, url: str) -> None:
        transport = LeanTransport()
        async with client_for(url, transport, timeout_s=0.3) as client:
            server.mode = "hang"
            with pytest.raises(AirflowUnavailable, match="timed out"):
                await client.version()
            server.mode = "keep"
            assert await client.version() == "3.3.2"
        assert server.accepted == 2

    with_server(test)


def test_a_connection_closed_without_an_answer_is_unavailable() -> None:
    """The server hangs up instead of answering -> AirflowUnavailable naming the failure, never a hang."""

    async def test(server: Server, url: str) -> None:
        server.mode = "drop"
        async with client_for(url, LeanTransport()) as client:
            with pytest.raises(AirflowUnavailable, match=r"connection failed.*without sending a response"):
                await client.version()

    with_server(test)


def test_a_refused_connection_is_unavailable() -> None:
    """Nothing listening -> AirflowUnavailable (connection failed)."""

    async def test(server: Server, url: str) -> None:
        await server.stop()
        async with client_for(url, LeanTransport()) as client:
            with pytest.raises(AirflowUnavailable, match="connection failed"):
                await client.version()
        server.server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # for the fixture's stop()

    with_server(test)


def test_a_cancelled_request_closes_its_connection() -> None:
    """A request cancelled while waiting for its answer never leaves its connection in the pool."""

    async def test(server: Server, url: str) -> None:
        transport = LeanTransport()
        async with client_for(url, transport) as client:
            server.mode = "hang"
            task = asyncio.create_task(client.version())
            while not server.requests:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not any(transport._idle.values())
            server.mode = "keep"
            assert await client.version() == "3.3.2"
        assert transport.opened == 2

    with_server(test)


@pytest.mark.parametrize(
    ("env", "lean"),
    [
        pytest.param({}, True, id="no-proxy"),
        pytest.param({"HTTP_PROXY": "http://proxy:3128"}, False, id="http-proxy"),
        pytest.param({"ALL_PROXY": "http://proxy:3128"}, False, id="all-proxy"),
        pytest.param({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "airflow.test"}, True, id="bypassed"),
        pytest.param({"HTTPS_PROXY": "http://proxy:3128"}, True, id="other-scheme"),
    ],
)
def test_a_proxy_in_the_environment_keeps_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], lean: bool
) -> None:
    """Where a proxy applies, the client keeps httpx's proxy-aware transport; elsewhere it uses the lean one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    transport: Any = lean_transport_for("http://airflow.test:8080")
    assert isinstance(transport, LeanTransport) is lean
