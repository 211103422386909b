"""The watcher service: one informer, the manager's controllers, one executor; level-triggered, with leader election.

    etcd --list/watch--> informer (the read model) --changes--> manager --keys--> controllers
    controllers --> executor --> etcd (fenced writes) and Airflow (REST calls)

Rules:
- **Snapshot, then watch.** Start = consistent snapshot + a reconcile of what changed after the plan checkpoint, and a
  full one a few seconds later (everything at once without a usable checkpoint: ``watcher/warm.py``'s **Start**,
  semantics `checkpoint-first`); then watch from snapshot revision + 1, both through the informer
  (``coordinator/informer``: the view and the indexes the concerns asked for, the asset, deadline, presence and hold
  indexes, the retention tracker as the view's follower; the model's only writer, meeting the executor's expectations
  of this leader's own writes). A watch
  batch only updates that model; the manager (``coordinator/manager``) fans its changes out to the controllers that
  declared interest, each adding keys of its own to its own queue. Every requeue (retry delays, resyncs, failed
  passes, the next slice of a sweep, a partition not old enough yet) is a reconcile's result; nothing else schedules
  work. Disconnects resume from the last revision and compactions relist (the store does both), so downtime of any
  length ends in the same decisions as running throughout.
- **One module, one line.** Each concern lives in its own module and exports one ``setup(manager, deps)``
  (controller-runtime's builder) that builds its reconciler, registers its controller with its interest (map functions
  from a watch batch's changes to its keys: ``manager/manager.py``'s **Registration**) and its first keys, asks for the
  indexes it reads (``watcher/deps.py``'s **Indexes are asked for**), and provides what another concern uses under a
  typed handle declared in its own module (``watcher/concerns.py``'s **Read through the handles**). ``deps``
  (``watcher/deps.py``) is what they share: the settings, the store, the informer and its view, the executor, the
  leadership. ``watcher/concerns.py``'s
  ``CONCERNS`` lists them: the actions (``watcher/actuator.py``: one intent protocol attempt per (DAG, partition)), the
  triggers' planner (``watcher/triggers.py``: DAG and partition keys, and the holds), the asset streams
  (``watcher/deliveries.py``: one delivery attempt per stream), the deadlines (``watcher/deadlines.py``: the (DAG,
  partition) keys whose facts changed, and a clock key requeued at the next instant the clock alone changes a deadline
  state), retention (``watcher/retention.py``: a key per partition the watch touches, requeued until the partition is
  older than the cutoff, then pruned), and the timed concerns (the audit, the plan checkpoint, the asset round, the
  graph file's reload, this watcher's presence key, the summary of the planner's passes), each a key requeued at
  its interval (``manager/periodic.py``). A new concern is one module and one line in that list; this module keeps
  only what they share: the informer, the executor, the leadership, the manager, the run loop and the stop. It lists
  no index: it asks, as a concern does, for the one it reads itself (the presence index, for the metric
  ``watchers``).
- **Only the leader acts.** Every process keeps a warm view; only the leader adopts the graph and acts (the controllers
  that act need the leader). A standby takes over when the leader's lease expires; a leader whose lease is in doubt
  stops acting at once, and the ledger's fencing condition refuses any write it still attempts (every leader write is
  the executor's, ``watcher/executor.py``). A standby also plans (without acting) and keeps the keys its passes found
  due; on taking the lead it plans those first, on its own view, and every partition a few seconds later
  (``watcher/warm.py``'s **Leading and warm work**), so a takeover on a big store costs one lease expiry, not a
  whole plan, before the next trigger.
- **Bad input never stops it.** Unparsable values are reported and skipped (the view does that); an invalid
  dependencies.json is reported loudly and the last valid graph stays in force (``watcher/graph_reload.py``).
- **Clean stop.** SIGTERM/SIGINT stop the controllers, let in-flight Airflow calls finish (bounded), resign leadership
  and exit 0.
- **Nothing blocks the loop.** Neither the event loop nor the watch waits long: the planner plans every partition as a
  sweep, a slice of about 20,000 facts per turn of its queue, newest partitions first; between two slices the informer
  applies what the watch brought and the next turn plans those keys too (``watcher/sweep.py``'s **Sweep**). The
  summary line of each pass is the trigger reconciler's (its **One line per pass**, at DEBUG), and a minute's passes
  are summarised in one INFO line (``watcher/pass_summary.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.gate import Refusal, refused_backoff
from coordinator.core.actions import Plan
from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.core.graph import Graph
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, WritesRefused
from coordinator.etcd import EtcdStore, WatchBatch
from coordinator.informer import Changes, Informer
from coordinator.informer.asset_index import ASSET_INDEX
from coordinator.informer.presence import PRESENCE_INDEX
from coordinator.manager import Manager
from coordinator.manager.controller import wall_clock
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.health import Health, probe_etcd, watcher_state
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings
from coordinator.watcher.concerns import CONCERNS, Provided, Setup
from coordinator.watcher.coverage import Coverage
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor, ExecutorPolicy, Pool
from coordinator.watcher.keys import TriggerKey
from coordinator.watcher.paused import paused_lists
from coordinator.watcher.reachability import Reachability
from coordinator.watcher.refusals import Refusals

log = logging.getLogger(__name__)


#: **Clean stop**'s bounds on a stop: the loops this long to end once cancelled, in-flight Airflow calls this long to
#: finish, the resign this long to reach etcd. Together (21 s, 1 s for a second cancel) under Kubernetes' 30 s grace
#: period.
STOP_TASKS_S = 5.0
STOP_DRAIN_S = 10.0
STOP_RESIGN_S = 5.0


def default_watcher_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Watcher(Provided):
    """One watcher process's state. ``run`` is the service; ``reconcile_pass`` and ``act_on_submitted`` the one-shot
    variant (``coordinator reconcile``). The concerns are read through what their setups provided (``triggers``,
    ``actuator``, ``deliveries``...: ``watcher/concerns.py``'s ``Provided``)."""

    settings: Settings
    store: EtcdStore
    graphs: GraphSource
    clients: dict[str, AirflowClient]
    watcher_id: str = field(default_factory=default_watcher_id)
    view: View = field(init=False)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Counted and probed for the HTTP listener (coordinator.runtime.http); cheap enough to keep without one.
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    #: Held while a pass plans (it yields to the loop between slices) and while a watch batch is applied.
    view_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Which Airflow instances answer, fed by the clients' ``on_request`` (``build_clients``); the deadline pass
    #: names an unreachable one as a cause (semantics `deadlines-judged`).
    reachability: Reachability = field(default_factory=Reachability)
    #: Which Airflow instances refuse our credentials now, fed by the clients' gates (``build_clients``): the
    #: actuator parks their keys, the presence value shows them to ``doctor``.
    refusals: Refusals = field(default_factory=Refusals)
    #: The one clock (``manager/periodic.py``'s **Clock**): every concern, the executor and the controllers read it.
    clock: Callable[[], datetime] = wall_clock
    #: The concerns set up (**One module, one line**); a test may hand its own list.
    concerns: tuple[Setup, ...] = CONCERNS
    #: Whether the informer follows the store now (``reflect``): a one-shot pass starts it for itself (``following``).
    _reflecting: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.view = View(self.settings.keys)
        keys = self.settings.keys
        # **Snapshot, then watch**: the one list/watch consumer. The indexes it feeds are the concerns' to ask for in
        # their setups (``watcher/deps.py``'s **Indexes are asked for**); the asset-change keys are the plugin's hints.
        self.informer = Informer(self.view, hints=AssetKeys(keys.prefix).changes)
        self.election = self.store.election(keys.leader, self.watcher_id, self.settings.leader_ttl_s)
        # The one executor: every etcd write of this watcher while it leads (fenced by its term), every Airflow call
        # of the two exactly-once protocols, their one error vocabulary and how many attempts run at once.
        self.executor = Executor(
            self.store, self.clients, fence=lambda: self.election.fence,
            policy=ExecutorPolicy(max_concurrent=self.settings.max_concurrent_actions),
            expectations=self.informer.expectations, now=self.clock,
        )  # fmt: skip
        #: Every instance of the graph in force has an Airflow, or this watcher is not ready (``watcher/coverage.py``).
        self.coverage = Coverage(self.health, self.clients.keys(), self.settings.instances_file, self.metrics)
        self.coverage.observe(self.graphs.graph)
        self.deps = Deps(
            settings=self.settings, watcher_id=self.watcher_id, clock=self.clock, store=self.store,
            clients=self.clients, graphs=self.graphs, metrics=self.metrics, health=self.health, view=self.view,
            view_lock=self.view_lock, informer=self.informer, executor=self.executor, election=self.election,
            reachability=self.reachability, refusals=self.refusals,
            # One cached paused-DAG list per instance, read by the actuator's courtesy warning and the deadline pass.
            paused=paused_lists(self.clients), coverage=self.coverage,
        )  # fmt: skip
        self.manager = Manager(leading=self.deps.leading)
        for setup in self.concerns:
            setup(self.manager, self.deps)
        #: The leader and the live watchers: the service's own read, for the metric ``watchers``.
        self.running = self.informer.index(PRESENCE_INDEX)
        self.store.on_error = self.metrics.etcd_error
        self.metrics.bind_state(lambda: watcher_state(self.view, leading=self.election.is_leader,
                                in_flight=self.executor.busy, graph=self.graphs.graph,
                                graph_invalid=self.graphs.error is not None,
                                watchers=self.running.services))  # fmt: skip

    @property
    def assets(self) -> AssetIndex:
        """The asset index the asset concerns asked for (``informer/asset_index.py``)."""
        return self.informer.index(ASSET_INDEX)

    async def load(self) -> int:
        """Read the whole prefix into the view and the indexes, page by page as etcd sends it (the informer; no
        snapshot is held); its revision. What to plan first is the caller's (``run``: ``watcher/warm.py``'s
        **Start**)."""
        # The view shares the graph's NodeId objects, so the planner's lookups match by identity.
        self.view.intern_nodes(self.graphs.graph.dags)
        loaded = await self.informer.load(self.store, self.settings.keys.root, cuts=self.cuts(), long_lived=True)
        for key, problem in sorted(self.view.problems.items()):
            log.warning("view.bad_value key=%r problem=%r", key, problem)
        for name, key, problem in loaded.problems:
            log.warning("%s.bad_value key=%r problem=%r", name, key, problem)
        self.metrics.malformed.inc(len(self.view.problems) + len(loaded.problems))
        log.info("view.loaded revision=%d keys=%d partitions=%d", loaded.revision, loaded.keys,
                 len(self.view.partitions))  # fmt: skip
        return loaded.revision

    def cuts(self) -> list[str]:
        """Where a read of the whole prefix splits into ranges (``etcd.watch``'s **One-revision snapshot**): each DAG's
        run states and ledger entries of the graph in force, about one page each (keys of other DAGs fall between
        them)."""
        keys = self.settings.keys
        return [
            f"{base}{n.instance}/{n.dag_id}/" for n in self.graphs.graph.dags for base in (keys.runs, keys.triggers)
        ]

    # -- the loops -------------------------------------------------------------------------------------------

    async def reflect(self, revision: int) -> None:
        """The informer follows the store from ``revision`` (its watch, relists included); each batch's changes go
        to the controllers that declared interest, under the view's lock (**Snapshot, then watch**)."""
        root = self.settings.keys.root
        self._reflecting = True
        try:
            await self.informer.run(self.store, root, revision, cuts=self.cuts(), lock=self.view_lock,
                                    then=self._dispatch)  # fmt: skip
        finally:
            self._reflecting = False

    def _apply_batch(self, batch: WatchBatch) -> None:
        """One watch batch into the informer and its changes to the controllers (tests feed batches this way)."""
        self._dispatch(self.informer.apply(batch))

    def _dispatch(self, changes: Changes) -> None:
        self._report(changes)
        self.manager.dispatch(changes)

    def _report(self, changes: Changes) -> None:
        if changes.relisted:
            self.metrics.relists.inc()
            log.warning("view.relisted revision=%d changes=%d", changes.revision, changes.events)
        for key, problem in changes.view_problems:
            self.metrics.malformed.inc()
            log.warning("view.bad_value key=%r problem=%r", key, problem)
        for name, key, problem in changes.problems:
            self.metrics.malformed.inc()
            log.warning("%s.bad_value key=%r problem=%r", name, key, problem)

    async def campaign(self) -> None:
        """Stay a contender forever: acquire, lead until the lease is lost, then contend again
        (**Only the leader acts**)."""
        while not self.stop.is_set():
            try:
                acquired = await self.election.acquire(timeout=self.settings.leader_ttl_s)
            except CoordinatorError as exc:
                # etcd unreachable: stay a contender; the store's own retries already waited a little. Under an etcd
                # alarm (no lease can be granted) the probe logs the alarm once (etcd.alarm_raised), not every second.
                level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING
                log.log(level, "leader.campaign_failed watcher=%s error=%s", self.watcher_id, exc)
                await asyncio.sleep(1.0)
                continue
            if not acquired:
                continue
            self.executor.leadership_lost.clear()
            warm = self.triggers.take_warm_work()
            log.info("leader.acquired watcher=%s ttl_s=%d warm=%d", self.watcher_id, self.settings.leader_ttl_s, warm)
            lost = asyncio.create_task(self.election.lost.wait())
            fenced = asyncio.create_task(self.executor.leadership_lost.wait())
            stopping = asyncio.create_task(self.stop.wait())
            await asyncio.wait({lost, fenced, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (lost, fenced, stopping):
                task.cancel()
            if self.stop.is_set():
                return
            log.warning("leader.lost watcher=%s", self.watcher_id)
            with suppress(Exception):
                await self.election.resign()
            await asyncio.sleep(0.2)

    async def reconcile_pass(
        self, *, act: bool = True, keys: list[TriggerKey] | None = None, sweep: bool = False
    ) -> Plan:
        """One pass of the trigger reconciler over ``keys`` (every ready one when None), outside the manager's
        workers (``coordinator reconcile``, tests); ``sweep``: every partition is planned a slice per pass
        (``watcher/sweep.py``'s **Sweep**). The actions it submits wait for :meth:`act_on_submitted`."""
        if keys is None:
            keys = self.triggers.controller.queue.get_nowait()
        async with self.following():
            return await self.triggers.reconcile(keys, act=act, sweep=sweep)

    @asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """The informer follows the store meanwhile (the service's reflector does; a one-shot pass starts its own), so
        this watcher's own writes come back into the model the one way they may (``informer/expectations.py``)."""
        if self._reflecting:
            yield
            return
        task = asyncio.create_task(self.reflect(self.view.revision), name="reflector")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, CoordinatorError):
                await task

    async def act_on_submitted(self) -> None:
        """Without the manager running (a one-shot pass): run the actions submitted so far, and wait for them."""
        await self.actuator.controller.drain_ready()
        await self.executor.drain()

    async def run(self) -> None:
        """The service (every rule of the module)."""
        revision = await self.load()
        self.health.view_loaded()
        # One try for leadership before the loops start: the first full pass is then the leader's, instead of a
        # standby pass followed at once by a second full pass as leader (each costs seconds on a big store).
        with suppress(CoordinatorError):
            await self.election.acquire(timeout=0)
        if not self.election.is_leader:
            # A standby plans what changed after the plan checkpoint, then everything (``watcher/warm.py``'s
            # **Start**); a leader's campaign does the same on taking the lead (``take_warm_work``).
            self.triggers.warm.start()
        tasks = [
            asyncio.create_task(self.reflect(revision), name="reflector"),
            asyncio.create_task(self.campaign(), name="campaign"),
            asyncio.create_task(self.manager.run(), name="manager"),
            asyncio.create_task(
                probe_etcd(self.store, self.settings.keys.leader, self.health, self.metrics, self.stop), name="probe"
            ),
        ]
        stopper = asyncio.create_task(self.stop.wait())
        try:
            while not stopper.done():
                done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                tasks = [t for t in tasks if not t.done()]
        finally:
            self.stop.set()
            summary = self.pass_summary
            if summary is not None:
                summary.say()  # ``watcher/pass_summary.py``'s **Said at the stop**
            # Said at once: a stop that outlasts its supervisor's grace period then shows where it waited.
            log.info("watcher.stopping watcher=%s in_flight=%d streams=%d", self.watcher_id, self.executor.busy,
                     self.executor.busy_in(Pool.STREAMS))  # fmt: skip
            self.manager.shutdown()
            for task in [*tasks, stopper]:
                task.cancel()
            # Bounded as well: a loop stuck in a call that ignores its cancellation must not keep the leader key.
            # Python 3.11's wait_for can swallow a cancellation that meets its inner call's completion (fixed in
            # 3.12), and a `while True` loop then goes on: such a loop is cancelled once more.
            _, stuck = await asyncio.wait([*tasks, stopper], timeout=STOP_TASKS_S)
            if stuck:
                log.warning("watcher.stop.tasks_stuck watcher=%s tasks=%s", self.watcher_id,
                            ",".join(sorted(t.get_name() for t in stuck)))  # fmt: skip
                for task in stuck:
                    task.cancel()
                await asyncio.wait(stuck, timeout=1.0)
            drain = asyncio.ensure_future(self.executor.drain())
            if not (await asyncio.wait({drain}, timeout=STOP_DRAIN_S))[0]:
                # Safe to cut short: an action's intent is in the ledger before its Airflow call, so the next
                # leader looks the run up before acting again: an unanswered call is a lost answer.
                log.warning("watcher.stop.drain_timeout watcher=%s in_flight=%d streams=%d", self.watcher_id,
                            self.executor.busy, self.executor.busy_in(Pool.STREAMS))  # fmt: skip
            await self.executor.cancel()
            await self.presence_job.close()
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
            try:
                # Bounded too: with etcd gone the lease expires on its own after the TTL.
                await asyncio.wait_for(self.election.resign(), timeout=STOP_RESIGN_S)
            except Exception as exc:  # the stop goes on: the lease TTL ends the leadership
                log.warning("watcher.stop.resign_failed watcher=%s error=%r", self.watcher_id, exc)
            log.info("watcher.stopped watcher=%s passes=%d", self.watcher_id, self.triggers.passes)


def build_clients(
    settings: Settings,
    stack: AsyncExitStack,
    metrics: Metrics | None = None,
    reachability: Reachability | None = None,
    refusals: Refusals | None = None,
) -> dict[str, AirflowClient]:
    """A client per configured instance, each request counted into ``metrics`` and judged by ``reachability``, each
    refusal (``airflow/gate.py``) told to ``refusals``."""
    clients: dict[str, AirflowClient] = {}
    hooks: list[Callable[[str, str, str, float], None]] = []
    if metrics is not None:
        hooks.append(metrics.airflow_request)
    if reachability is not None:
        hooks.append(reachability.on_request)

    def on_request(instance: str, method: str, status: str, seconds: float) -> None:
        for hook in hooks:
            hook(instance, method, status, seconds)

    on_auth_failure = metrics.airflow_auth_failure if metrics is not None else None
    for name, instance in settings.instances().items():
        client = AirflowClient(
            instance,
            timeout_s=settings.airflow_timeout_s,
            name=name,
            on_request=on_request,
            on_auth_failure=on_auth_failure,
            backoff=refused_backoff(settings.airflow_refused_backoff_s, settings.airflow_refused_backoff_max_s),
            on_refusal=refusals.changed if refusals is not None else None,
            max_calls=instance.max_calls or settings.airflow_max_calls,
        )
        stack.push_async_callback(client.aclose)
        clients[name] = client
    return clients


def metrics_refusal(metrics: Metrics) -> Callable[[str, Refusal | None], None]:
    """``Refusals``' hook into the gauges of ``metrics``."""

    def told(instance: str, refusal: Refusal | None) -> None:
        if refusal is None:
            metrics.airflow_refusing(instance, None, 0.0)
        else:
            metrics.airflow_refusing(instance, refusal.since, refusal.step_s)

    return told


async def open_watcher(
    settings: Settings,
    stack: AsyncExitStack,
    metrics: Metrics | None = None,
    health: Health | None = None,
    graph: Graph | None = None,
) -> Watcher:
    """The watcher for ``settings``, counting into ``metrics`` and reporting to ``health`` (fresh ones if None);
    ``graph``: the dependencies file as the caller already loaded it (read again when None)."""
    graphs = GraphSource(settings.deps, graph)
    store = await EtcdStore.connect(settings.etcd())
    stack.push_async_callback(store.close)
    metrics = metrics or Metrics()
    reachability = Reachability(on_change=metrics.airflow_reachable)
    refusals = Refusals(on_change=metrics_refusal(metrics))
    return Watcher(
        settings, store, graphs, build_clients(settings, stack, metrics, reachability, refusals),
        watcher_id=settings.watcher_id or default_watcher_id(), metrics=metrics,
        health=health or Health(start_timeout_s=settings.start_timeout_s),
        reachability=reachability, refusals=refusals,
    )  # fmt: skip
