"""Where the waits of scheduled dependents learn that a permit was granted (semantics `scheduled-permit`): one etcd
connection and one watch of ``{prefix}/permits/`` per event loop, shared by every wait in it. No Airflow import.

Rules:
- **One connection, one watch.** Airflow's triggerer runs every trigger of a process in one asyncio loop: the first
  wait of a loop (per etcd settings and prefix) opens the store and the watch, later waits register a key with it.
  1,000 waits cost one gRPC channel and one watch stream, not 1,000.
- **Register, then read.** A wait registers its key, then reads it once: the watch started at a revision before that
  read, so a grant is either in the read or in a later watch event; nothing is polled.
- **Lossless.** The watch is ``watch_prefix`` (reconnects, relists after a compaction against the keys it saw), so a
  grant made while the triggerer was cut off from etcd still arrives.
- **Never blocks the loop.** Everything here is a coroutine on the loop's own gRPC channel; the settings are resolved
  in a thread (``config.resolve_now`` may wait for a secrets backend) and once per process.
- **A broken hub is replaced.** When the watch stops for good (etcd refused it, the store closed), every wait on it
  fails with that error and the next wait opens a new hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.core.activation import load_activation
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import adopted_graph
from coordinator.core.model import KeyLayout, NodeId, RunRecord, parse_run_record
from coordinator.core.permit import Permit, parse_permit, permits_prefix, still_waiting_for, upstream_keys
from coordinator.etcd.types import EventKind
from coordinator.runtime.settings import EtcdSettings

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubKey:
    """What makes two waits share a hub: the loop, the etcd endpoints and the prefix."""

    loop: int
    endpoints: str
    prefix: str


class PermitHub:
    """**One connection, one watch** for the waits of one event loop."""

    def __init__(self, settings: EtcdSettings, keys: KeyLayout, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.keys = keys
        #: gRPC channels belong to the loop that made them (``EtcdStore``).
        self.loop = loop
        self._store: EtcdStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Task[EtcdStore] | None = None
        #: Key -> the futures of the waits for it (**Register, then read**).
        self._waiters: dict[str, set[asyncio.Future[Permit]]] = {}
        #: Key -> mod revision of every permit the watch handed out (what a relist diffs against).
        self._known: dict[str, int] = {}
        self.broken: BaseException | None = None

    @property
    def waiting(self) -> int:
        """How many waits are registered (the triggerer's share of the "waiting" gauge)."""
        return sum(len(futures) for futures in self._waiters.values())

    async def store(self) -> EtcdStore:
        """The hub's store, connected and watching: started once, by a task of its own (a wait cancelled meanwhile
        does not cancel it for the others); a failed start breaks the hub (**A broken hub is replaced**)."""
        if self._started is None:
            self._started = self.loop.create_task(self._start(), name="coordinator-permit-connect")
        return await asyncio.shield(self._started)

    async def _start(self) -> EtcdStore:
        from coordinator.airflow_plugin.records import connect_store

        try:
            store = await connect_store(self.settings)
            revision = await store.current_revision()
        except BaseException as exc:
            self.broken = exc
            raise
        self._store = store
        self._task = asyncio.create_task(self._watch(store, revision), name="coordinator-permit-watch")
        return store

    async def wait_granted(self, key: str) -> Permit:
        """Return the permit at ``key`` once it is granted (**Register, then read**)."""
        store = await self.store()
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, set()).add(future)
        try:
            kv = await store.get(key)
            permit = None if kv is None else parse_permit(kv.value)
            if permit is not None and permit.granted:
                return permit
            return await future
        finally:
            found = self._waiters.get(key)
            if found is not None:
                found.discard(future)
                if not found:
                    del self._waiters[key]

    async def read(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of ``keys`` at one revision (absent keys left out)."""
        store = await self.store()
        _, kvs = await store.get_many(list(keys))
        return {kv.key: kv.value for kv in kvs}

    async def reason(self, node: NodeId, partition: str, key: str) -> str:
        """What the wait of ``node`` for ``partition`` still waits for, from the adopted graph, the upstreams' run
        states and the permit (``core/permit.py``'s **Said as a person would**)."""
        graph_key = self.keys.config_key("graph")
        first = await self.read([graph_key, key])
        graph = _graph(first.get(graph_key))
        needed = upstream_keys(graph, node, partition)
        values = await self.read(self.keys.run_key(up, q) for up, q in needed) if needed else {}
        runs: dict[tuple[NodeId, str], RunRecord] = {}
        for up, q in needed:
            raw = values.get(self.keys.run_key(up, q))
            record = None if raw is None else parse_run_record(raw)[0]
            if record is not None:
                runs[(up, q)] = record
        raw_permit = first.get(key)
        return still_waiting_for(graph, node, partition, runs, None if raw_permit is None else parse_permit(raw_permit))

    async def _watch(self, store: EtcdStore, revision: int) -> None:
        prefix = permits_prefix(self.keys)
        try:
            async for batch in store.watch_prefix(prefix, revision, known=lambda: dict(self._known)):
                for event in batch.events:
                    if event.kind is EventKind.DELETE:
                        self._known.pop(event.key, None)
                        continue
                    self._known[event.key] = event.mod_revision
                    futures = self._waiters.get(event.key)
                    if not futures:
                        continue
                    permit = parse_permit(event.value)
                    if permit is not None and permit.granted:
                        for future in list(futures):
                            if not future.done():
                                future.set_result(permit)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # **A broken hub is replaced**
            self.broken = exc
            log.warning("permit.watch_stopped prefix=%s error=%s", prefix, exc)
            for futures in self._waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._store is not None:
            await self._store.close()


def _graph(raw: bytes | None) -> Graph | None:
    if raw is None:
        return None
    try:
        return adopted_graph(load_activation(raw), "etcd")
    except ValueError:
        return None


#: **One connection, one watch**: the hubs of this process by loop, endpoints and prefix.
_HUBS: dict[HubKey, PermitHub] = {}


def hub_for(settings: EtcdSettings, keys: KeyLayout) -> PermitHub:
    """The hub of the running loop for these settings (**A broken hub is replaced**; so is one of a loop that ended
    whose id a new loop took)."""
    loop = asyncio.get_running_loop()
    endpoints = ",".join(f"{e.host}:{e.port}" for e in settings.endpoints)
    key = HubKey(id(loop), endpoints, keys.prefix)
    hub = _HUBS.get(key)
    if hub is None or hub.broken is not None or hub.loop is not loop:
        hub = PermitHub(settings, keys, loop)
        _HUBS[key] = hub
    return hub


def hubs_of(loop: asyncio.AbstractEventLoop) -> list[PermitHub]:
    """The hubs of ``loop`` (to close them when it ends), forgotten here."""
    found = [key for key, hub in _HUBS.items() if hub.loop is loop]
    return [_HUBS.pop(key) for key in found]


async def probe(settings: EtcdSettings, keys: KeyLayout) -> int:
    """``check-plugin``'s proof that a wait can work from this process: the hub's own connection, a read of the
    permits' prefix and a watch of it created by etcd (nothing written); the revision it was created at."""
    from coordinator.etcd.watch import open_watch
    from coordinator.etcd.wire import encode, range_end

    hub = PermitHub(settings, keys, asyncio.get_running_loop())
    try:
        store = await hub.store()
        prefix = permits_prefix(keys)
        await store.newest_keys(prefix, 1)
        revision = await store.current_revision()
        stream = await open_watch(store, encode(prefix), range_end(encode(prefix)), revision + 1)
        stream.close()
        return revision
    finally:
        await hub.close()
