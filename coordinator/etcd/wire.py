"""The gRPC side of the etcd adapter: channels, TLS, key encoding, protobuf -> values, gRPC errors -> our errors.

Rules:
- **Mapped errors.** Every gRPC error that leaves the package is mapped here (:func:`map_error`) into the tree of
  ``coordinator.errors``; the caller raises it ``from`` the gRPC error. A TLS handshake failure is named by
  ``tls_hint.classify`` (a StoreTlsError carrying the fix), never left as "UNAVAILABLE".
- **Keys round-trip.** Keys are UTF-8 with ``surrogateescape``: keys that other writers stored as non-UTF-8 bytes
  round-trip instead of crashing the reader.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information

from coordinator.errors import (
    ConfigError,
    CoordinatorError,
    RevisionCompacted,
    StoreError,
    StoreUnavailable,
    WritesRefused,
)
from coordinator.etcd.stubs import rpc
from coordinator.etcd.tls_hint import classify, url
from coordinator.etcd.types import KV
from coordinator.runtime.settings import Endpoint, EtcdSettings

#: The ``--max-request-bytes`` a too-large request's error suggests: 10 MiB, the most etcd's own documentation
#: advises.
REQUEST_BYTES_FIX = 10 * 1024 * 1024

CHANNEL_OPTIONS = (
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

#: gRPC's error type, re-exported so the other modules of the package name it without importing grpc themselves.
RpcError: type[Exception] = grpc.aio.AioRpcError
#: What a gRPC stream's read() returns once the server ended the stream.
EOF: Any = grpc.aio.EOF


def encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def range_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range sharing ``prefix`` (``\\0`` = to the end when there is no upper bound)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def to_kv(raw: Any) -> KV:
    return KV(
        key=decode(raw.key),
        value=bytes(raw.value),
        mod_revision=int(raw.mod_revision),
        create_revision=int(raw.create_revision),
        version=int(raw.version),
    )


def status_name(exc: BaseException) -> str:
    """The gRPC status name of ``exc`` (e.g. UNAVAILABLE), or its repr for any other error: for log lines."""
    return str(exc.code().name) if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE


def is_unauthenticated(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAUTHENTICATED


def is_refused(exc: BaseException) -> bool:
    """Errors a new watch stream cannot fix: the user lacks permission or the request is invalid."""
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def is_auth_not_enabled(exc: BaseException) -> bool:
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        and "not enabled" in (exc.details() or "")
    )


def details(exc: BaseException) -> str:
    """The server's message for a gRPC error, str(exc) for anything else."""
    return str(exc.details()) if isinstance(exc, grpc.aio.AioRpcError) else str(exc)


def map_error(op: str, exc: Any, settings: EtcdSettings, index: int) -> CoordinatorError:
    """A CoordinatorError for a gRPC error (``exc`` is a grpc.aio.AioRpcError) of a call to endpoint ``index`` of
    ``settings``."""
    code = exc.code()
    text = exc.details() or ""
    where = f"{op} at {endpoint_url(settings.endpoints[index])}"
    if code == grpc.StatusCode.UNAVAILABLE:
        tls = classify(text, settings, index)
        if tls is not None:
            return tls
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return StoreUnavailable(f"{where}: {code.name}: {text}")
    if code == grpc.StatusCode.INVALID_ARGUMENT and "authentication failed" in text:
        return ConfigError(f"{where}: authentication failed; check the etcd username and password")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in text:
        return RevisionCompacted(0)  # etcd does not say up to where; 0 = unknown
    # etcd's ErrGRPCRequestTooLarge, and its gRPC server's own refusal of a message beyond that limit plus 512 KiB
    # (grpc-go's words): a write larger than ``--max-request-bytes``. Retrying never helps; the flag does.
    if (code == grpc.StatusCode.INVALID_ARGUMENT and "request is too large" in text) or (
        code == grpc.StatusCode.RESOURCE_EXHAUSTED and "grpc: received message larger than max" in text
    ):
        return StoreError(
            f"{where}: etcd refuses a request this large ({text}): start etcd with a larger --max-request-bytes "
            f"(1.5 MiB by default), e.g. --max-request-bytes={REQUEST_BYTES_FIX}"
        )
    # etcd's ErrGRPCNoSpace and ErrGRPCCorrupt: an alarm is raised and every write is refused until it is disarmed.
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "database space exceeded" in text:
        return WritesRefused(f"{where}: etcd refuses writes: {text} (alarm NOSPACE; `coordinator doctor` prints the "
                             "fix)", "NOSPACE")  # fmt: skip
    if code == grpc.StatusCode.DATA_LOSS and "corrupt" in text:
        return WritesRefused(f"{where}: etcd refuses writes: {text} (alarm CORRUPT; `coordinator doctor` prints the "
                             "fix)", "CORRUPT")  # fmt: skip
    return StoreError(f"{where}: {code.name}: {text}")


def endpoint_url(ep: Endpoint) -> str:
    return url(ep)


class Conn:
    """One channel to one endpoint, with the auth token etcd gave on that member (tokens are per member)."""

    def __init__(self, ep: Endpoint, credentials: Any) -> None:
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        target = f"{host}:{ep.port}"
        if ep.tls:
            self.channel = grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.endpoint = endpoint_url(ep)
        #: gRPC metadata carrying the auth token; None = not authenticated yet.
        self.metadata: tuple[tuple[str, str], ...] | None = None
        self.kv = rpc.KVStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)
        self.auth = rpc.AuthStub(self.channel)
        #: The KV service's Range answered as the bytes etcd sent: a load's pages, read by ``etcd.range_page``
        #: without protobuf's message objects.
        self.range_bytes = self.channel.unary_unary(
            "/etcdserverpb.KV/Range", request_serializer=rpc.RangeRequest.SerializeToString, response_deserializer=None
        )

    async def close(self) -> None:
        await self.channel.close()


def read_tls(settings: EtcdSettings) -> Any:
    """gRPC channel credentials for https endpoints (None when no endpoint uses TLS); ConfigError on bad files.

    Each item is a file or PEM bytes (from the plugin's Airflow connection); a file wins when both are set."""
    uses_tls = any(ep.tls for ep in settings.endpoints)
    key_pem = settings.key_pem.get_secret_value() if settings.key_pem is not None else None
    ca = (settings.ca_file, settings.ca_pem)
    cert = (settings.cert_file, settings.cert_pem)
    key = (settings.key_file, key_pem)
    if not uses_tls:
        if any(a is not None or b is not None for a, b in (ca, cert, key)):
            raise ConfigError("etcd TLS material (CA, certificate or key) is set but every endpoint is http://; use "
                              "https:// endpoints")  # fmt: skip
        return None
    if (cert == (None, None)) != (key == (None, None)):
        raise ConfigError("etcd client certificate and key must be given together (cert file and key file)")

    def read(source: tuple[Any, bytes | None], what: str) -> bytes | None:
        path, pem = source
        if path is None:
            return pem
        try:
            return bytes(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read etcd {what} {path}: {exc.strerror}") from exc

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca, "CA file"),
        private_key=read(key, "key file"),
        certificate_chain=read(cert, "certificate file"),
    )
