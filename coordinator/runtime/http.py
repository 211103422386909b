"""The watcher's HTTP listener: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz`` (readiness).

Rules:
- **Standard library server.** The standard library's WSGI server (one thread per request) in a daemon thread, and the
  Prometheus client's own exposition app for ``/metrics``: no HTTP parsing of our own. It never touches the event loop;
  it reads :class:`~coordinator.runtime.health.Health` and the metrics registry, both safe from another thread.
- **JSON probes.** Probes answer JSON ``{"status": "ok" | "fail", "reason": word, "detail": sentence}`` with 200 or 503;
  anything else is 404. Only GET and HEAD.
- **Unbindable is a configuration error.** An address that cannot be bound (in use, not local, no permission) is a
  configuration error naming the address and the setting; port 0 binds a free port, and the bound address is logged
  (``http.listening``).
- **Only the default gives way.** Only the DEFAULT address gives way: when ``--http`` / ``COORDINATOR_HTTP`` was not set
  and the default port is in use (a second watcher on the same host, as the high-availability recipe of
  docs/howto/run-the-watcher.md runs them), the listener binds a free port on the same host instead and logs
  ``http.default_port_taken``. An address the operator chose is never replaced: that stays
  **Unbindable is a configuration error**, since a scraper or a probe is pointed at exactly it.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from coordinator.errors import ConfigError
from coordinator.runtime.health import Health, Verdict
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import ListenAddress

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def dispatcher(metrics: Metrics, health: Health) -> WsgiApp:
    """The WSGI app of the listener (**JSON probes**)."""
    metrics_app = metrics.wsgi_app()
    probes: dict[str, Callable[[], Verdict]] = {"/healthz": health.liveness, "/readyz": health.readiness}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"only GET and HEAD\n", [("Allow", "GET, HEAD")])
        if path == "/metrics":
            return metrics_app(environ, start_response)
        probe = probes.get(path)
        if probe is None:
            return _reply(start_response, "404 Not Found", b"try /metrics, /healthz or /readyz\n")
        verdict = probe()
        body = {"status": "ok" if verdict.ok else "fail", "reason": verdict.reason, "detail": verdict.detail}
        status = "200 OK" if verdict.ok else "503 Service Unavailable"
        payload = json.dumps(body).encode() + b"\n"
        return _reply(start_response, status, b"" if method == "HEAD" else payload, ctype="application/json")

    return app


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    ctype: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    # A slow scraper must not hold up the probes, and must not keep the process alive at exit.
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """wsgiref logs every request to stderr in its own format: probes every few seconds would drown the log."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http.request client=%s line=%r", self.address_string(), format % args)


class Listener:
    """The running listener; :meth:`close` stops it (also as a context manager)."""

    def __init__(self, address: ListenAddress, app: WsgiApp, *, default: bool = False) -> None:
        server_class = _Server6 if ":" in address.host else _Server
        try:
            self._server = make_server(address.host, address.port, app, server_class, _QuietHandler)
        except OSError as exc:
            if not (default and exc.errno == errno.EADDRINUSE):
                raise ConfigError(
                    f"cannot listen on {address} (--http / COORDINATOR_HTTP): {exc.strerror or exc}; "
                    "choose another HOST:PORT, or 'off'"
                ) from exc
            # **Only the default gives way**: the default port is taken (another watcher on this host); any free port
            # serves as well.
            free = ListenAddress(address.host, 0)
            try:
                self._server = make_server(free.host, free.port, app, server_class, _QuietHandler)
            except OSError as again:
                raise ConfigError(
                    f"cannot listen on {address} (in use) nor on a free port of {address.host} "
                    f"(--http / COORDINATOR_HTTP): {again.strerror or again}; choose another HOST:PORT, or 'off'"
                ) from again
            log.warning(
                "http.default_port_taken address=%s using=%s:%s hint=%s",
                address, address.host, self._server.server_address[1],
                "set --http / COORDINATOR_HTTP to choose the port",
            )  # fmt: skip
        host, port = self._server.server_address[:2]
        self.address = ListenAddress(str(host), int(port))
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-listener", daemon=True)
        self._thread.start()
        log.info("http.listening address=%s paths=/metrics,/healthz,/readyz", self.address)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve(address: ListenAddress, metrics: Metrics, health: Health, *, default: bool = False) -> Listener:
    """Start the listener on ``address`` in a thread of its own (**Standard library server**); ConfigError if it cannot
    bind (**Unbindable is a configuration error**).
    ``default``: the address is the built-in default, not the operator's choice, so a taken port gives way
    (**Only the default gives way**)."""
    return Listener(address, dispatcher(metrics, health), default=default)
