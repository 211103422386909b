"""The leader's deadline pass: when it runs and what it reads. It decides every deadline state
(``core.deadline.states``, kept incremental by ``core.deadline.cache``) over the view's changes and the clock, then
hands the transitions to ``watcher/deadline_alerts.py``, which records each by compare-and-swap and alerts (log line,
metrics, the ``on_late_of`` handlers, escalation levels).

Rules (semantics `deadlines-judged`):
- **Warm records, leader passes.** Every watcher keeps the recorded transitions (``{prefix}/deadlines/...``,
  docs/keys.md) warm from the same watch as its view (the informer's
  :class:`~coordinator.informer.deadlines.DeadlineIndex`); only the leader runs passes (:class:`DeadlineJob`, a
  controller's reconciler that names what it needs and never the watcher).
- **Keys, and time as a requeue.** The deadlines' controller (``setup`` registers it) takes the keys the
  watch brings: ``DagKey`` (a run state, task state or ledger entry of one DAG in one partition changed),
  ``PartitionKey`` (a backfill: every DAG the view holds in that partition), ``AllPartitions`` (judge everything: a
  relist, a moved retention floor), and its clock, ``Tick("deadline")`` (a record moved; else nothing but time), each
  due ``DEADLINE_BATCH_S`` after the batch that brought it. One pass judges every ready key at once, then requeues the
  clock at the next instant the clock alone changes something (the cache's ``next_instant``: a state's ``stays_until``,
  the next grid point; a waiting alert's ``alert_after``), at most ``interval_s`` later: what no watch brings (a DAG
  paused in Airflow, an instance that stops answering, an escalation level's slack, a failed alert's retry) waits no
  longer than that. A standby queues nothing.
- **One view, one change set.** The cache (**Incremental**) must be told every change of the view it reads, and only a
  view and a change set taken together are that: a key handed out after a pass began, or one waiting its
  ``DEADLINE_BATCH_S``, would leave a pass reading facts it was not told of. So the watch's changes are also noted as
  they come (``interest``, under the view's lock, right after the batch was applied), and each pass takes every change
  noted so far under the same lock, whichever key woke it (a key handed out later judges again what an earlier pass
  took: harmless, a judgement reads the view). A standby notes nothing and its first pass as leader is a full one.
- **Incremental.** Incremental (``core.deadline.cache``): the job keeps one cache, so a pass judges only its keys,
  what the clock moved and the new grid points. It starts over (a full pass, in a thread: seconds on a big estate, and
  the event loop must keep the lease alive) at its first pass, when it becomes leader (a new fence), after a relist or
  a moved retention floor (``AllPartitions``), for a new graph, and after a pass that failed.
  Transitions and metric counts come from what changed (the watch's changes name the records that moved:
  ``DeadlineIndex.RECORDS``, noted and taken with the view's changes under **One view, one change set**).
- **Versions from the clients.** A root's predicted start (``core.deadline.start``) needs each instance's Airflow major
  version: read from the clients, which learn it with their first request (the paused list asks every instance a
  deadline depends on before each pass), never asked for here. A version learned or changed starts the cache over.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.airflow.client import AirflowClient
from coordinator.core.deadline.alerts import next_alert_after, next_handler_date
from coordinator.core.deadline.cache import DeadlineCache
from coordinator.core.deadline.records import Transition
from coordinator.core.floor import RetentionFloor
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import ALL, View
from coordinator.informer import Changes
from coordinator.informer.deadlines import DEADLINE_INDEX, DeadlineIndex
from coordinator.manager import Controller, Handle, Manager, Watch
from coordinator.manager.controller import Result
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.deadline_alerts import alert_pending, dag_records, level_pass, record_transition
from coordinator.watcher.deadline_facts import PausedForDeadlines
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor, TermWrites
from coordinator.watcher.keys import AllPartitions, DagKey, DeadlineKey, PartitionKey, Tick

log = logging.getLogger(__name__)

#: Seconds between two deadline passes at most (**Keys, and time as a requeue**): what no watch brings (a DAG paused in
#: Airflow, an instance that stops answering, an escalation level's slack) is judged at most this late.
DEFAULT_INTERVAL_S = 15.0
#: The deadlines' controller's name and its clock key (**Keys, and time as a requeue**).
DEADLINES = "deadline"
CLOCK = Tick(DEADLINES)
#: Seconds a key the watch brings waits before its pass (**Keys, and time as a requeue**): one pass then takes every
#: change of that moment. A pass has a few milliseconds of fixed work on a big estate (the paused lists' scope, the
#: escalation levels), a busy watch brings dozens of batches a second, and a deadline is minutes to hours away.
DEADLINE_BATCH_S = 1.0
#: Seconds after an instant the clock key comes back: the cache re-reads a status once ``now`` is past its instant,
#: and the queue's monotonic clock and the wall clock may disagree by a little.
CLOCK_MARGIN_S = 0.05
#: Changed (DAG, partition) keys above which an incremental pass also runs in a thread: each can dirty thousands of
#: descendants' statuses (~6 us each), and the event loop must not stall for long under the view lock.
THREAD_ABOVE = 2_000


@dataclass
class DeadlineJob:
    """The leader's deadline concern as a controller's reconciler (**Keys, and time as a requeue**): exactly what a pass
    needs, never the watcher. One pass judges every key of the batch at once (the cache is incremental over the
    whole graph), so it is a batch reconciler (``manager/controller.py``)."""

    #: Every write (a fenced compare-and-swap of a record) and every handler's trigger goes through the executor.
    executor: Executor
    keys: KeyLayout
    graph: Callable[[], Graph]
    view: View
    #: Held while the view is read (the informer applies watch batches under it).
    view_lock: asyncio.Lock
    #: The recorded transitions (``informer/deadlines.py``), kept warm by the informer; only read here
    #: (``deadline_alerts``' **Own writes come back through the watch**).
    tracker: DeadlineIndex
    #: The causes the view cannot show (``core.deadline.states``'s **Causes**, ``watcher/deadline_facts.py``): the
    #: paused DAGs that matter to this graph's deadlines (listed at most once per pass), and the Airflow instances
    #: judged unreachable.
    paused: Callable[[Graph], Awaitable[frozenset[NodeId]]]
    unreachable: Callable[[], frozenset[str]]
    metrics: Metrics
    watcher_id: str
    #: **Keys, and time as a requeue**: the longest the clock key waits (what no watch brings: paused DAGs, unreachable
    #: instances, escalation levels, a failed alert's retry).
    interval_s: float
    name: str = DEADLINES
    #: **Versions from the clients**: the Airflow major version of every instance whose version is known
    #: (``known_majors``).
    majors: Callable[[], Mapping[str, int]] = field(default=lambda: {})
    #: **Incremental**: the cache and the leadership (fence) it was built under.
    cache: DeadlineCache | None = field(default=None, init=False)
    term: int | None = field(default=None, init=False)
    #: ``deadline_alerts``' **Record first, alert after**: the current pass's writes, pinned to the term it began in
    #: (``Executor.pin``).
    writes: TermWrites = field(init=False)
    #: The latest handler logical date this job assigned (the index knows only those the watch brought back).
    handler_date: datetime | None = field(default=None, init=False)
    #: ``core.deadline.alerts``' **Wait before alerting**: the earliest ``alert_after`` of a record the last pass left
    #: waiting.
    next_alert_after: datetime | None = field(default=None, init=False)
    #: ``declares``' answer for the last graph asked about (the graph changes rarely, a watch batch comes often).
    _declares: tuple[Graph, bool] | None = field(default=None, init=False, repr=False)
    #: The retention floor the last batch showed (``interest``).
    _floor: RetentionFloor | None = field(default=None, init=False, repr=False)
    #: **One view, one change set**: the changes noted since the last pass took them.
    _changed: set[tuple[NodeId, str]] = field(default_factory=set, init=False, repr=False)
    _partitions: set[str] = field(default_factory=set, init=False, repr=False)
    _everything: bool = field(default=False, init=False, repr=False)
    #: The recorded transitions (DAG, partition) the watch said moved since the last pass took them.
    _records: set[tuple[NodeId, str]] = field(default_factory=set, init=False, repr=False)

    def next_handler_date(self, now: datetime) -> datetime:
        """``deadline_alerts``' **Handlers once per transition**: a handler logical date after every recorded and every
        assigned one."""
        latest = max((d for d in (self.tracker.last_date, self.handler_date) if d is not None), default=None)
        self.handler_date = next_handler_date(now, latest)
        return self.handler_date

    def declares(self) -> bool:
        """Whether there is anything to judge: a DAG of the graph declares a deadline, or a transition is recorded."""
        graph = self.graph()
        if self._declares is None or self._declares[0] is not graph:
            self._declares = (graph, any(spec.expected_by is not None for spec in graph.dags.values()))
        return self._declares[1] or bool(self.tracker.records) or bool(self.tracker.levels)

    def interest(self, changes: Changes, leading: bool) -> list[DeadlineKey]:
        """**Keys, and time as a requeue**: what a watch batch brings the deadlines' controller, also kept for the next
        pass (**One view, one change set**: called under the view's lock, right after the batch was applied)."""
        # Everything is judged again after a relist, or when the retention floor moved (the view forgot the retired
        # partitions' facts without a key each). The view's other "re-plan everything" (an activation, a budget) moves
        # no deadline: no status reads them.
        everything = changes.relisted or self.view.floor != self._floor
        self._floor = self.view.floor
        # The records that moved are noted by a standby too (a leader's first pass is a full one, which compares every
        # record anyway): the pass compares them with what it judges.
        self._records.update(changes.of(DeadlineIndex.RECORDS))
        if not leading or not self.declares():
            self._everything = True  # a standby keeps nothing: its first pass as leader is a full one
            return []
        keys: list[DeadlineKey] = [DagKey(node, partition) for node, partition in changes.of(View.NODES)]
        keys += [PartitionKey(partition) for partition in changes.of(View.PARTITIONS) if partition != ALL]
        if everything:
            keys.append(AllPartitions)
        if changes.of(DeadlineIndex.RECORDS):
            keys.append(CLOCK)  # a record moved (another writer's, or this leader's own come back)
        self._note(keys)
        return keys

    def _note(self, keys: Iterable[DeadlineKey]) -> None:
        """**One view, one change set**: what the next pass takes, whichever key wakes it."""
        for key in keys:
            if isinstance(key, DagKey):
                self._changed.add((key.node, key.partition))
            elif isinstance(key, PartitionKey):
                self._partitions.add(key.partition)
            elif key is AllPartitions:
                self._everything = True

    def _take(self, view: View) -> tuple[set[tuple[NodeId, str]] | None, set[tuple[NodeId, str]]]:
        """**One view, one change set**: every change noted since the last pass (None: everything) and the records
        that moved, under the view's lock; the DAGs of a backfilled partition are those the view holds in it."""
        changed, partitions, everything = self._changed, self._partitions, self._everything
        self._changed, self._partitions, self._everything = set(), set(), False
        records, self._records = self._records, set()
        if everything:
            return None, records
        changed.update((node, p) for p in partitions for node in view.partitions.get(p, ()))
        return changed, records

    async def reconcile_batch(self, keys: list[DeadlineKey], now: datetime) -> dict[DeadlineKey, Result]:
        """One pass over the batch's keys, and the clock key at the next instant the clock alone changes something
        (**Keys, and time as a requeue**); raises as ``deadline_pass`` does (the controller retries)."""
        self._note(keys)  # already noted when the watch brought them; a key added otherwise (a test, a retry) too
        await deadline_pass(self, now)
        return {CLOCK: Result(requeue_after=self.requeue_after(now))}

    def requeue_after(self, now: datetime) -> float:
        """Seconds to the clock key's next pass: the cache's next instant or a held alert's, at most ``interval_s``."""
        clock = self.cache.next_instant() if self.cache else None
        instants = [i for i in (clock, self.next_alert_after) if i is not None]
        if not instants:
            return self.interval_s
        # The cache re-reads a status only once ``now`` is past its instant: a moment after it, never before.
        seconds = (min(instants) - now).total_seconds() + CLOCK_MARGIN_S
        return min(self.interval_s, max(CLOCK_MARGIN_S, seconds))


def known_majors(clients: Mapping[str, AirflowClient]) -> dict[str, int]:
    """**Versions from the clients**: each instance's Airflow major version, where its client already knows it."""
    return {name: major for name, client in clients.items() if (major := client.known_major) is not None}


async def deadline_pass(job: DeadlineJob, now: datetime) -> list[Transition]:
    """One pass over what changed since the last one (**One view, one change set**) and what the clock moved, its
    transitions recorded and alerted by ``deadline_alerts`` (**Record first, alert after**, **Handlers once per
    transition**, **One line per transition** and **Escalation levels**); the transitions this watcher recorded. Raises
    LeadershipLost when the fence is gone."""
    graph = job.graph()
    if not job.declares():
        job.cache, job.next_alert_after = None, None
        return []  # no DAG declares a deadline and none was ever recorded: nothing to judge, no lock taken
    # ``deadline_alerts``' **Record first, alert after**: every record of this pass is written in the term it began
    # in; the term's revision also keys the cache (**Incremental**). Raises LeadershipLost: no pass without leading.
    job.writes = job.executor.pin()
    cache, record_changes = await _judge(job, graph, now)
    records = dag_records(job)
    # A transition recorded but not yet marked alerted (a leader died after triggering its handlers) is completed
    # before a new transition replaces its record: the new record then carries that state as alerted
    # (``core.deadline.alerts``'s **Alerted states carried**), so a return to it does not page again.
    failing = await alert_pending(job, graph, records, now)
    recorded: list[Transition] = []
    for transition in cache.transitions(job.tracker.records, record_changes):
        if await record_transition(job, graph, records, transition, failing, now):
            recorded.append(transition)
    await alert_pending(job, graph, records, now)
    waiting = (r for at in records.unalerted() if (r := records.record(at)) is not None)
    job.next_alert_after = next_alert_after(waiting, now)
    await level_pass(job, graph, cache, now)
    return recorded


async def _judge(job: DeadlineJob, graph: Graph, now: datetime) -> tuple[DeadlineCache, set[tuple[NodeId, str]]]:
    """The cache brought up to ``now`` on the view, under its lock (**Incremental**), its counts into the metrics: the
    cache, and the records the watch changed since the last pass."""
    term = job.writes.fence.create_revision
    # Asked before the lock: listing paused DAGs is an Airflow request, and the informer must not wait for it.
    paused, unreachable = await job.paused(graph), job.unreachable()
    async with job.view_lock:
        changed, record_changes = job._take(job.view)
        cache = job.cache
        majors = job.majors()
        if cache is None or cache.graph is not graph or term != job.term or cache.majors != majors:
            # **Incremental** and **Versions from the clients**: start over.
            cache, changed = DeadlineCache(graph, majors=majors), None
        job.cache = None  # until this pass succeeds: a pass that fails leaves no half-updated cache behind
        if changed is None or len(changed) > THREAD_ABOVE:
            # In a thread, the view held still by the lock: a full pass over a big graph takes seconds, and the
            # event loop must keep the leader lease alive meanwhile (the informer waits for the lock).
            update = await asyncio.to_thread(
                cache.update, job.view, now, changed, paused=paused, unreachable=unreachable
            )
        else:
            update = cache.update(job.view, now, changed, paused=paused, unreachable=unreachable)
        job.cache, job.term = cache, term
    if update.full:
        # The cache lives as long as the leadership: ~10 small acyclic objects per status, hundreds of thousands on
        # a big estate. Kept out of every later cyclic collection (as the service does after its load), or each
        # full collection walks them all and an incremental pass that triggers one takes several times longer.
        # Refcounting still frees them when a later cache replaces this one.
        gc.freeze()
        job.metrics.deadline_pass(update.counts, update.min_slack)
    else:
        job.metrics.deadline_counts(update.counts, update.min_slack)
    log.debug("deadline.pass full=%s judged=%d timed=%d changed=%d", update.full, update.judged, update.timed,
              len(update.changed))  # fmt: skip
    return cache, record_changes


#: What the deadlines' concern provides (``manager/manager.py``'s **Handles**): the service and the tests read it.
DEADLINE_JOB: Handle[DeadlineJob] = Handle("deadlines")


def setup(manager: Manager, deps: Deps) -> DeadlineJob:
    """The leader's deadlines (semantics `deadlines-judged`): the (DAG, partition) keys whose facts the watch brings,
    each due ``DEADLINE_BATCH_S`` later so one pass takes every change of that moment (nothing on a standby), and the
    clock key at its next instant."""
    job = DeadlineJob(
        executor=deps.executor, keys=deps.settings.keys, graph=deps.graph, view=deps.view,
        view_lock=deps.view_lock, tracker=deps.index(DEADLINE_INDEX),
        paused=PausedForDeadlines(deps.paused), unreachable=deps.reachability.unreachable, metrics=deps.metrics,
        watcher_id=deps.watcher_id,
        interval_s=deps.settings.deadline_interval_s, majors=lambda: known_majors(deps.clients),
    )  # fmt: skip
    manager.register(
        Controller(job.name, job, now=deps.clock, needs_leader=True, period_s=job.interval_s,
                   backoff_max_s=job.interval_s),
        Watch(lambda changes: job.interest(changes, deps.leading()), after_s=DEADLINE_BATCH_S),
        start_after=(CLOCK, job.interval_s),
    )  # fmt: skip
    return manager.provide(DEADLINE_JOB, job)
