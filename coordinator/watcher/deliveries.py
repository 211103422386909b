"""The asset streams' reconciler: each (target, source, asset) stream a key of its controller, its due events
delivered once each, in order, through the delivery protocol (semantics `asset-exactly-once`, ``core/delivery.py``)
and the one executor (``watcher/executor.py``), whose driver writes the ledger and records the errors.

The leader's asset round (``watcher/assets.py``) records what each source Airflow listed; the informer hands this
module every stream whose event or delivery entry changed (``AssetIndex.STREAMS``), and the round submits every stream
with an event due as a safety net (a new leader's first round, a key a standby dropped); this module delivers them.
The stream is the protocol's unit of order (semantics `asset-order`: an event is due only once every older one of its
stream is settled), so it is the key: one attempt per stream at a time (the queue's processing set), several streams
at once, and a slow or unreachable target holds only its own streams.

Rules:
- **Keys.** This concern's interest in the informer's changes adds each changed stream to the streams' controller
  (``setup``); :meth:`AssetDeliveries.submit` adds one unless its key waits out a delay (a stream added
  while its attempt runs is marked dirty and reconciled again when it ends: level-triggered);
  :meth:`AssetDeliveries.reconcile` is one attempt. Only the leader attempts (the controller ``needs_leader``): a
  key handed out on a standby is dropped, since a new leader's first asset round submits every stream with a due
  event.
- **Own writes come back first.** The asset index is the informer's alone: an attempt writes nothing into it. An
  attempt starts only once every write this leader made under the stream's entries is in the index
  (``Expectations.pending_under``, ``informer/expectations.py``); until then the key waits
  (:data:`OWN_WRITE_WAIT_S`, and the informer's change of that entry brings it back sooner), so a stale entry of its
  own is never acted on twice. Within one attempt what it settled is carried in a local set
  (``AssetIndex.due_stream``'s ``settled``), never in the index.
- **One attempt.** An attempt pins its term first (``Executor.pin``: every write of the attempt is fenced by the term
  it began in, and none lands in a later one) and computes that term's ``look_after`` (**Term wait**). It then
  delivers the stream's due head (``AssetIndex.due_stream``) and, while each is confirmed or skipped, the next, at
  most :data:`MAX_PER_ATTEMPT`: then the key goes to the back of the queue, so one stream's backlog never holds the
  others' turn.
- **Ends.** The attempt's last delivery ends it, and the executor's **Ends** say what that means for the key, as for
  a trigger: drained, confirmed, skipped or moved -> done (a moved entry was written by someone else: the watch
  brings it, and with it the stream); an error recorded -> again at the ``retry_at`` it recorded; a head that waits
  out the ``retry_at`` recorded in etcd (which holds across a failover) -> again at that time (time is a requeue);
  deferred (**Term wait**) -> again at its ``look_after``; etcd trouble or a bug -> again after the
  key's backoff, capped at ``backoff_max_s``; a lost leadership -> dropped.
- **Airflow errors.** Airflow errors are the protocol's events, mapped by the executor as for a trigger
  (``watcher/executor.py``'s **Error vocabulary**: unavailable -> Transient, 404 -> NotFound, which the protocol
  takes as a stale asset id on a POST and as a refusal elsewhere, any other refusal -> Refused); every write is the
  driver's, fenced by the attempt's pinned term (**One attempt**), and comes back through the watch.
- **Look-ups.** The target's asset ids are cached per (target, uri) for the life of the reconciler; the protocol asks
  for a fresh resolve after a 404 and before any look-up. A look-up whose listing stopped
  (``AssetEventListing.stopped``, apache/airflow#71360) without the marker is transient, never "not found": the
  unread event may be the delivered copy, and posting again would duplicate it.
- **Term wait.** Semantics `delivery-term-wait` and `delivery-lease-check`, the leader-lease race: ``look_after`` =
  the term's start + :attr:`call_timeout_s` + :data:`TERM_MARGIN_S`, so an entry of an earlier term is looked up only
  once any POST sent under that term's lease has answered or timed out; immediately before each POST the attempt
  asks ``leading()`` (the election's local lease deadline) and raises LeadershipLost when it says no. The POST itself
  is bounded by ``call_timeout_s`` as a whole (both exchanges of the client's refresh-and-retry included), so "the
  longest an Airflow call can take" is a bound, not a hope. A deferred delivery is logged once per term.
- **Concurrency.** The controller has ``ExecutorPolicy.max_concurrent_streams`` workers, and each attempt is the
  executor's task in its own pool (``Pool.STREAMS``), apart from the triggers' pool.
- **Crash points** for tests (``watcher/faults.py``): ``asset-after-intent`` (the pending entry is committed, nothing
  was posted) and ``asset-after-post`` (the target created the event; the ledger still says pending).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.airflow.assets import AssetInfo
from coordinator.airflow.client import SCAN_MAX, AirflowClient, ApiVersion
from coordinator.core import delivery
from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import MARKER, AssetKeys, AssetRoute, DeliveryRecord, DeliveryStatus, DueDelivery
from coordinator.core.effects import End, Ending, WriteLedger
from coordinator.core.graph import Graph
from coordinator.errors import AirflowError, AirflowUnavailable, CoordinatorError, LeadershipLost
from coordinator.etcd.types import Fence
from coordinator.informer import Changes
from coordinator.informer.asset_index import ASSET_INDEX
from coordinator.manager import DONE, Controller, Handle, Manager, Result, Watch, wall_clock
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor, Ledger, Pool, TermWrites, result_of
from coordinator.watcher.faults import crash_point
from coordinator.watcher.keys import AssetStream

log = logging.getLogger(__name__)

#: The look-up of semantics `delivery-look-first` scans the target asset's events from this long before the intent
#: (clocks of the watcher's and the target's hosts may differ by this much).
LOOK_MARGIN = timedelta(minutes=10)
#: **Term wait**: added to the call timeout before a new term looks up an earlier term's entry. It covers what the
#: timeout does not: the old leader's event loop between its lease check and the start of the timed call (a busy loop, a
#: GC pause shorter than the lease margin) and the clock-rate drift between two hosts over a few seconds.
TERM_MARGIN_S = 2.0
#: **One attempt**: deliveries of one stream in one attempt at most; a longer backlog drains over several turns of the
#: queue.
MAX_PER_ATTEMPT = 100
#: **Own writes come back first**: how long a stream whose own write the index does not show yet waits before it is
#: looked at again, at the latest. The informer's change of the entry hands the key back as soon as the watch brings
#: it (milliseconds); this only bounds the wait should that change not name the stream (a relist that no longer holds
#: the key).
OWN_WRITE_WAIT_S = 1.0
#: Why a look-up stops early (**Look-ups**), for the log and ``why``.
STOPPED_REASON = (
    "Airflow answers 500 for the next event: one of its consumer runs has no start date yet (apache/airflow#71360, "
    "fixed by #71379); it is listed once that run starts, and later events wait for it"
)

Key = tuple[str, str, str, int]


def stream_of(due: DueDelivery) -> AssetStream:
    """The stream key of a due delivery."""
    return AssetStream(due.target, due.event.source, due.event.fact.uri)


@dataclass
class Delivered:
    """What attempts did: deliveries confirmed (or skipped), errors recorded, and how they ended (**Ends**)."""

    delivered: int = 0
    errors: int = 0
    #: The stream still has an event due after ``MAX_PER_ATTEMPT`` (**One attempt**).
    more: bool = False
    #: When the stream's head waits out a recorded retry time: that time (**Ends**).
    waits_until: datetime | None = None
    #: How the attempt's last delivery ended (**Ends**; None: the stream had nothing due).
    end: End | None = None


@dataclass
class AssetDeliveries:
    """The asset streams' reconciler (the module's rules)."""

    executor: Executor
    keys: AssetKeys
    graph: Callable[[], Graph]
    watcher_id: str
    metrics: Metrics
    #: **Term wait**: the election's "this watcher leads and its lease cannot have expired yet", asked before each POST.
    leading: Callable[[], bool]
    #: **Term wait**: the monotonic time the current term began (``Election.term_started``).
    term_started: Callable[[], float]
    #: **Term wait**: the longest an Airflow call can take (the clients' timeout, ``COORDINATOR_AIRFLOW_TIMEOUT_S``);
    #: every watcher of a deployment must use the same value, since a new leader waits for the old one's calls by its
    #: own.
    call_timeout_s: float
    #: The asset index the informer keeps current; read only (**Own writes come back first**).
    index: AssetIndex
    #: A refused delivery is tried again this much later (recorded in its ledger entry: ``retry_at``).
    error_retry_s: float = 30.0
    #: **Ends**: the per-key backoff's cap (the asset round's interval).
    backoff_max_s: float = 2.0
    #: **Look-ups**: events listed per call at most in a look-up.
    list_limit: int = SCAN_MAX
    now: Callable[[], datetime] = field(default=wall_clock)
    cache: dict[tuple[str, str], delivery.TargetAsset] = field(default_factory=dict)
    #: Deliveries whose deferral (**Term wait**) was logged, with the term it was logged in: one line per term.
    _deferred: dict[Key, int] = field(default_factory=dict, init=False, repr=False)
    #: **Keys**: the streams' controller (registered by the watcher).
    controller: Controller[AssetStream] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.controller = Controller(
            "streams", self, workers=self.executor.policy.max_concurrent_streams, needs_leader=True,
            leading=self.leading, backoff_max_s=self.backoff_max_s,
        )  # fmt: skip

    # ------------------------------------------------------------ keys

    def submit_due(self, routes: tuple[AssetRoute, ...], index: AssetIndex, now: datetime) -> int:
        """**Keys**: submit every stream whose head is due at ``now``; how many were queued."""
        return sum(self.submit(stream_of(due)) for due in index.due(routes, now))

    def submit(self, stream: AssetStream) -> bool:
        """Queue ``stream`` unless its attempt runs (it is reconciled again when that ends) or its key waits for a
        delay (**Ends**); whether it was queued now."""
        queue = self.controller.queue
        if queue.waiting(stream):
            return False
        running = queue.processing(stream)
        self.controller.add(stream)
        return not running

    async def reconcile(self, stream: AssetStream, now: datetime) -> Result:
        """One attempt of a stream key (**One attempt**, **Ends**), as the executor's task in the streams' pool."""
        name = f"deliver {stream.target} {stream.source} {stream.uri}"
        return await self.executor.run(lambda: self._run(stream), name=name, pool=Pool.STREAMS)

    async def _run(self, stream: AssetStream) -> Result:
        """One attempt, and what its end means for the key (**One attempt**, **Ends**)."""
        index = self.index
        if self.executor.expectations.pending_under(index.stream_prefix(stream)):
            return Result(requeue_after=OWN_WRITE_WAIT_S)  # **Own writes come back first**
        end: End | Exception | None = None
        try:
            writes = self.executor.pin()  # raises LeadershipLost: no attempt without leading
            now = self.now()
            done = await self.attempt(stream, index, now, writes, self.term(now, writes.fence))
            if done.more:
                return Result(requeue_after=0.0)  # **One attempt**: the back of the queue
            end = done.end
            if end is None and done.waits_until is not None:  # **Ends**: time is a requeue
                return Result(requeue_after=max(0.0, (done.waits_until - now).total_seconds()))
        except LeadershipLost as exc:  # the executor already told the campaign
            end = exc
            log.warning("asset.stream_fenced target=%s source=%s uri=%s error=%s", *stream, exc)
        except CoordinatorError as exc:  # etcd trouble: nothing could be recorded where it failed
            end = exc
            log.warning("asset.store_error target=%s source=%s uri=%s error=%s", *stream, exc)
        except Exception as exc:  # a bug: the service survives it, and the stream is retried slowly
            end = exc
            log.exception("asset.bug target=%s source=%s uri=%s error=%r", *stream, exc)
        return DONE if end is None else result_of(end, backoff_max_s=self.backoff_max_s)

    # ------------------------------------------------------------ one attempt

    def term(self, now: datetime, fence: Fence) -> delivery.Term:
        """**Term wait**: the term of ``fence``; ``look_after`` on the wall clock of ``now``, measured on the monotonic
        one."""
        revision = fence.create_revision
        elapsed = time.monotonic() - self.term_started()
        wait = self.call_timeout_s + TERM_MARGIN_S - elapsed
        return delivery.Term(revision, now + timedelta(seconds=wait))

    async def attempt(
        self,
        stream: AssetStream,
        index: AssetIndex,
        now: datetime,
        writes: TermWrites,
        term: delivery.Term,
    ) -> Delivered:
        """**One attempt**: the stream's due events in order, while each is confirmed or skipped, at most
        MAX_PER_ATTEMPT. ``settled``: the event ids this attempt confirmed or skipped, which the index does not show yet
        (**Own writes come back first**)."""
        routes = self.graph().asset_routes
        done = Delivered()
        settled: set[int] = set()
        for _ in range(MAX_PER_ATTEMPT):
            due = index.due_stream(stream, routes, now, settled)
            if due is None:
                if done.end is None:  # nothing was due: say when the head's retry time comes, if it waits for one
                    done.waits_until = index.waits_until(stream, routes, settled)
                return done
            outcome = await self._deliver(due, now, term, writes, done)
            if outcome is not True:
                return done
            settled.add(due.event.fact.event_id)
        done.more = index.due_stream(stream, routes, now, settled) is not None
        return done

    async def _deliver(
        self,
        item: DueDelivery,
        now: datetime,
        term: delivery.Term,
        writes: TermWrites,
        done: Delivered,
    ) -> bool | None:
        """Drive one due delivery; True: confirmed (or skipped, semantics `delivery-skip`), False: an error was
        recorded, None: it was deferred or its entry moved (``done`` says which)."""
        fact = item.event.fact
        key: Key = (item.target, item.event.source, fact.uri, fact.event_id)
        etcd_key = self.keys.delivery_key(*key)
        state, instruction = delivery.start(item, now, self.watcher_id, self.error_retry_s, term)
        if isinstance(instruction, End):  # before any write: deferred (**Term wait**), or nothing to do
            done.end = instruction
            if instruction.how is Ending.DEFERRED and self._deferred.get(key) != term.revision:
                self._deferred[key] = term.revision
                log.info(
                    "asset.delivery_deferred source=%s target=%s uri=%s event_id=%d look_after=%s written_by=%s "
                    "reason=entry_of_an_earlier_term",
                    item.event.source, item.target, fact.uri, fact.event_id,
                    term.look_after.isoformat(), state.record.watcher or "-",
                )  # fmt: skip
            return None

        async def perform(state: delivery.DeliveryState, ins: delivery.Instruction) -> delivery.Event:
            assert not isinstance(ins, (WriteLedger, End))  # the driver's own (the executor's **One driver**)
            return await self._perform(item.target, ins)

        if item.record is not None and item.record.skip is not None:
            log.info("asset.skip_requested source=%s target=%s uri=%s event_id=%d by=%s", item.event.source,
                     item.target, fact.uri, fact.event_id, item.record.skip.by)  # fmt: skip
        first: delivery.Instruction = instruction  # the driver's type is the protocol's whole vocabulary
        ledger = self._ledger(etcd_key, writes)
        state, end = await self.executor.drive(state, first, step=delivery.step, perform=perform, ledger=ledger, at=now)
        done.end = end
        if end.how is Ending.CONFIRMED:
            done.delivered += 1
            self.metrics.asset_events_delivered.labels(item.event.source, item.target).inc()
            log.info(
                "asset.delivered source=%s target=%s uri=%s event_id=%d target_event_id=%s partition_key=%s%s",
                item.event.source, item.target, fact.uri, fact.event_id, state.record.target_event_id,
                fact.partition_key or "-", " partition_dropped=true" if state.record.partition_dropped else "",
            )  # fmt: skip
            return True
        if end.how is Ending.SKIPPED:
            done.delivered += 1
            self.metrics.asset_events_skipped.labels(item.event.source, item.target).inc()
            by, reason = (state.record.skip.by, state.record.skip.reason) if state.record.skip else ("-", "")
            log.warning("asset.skipped source=%s target=%s uri=%s event_id=%d by=%s reason=%r",
                        item.event.source, item.target, fact.uri, fact.event_id, by, reason)  # fmt: skip
            return True  # the stream's next event is due now, as after a delivery
        if end.how is Ending.FAILED:
            done.errors += 1
            self.metrics.asset_delivery_failures.labels(item.target).inc()
            log.warning("asset.delivery_error source=%s target=%s uri=%s event_id=%d error=%s",
                        item.event.source, item.target, fact.uri, fact.event_id, end.error)  # fmt: skip
            return False
        return None  # moved (**Ends**)

    def _ledger(self, etcd_key: str, writes: TermWrites) -> Ledger[DeliveryRecord]:
        """The delivery's ledger entry as the driver writes it (the executor's **One driver**): fenced by the attempt's
        pinned term. A compare that fails (the index held the entry older than etcd, or not at all: another leader's
        write the watch has not brought yet) wrote and called nothing; the watch brings the entry as it is, and with it
        the stream (semantics `delivery-intent-first`: compared with the revision it saw)."""

        def written(ins: WriteLedger[DeliveryRecord], value: bytes, revision: int) -> None:
            if ins.record.status is DeliveryStatus.PENDING:
                crash_point("asset-after-intent")

        return Ledger(etcd_key, writes, _encode, written=written)

    async def _perform(self, target: str, ins: delivery.Call) -> delivery.Event:
        """One Airflow call through the executor; a failed one is raised for it to map (**Airflow errors**)."""
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
        """**Term wait**: no POST from a leader whose lease is in doubt; the whole call bounded by ``call_timeout_s``
        and never repeated in place (the executor's **Retries**: a lost answer is ``Transient``, and the retry looks
        first)."""
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
        """Semantics `delivery-look-first`: the target's event carrying this delivery's marker, among ALL the asset's
        events since the intent (less the clock margin), oldest first, listing after listing: an asset busy since a
        long-failing intent may hold more than one listing's worth, and a marker missed would be posted twice."""
        since = ins.requested_at - LOOK_MARGIN
        while True:
            listing = await client.asset_events(since, asset_id=ins.asset.asset_id, limit=self.list_limit)
            for event in listing.events:
                if event.extra.get(MARKER) == ins.marker:
                    return event.event_id
            if listing.stopped:  # **Look-ups**: the unread event may be our copy; posting now could make a second one
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


