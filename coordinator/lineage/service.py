"""The OpenLineage receiver as a process (``coordinator lineage serve``): its own port, etcd user and probes.

Rules:
- **Its own process and port.** Its own process and port (default ``127.0.0.1:9467``), apart from the watcher: producers
  reach it, never the watcher's metrics port. Its ``/metrics``, ``/healthz`` and ``/readyz`` are on a second listener of
  their own (``--http``, default ``127.0.0.1:9468``), the watcher's listener code: scraped by Prometheus, not by
  producers.
- **Its own etcd user.** It writes with its own etcd user (``COORDINATOR_ETCD_USERNAME`` and password file of its
  deployment); ``coordinator roles`` gives that user the run keys and lineage records of the instances it serves,
  nothing else.
- **Reloaded on change.** dependencies.json and the tokens file are re-read when they change (every 2 s at most); a
  change that does not parse is logged and the last valid one stays in force (as ``watcher/service.py``'s
  **Bad input never stops it**).
- **Records follow the floor.** Its own records follow the retention floor (``retire.py``).
- **Probes and a clean stop.** Alive while its loop turns; ready while etcd answers (the watcher's probes); SIGTERM
  stops taking requests, lets those in flight finish (uvicorn's graceful shutdown, bounded) and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from coordinator.errors import ConfigError, CoordinatorError
from coordinator.etcd import EtcdStore
from coordinator.lineage.receiver import DEFAULT_MAX_BODY, Receiver
from coordinator.lineage.retire import RETIRE_EVERY_S, retire_records
from coordinator.lineage.tokens import Tokens, load_tokens
from coordinator.lineage.writer import EventWriter
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.health import Health, probe_etcd
from coordinator.runtime.http import serve
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import ListenAddress, Settings

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9467"
DEFAULT_HTTP = "127.0.0.1:9468"
#: **Probes and a clean stop**: requests in flight get this long after SIGTERM (each is bounded by the write
#: timeout, 4 s).
GRACEFUL_S = 8
RELOAD_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class ReceiverOptions:
    listen: ListenAddress
    http: ListenAddress | None
    tokens_file: Path
    #: The instances this receiver writes; None: every instance the mapping names.
    instances: frozenset[str] | None = None
    max_body: int = DEFAULT_MAX_BODY


class TokenSource:
    """The tokens file, re-read when it changes (**Reloaded on change**)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = load_tokens(path)  # the first load must succeed: nobody could send otherwise
        self._stamp = _stamp(path)

    def refresh(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.current = load_tokens(self.path)
        except ConfigError as exc:
            log.error(
                "lineage.tokens_invalid path=%s kept=%d problem=%r", self.path, len(self.current.entries), str(exc)
            )
            return
        log.info("lineage.tokens_reloaded path=%s tokens=%d", self.path, len(self.current.entries))

    def tokens(self) -> Tokens:
        return self.current


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


async def run_receiver(settings: Settings, options: ReceiverOptions) -> None:
    """Every rule of the module, until SIGTERM or SIGINT."""
    graphs = GraphSource(settings.deps)
    tokens = TokenSource(options.tokens_file)
    if not graphs.graph.lineage_jobs:
        log.warning("lineage.no_mapping deps=%s detail=%r", settings.deps,
                    'dependencies.json has no "openlineage" section: every event is answered and ignored')  # fmt: skip
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # our log style only: uvicorn says little worth it
        logging.getLogger(name).setLevel(logging.WARNING)
    metrics, health = Metrics(), Health(start_timeout_s=settings.start_timeout_s)
    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        if options.http is not None:
            stack.enter_context(serve(options.http, metrics, health))
        store = await EtcdStore.connect(settings.etcd())
        stack.push_async_callback(store.close)
        store.on_error = metrics.etcd_error
        health.view_loaded()  # nothing to load: ready as soon as etcd answers
        app = Receiver(EventWriter(store, settings.keys), lambda: graphs.graph, tokens.tokens, metrics,
                       instances=options.instances, max_body=options.max_body)  # fmt: skip
        config = uvicorn.Config(
            app, host=options.listen.host, port=options.listen.port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=GRACEFUL_S, server_header=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        sock = bind(options.listen)
        stack.callback(sock.close)
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            stop.set()
            server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        tasks = [
            asyncio.create_task(_serve(server, sock), name="server"),
            asyncio.create_task(_reload(graphs, tokens, health, stop), name="reload"),
            asyncio.create_task(probe_etcd(store, settings.keys.leader, health, metrics, stop), name="probe"),
            asyncio.create_task(_retire(store, settings, graphs, options, stop), name="retire"),
        ]
        host, port = sock.getsockname()[:2]
        log.info("lineage.start listen=%s:%d prefix=%s deps=%s mappings=%d tokens=%d instances=%s",
                 host, port, settings.prefix, settings.deps,
                 len(graphs.graph.lineage_jobs), len(tokens.current.entries),
                 ",".join(sorted(options.instances)) if options.instances is not None else "all")  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stopping()
            await asyncio.wait(tasks, timeout=GRACEFUL_S + 2)
            for task in tasks:
                task.cancel()
            log.info("lineage.stopped")


def bind(address: ListenAddress) -> socket.socket:
    """The listening socket, bound here so that a taken or foreign address is our clear error (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose protocol says TCP, and without it each
    # answer on a kept-alive connection (uvicorn writes headers and body apart) waits ~40 ms for a delayed ACK
    # (bench/lineage_receiver.py: 48 ms per event from the OpenLineage client, 5.5 ms of which is the receiver's).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {address.host}:{address.port} for OpenLineage events: "
                          f"{exc.strerror or exc} (set --listen or COORDINATOR_LINEAGE_LISTEN)") from None  # fmt: skip
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn's server on our socket, without its own signal handling (**Probes and a clean stop** is ours)."""
    await server._serve(sockets=[sock])


async def _retire(
    store: EtcdStore, settings: Settings, graphs: GraphSource, options: ReceiverOptions, stop: asyncio.Event
) -> None:
    """``retire.py``: this receiver's records follow the retention floor, once at start and every hour."""
    while not stop.is_set():
        served = options.instances or {entry.instance for entry in graphs.graph.lineage_jobs}
        try:
            await retire_records(store, settings.keys, served)
        except CoordinatorError as exc:
            log.warning("lineage.retire_failed error=%s", exc)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=RETIRE_EVERY_S)


async def _reload(graphs: GraphSource, tokens: TokenSource, health: Health, stop: asyncio.Event) -> None:
    """**Reloaded on change**; each turn is also the liveness beat (**Probes and a clean stop**)."""
    while not stop.is_set():
        health.beat()
        graphs.refresh()
        tokens.refresh()
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=RELOAD_EVERY_S)
