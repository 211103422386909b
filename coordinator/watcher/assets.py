"""The leader's asset job: record the asset events of every routed source Airflow, then deliver each one once into
every target Airflow (semantics rules 16 and 17). A job of ``watcher/jobs.py``: a timed key of the one queue,
run only while leading, given only what it needs.

Rules:
0. What is recorded and delivered comes from the asset index (``core/asset_index.py``), which the watcher keeps
   current from its one list/watch of the prefix whether it leads or not (``watcher/service.py``): a round reads
   neither prefix, so its cost is the streams with work, not the history, and a new leader's first round needs no
   full read. The job's own writes go through to the index at the revision etcd answered (write-through), so the
   next question never acts on a stale entry of its own. A write another process made that the watch has not
   brought yet cannot lead to a wrong act either (``core/delivery.py``): only an attempt's first write takes its
   expected revision from the index (``start``: ``WriteLedger(record, due.ledger_rev)``; later writes compare the
   revision the previous write returned), and it is a fenced compare-and-swap: an entry the index lacks is written
   create-only (revision 0) and one it holds older is compared with that older revision, so either fails with
   ``LedgerMoved`` and the attempt ends before any Airflow call (delivery rule 1); in particular "no entry, so post
   without a look-up" (delivery rule 3's fresh intent) holds only when the create-only write succeeded. Every
   event write is create-only too, and retention compares every mod revision it deletes (rule 5). A prune deletes
   an event with its entries in one transaction, which the watch hands out as one batch (the event's key first),
   applied without a pause, so the index never holds a pruned event without its entries (which would make it due
   again). After such a conflict the keys involved are read once (point reads) into the index, so the next round
   does not fail the same way while the watch catches up. A job built without an index (tests, a one-shot run)
   reads both prefixes into a fresh one each round, as every round did before.
1. One round lists each routed source instance's asset events since its mark (the newest recorded event's
   timestamp, less :data:`OVERLAP_S`; with none yet, the first mark any watcher stored under
   ``{prefix}/asset_marks/{instance}``: its start less ``lookback_s``) and records the ones its routes share and
   that are not delivered copies (rule 16c), create-only (rule 16b: a repeat writes nothing).
   A listing returns the oldest events since the mark, at most ``list_limit``; the next one starts no earlier than
   the newest event this job listed less the overlap (recorded or not), so a backlog, or a stretch of events no
   route shares, is read over several rounds and never listed twice over.
2. Then it drives every due delivery (``AssetIndex.due``, as ``core/assets.due_deliveries``: the oldest undelivered
   event of each (target, source, asset) stream) through ``core/delivery.py``, performing each instruction and
   feeding the answer back.
   A confirmed delivery makes the stream's next event due in the same round, so a backlog (a watcher down for a
   day) drains in order without waiting one interval per event.
1a. A listing that stopped at an event Airflow cannot serialize (``AssetEventListing.stopped``, apache/airflow#71360:
   one of its consumer runs has not started) records what it read before that event and asks for another round
   soon (0.25 s, doubling up to the interval, back to 0.25 s once a listing completes): the mark never passes the
   unread event, so it is recorded (in order) once its run starts. ``asset.listing_stopped`` says so once per
   streak, the gauge ``coordinator_asset_listing_stopped`` while it lasts.
3. Airflow errors are the protocol's events, mapped by the executor as for a trigger (``watcher/executor.py`` rule
   3: unavailable -> Transient, 404 -> NotFound, which the protocol takes as a stale asset id on a POST and as a
   refusal elsewhere, any other refusal -> Refused); etcd errors and a lost leadership end the round (the loop
   retries it, rule 4 of jobs). Every write of a round (events, marks, entries, prunes) is the executor's, fenced.
4. The target's asset ids are cached per (target, uri) for the life of the job; the protocol asks for a fresh
   resolve after a 404 and before any look-up. A look-up whose listing stopped (rule 1a) without the marker is
   transient, never "not found": the unread event may be the delivered copy, and posting again would duplicate it.
5. Retention (with ``COORDINATOR_RETENTION``): an event older than the period and delivered to every target its
   routes name is deleted with its delivery entries, in one transaction that checks none of them changed and that
   this watcher still leads; the newest event of each (source, asset) stays, and so does every event the audit
   may still list (``AssetIndex.prunable``, as ``core/assets.prunable``: pruned and listed again, it would be
   recorded and delivered twice). The transaction compares the mod revisions the index holds (a delete that fails
   on one reads those keys afresh, rule 0); an event recorded in a round is pruned at the earliest in the next.
6. Delivery rules 8 and 9 (``core/delivery.py``), the leader-lease race: every round computes its term (the fence's
   revision; ``look_after`` = the term's start + :attr:`AssetJob.call_timeout_s` + :data:`TERM_MARGIN_S`) and writes
   only in it (``Executor.pin``: a write after the term ended is refused, even when this watcher leads again, so no
   delivery judged under one term acts in another), so an entry of an earlier term is looked up only once any POST
   sent under that term's lease has answered or timed out;
   and immediately before each POST the job asks ``leading()`` (the election's local lease deadline) and raises
   LeadershipLost when it says no. The POST itself is bounded by ``call_timeout_s`` as a whole (both exchanges of
   the client's refresh-and-retry included), so "the longest an Airflow call can take" is a bound, not a hope.
   A deferred delivery asks for a round at its ``look_after`` (the round's ``requeue_after``), and is logged once
   per term.
7. Crash points for tests (``watcher/faults.py``): ``asset-after-intent`` (the pending entry is committed, nothing
   was posted) and ``asset-after-post`` (the target created the event; the ledger still says pending).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.airflow.assets import AssetEventInfo, AssetEventListing, AssetInfo
from coordinator.airflow.client import SCAN_MAX, AirflowClient, ApiVersion
from coordinator.core import delivery
from coordinator.core.asset_index import AssetIndex, EventKey
from coordinator.core.assets import (
    MARKER,
    AssetEventFact,
    AssetKeys,
    AssetRoute,
    DeliveryStatus,
    DueDelivery,
    is_delivered_copy,
    targets_of,
)
from coordinator.core.effects import LedgerMoved, LedgerWritten
from coordinator.core.graph import Graph
from coordinator.errors import AirflowError, AirflowUnavailable, LeadershipLost
from coordinator.etcd import Reads
from coordinator.etcd.types import Fence
from coordinator.metrics import Metrics
from coordinator.watcher.executor import Executor, TermWrites
from coordinator.watcher.faults import crash_point
from coordinator.watcher.jobs import RequeueAfter

log = logging.getLogger(__name__)

#: Rule 1: a transaction's timestamp is taken before it commits, so an event may be listed after a later-stamped one
#: was already seen; a minute of overlap covers any commit, and a re-listed event is recorded once (create-only).
OVERLAP_S = 60.0
#: The look-up of delivery rule 3 scans the target asset's events from this long before the intent (clocks of the
#: watcher's and the target's hosts may differ by this much).
LOOK_MARGIN = timedelta(minutes=10)
#: Rule 6: added to the call timeout before a new term looks up an earlier term's entry. It covers what the timeout
#: does not: the old leader's event loop between its lease check and the start of the timed call (a busy loop, a GC
#: pause shorter than the lease margin) and the clock-rate drift between two hosts over a few seconds.
TERM_MARGIN_S = 2.0
#: Deliveries driven in one round at most (rule 2): a backlog drains over a few rounds, never one endless round.
MAX_PER_ROUND = 1000
#: Rule 1a: the first sooner round after a listing stopped at an unreadable event (the usual case, a consumer run
#: just created, clears within tens of milliseconds); each further stop doubles it, up to the job's interval.
STOPPED_RETRY_S = 0.25
#: Why a listing stops (rule 1a), for the log and ``why``.
STOPPED_REASON = (
    "Airflow answers 500 for the next event: one of its consumer runs has no start date yet (apache/airflow#71360, "
    "fixed by #71379); it is listed once that run starts, and later events wait for it"
)

Key = tuple[str, str, str, int]


@dataclass
class AssetJob:
    """The leader's asset round (rules 1-5)."""

    #: Reads only: every write (an event, a mark, a delivery entry, a prune), every call of a delivery and the
    #: delivery protocol's loop are the executor's (``watcher/executor.py``), fenced and mapped in one place.
    store: Reads
    executor: Executor
    keys: AssetKeys
    graph: Callable[[], Graph]
    #: The routed sources' Airflows, whose asset events rule 1 lists.
    clients: Mapping[str, AirflowClient]
    watcher_id: str
    metrics: Metrics
    interval_s: float
    #: Rule 6: the election's "this watcher leads and its lease cannot have expired yet", asked before each POST.
    leading: Callable[[], bool]
    #: Rule 6: the monotonic time the current term began (``Election.term_started``).
    term_started: Callable[[], float]
    #: Rule 6: the longest an Airflow call can take (the clients' timeout, ``COORDINATOR_AIRFLOW_TIMEOUT_S``); every
    #: watcher of a deployment must use the same value, since a new leader waits for the old one's calls by its own.
    call_timeout_s: float
    lookback_s: float = 0.0
    error_retry_s: float = 30.0
    #: Rule 5: delivered events older than this are pruned (None: kept).
    retention: timedelta | None = None
    name: str = "assets"
    #: Rule 1's mark when no event of a source was recorded yet (the watcher's start; the first round's time if
    #: not given).
    started_at: datetime | None = None
    cache: dict[tuple[str, str], delivery.TargetAsset] = field(default_factory=dict)
    #: Rule 1: events listed per call at most (a backlog drains over rounds of this many).
    list_limit: int = SCAN_MAX
    #: Rule 1: per source, where the next listing may start because this job already examined everything before it
    #: (the newest event it listed, less the overlap). Without it a listing full of events no route shares (or of
    #: delivered copies) would record nothing, the recorded mark would never move, and every round would list the
    #: same events again, never reaching the ones after them. In memory: a new leader starts from the recorded mark.
    _listed: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    #: Rule 6: this round's writes, pinned to the term it began in (``Executor.pin``).
    _writes: TermWrites = field(init=False, repr=False)
    #: Rules 1a and 6: this round's ``requeue_after`` (``watcher/jobs.py`` rule 1), the soonest round it asked for.
    _requeue_after: float | None = field(default=None, init=False, repr=False)
    #: Rule 1a: consecutive stopped listings per source instance.
    _stopped: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    #: Rule 0: the asset index the watcher keeps current from its watch (None: each round reads both prefixes into a
    #: fresh one, for a job nobody feeds).
    index: AssetIndex | None = None
    #: Deliveries whose deferral (rule 6) was logged, with the term it was logged in: one line per term, not per round.
    _deferred: dict[Key, int] = field(default_factory=dict, init=False, repr=False)

    async def run_once(self, now: datetime) -> RequeueAfter:
        """One round (rules 1-5); the seconds to the next one when it must come sooner than the interval."""
        self._requeue_after = None
        routes = self.graph().asset_routes
        if self.started_at is None:
            self.started_at = now
        if not routes:
            return None
        # Rule 6: the round's term, and every write of the round pinned to it (executor rule 1): a delivery judged
        # under this term never writes in a later one, even if this watcher lost the lead and won it back meanwhile.
        self._writes = self.executor.pin()  # raises LeadershipLost: no round without leading
        index = self.index if self.index is not None else await self._read_index()
        fresh: set[EventKey] = set()
        recorded = await self._record(routes, index, fresh, now)
        term = self.term(now, self._writes.fence)
        delivered = errors = 0
        for _ in range(MAX_PER_ROUND):
            progress = False
            for item in index.due(routes, now):
                outcome = await self._deliver(item, now, index, term)
                progress |= outcome is True
                delivered += outcome is True
                errors += outcome is False
            if not progress:
                break
        pruned = await self._prune(routes, index, fresh, now) if self.retention is not None else 0
        pending = index.pending(routes)
        self.metrics.asset_round(pending)
        if recorded or delivered or errors or pruned:
            log.info(
                "asset.round events=%d recorded=%d delivered=%d errors=%d pending=%d pruned=%d",
                len(index.events), recorded, delivered, errors, sum(pending.values()), pruned,
            )  # fmt: skip
        return self._requeue_after

    def _sooner(self, delay_s: float) -> None:
        """Rules 1a and 6: the next round in at most ``delay_s`` (the soonest ask of the round wins)."""
        if self._requeue_after is None or delay_s < self._requeue_after:
            self._requeue_after = delay_s

    def term(self, now: datetime, fence: Fence) -> delivery.Term:
        """Rule 6: the term of ``fence``; ``look_after`` on the wall clock of ``now``, measured on the monotonic one."""
        revision = fence.create_revision
        elapsed = time.monotonic() - self.term_started()
        wait = self.call_timeout_s + TERM_MARGIN_S - elapsed
        return delivery.Term(revision, now + timedelta(seconds=wait))

    # ------------------------------------------------------------ reading

    async def _read_index(self) -> AssetIndex:
        """Rule 0 for a job nobody feeds an index: both prefixes read into a fresh one (the whole history)."""
        index = AssetIndex(self.keys)
        for prefix in (self.keys.events, self.keys.deliveries):
            for kv in (await self.store.snapshot(prefix)).kvs:
                apply_logged(index, kv.key, kv.value, kv.mod_revision)
        return index

    async def _refresh(self, index: AssetIndex, keys: list[str]) -> None:
        """Rule 0: after a conflict, the keys involved as etcd holds them now (point reads at one revision)."""
        revision, found = await self.store.get_many(keys)
        for kv in found:
            apply_logged(index, kv.key, kv.value, kv.mod_revision)
        for key in set(keys) - {kv.key for kv in found}:
            index.apply(key, None, revision)  # absent at ``revision``: any older put of it is stale

    # ------------------------------------------------------------ rule 5: retention

    async def _prune(
        self, routes: tuple[AssetRoute, ...], index: AssetIndex, fresh: set[EventKey], now: datetime
    ) -> int:
        assert self.retention is not None
        cutoff = now - self.retention
        pruned = 0
        overlap = timedelta(seconds=OVERLAP_S)
        for event, deliveries in index.prunable(routes, cutoff, overlap):
            fact = event.fact
            rev = index.event_rev(event.source, fact.uri, fact.event_id)
            if (event.source, fact.uri, fact.event_id) in fresh or rev is None:
                continue
            items = [(self.keys.event_key(event.source, fact.uri, fact.event_id), rev)]
            items += [(self.keys.delivery_key(t, event.source, fact.uri, fact.event_id), rev) for t, rev in deliveries]
            result = await self._writes.delete_unchanged(items)
            if result.succeeded:
                pruned += 1
                for key, _ in items:  # rule 0: write-through, so no later round sees the event or its entries again
                    index.apply(key, None, result.revision)
            else:
                await self._refresh(index, [key for key, _ in items])
        return pruned

    # ------------------------------------------------------------ rule 1: facts from each source

    async def _record(
        self, routes: tuple[AssetRoute, ...], index: AssetIndex, fresh: set[EventKey], now: datetime
    ) -> int:
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
                if index.has_event(source, item.uri, item.event_id):
                    continue
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
                key, value = self.keys.event_key(source, item.uri, item.event_id), fact.model_dump_json().encode()
                result = await self._writes.cas(key, value, 0)
                # Rule 0: write-through (ours, or the one another recorder wrote first: create-only).
                if result.succeeded:
                    index.apply(key, value, result.revision)
                    fresh.add((source, item.uri, item.event_id))
                elif result.current is not None:
                    apply_logged(index, key, result.current.value, result.current.mod_revision)
                if result.succeeded:
                    recorded += 1
                    log.info("asset.recorded instance=%s uri=%s event_id=%d partition_key=%s",
                             source, item.uri, item.event_id, item.partition_key or "-")  # fmt: skip
        return recorded

    def _note_stopped(self, source: str, listing: AssetEventListing) -> None:
        """Rule 1a: a sooner round while ``source``'s listing stops at an unreadable event; say so once per streak."""
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
        """Rule 1 while no event of ``source`` is recorded: the mark the first round of any watcher stored (so a
        watcher restarted before the first event still lists what happened while it was down), else this job's
        start less the lookback, stored now (create-only: the first writer's mark wins)."""
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

    # ------------------------------------------------------------ rule 2: one delivery through the protocol

    async def _deliver(self, item: DueDelivery, now: datetime, index: AssetIndex, term: delivery.Term) -> bool | None:
        """Drive one due delivery; True: confirmed (or skipped, rule 10), False: an error was recorded, None: nothing
        happened."""
        fact = item.event.fact
        key: Key = (item.target, item.event.source, fact.uri, fact.event_id)
        etcd_key = self.keys.delivery_key(*key)
        state, instruction = delivery.start(item, now, self.watcher_id, self.error_retry_s, term)
        if isinstance(instruction, delivery.Done) and instruction.deferred_until is not None:
            # A round when the wait ends, not up to an interval later (the queue keeps the earliest delay of a key).
            self._sooner(max(0.0, (instruction.deferred_until - now).total_seconds()))
            if self._deferred.get(key) != term.revision:
                self._deferred[key] = term.revision
                log.info(
                    "asset.delivery_deferred source=%s target=%s uri=%s event_id=%d look_after=%s written_by=%s "
                    "reason=entry_of_an_earlier_term",
                    item.event.source, item.target, fact.uri, fact.event_id,
                    instruction.deferred_until.isoformat(), state.record.watcher or "-",
                )  # fmt: skip
            return None

        async def perform(state: delivery.DeliveryState, ins: delivery.Instruction) -> delivery.Event:
            return await self._perform(item.target, etcd_key, ins, index)

        state, instruction = await self.executor.drive(
            state, instruction, step=delivery.step, perform=perform,
            over=lambda ins: isinstance(ins, delivery.Done), at=now,
        )  # fmt: skip
        assert isinstance(instruction, delivery.Done)
        if instruction.confirmed:
            self.metrics.asset_events_delivered.labels(item.event.source, item.target).inc()
            log.info(
                "asset.delivered source=%s target=%s uri=%s event_id=%d target_event_id=%s partition_key=%s%s",
                item.event.source, item.target, fact.uri, fact.event_id, state.record.target_event_id,
                fact.partition_key or "-", " partition_dropped=true" if state.record.partition_dropped else "",
            )  # fmt: skip
            return True
        if instruction.skipped:
            self.metrics.asset_events_skipped.labels(item.event.source, item.target).inc()
            by, reason = (state.record.skip.by, state.record.skip.reason) if state.record.skip else ("-", "")
            log.warning("asset.skipped source=%s target=%s uri=%s event_id=%d by=%s reason=%r",
                        item.event.source, item.target, fact.uri, fact.event_id, by, reason)  # fmt: skip
            return True  # the stream's next event is due in this round, as after a delivery
        if instruction.error is not None and state.record.status is DeliveryStatus.ERROR:
            self.metrics.asset_delivery_failures.labels(item.target).inc()
            log.warning("asset.delivery_error source=%s target=%s uri=%s event_id=%d error=%s",
                        item.event.source, item.target, fact.uri, fact.event_id, instruction.error)  # fmt: skip
            return False
        return None

    async def _perform(
        self, target: str, etcd_key: str, ins: delivery.Instruction, index: AssetIndex
    ) -> delivery.Event:
        """One instruction through the executor; a failed Airflow call is raised for it to map (executor rule 3)."""
        if isinstance(ins, delivery.WriteLedger):
            value = ins.record.model_dump_json().encode()
            result = await self._writes.cas(etcd_key, value, ins.expected_rev)
            if result.succeeded:
                index.apply(etcd_key, value, result.revision)  # rule 0: write-through
                if ins.record.status is DeliveryStatus.PENDING:
                    crash_point("asset-after-intent")
                return LedgerWritten(result.revision)
            # Rule 0: the index held this entry older than etcd (or not at all: another leader's write the watch has
            # not brought yet). Nothing was written or called; the entry as it is now goes into the index, so the
            # next attempt starts from it (delivery rule 1: compared with the revision it saw).
            if result.current is not None:
                apply_logged(index, etcd_key, result.current.value, result.current.mod_revision)
            else:
                index.apply(etcd_key, None, result.revision)
            return LedgerMoved()
        client = self.executor.client(target)
        if isinstance(ins, delivery.Resolve):
            return delivery.Resolved(await self._resolve(client, target, ins))
        if isinstance(ins, delivery.Look):
            return delivery.Looked(await self._look(client, ins))
        if isinstance(ins, delivery.Post):
            posted = await self._post(client, target, ins)
            crash_point("asset-after-post")
            return posted
        raise AssertionError(f"unexpected instruction {ins!r}")  # pragma: no cover

    async def _post(self, client: AirflowClient, target: str, ins: delivery.Post) -> delivery.Event:
        """Rule 6: no POST from a leader whose lease is in doubt; the whole call bounded by ``call_timeout_s`` and
        never repeated in place (executor rule 4: a lost answer is ``Transient``, and the retry looks first)."""
        if not self.leading():
            log.warning("asset.post_withheld target=%s uri=%s marker=%s reason=lease_in_doubt",
                        target, ins.asset.uri, ins.extra.get(MARKER))  # fmt: skip
            raise LeadershipLost(f"{self.watcher_id}: lease in doubt before posting to {target}: nothing sent")
        info = AssetInfo(ins.asset.asset_id, ins.asset.uri)
        posted = await self.executor.call(
            lambda: client.post_asset_event(info, ins.extra, ins.partition_key),
            retry=False, within_s=self.call_timeout_s, what=f"{target}: POST asset event",
        )  # fmt: skip
        return delivery.Posted(posted.event_id)

    async def _resolve(self, client: AirflowClient, target: str, ins: delivery.Resolve) -> delivery.TargetAsset | None:
        cached = self.cache.get((target, ins.uri))
        if cached is not None and not ins.fresh:
            return cached
        found = await client.find_asset(ins.uri, ins.name)
        if found is None:
            self.cache.pop((target, ins.uri), None)
            return None
        v1 = await client.api_version() is ApiVersion.V1
        asset = delivery.TargetAsset(found.asset_id, found.uri, v1=v1)
        self.cache[(target, ins.uri)] = asset
        return asset

    async def _look(self, client: AirflowClient, ins: delivery.Look) -> int | None:
        """Delivery rule 3: the target's event carrying this delivery's marker, among ALL the asset's events since
        the intent (less the clock margin), oldest first, listing after listing: an asset busy since a long-failing
        intent may hold more than one listing's worth, and a marker missed would be posted twice."""
        since = ins.requested_at - LOOK_MARGIN
        while True:
            listing = await client.asset_events(since, asset_id=ins.asset.asset_id, limit=self.list_limit)
            for event in listing.events:
                if event.extra.get(MARKER) == ins.marker:
                    return event.event_id
            if listing.stopped:  # rule 4: the unread event may be our copy; posting now could make a second one
                raise AirflowUnavailable(
                    f"{client.name}: the look-up of {ins.marker} stopped early: {STOPPED_REASON}", 500
                )
            newest = max((e.timestamp for e in listing.events), default=since)
            if newest > since:
                since = newest  # at or after: the events stamped ``newest`` are read again, none skipped
            elif len(listing.events) < self.list_limit:
                return None  # read to the end: not there
            else:  # one instant holds more events than a listing: no way past it, and "not there" is unproven
                raise AirflowError(f"{client.name}: the look-up of {ins.marker} cannot page past {newest.isoformat()}")


def _next_since(since: datetime, listed: list[AssetEventInfo], full: bool) -> datetime:
    """Rule 1: where the next listing of a source may start after this one examined ``listed`` (oldest first, from
    ``since``): the newest listed less the overlap. A full listing whose events all fall within one overlap (a
    listing's worth of events in a minute) would start again where it started: it moves to the newest listed
    itself (at or after: its equal timestamps are listed again), so the rounds still advance."""
    newest = max(e.timestamp for e in listed)
    after = newest - timedelta(seconds=OVERLAP_S)
    return newest if full and after <= since else max(since, after)


def apply_logged(index: AssetIndex, key: str, value: bytes | None, mod_rev: int) -> None:
    """``index.apply``, saying so when the key or its value does not parse (the index leaves it out)."""
    problem = index.apply(key, value, mod_rev)
    if problem is not None:
        log.warning("asset.%s key=%s", problem.value, key)