def _encode(record: DeliveryRecord) -> bytes:
    return record.model_dump_json().encode()


#: What the asset streams' concern provides (``manager/manager.py``'s **Handles**): the asset round submits every due
#: stream to it.
DELIVERIES: Handle[AssetDeliveries] = Handle("deliveries")


def setup(manager: Manager, deps: Deps) -> AssetDeliveries:
    """The asset streams' concern (semantics `asset-exactly-once`): each stream with a due event a key of its
    controller; registered only while the asset round runs (nothing to deliver while no route is declared), built
    always (the asset round's, and a one-shot pass's, deliveries)."""
    settings = deps.settings
    deliveries = AssetDeliveries(
        executor=deps.executor, keys=AssetKeys(settings.keys.prefix), graph=deps.graph,
        watcher_id=deps.watcher_id, metrics=deps.metrics, leading=deps.leading,
        term_started=lambda: deps.election.term_started, call_timeout_s=settings.airflow_timeout_s,
        error_retry_s=settings.error_retry_s, backoff_max_s=settings.asset_interval_s or 2.0,
        index=deps.index(ASSET_INDEX), now=deps.clock,
    )  # fmt: skip

    def streams_changed(changes: Changes) -> list[AssetStream]:
        """Semantics `asset-exactly-once` and `asset-skip`: every stream whose recorded event or delivery entry the
        batch changed (a new event, an operator's skip request, this leader's own write come back) goes to its
        controller now, not at the next asset round. Only the leader delivers: a standby's controller drops them,
        since a new leader's first asset round submits every due stream."""
        return [AssetStream(*stream) for stream in sorted(changes.of(AssetIndex.STREAMS))]

    if settings.asset_interval_s > 0:
        manager.register(deliveries.controller, Watch(streams_changed))
    return manager.provide(DELIVERIES, deliveries)
