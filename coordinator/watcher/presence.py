"""What a running watcher tells others about itself: its start check of every Airflow instance, and a presence key.

Rules:
- **Start checks.** At start every instance in use (a DAG of the graph or an asset route names it; or a client is
  configured) is checked once (``instance_check``), except those the graph declares ``"kind": "external"`` (no Airflow:
  nothing to ask): one log line per instance, the metrics ``coordinator_instance_up{instance}`` /
  ``coordinator_instance_check_failures{instance}``; a failure names the setting to fix and never stops the watcher (the
  instance may come up later; the actuator retries as always).
- **The presence key.** The presence key ``{prefix}/watchers/{id}`` (docs/keys.md) holds a
  :class:`~coordinator.diagnosis.WatcherPresence` bound to a lease of ``leader_ttl_s``: it disappears within that time
  after the process dies, so ``doctor`` lists live standbys and ``status``/``doctor`` show the start checks. It is
  rewritten when the checks finish and when the graph in force changes: it carries that graph's digest and warnings, so
  ``doctor`` flags watchers that run different graphs (a failover would change the graph) and ``status`` shows a
  misspelt upstream the watcher took; and when an instance starts or stops refusing the watcher's credentials (or
  takes its next backoff step: ``watcher/refusals.py``), so ``doctor`` names it and since when.
- **etcd trouble is retried.** etcd trouble here is logged and retried after a pause; it never takes the watcher down.
- **Only what it needs.** It is given only what it needs (:class:`Presence`), never the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from coordinator import __version__
from coordinator.core.graph import Graph
from coordinator.core.instance_coverage import instances_in_use
from coordinator.errors import CoordinatorError
from coordinator.etcd import EtcdStore
from coordinator.informer.presence_value import (
    RECONCILE_ONCE,
    RECONCILE_ONCE_TTL_S,
    InstanceCheck,
    InstanceRefusal,
    WatcherPresence,
)
from coordinator.manager import Controller, Handle, Manager, Periodic, wall_clock
from coordinator.manager.periodic import RequeueAfter
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings
from coordinator.watcher.deps import Deps
from coordinator.watcher.instance_check import check_instance
from coordinator.watcher.keys import Tick

log = logging.getLogger(__name__)

#: Pause after an etcd failure before the presence key is written again.
RETRY_S = 1.0


@dataclass(frozen=True)
class Presence:
    """What the start checks and the presence key need of a watcher (**Only what it needs**)."""

    store: EtcdStore
    settings: Settings
    watcher_id: str
    #: The graph in force (read when the checks start).
    graph: Callable[[], Graph]
    #: Its warnings (``runtime.graph_source``: each reference to an undeclared DAG close to a declared one's name),
    #: worked out once when the graph was taken into force: a round only copies them into the presence value.
    graph_warnings: Callable[[], tuple[str, ...]]
    #: The instances this watcher has an Airflow client for (checked even when the graph names none of their DAGs).
    clients: Collection[str]
    metrics: Metrics
    #: The instances refusing this watcher now (``watcher/refusals.py``), shown to ``doctor`` and ``status``.
    refusing: Callable[[], tuple[InstanceRefusal, ...]] = lambda: ()


async def check_instances(watcher: Presence) -> tuple[InstanceCheck, ...]:
    """**Start checks**: every instance of the graph in force, concurrently; one log line each."""
    graph = watcher.graph()
    names = sorted((instances_in_use(graph) | set(watcher.clients)) - graph.external_instances)
    configured = watcher.settings.instances()
    dags = {name: [n.dag_id for n in graph.dags if n.instance == name] for name in names}
    timeout = watcher.settings.airflow_timeout_s
    instances_file = watcher.settings.instances_file
    results = await asyncio.gather(
        *(check_instance(name, configured.get(name), dags[name], timeout_s=timeout, probe_limit=1,
                         configured=configured, instances_file=instances_file) for name in names)
    )  # fmt: skip
    for check in results:
        watcher.metrics.instance_checked(check.instance, check.ok)
        if check.ok:
            log.info(
                "instance.checked instance=%s ok=true url=%s version=%s api=%s trigger=%s clear=%s missing=%d "
                "paused=%d",
                check.instance,
                check.url,
                check.version,
                check.api,
                check.trigger,
                check.clear,
                len(check.missing),
                len(check.paused),
            )
        else:
            log.error(
                "instance.checked instance=%s ok=false url=%s error=%r fix=%r",
                check.instance,
                check.url,
                check.error,
                check.fix,
            )
    return tuple(results)


@dataclass
class PresenceJob:
    """**Start checks**, **The presence key** and **etcd trouble is retried** as a timed concern
    (``manager/periodic.py``): each round writes the presence key when its value changed and keeps its lease alive
    otherwise, a third of the TTL apart; the checks' end brings a round at once (``wake``). Not the leader's: every
    watcher runs it."""

    watcher: Presence
    #: Brings a round now (the controller's ``add`` of this job's key): the checks show as soon as they end.
    wake: Callable[[], None] = lambda: None
    name: str = "presence"
    started: datetime = field(default_factory=wall_clock)
    _checking: asyncio.Task[tuple[InstanceCheck, ...]] | None = field(default=None, init=False, repr=False)
    _checks: tuple[InstanceCheck, ...] = field(default=(), init=False, repr=False)
    _reported: bool = field(default=False, init=False, repr=False)
    _lease_id: int = field(default=0, init=False, repr=False)
    _written: WatcherPresence | None = field(default=None, init=False, repr=False)

    @property
    def interval_s(self) -> float:
        """A third of the TTL between keepalives."""
        return max(self.watcher.settings.leader_ttl_s / 3, 0.5)

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round: start the checks the first time, take their result once they end, then the key or its lease."""
        watcher = self.watcher
        if self._checking is None:
            self._checking = asyncio.create_task(check_instances(watcher))
            self._checking.add_done_callback(lambda _: self.wake())
        checking = self._checking
        if checking.done() and not checking.cancelled() and not self._reported:
            self._reported = True
            if checking.exception() is not None:  # a bug, not an Airflow answer: say so once, keep running
                log.error("instance.check_failed error=%r", checking.exception())
            else:
                self._checks = checking.result()
        key = watcher.settings.keys.watcher_key(watcher.watcher_id)
        try:
            if self._lease_id == 0:
                self._lease_id = (await watcher.store.grant_lease(watcher.settings.leader_ttl_s)).id
                self._written = None
            value = WatcherPresence(id=watcher.watcher_id, started_at=self.started, version=__version__,
                                    instances=self._checks, graph_digest=watcher.graph().digest,
                                    graph_warnings=watcher.graph_warnings(),
                                    refusing=watcher.refusing())  # fmt: skip
            if self._written != value:
                await watcher.store.put(key, value.model_dump_json().encode(), lease=self._lease_id)
                self._written = value
            elif await watcher.store.keepalive_once(self._lease_id, watcher.store.timeout_s) <= 0:
                self._lease_id = 0  # expired meanwhile (etcd was away longer than the TTL): a new lease, a new key
                return 0.0
        except CoordinatorError as exc:
            log.warning("presence.failed key=%s error=%s", key, exc)
            self._lease_id = 0
            return RETRY_S
        return None

    async def close(self) -> None:
        """The watcher stops: the checks end and the presence key goes with its lease (bounded: with etcd gone the
        lease expires on its own after the TTL)."""
        if self._checking is not None:
            self._checking.cancel()
        if self._lease_id:
            lease, self._lease_id = self._lease_id, 0
            with contextlib.suppress(CoordinatorError, TimeoutError):
                await asyncio.wait_for(self.watcher.store.revoke_lease(lease), timeout=1.0)


