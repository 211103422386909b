"""The leader's asset round: record the asset events of every routed source Airflow, hand every stream with an
event due to the asset streams' reconciler, which delivers each one once into every target Airflow (semantics
`assets-by-route` and `asset-exactly-once`), and prune what retention allows. A timed concern (``manager/periodic.py``):
a key requeued at its interval, run only while leading, given only what it needs.

Rules:
- **From the index.** What is recorded and delivered comes from the asset index (``core/asset_index.py``), which the
  informer keeps current from the watcher's one list/watch of the prefix whether it leads or not
  (``watcher/service.py``): a round reads neither prefix, so its cost is the streams with work, not the history, and a
  new leader's first round needs no full read. The informer is the index's only writer: the round's own writes come
  back through the watch like anyone's. Until one has, the round does not act on the stale entry (the executor's
  expectations, ``informer/expectations.py``): an event whose key it wrote is not recorded again, and an event whose
  event or entries it wrote is not pruned this round. A write another process made that the watch has not brought yet
  cannot lead to a wrong act either (``core/delivery.py``): only an attempt's first write takes its expected revision
  from the index (``start``: ``WriteLedger(record, due.ledger_rev)``; later writes compare the revision the previous
  write returned), and it is a fenced compare-and-swap: an entry the index lacks is written create-only (revision 0) and
  one it holds older is compared with that older revision, so either fails with ``LedgerMoved`` and the attempt ends
  before any Airflow call (semantics `delivery-intent-first`); in particular "no entry, so post without a look-up"
  (semantics `delivery-look-first`, a fresh intent) holds only when the create-only write succeeded. Every event write
  is create-only too, and retention compares every mod revision it deletes (**Prune what is delivered**). A prune
  deletes an event with its entries in one transaction, which the watch hands out as one batch (the event's key first),
  applied without a pause, so the index never holds a pruned event without its entries (which would make it due again).
  After such a conflict nothing is read by hand: the watch brings the keys as they are, and a later round acts on them.
- **Record what the routes share.** One round lists each routed source instance's asset events since its mark (the
  newest recorded event's timestamp, less :data:`OVERLAP_S`; with none yet, the first mark any watcher stored under
  ``{prefix}/asset_marks/{instance}``: its start less ``lookback_s``) and records the ones its routes share and that are
  not delivered copies (semantics `asset-no-loops`), create-only (semantics `asset-facts`: a repeat writes nothing). A
  listing returns the oldest events since the mark, at most ``list_limit``; the next one starts no earlier than the
  newest event this job listed less the overlap (recorded or not), so a backlog, or a stretch of events no route shares,
  is read over several rounds and never listed twice over.
- **Stopped listings.** A listing that stopped at an event Airflow cannot serialize (``AssetEventListing.stopped``,
  apache/airflow#71360: one of its consumer runs has not started) records what it read before that event and asks for
  another round soon (0.25 s, doubling up to the interval, back to 0.25 s once a listing completes): the mark never
  passes the unread event, so it is recorded (in order) once its run starts. ``asset.listing_stopped`` says so once per
  streak, the gauge ``coordinator_asset_listing_stopped`` while it lasts.
- **Due streams to their reconciler.** In the watcher, the informer hands the asset streams' reconciler
  (``watcher/deliveries.py``) every stream whose event or entry changed, so an event this round recorded is delivered
  as soon as the watch brings it; a head that waits out a retry time is the reconciler's requeue. The round still
  submits every stream whose oldest unsettled event is due (``AssetIndex.due``, as ``core/assets.due_deliveries``) as a
  safety net: a new leader's first round (a standby drops stream keys), a key dropped while leadership was in doubt.
- **Errors end the round.** Etcd errors and a lost leadership end the round (the loop retries it:
  ``manager/periodic.py``). Every write of a round (events, marks, prunes) is the executor's, fenced, and pinned to the
  term the round began in (``Executor.pin``).
- **Prune what is delivered.** Retention (with ``COORDINATOR_RETENTION``): an event older than the period and delivered
  to every target its routes name is deleted with its delivery entries, in one transaction that checks none of them
  changed and that this watcher still leads; the newest event of each (source, asset) stays, and so does every event the
  audit may still list (``AssetIndex.prunable``, as ``core/assets.prunable``: pruned and listed again, it would be
  recorded and delivered twice). The transaction compares the mod revisions the index holds (a delete that fails on one
  is tried again once the watch brought those keys, **From the index**); an event recorded in a round is pruned at the
  earliest in the next (the index shows it only once the watch brings it). A delivery under way is never a candidate:
  its event is not settled in its target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.airflow.assets import AssetEventInfo, AssetEventListing
from coordinator.airflow.client import SCAN_MAX, AirflowClient
from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import MARKER, AssetEventFact, AssetKeys, AssetRoute, is_delivered_copy, targets_of
from coordinator.core.graph import Graph
from coordinator.errors import AirflowError
from coordinator.etcd import Reads
from coordinator.informer import Changes, Informer
from coordinator.informer.asset_index import ASSET_INDEX
from coordinator.manager import Controller, Handle, Manager, Periodic, Watch
from coordinator.manager.periodic import RequeueAfter
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.deliveries import DELIVERIES, STOPPED_REASON, AssetDeliveries
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor, TermWrites
from coordinator.watcher.keys import Tick

log = logging.getLogger(__name__)

#: **Record what the routes share**: a transaction's timestamp is taken before it commits, so an event may be listed
#: after a later-stamped one was already seen; a minute of overlap covers any commit, and a re-listed event is recorded
#: once (create-only).
OVERLAP_S = 60.0
#: **Stopped listings**: the first sooner round after a listing stopped at an unreadable event (the usual case, a
#: consumer run just created, clears within tens of milliseconds); each further stop doubles it, up to the job's
#: interval.
STOPPED_RETRY_S = 0.25


@dataclass
class AssetJob:
    """The leader's asset round (every rule of the module)."""

    #: Reads only (a source's first mark): every write (an event, a mark, a prune) is the executor's
    #: (``watcher/executor.py``), fenced.
    store: Reads
    executor: Executor
    keys: AssetKeys
    graph: Callable[[], Graph]
    #: The routed sources' Airflows, whose asset events **Record what the routes share** lists.
    clients: Mapping[str, AirflowClient]
    watcher_id: str
    metrics: Metrics
    interval_s: float
    #: **Due streams to their reconciler**: the asset streams' reconciler, which delivers what this round finds due.
    deliveries: AssetDeliveries
    #: **From the index**: the asset index the informer keeps current from the watch.
    index: AssetIndex
    lookback_s: float = 0.0
    #: **Prune what is delivered**: delivered events older than this are pruned (None: kept).
    retention: timedelta | None = None
    name: str = "assets"
    #: **Record what the routes share**'s mark when no event of a source was recorded yet (the watcher's start; the
    #: first round's time if not given).
    started_at: datetime | None = None
    #: **Record what the routes share**: events listed per call at most (a backlog drains over rounds of this many).
    list_limit: int = SCAN_MAX
    #: **Record what the routes share**: per source, where the next listing may start because this job already examined
    #: everything before it (the newest event it listed, less the overlap). Without it a listing full of events no route
    #: shares (or of delivered copies) would record nothing, the recorded mark would never move, and every round would
    #: list the same events again, never reaching the ones after them. In memory: a new leader starts from the recorded
    #: mark.
    _listed: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    #: **Errors end the round**: this round's writes, pinned to the term it began in (``Executor.pin``).
    _writes: TermWrites = field(init=False, repr=False)
    #: **Stopped listings**: this round's ``requeue_after`` (``manager/periodic.py``, *interval*), the soonest round
    #: it asked for.
    _requeue_after: float | None = field(default=None, init=False, repr=False)
    #: **Stopped listings**: consecutive stopped listings per source instance.
    _stopped: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round (**Record what the routes share**, **Due streams to their reconciler**, **Errors end the round**
        and **Prune what is delivered**); the seconds to the next one when it must come sooner than the interval."""
        self._requeue_after = None
        routes = self.graph().asset_routes
        if self.started_at is None:
            self.started_at = now
        if not routes:
            return None
        # **Errors end the round**: every write of the round pinned to the term it began in (the executor's fence): a
        # decision made under this term never writes in a later one, even if this watcher lost the lead and won it back
        # meanwhile.
        self._writes = self.executor.pin()  # raises LeadershipLost: no round without leading
        index = self.index
        recorded = await self._record(routes, index, now)
        # **Due streams to their reconciler**: the due streams as keys of its queue (a safety net: the informer hands it
        # every stream that changed).
        streams = self.deliveries.submit_due(routes, index, now)
        pruned = await self._prune(routes, index, now) if self.retention is not None else 0
        pending = index.pending(routes)
        self.metrics.asset_round(pending)
        if recorded or streams or pruned:
            log.info(
                "asset.round events=%d recorded=%d streams=%d pending=%d pruned=%d",
                len(index.events), recorded, streams, sum(pending.values()), pruned,
            )  # fmt: skip
        return self._requeue_after

    def _sooner(self, delay_s: float) -> None:
        """**Stopped listings**: the next round in at most ``delay_s`` (the soonest ask of the round wins)."""
        if self._requeue_after is None or delay_s < self._requeue_after:
            self._requeue_after = delay_s

    # ------------------------------------------------------------ reading

    def _pending(self, keys: list[str]) -> bool:
        """**From the index**: whether this leader wrote one of ``keys`` and the watch has not brought it back."""
        expectations = self.executor.expectations
        return any(expectations.pending(key) for key in keys)

    # ------------------------------------------------------------ **Prune what is delivered**: retention

    async def _prune(self, routes: tuple[AssetRoute, ...], index: AssetIndex, now: datetime) -> int:
        assert self.retention is not None
        cutoff = now - self.retention
        pruned = 0
        overlap = timedelta(seconds=OVERLAP_S)
        for event, deliveries in index.prunable(routes, cutoff, overlap):
            fact = event.fact
            rev = index.event_rev(event.source, fact.uri, fact.event_id)
            if rev is None:
                continue
            items = [(self.keys.event_key(event.source, fact.uri, fact.event_id), rev)]
            items += [(self.keys.delivery_key(t, event.source, fact.uri, fact.event_id), rev) for t, rev in deliveries]
            if self._pending([key for key, _ in items]):
                continue  # **From the index**: its own write (a delivery, this prune) is not in the index yet
            result = await self._writes.delete_unchanged(items)
            if result.succeeded:
                pruned += 1
            # A delete that failed changed nothing: the watch brings what changed, and a later round tries again.
        return pruned

    # ------------------------------------------------------------ **Record what the routes share**: facts from each
    # source

    async def _record(self, routes: tuple[AssetRoute, ...], index: AssetIndex, now: datetime) -> int:
        recorded = 0
        for source in sorted({route.source for route in routes}):
            client = self.clients.get(source)
            if client is None:
                continue  # validate/doctor say so; the plugin may still record this instance's events
            newest = index.mark(source)
            mark = newest - timedelta(seconds=OVERLAP_S) if newest is not None else await self._first_mark(source)
            since = max(mark, self._listed.get(source, mark))
            try:
                listing = await client.asset_events(since, limit=self.list_limit)
            except AirflowError as exc:
                log.warning("asset.audit_failed instance=%s error=%s", source, exc)
                continue
            self._note_stopped(source, listing)
            if listing.events:  # a stopped listing ends before its unread event: the next one still starts before it
                full = len(listing.events) >= self.list_limit
                self._listed[source] = _next_since(since, listing.events, full)
            for item in sorted(listing.events, key=lambda e: e.event_id):
                if is_delivered_copy(item.extra) or not targets_of(routes, source, item.uri, item.name):
                    continue
                key = self.keys.event_key(source, item.uri, item.event_id)
                if index.has_event(source, item.uri, item.event_id) or self._pending([key]):
                    continue  # recorded (**From the index**: by this leader too, until the watch brings it)
                fact = AssetEventFact(
                    event_id=item.event_id,
                    uri=item.uri,
                    name=item.name,
                    partition_key=item.partition_key,
                    extra={k: v for k, v in item.extra.items() if k != MARKER},
                    source_dag_id=item.source_dag_id,
                    source_run_id=item.source_run_id,
                    source_task_id=item.source_task_id,
                    timestamp=item.timestamp,
                    recorded_by=f"audit:{self.watcher_id}",
                )
                result = await self._writes.cas(key, fact.model_dump_json().encode(), 0)  # create-only
                if result.succeeded:
                    recorded += 1
                    log.info("asset.recorded instance=%s uri=%s event_id=%d partition_key=%s",
                             source, item.uri, item.event_id, item.partition_key or "-")  # fmt: skip
        return recorded

    def _note_stopped(self, source: str, listing: AssetEventListing) -> None:
        """**Stopped listings**: a sooner round while ``source``'s listing stops at an unreadable event; say so once per
        streak."""
        streak = self._stopped.pop(source, 0)
        self.metrics.asset_listing_stopped.labels(source).set(1 if listing.stopped else 0)
        if not listing.stopped:
            if streak:
                log.info("asset.listing_resumed instance=%s after_stops=%d", source, streak)
            return
        self._stopped[source] = streak + 1
        if not streak:
            log.warning("asset.listing_stopped instance=%s listed=%d reason=%s", source, len(listing.events),
                        STOPPED_REASON)  # fmt: skip
        self._sooner(min(self.interval_s, STOPPED_RETRY_S * 2.0 ** min(streak, 16)))

    async def _first_mark(self, source: str) -> datetime:
        """**Record what the routes share** while no event of ``source`` is recorded: the mark the first round of any
        watcher stored (so a watcher restarted before the first event still lists what happened while it was down), else
        this job's start less the lookback, stored now (create-only: the first writer's mark wins)."""
        key = self.keys.mark_key(source)
        kv = await self.store.get(key)
        if kv is not None:
            with suppress(ValueError):
                return datetime.fromisoformat(kv.value.decode())
        assert self.started_at is not None
        mark = self.started_at - timedelta(seconds=self.lookback_s)
        result = await self._writes.cas(key, mark.isoformat().encode(), 0)
        if not result.succeeded and result.current is not None:
            with suppress(ValueError):
                return datetime.fromisoformat(result.current.value.decode())
        return mark


def _next_since(since: datetime, listed: list[AssetEventInfo], full: bool) -> datetime:
    """**Record what the routes share**: where the next listing of a source may start after this one examined ``listed``
    (oldest first, from ``since``): the newest listed less the overlap. A full listing whose events all fall within one
    overlap (a listing's worth of events in a minute) would start again where it started: it moves to the newest listed
    itself (at or after: its equal timestamps are listed again), so the rounds still advance."""
    newest = max(e.timestamp for e in listed)
    after = newest - timedelta(seconds=OVERLAP_S)
    return newest if full and after <= since else max(since, after)


#: After an asset hint, a second asset round this much later: the hook fires before Airflow commits the event.
HINT_RECHECK_S = 1.0


#: What this concern provides (``manager/manager.py``'s **Handles**): the leader's asset round: the service reads it.
ASSET_ROUND: Handle[AssetJob] = Handle("asset round")


def setup(manager: Manager, deps: Deps) -> AssetJob | None:
    """The leader's asset round (semantics `assets-by-route` and `asset-exactly-once`: a no-op round while no route is
    declared), a key requeued at its interval, and sooner after a hint; None while ``asset_interval_s`` is 0."""
    settings = deps.settings
    if settings.asset_interval_s <= 0:
        return None
    job = AssetJob(
        store=deps.store, executor=deps.executor, keys=AssetKeys(settings.keys.prefix), graph=deps.graph,
        clients=deps.clients, watcher_id=deps.watcher_id,
        metrics=deps.metrics, interval_s=settings.asset_interval_s, deliveries=manager.get(DELIVERIES),
        lookback_s=settings.asset_lookback_s, started_at=deps.clock(),
        retention=settings.retention_period, index=deps.index(ASSET_INDEX),
    )  # fmt: skip
    tick = Tick(job.name)

    def hinted(changes: Changes) -> list[Tick]:
        """Semantics `asset-facts`: the plugin saw an asset event; the asset round lists it now, not in 2 s, and once
        more ``HINT_RECHECK_S`` later, since Airflow calls the hook before its transaction commits and the event may
        not be listed yet (the earliest delay of a key wins, so this never postpones the periodic round)."""
        return [tick] if changes.of(Informer.HINTS) else []

    controller: Controller[Tick] = Controller(job.name, Periodic(job), now=deps.clock, needs_leader=True,
                                              period_s=job.interval_s, backoff_max_s=job.interval_s)  # fmt: skip
    manager.register(controller, Watch(hinted, after_s=HINT_RECHECK_S), Watch(hinted),
                     start_after=(tick, job.interval_s))  # fmt: skip
    return manager.provide(ASSET_ROUND, job)
