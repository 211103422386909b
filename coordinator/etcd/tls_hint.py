"""Why a TLS handshake with an etcd endpoint failed, in words an operator can act on.

gRPC reports an ``https://`` endpoint of a plain (non-TLS) etcd only as "handshake read failed". etcd serves plain
HTTP/1.1 (``GET /version``) on its client port beside gRPC, so after a failed handshake one plain question proves the
member does not speak TLS, and the message can say which scheme to use instead.

Rules: asked only after a failed handshake (never on the healthy path); bounded by :data:`PLAIN_PROBE_TIMEOUT_S`; any
failure to ask proves nothing (False), and the original error stands.
"""

from __future__ import annotations

import asyncio

from coordinator.etcd.wire import endpoint_url
from coordinator.runtime.settings import Endpoint

#: How long the plain-HTTP question of :func:`plain_http_answers` may take: a local member answers in milliseconds.
PLAIN_PROBE_TIMEOUT_S = 2.0


def is_handshake_failure(text: str) -> bool:
    """gRPC's words for a TLS handshake that did not happen (``Handshake read failed``, ``SSL_ERROR_...``)."""
    lowered = text.lower()
    return "handshake" in lowered or "ssl" in lowered


async def plain_http_answers(ep: Endpoint, timeout_s: float = PLAIN_PROBE_TIMEOUT_S) -> bool:
    """Whether ``ep`` answers plain HTTP/1.1 (etcd serves ``GET /version`` on its client port beside gRPC): asked
    after a failed TLS handshake, a plain answer proves the member does not speak TLS, which gRPC's "handshake read
    failed" does not say. Any failure to ask is False (nothing proven)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(ep.host, ep.port)
            writer.write(f"GET /version HTTP/1.1\r\nHost: {ep.host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.read(16)
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
    return head.startswith(b"HTTP/1.")


def not_tls_message(ep: Endpoint) -> str:
    """What to do when an https:// endpoint turned out to be a plain etcd."""
    return (f"etcd at {ep.host}:{ep.port} does not speak TLS (it answered plain HTTP to {endpoint_url(ep)}): use "
            f"http://{ep.host}:{ep.port} in --etcd / COORDINATOR_ETCD_ENDPOINTS, or enable TLS on etcd "
            "(--cert-file and --key-file, then --advertise-client-urls https://...)")  # fmt: skip