async def record_pass(store: EtcdStore, settings: Settings, watcher_id: str) -> None:
    """After a ``reconcile`` pass: the one presence key of that mode, bound to a lease of RECONCILE_ONCE_TTL_S,
    so ``doctor`` and ``status`` know passes happen although no watcher leads between them. Best effort: etcd
    trouble here is logged, never fails the pass."""
    key = settings.keys.watcher_key(RECONCILE_ONCE)
    value = WatcherPresence(id=watcher_id, started_at=wall_clock(), version=__version__,
                            mode=RECONCILE_ONCE)  # fmt: skip
    try:
        lease = await store.grant_lease(RECONCILE_ONCE_TTL_S)
        await store.put(key, value.model_dump_json().encode(), lease=lease.id)
    except CoordinatorError as exc:
        log.warning("presence.failed key=%s error=%s", key, exc)


#: What this concern provides (``manager/manager.py``'s **Handles**):
#: this watcher's presence: the service closes it at the stop.
PRESENCE: Handle[PresenceJob] = Handle("presence")


def setup(manager: Manager, deps: Deps) -> PresenceJob:
    """Each Airflow instance checked once (log line, metric) and this watcher's presence key (doctor, status), kept
    alive by every watcher, not only the leader: a key requeued at its interval, at once when the checks end or an
    instance starts or stops refusing us (the presence value shows it now, not a round later)."""
    presence = Presence(
        store=deps.store, settings=deps.settings, watcher_id=deps.watcher_id, graph=deps.graph,
        graph_warnings=lambda: deps.graphs.warnings, clients=deps.clients.keys(), metrics=deps.metrics,
        refusing=deps.refusals.shown,
    )  # fmt: skip
    tick = Tick(PresenceJob.name)
    job = PresenceJob(presence, wake=lambda: manager.controllers[job.name].add(tick), started=deps.clock())
    manager.register(Controller(job.name, Periodic(job), now=deps.clock, period_s=job.interval_s,
                                backoff_max_s=job.interval_s),
                     start_after=(tick, 0.0))  # fmt: skip
    deps.refusals.listeners.append(lambda instance, refusal: job.wake())
    return manager.provide(PRESENCE, job)
