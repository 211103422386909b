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
  misspelt upstream the watcher took.
- **etcd trouble is retried.** etcd trouble here is logged and retried after a pause; it never takes the watcher down.
- **Only what it needs.** It is given only what it needs (:class:`Presence`), never the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator import __version__
from coordinator.core.graph import Graph
from coordinator.errors import CoordinatorError
from coordinator.etcd import EtcdStore
from coordinator.informer.presence_value import RECONCILE_ONCE, RECONCILE_ONCE_TTL_S, InstanceCheck, WatcherPresence
from coordinator.runtime.graph_source import unknown_upstreams
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings
from coordinator.watcher.instance_check import check_instance

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
    #: The instances this watcher has an Airflow client for (checked even when the graph names none of their DAGs).
    clients: Collection[str]
    metrics: Metrics
    #: Set when the watcher stops: the presence key is revoked then.
    stop: asyncio.Event


def instances_in_use(graph: Graph) -> set[str]:
    """The instances something depends on: those holding a DAG of the graph or named by an asset route. An instance
    the file only declares (or the implicit ``default`` of a graph whose DAGs all name their instance) is not checked:
    its missing URL would be an ERROR line about nothing, and alerting on ERROR pages someone for it. Nor is an
    external one (``"kind": "external"``): it has no URL to miss."""
    used = {node.instance for node in graph.dags}
    for route in graph.asset_routes:
        used |= {route.source, *route.targets}
    return used - graph.external_instances


async def check_instances(watcher: Presence) -> tuple[InstanceCheck, ...]:
    """**Start checks**: every instance of the graph in force, concurrently; one log line each."""
    graph = watcher.graph()
    names = sorted((instances_in_use(graph) | set(watcher.clients)) - graph.external_instances)
    configured = watcher.settings.instances()
    dags = {name: [n.dag_id for n in graph.dags if n.instance == name] for name in names}
    timeout = watcher.settings.airflow_timeout_s
    results = await asyncio.gather(
        *(check_instance(name, configured.get(name), dags[name], timeout_s=timeout, probe_limit=1) for name in names)
    )
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


async def presence_loop(watcher: Presence) -> None:
    """**Start checks**, **The presence key** and **etcd trouble is retried**: run the start checks, keep the presence
    key alive until the watcher stops."""
    started = datetime.now(UTC)
    key = watcher.settings.keys.watcher_key(watcher.watcher_id)
    ttl = watcher.settings.leader_ttl_s
    checks: tuple[InstanceCheck, ...] = ()
    checking = asyncio.create_task(check_instances(watcher))
    lease_id = 0
    reported = False
    written: WatcherPresence | None = None
    shown: Graph | None = None
    warnings: tuple[str, ...] = ()
    try:
        while not watcher.stop.is_set():
            if checking.done() and not checks and not reported:
                reported = True
                if checking.exception() is not None:  # a bug, not an Airflow answer: say so once, keep running
                    log.error("instance.check_failed error=%r", checking.exception())
                else:
                    checks = checking.result()
            try:
                if lease_id == 0:
                    lease_id = (await watcher.store.grant_lease(ttl)).id
                    written = None
                graph = watcher.graph()
                if graph is not shown:  # the warnings are a function of the graph: computed once per graph
                    shown, warnings = graph, unknown_upstreams(graph)
                value = WatcherPresence(id=watcher.watcher_id, started_at=started, version=__version__,
                                        instances=checks, graph_digest=graph.digest,
                                        graph_warnings=warnings)  # fmt: skip
                if written != value:
                    await watcher.store.put(key, value.model_dump_json().encode(), lease=lease_id)
                    written = value
                elif await watcher.store.keepalive_once(lease_id, watcher.store.timeout_s) <= 0:
                    lease_id = 0  # expired meanwhile (etcd was away longer than the TTL): a new lease, a new key
                    continue
            except CoordinatorError as exc:
                log.warning("presence.failed key=%s error=%s", key, exc)
                lease_id = 0
                await asyncio.sleep(RETRY_S)
                continue
            # A third of the TTL between keepalives; wake early when the checks finish so they show at once.
            waiters = {asyncio.ensure_future(watcher.stop.wait())} | ({checking} if not checking.done() else set())
            _, pending = await asyncio.wait(waiters, timeout=max(ttl / 3, 0.5), return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                if task is not checking:
                    task.cancel()
    finally:
        checking.cancel()
        if lease_id:
            with contextlib.suppress(CoordinatorError, TimeoutError):
                await asyncio.wait_for(watcher.store.revoke_lease(lease_id), timeout=1.0)


async def record_pass(store: EtcdStore, settings: Settings, watcher_id: str) -> None:
    """After a ``reconcile`` pass: the one presence key of that mode, bound to a lease of RECONCILE_ONCE_TTL_S,
    so ``doctor`` and ``status`` know passes happen although no watcher leads between them. Best effort: etcd
    trouble here is logged, never fails the pass."""
    key = settings.keys.watcher_key(RECONCILE_ONCE)
    value = WatcherPresence(id=watcher_id, started_at=datetime.now(UTC), version=__version__,
                            mode=RECONCILE_ONCE)  # fmt: skip
    try:
        lease = await store.grant_lease(RECONCILE_ONCE_TTL_S)
        await store.put(key, value.model_dump_json().encode(), lease=lease.id)
    except CoordinatorError as exc:
        log.warning("presence.failed key=%s error=%s", key, exc)
