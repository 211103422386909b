"""The asset read model: every recorded asset event and delivery ledger entry, applied key by key, with the state of
each (target, source, asset) stream kept current. Pure and synchronous (no I/O, no clock, no logging).

The informer feeds it from the watcher's one list/watch of the prefix (``watcher/service.py``); the leader's asset
round (``watcher/assets.py``) and stream reconciler (``watcher/deliveries.py``) ask it what is due, pending and
prunable, and never write to it (their own writes come back through the watch). It answers exactly as the
whole-history functions of ``core/assets.py`` (:func:`~coordinator.core.assets.streams`,
:func:`~coordinator.core.assets.due_deliveries`, :func:`~coordinator.core.assets.prunable`) do over the same keys
(``tests/test_asset_index.py`` checks it on random sequences of puts and deletes), but a question costs the streams
that have work, not the history: an asset round with 100,000 delivered events costs what one with 100 does.

Rules:
- **Newer changes only.** :meth:`AssetIndex.apply` takes one put (value) or delete (None) at its mod revision; only the
  informer applies (``informer/informer.py``: nobody writes the model but it). A change no newer than what the index
  holds for that key (its value, or its deletion) is ignored, so the watch and a relist may arrive in any order and
  the newest write wins. A deletion is remembered (a tombstone) until the feed says it has passed that revision
  (:meth:`AssetIndex.passed`): a put older than a delete must never bring a pruned event back (it would be due again
  and posted twice).
- **Problems kept.** A key or value that does not parse is a problem: kept (so a relist hands it out again), answered to
  the caller (who logs it), and left out of every answer, as the whole-history functions leave it out. A key that is not
  the canonical spelling of what it parses to (``AssetKeys.event_key``), and an event whose value names another asset or
  id than its key, are problems too: every writer writes those keys, so any other spelling is not a fact.
- **Streams follow the routes.** Streams depend on the routes (``dependencies.json``): per stream the events routed
  there, how many are delivered or skipped, and the ids not settled (a heap: the head is the smallest). Every question
  passes the routes in force; when they differ from the last ones the per-stream state is rebuilt once from the stored
  keys (a change of ``dependencies.json``'s routes costs one walk of the history, not every round).
- **Retention candidates** (``core/assets.prunable``): per source, a heap by timestamp of the events settled in every
  target their routes name. A question pops those older than both the cutoff and the source's mark less the overlap (the
  only ones that can qualify) and puts back the ones still stored: an event young enough to stay is never looked at.
- **The page's counts** (``page/assets.py``'s **Pure, from the ledger** and **Counts per target**: per asset and target
  instance of its ledger, the delivered, the waiting and the oldest waiting event, the newest error) are kept the same
  way once a reader first asks (:meth:`AssetIndex.shared`): a view costs the assets and their targets, not the history.
  The watcher never asks, and holds none of it.
- **Bytes and a few fields.** Each key is stored as its value's bytes and the few fields the rules above read
  (:class:`StoredEvent`, :class:`StoredEntry`), not as the parsed record: a parsed record costs five times the memory
  (about 2 KB a key, 400 MB at 100,000 delivered events), in the watcher and in the page's process alike. Every value is
  still validated in full when applied (**Problems kept**); a record is parsed again only when an answer carries it (a
  due head, a retention candidate, a whole-history reader), and a due head's stays parsed while it is the head.
- **Keys name their streams.** :meth:`AssetIndex.streams_of` says which (target, source, asset) streams a key belongs
  to: a delivery entry its own stream, a recorded event one stream per target of the routes in force (the routes the
  last question passed: before any question, or for an event the index does not hold, none). :meth:`AssetIndex.moved`
  names them in a watch batch's changes (``STREAMS``) so the leader's stream reconciler is handed a stream whose event
  or entry changed (a new event, an operator's skip request, its own write come back) as the watch brings it, and
  names every event or entry key the watch put or deleted, good or bad (``KEYS``: the page derives its nodes again).
- **A reconciler's own progress.** A stream reconciler carries what it settled within one attempt itself
  (``settled``: :meth:`AssetIndex.due_stream`), never in the index: the index shows a write only once the watch brings
  it.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, NamedTuple

from coordinator.core.assets import (
    SETTLED,
    AssetKeys,
    AssetRoute,
    DeliveryRecord,
    DeliveryStatus,
    DueDelivery,
    Ledger,
    SourceEvent,
    StreamState,
    escape_asset,
    parse_delivery,
    parse_fact,
    targets_of,
)
from coordinator.core.kinds import Kind, Moves

#: (source, asset uri, event id): one recorded event.
EventKey = tuple[str, str, int]
#: (target, source, asset uri, event id): one delivery.
DeliveryKey = tuple[str, str, str, int]
#: (target, source, asset uri): one stream (semantics `asset-order`).
StreamKey = tuple[str, str, str]


class StoredEvent(NamedTuple):
    """**Bytes and a few fields**: a recorded event as stored: its mod revision, what the rules read, and its value."""

    rev: int
    timestamp: datetime
    name: str | None
    source_dag_id: str | None
    value: bytes


class StoredEntry(NamedTuple):
    """**Bytes and a few fields**: a delivery entry as stored: its mod revision, its status and last error, and its
    value."""

    rev: int
    status: DeliveryStatus
    last_error: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class DeliveredTo:
    """**The page's counts**: one target instance of a shared asset, as the page counts it (``page/assets.py`` rule
    2)."""

    target: str
    delivered: int
    pending: int
    #: The oldest recorded event not settled there, and its ledger entry (None: none yet).
    next_event: int | None
    next_record: DeliveryRecord | None
    #: The last error of the newest (by mod revision) entry that has one.
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SharedAsset:
    """**The page's counts**: one (source, asset) with an entry in the ledger, its targets and its producer DAGs."""

    source: str
    uri: str
    targets: tuple[DeliveredTo, ...]
    producers: tuple[str, ...]


@dataclass(slots=True)
class _Shared:
    """**The page's counts**: one (target, source, asset) of the ledger: its entries, which event ids are settled there,
    a heap of recorded ids that may wait, and a heap of its entries with an error by revision."""

    entries: int = 0
    done: int = 0
    settled: set[int] = field(default_factory=set)
    settled_recorded: int = 0
    heap: list[int] = field(default_factory=list)
    heaped: set[int] = field(default_factory=set)
    #: event id -> mod revision of its entry while that entry has an error; ``error_heap`` orders them (lazily).
    errors: dict[int, int] = field(default_factory=dict)
    error_heap: list[tuple[int, int]] = field(default_factory=list)

    def push(self, event_id: int) -> None:
        if event_id not in self.heaped:
            self.heaped.add(event_id)
            heapq.heappush(self.heap, event_id)


class Problem(StrEnum):
    """What :meth:`AssetIndex.apply` found wrong with a key (**Problems kept**); the caller logs it."""

    MALFORMED_EVENT = "malformed_event"
    MALFORMED_DELIVERY = "malformed_delivery"


@dataclass(slots=True)
class _Stream:
    """**Streams follow the routes**: one stream's counts and its unsettled event ids."""

    total: int = 0
    delivered: int = 0
    skipped: int = 0
    unsettled: set[int] = field(default_factory=set)
    #: Ids in ``heap`` (some no longer unsettled: dropped when they reach the top), so none is pushed twice.
    heaped: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)

    def head(self) -> int | None:
        while self.heap and self.heap[0] not in self.unsettled:
            self.heaped.discard(heapq.heappop(self.heap))
        return self.heap[0] if self.heap else None


@dataclass
class AssetIndex:
    """The recorded events and the delivery ledger under ``keys``, with per-stream state (**Newer changes only**,
    **Problems kept**, **Streams follow the routes** and **Retention candidates**)."""

    #: Its name in the informer's log lines (``asset.bad_value``).
    name: ClassVar[str] = "asset"
    #: **Keys name their streams**: the streams whose event or entry a watch changed, and every event or delivery
    #: key it put or deleted (a bad value too: it replaces what the key held).
    STREAMS: ClassVar[Kind[StreamKey]] = Kind("streams")
    KEYS: ClassVar[Kind[str]] = Kind("asset keys")

    keys: AssetKeys
    events: dict[EventKey, StoredEvent] = field(default_factory=dict)
    ledger: dict[DeliveryKey, StoredEntry] = field(default_factory=dict)
    #: **Problems kept**: key -> (problem, mod revision).
    problems: dict[str, tuple[Problem, int]] = field(default_factory=dict)
    #: **Bytes and a few fields**: parsed records of due heads (and of what an answer carried), dropped when their key
    #: changes.
    _facts: dict[EventKey, SourceEvent] = field(default_factory=dict, repr=False)
    _records: dict[DeliveryKey, DeliveryRecord] = field(default_factory=dict, repr=False)
    #: One copy of each asset URI, instance and DAG name (100,000 events name a few hundred).
    _strings: dict[str, str] = field(default_factory=dict, repr=False)
    #: **Newer changes only**: key -> the revision of its deletion, until the feed passed it.
    _tombstones: dict[str, int] = field(default_factory=dict, repr=False)
    # Route-independent summaries (**Retention candidates**): every event id per (source, uri) and the newest; every
    # timestamp per source and the newest (the source's mark).
    _ids: dict[tuple[str, str], set[int]] = field(default_factory=dict, repr=False)
    _newest: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _stamps: dict[str, Counter[datetime]] = field(default_factory=dict, repr=False)
    _marks: dict[str, datetime] = field(default_factory=dict, repr=False)
    # Route-dependent state (**Streams follow the routes**), valid for ``_routes`` (None: not built).
    _routes: tuple[AssetRoute, ...] | None = field(default=None, repr=False)
    _targets: dict[tuple[str, str, str | None], tuple[str, ...]] = field(default_factory=dict, repr=False)
    _streams: dict[StreamKey, _Stream] = field(default_factory=dict, repr=False)
    #: Streams with an unsettled event (some may have become settled since: dropped when asked).
    _active: set[StreamKey] = field(default_factory=set, repr=False)
    #: **Retention candidates**: events settled in every target, and per source a heap of (timestamp, uri, id) over
    #: them.
    _ripe: set[EventKey] = field(default_factory=set, repr=False)
    _ripe_heaps: dict[str, list[tuple[datetime, str, int]]] = field(default_factory=dict, repr=False)
    _ripe_heaped: set[tuple[str, datetime, str, int]] = field(default_factory=set, repr=False)
    # **The page's counts**, built at the first ``shared`` (None: not asked for): per (source, uri), per target, and the
    # producers.
    _page: dict[tuple[str, str], dict[str, _Shared]] | None = field(default=None, repr=False)
    _producers: dict[tuple[str, str], Counter[str]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ feeding (**Newer changes only** and
    # **Problems kept**)

    def reset(self) -> None:
        """Forget everything (a snapshot starts over)."""
        self.events.clear()
        self.ledger.clear()
        self._facts.clear()
        self._records.clear()
        self.problems.clear()
        self._tombstones.clear()
        self._ids.clear()
        self._newest.clear()
        self._stamps.clear()
        self._marks.clear()
        self._routes = None
        self._clear_derived()
        self._page = None
        self._producers.clear()

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The keys it holds: asset events and delivery entries."""
        return (self.keys.events, self.keys.deliveries)

    def owns(self, key: str) -> bool:
        """Whether ``key`` is an asset event or a delivery key (anything else is not this index's)."""
        return key.startswith((self.keys.events, self.keys.deliveries))

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> Problem | None:
        """**Newer changes only**: one put (``value``) or delete (None) at ``mod_rev``; the problem found in it, if any
        (**Problems kept**)."""
        if key.startswith(self.keys.events):
            return self._apply_event(key, value, mod_rev)
        if key.startswith(self.keys.deliveries):
            return self._apply_delivery(key, value, mod_rev)
        return None

    def passed(self, revision: int) -> None:
        """**Newer changes only**: the feed handed out everything up to ``revision``: no older change can arrive any
        more."""
        if self._tombstones:
            self._tombstones = {k: rev for k, rev in self._tombstones.items() if rev > revision}

    def known(self) -> dict[str, int]:
        """key -> mod revision of every key stored (problems: -1, so a relist hands them out again): what a relist
        diffs against (``etcd.watch.watch_prefix``); rebuilt only when asked (**Problems kept** keeps keys
        canonical)."""
        found = {key: -1 for key in self.problems}
        found.update((self.keys.event_key(*ek), stored.rev) for ek, stored in self.events.items())
        found.update((self.keys.delivery_key(*dk), stored.rev) for dk, stored in self.ledger.items())
        return found

    def _seen(self, key: str, rev: int) -> int:
        problem = self.problems.get(key)
        return max(rev, problem[1] if problem is not None else 0, self._tombstones.get(key, 0))

    def _apply_event(self, key: str, value: bytes | None, mod_rev: int) -> Problem | None:
        parsed = self.keys.parse_event_key(key)
        if parsed is not None:
            parsed = (self._str(parsed[0]), self._str(parsed[1]), parsed[2])
        stored = self.events.get(parsed) if parsed is not None else None
        if mod_rev <= self._seen(key, stored.rev if stored is not None else 0):
            return None
        self.problems.pop(key, None)
        if parsed is not None and stored is not None:
            self._remove_event(parsed)
        if value is None:
            self._tombstones[key] = mod_rev
            return None
        self._tombstones.pop(key, None)
        fact = parse_fact(value)
        if (
            parsed is None
            or fact is None
            or self.keys.event_key(*parsed) != key
            or (fact.uri, fact.event_id) != parsed[1:]
        ):
            self.problems[key] = (Problem.MALFORMED_EVENT, mod_rev)
            return Problem.MALFORMED_EVENT
        dag = self._str(fact.source_dag_id) if fact.source_dag_id is not None else None
        name = self._str(fact.name) if fact.name is not None else None
        self._add_event(parsed, StoredEvent(mod_rev, fact.timestamp, name, dag, value))
        return None

    def _apply_delivery(self, key: str, value: bytes | None, mod_rev: int) -> Problem | None:
        parsed = self.keys.parse_delivery_key(key)
        if parsed is not None:
            parsed = (self._str(parsed[0]), self._str(parsed[1]), self._str(parsed[2]), parsed[3])
        stored = self.ledger.get(parsed) if parsed is not None else None
        if mod_rev <= self._seen(key, stored.rev if stored is not None else 0):
            return None
        self.problems.pop(key, None)
        record = parse_delivery(value) if value is not None else None
        bad = value is not None and (parsed is None or record is None or self.keys.delivery_key(*parsed) != key)
        if parsed is not None and (stored is not None or (record is not None and not bad)):
            entry = (
                None
                if bad or record is None or value is None
                else StoredEntry(mod_rev, record.status, record.last_error, value)
            )
            self._set_entry(parsed, entry)
        if value is None:
            self._tombstones[key] = mod_rev
            return None
        self._tombstones.pop(key, None)
        if bad:
            self.problems[key] = (Problem.MALFORMED_DELIVERY, mod_rev)
            return Problem.MALFORMED_DELIVERY
        return None

    def streams_of(self, key: str) -> tuple[StreamKey, ...]:
        """**Keys name their streams**: the streams ``key`` belongs to (none for a key that is not an event or an entry,
        or does not parse)."""
        if key.startswith(self.keys.deliveries):
            dk = self.keys.parse_delivery_key(key)
            return (dk[:3],) if dk is not None else ()
        ek = self.keys.parse_event_key(key)
        stored = self.events.get(ek) if ek is not None and self._routes is not None else None
        if ek is None or stored is None:
            return ()
        return tuple((target, ek[0], ek[1]) for target in self._targets_of(ek, stored))

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """**Keys name their streams**: ``key``, just applied by a watch, in ``KEYS``; its streams in ``STREAMS`` unless
        its value was bad."""
        into.add(AssetIndex.KEYS, key)
        if problem is None:
            into.update(AssetIndex.STREAMS, self.streams_of(key))

    def stream_prefix(self, sk: StreamKey) -> str:
        """The prefix of every delivery entry of the stream ``sk`` (``Expectations.pending_under``)."""
        target, source, uri = sk
        return f"{self.keys.deliveries}{target}/{source}/{escape_asset(uri)}/"

    # ------------------------------------------------------------ what the job and the page ask

    def has_event(self, source: str, uri: str, event_id: int) -> bool:
        return (source, uri, event_id) in self.events

    def mark(self, source: str) -> datetime | None:
        """The newest recorded timestamp of ``source`` (None: none recorded)."""
        return self._marks.get(source)

    def event_rev(self, source: str, uri: str, event_id: int) -> int | None:
        stored = self.events.get((source, uri, event_id))
        return stored.rev if stored is not None else None

    def event(self, ek: EventKey, *, keep: bool = True) -> SourceEvent:
        """**Bytes and a few fields**: the recorded event ``ek`` (stored), parsed; ``keep``: until it or one of its
        entries changes."""
        found = self._facts.get(ek)
        if found is None:
            fact = parse_fact(self.events[ek].value)
            assert fact is not None  # validated when applied (**Problems kept**)
            found = SourceEvent(ek[0], fact)
            if keep:
                self._facts[ek] = found
        return found

    def record(self, dk: DeliveryKey) -> tuple[DeliveryRecord, int] | None:
        """**Bytes and a few fields**: the delivery entry ``dk`` with its mod revision, parsed (kept until its key
        changes)."""
        stored = self.ledger.get(dk)
        if stored is None:
            return None
        found = self._records.get(dk)
        if found is None:
            parsed = parse_delivery(stored.value)
            assert parsed is not None  # validated when applied (**Problems kept**)
            found = self._records[dk] = parsed
        return found, stored.rev

    def recorded(self) -> list[SourceEvent]:
        """Every recorded event, parsed (a whole-history reader's; not kept)."""
        return [self.event(ek, keep=False) for ek in self.events]

    def whole_ledger(self) -> Ledger:
        """Every delivery entry, parsed (a whole-history reader's, ``why asset``'s)."""
        return Ledger({dk: found for dk in self.ledger if (found := self.record(dk)) is not None})

    def streams(self, routes: Sequence[AssetRoute]) -> list[StreamState]:
        """``core/assets.streams`` over the stored keys: one per stream, sorted (costs the streams, not the events)."""
        self._sync(routes)
        return [self._state(sk, stream) for sk, stream in sorted(self._streams.items())]

    def pending(self, routes: Sequence[AssetRoute]) -> dict[str, int]:
        """Per target instance, the events not yet settled there (the gauge ``coordinator_asset_pending``)."""
        self._sync(routes)
        found: dict[str, int] = {}
        for (target, _, _), stream in self._streams.items():
            found[target] = found.get(target, 0) + stream.total - stream.delivered - stream.skipped
        return found

    def due(self, routes: Sequence[AssetRoute], now: datetime) -> list[DueDelivery]:
        """``core/assets.due_deliveries``: the head of every stream with work whose retry time (if any) has come."""
        self._sync(routes)
        return [head for sk in sorted(self._active) if (head := self._due_head(sk, now)) is not None]

    def due_stream(
        self, sk: StreamKey, routes: Sequence[AssetRoute], now: datetime, settled: Collection[int] = ()
    ) -> DueDelivery | None:
        """``due`` of one stream: its head when that is due now, else None (the asset streams' reconciler, one key
        per stream: ``watcher/deliveries.py``). ``settled``: event ids the caller settled itself and the index may
        not show yet (**A reconciler's own progress**): the head is the oldest unsettled event besides them."""
        self._sync(routes)
        return self._due_head(sk, now, settled) if sk in self._active else None

    def waits_until(
        self, sk: StreamKey, routes: Sequence[AssetRoute], settled: Collection[int] = ()
    ) -> datetime | None:
        """When the head of stream ``sk`` (besides ``settled``) waits out a retry time: that time (else None)."""
        self._sync(routes)
        first = self._first(sk, settled) if sk in self._active else None
        if first is None:
            return None
        record = self._head(sk, first).record
        if record is None or record.status is not DeliveryStatus.ERROR or record.skip is not None:
            return None
        return record.retry_at

    def _first(self, sk: StreamKey, settled: Collection[int]) -> int | None:
        """The oldest unsettled event id of stream ``sk`` that is not in ``settled``."""
        stream = self._streams.get(sk)
        if stream is None:
            return None
        first = stream.head()
        if first is None or first not in settled:
            return first
        return min((i for i in stream.unsettled if i not in settled), default=None)

    def _due_head(self, sk: StreamKey, now: datetime, settled: Collection[int] = ()) -> DueDelivery | None:
        """The head of an active stream (besides ``settled``) when its retry time (if any) has come; a stream with no
        head leaves the active ones."""
        first = self._first(sk, settled)
        if first is None:
            if not settled:
                self._active.discard(sk)
            return None
        head = self._head(sk, first)
        record = head.record
        if (
            record is not None
            and record.status is DeliveryStatus.ERROR
            and record.retry_at is not None
            and record.retry_at > now
            and record.skip is None  # semantics `asset-skip`: a skip request is acted on at once
        ):
            return None
        return head

    def prunable(
        self, routes: Sequence[AssetRoute], cutoff: datetime, overlap: timedelta
    ) -> list[tuple[SourceEvent, list[tuple[str, int]]]]:
        """``core/assets.prunable`` (**Retention candidates**), sorted by (source, uri, event id)."""
        self._sync(routes)
        found: list[tuple[SourceEvent, list[tuple[str, int]]]] = []
        for source, heap in self._ripe_heaps.items():
            mark = self._marks.get(source)
            if mark is None:
                continue
            limit = min(cutoff, mark - overlap)
            popped: list[tuple[datetime, str, int]] = []
            while heap and heap[0][0] < limit:
                entry = heapq.heappop(heap)
                self._ripe_heaped.discard((source, *entry))
                popped.append(entry)
            for stamp, uri, event_id in popped:
                ek = (source, uri, event_id)
                stored = self.events.get(ek)
                if ek not in self._ripe or stored is None or stored.timestamp != stamp:
                    continue  # gone, changed or no longer settled: it comes back when it is again
                self._push_ripe(ek, stamp)  # kept until the delete is seen: a failed one is tried again
                if self._newest[(source, uri)] == event_id:
                    continue
                entries = [(t, self.ledger[(t, *ek)].rev) for t in self._targets_of(ek, stored)]
                found.append((self.event(ek, keep=False), entries))
        found.sort(key=lambda item: (item[0].source, item[0].fact.uri, item[0].fact.event_id))
        return found

    def shared(self) -> list[SharedAsset]:
        """**The page's counts**: the page's shared assets (``page/assets.asset_nodes``), sorted by source and URI."""
        if self._page is None:
            self._page = {}
            for ek, event in self.events.items():
                self._page_event(ek, event, 1)
            for dk, entry in self.ledger.items():
                self._page_entry(dk, None, entry)
        found: list[SharedAsset] = []
        for (source, uri), targets in sorted(self._page.items()):
            ids = self._ids.get((source, uri), set())
            states = []
            for target, shared in sorted(targets.items()):
                first = self._page_head(shared, ids)
                head = self.record((target, source, uri, first)) if first is not None else None
                states.append(DeliveredTo(target, shared.done, len(ids) - shared.settled_recorded, first,
                                          head[0] if head is not None else None,
                                          self._page_error(shared, (target, source, uri))))  # fmt: skip
            producers = self._producers.get((source, uri), Counter())
            found.append(SharedAsset(source, uri, tuple(states), tuple(sorted(d for d, n in producers.items() if n))))
        return found

    def _page_event(self, ek: EventKey, event: StoredEvent, sign: int) -> None:
        """**The page's counts**: an event recorded (``sign`` 1) or removed (-1)."""
        assert self._page is not None
        group = (ek[0], ek[1])
        if event.source_dag_id:
            self._producers.setdefault(group, Counter())[event.source_dag_id] += sign
        for shared in self._page.get(group, {}).values():
            if ek[2] in shared.settled:
                shared.settled_recorded += sign
            elif sign > 0:
                shared.push(ek[2])

    def _page_entry(self, dk: DeliveryKey, old: StoredEntry | None, new: StoredEntry | None) -> None:
        """**The page's counts**: an entry put, replaced or deleted (``self.ledger`` already holds ``new``)."""
        assert self._page is not None
        target, group, event_id = dk[0], (dk[1], dk[2]), dk[3]
        targets = self._page.setdefault(group, {})
        shared = targets.get(target)
        if shared is None:
            shared = targets[target] = _Shared()
            for recorded in self._ids.get(group, ()):
                shared.push(recorded)
        shared.entries += (new is not None) - (old is not None)
        done = DeliveryStatus.DONE
        shared.done += (new is not None and new.status is done) - (old is not None and old.status is done)
        was = old is not None and old.status in SETTLED
        now = new is not None and new.status in SETTLED
        recorded = event_id in self._ids.get(group, ())
        if was and not now:
            shared.settled.discard(event_id)
            shared.settled_recorded -= recorded
            shared.push(event_id)
        elif now and not was:
            shared.settled.add(event_id)
            shared.settled_recorded += recorded
        shared.errors.pop(event_id, None)
        if new is not None and new.last_error:
            shared.errors[event_id] = new.rev
            heapq.heappush(shared.error_heap, (-new.rev, event_id))
            if len(shared.error_heap) > 2 * len(shared.errors) + 16:  # stale ones piled up under the top
                shared.error_heap = [(-rev, i) for i, rev in shared.errors.items()]
                heapq.heapify(shared.error_heap)
        if not shared.entries:
            del targets[target]
            if not targets:
                del self._page[group]

    def _page_head(self, shared: _Shared, recorded: set[int]) -> int | None:
        while shared.heap and (shared.heap[0] not in recorded or shared.heap[0] in shared.settled):
            shared.heaped.discard(heapq.heappop(shared.heap))
        return shared.heap[0] if shared.heap else None

    def _page_error(self, shared: _Shared, stream: StreamKey) -> str | None:
        while shared.error_heap:
            rev, event_id = shared.error_heap[0]
            if shared.errors.get(event_id) == -rev:
                return self.ledger[(*stream, event_id)].last_error
            heapq.heappop(shared.error_heap)
        return None

    # ------------------------------------------------------------ route-independent summaries

    def _str(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def _add_event(self, ek: EventKey, event: StoredEvent) -> None:
        self.events[ek] = event
        group = (ek[0], ek[1])
        self._ids.setdefault(group, set()).add(ek[2])
        self._newest[group] = max(self._newest.get(group, ek[2]), ek[2])
        stamp = event.timestamp
        self._stamps.setdefault(ek[0], Counter())[stamp] += 1
        mark = self._marks.get(ek[0])
        self._marks[ek[0]] = stamp if mark is None or stamp > mark else mark
        if self._routes is not None:
            self._attach(ek, event)
        if self._page is not None:
            self._page_event(ek, event, 1)

    def _remove_event(self, ek: EventKey) -> None:
        event = self.events.pop(ek)
        self._facts.pop(ek, None)
        if self._routes is not None:
            self._detach(ek, event)
        if self._page is not None:
            self._page_event(ek, event, -1)
        group = (ek[0], ek[1])
        ids = self._ids[group]
        ids.discard(ek[2])
        if not ids:
            del self._ids[group], self._newest[group]
        elif self._newest[group] == ek[2]:
            self._newest[group] = max(ids)  # the newest is never pruned: rare (an operator's delete, a relist)
        stamps = self._stamps[ek[0]]
        stamp = event.timestamp
        stamps[stamp] -= 1
        if stamps[stamp] <= 0:
            del stamps[stamp]
            if not stamps:
                del self._stamps[ek[0]], self._marks[ek[0]]
            elif self._marks[ek[0]] == stamp:
                self._marks[ek[0]] = max(stamps)  # the mark is never pruned either: rare

    def _set_entry(self, dk: DeliveryKey, entry: StoredEntry | None) -> None:
        ek: EventKey = (dk[1], dk[2], dk[3])
        stored = self.events.get(ek)
        routed = self._routes is not None and stored is not None and dk[0] in self._targets_of(ek, stored)
        if routed and stored is not None:
            self._detach(ek, stored)
        # A head's parsed records go when they change: a delivered event's fact is not kept for the history's life.
        self._records.pop(dk, None)
        self._facts.pop(ek, None)
        old = self.ledger.get(dk)
        if entry is None:
            self.ledger.pop(dk, None)
        else:
            self.ledger[dk] = entry
        if self._page is not None:
            self._page_entry(dk, old, entry)
        if routed and stored is not None:
            self._attach(ek, stored)

    # ------------------------------------------------------------ route-dependent state (**Streams follow the routes**
    # and **Retention candidates**)

    def _clear_derived(self) -> None:
        self._targets.clear()
        self._streams.clear()
        self._active.clear()
        self._ripe.clear()
        self._ripe_heaps.clear()
        self._ripe_heaped.clear()

    def _sync(self, routes: Sequence[AssetRoute]) -> None:
        wanted = tuple(routes)
        if wanted == self._routes:
            return
        self._clear_derived()
        self._routes = wanted
        for ek, event in self.events.items():
            self._attach(ek, event)

    def _targets_of(self, ek: EventKey, event: StoredEvent) -> tuple[str, ...]:
        at = (ek[0], ek[1], event.name)
        found = self._targets.get(at)
        if found is None:
            assert self._routes is not None
            found = self._targets[at] = targets_of(self._routes, *at)
        return found

    def _status(self, target: str, ek: EventKey) -> DeliveryStatus | None:
        entry = self.ledger.get((target, *ek))
        return entry.status if entry is not None else None

    def _attach(self, ek: EventKey, event: StoredEvent) -> None:
        targets = self._targets_of(ek, event)
        settled_everywhere = bool(targets)
        for target in targets:
            sk = (target, ek[0], ek[1])
            stream = self._streams.get(sk)
            if stream is None:
                stream = self._streams[sk] = _Stream()
            stream.total += 1
            status = self._status(target, ek)
            if status is DeliveryStatus.DONE:
                stream.delivered += 1
            elif status is DeliveryStatus.SKIPPED:
                stream.skipped += 1
            else:
                settled_everywhere = False
                stream.unsettled.add(ek[2])
                if ek[2] not in stream.heaped:
                    stream.heaped.add(ek[2])
                    heapq.heappush(stream.heap, ek[2])
                self._active.add(sk)
        if settled_everywhere:
            self._ripe.add(ek)
            self._push_ripe(ek, event.timestamp)

    def _detach(self, ek: EventKey, event: StoredEvent) -> None:
        self._ripe.discard(ek)
        for target in self._targets_of(ek, event):
            sk = (target, ek[0], ek[1])
            stream = self._streams[sk]
            stream.total -= 1
            status = self._status(target, ek)
            if status is DeliveryStatus.DONE:
                stream.delivered -= 1
            elif status is DeliveryStatus.SKIPPED:
                stream.skipped -= 1
            else:
                stream.unsettled.discard(ek[2])
            if not stream.total:
                del self._streams[sk]
                self._active.discard(sk)

    def _push_ripe(self, ek: EventKey, stamp: datetime) -> None:
        at = (ek[0], stamp, ek[1], ek[2])
        if at not in self._ripe_heaped:
            self._ripe_heaped.add(at)
            heapq.heappush(self._ripe_heaps.setdefault(ek[0], []), (stamp, ek[1], ek[2]))

    def _head(self, sk: StreamKey, event_id: int) -> DueDelivery:
        target, source, uri = sk
        entry = self.record((target, source, uri, event_id))
        event = self.event((source, uri, event_id))
        return DueDelivery(event, target, entry[0] if entry else None, entry[1] if entry else 0)

    def _state(self, sk: StreamKey, stream: _Stream) -> StreamState:
        first = stream.head()
        head = self._head(sk, first) if first is not None else None
        head_error = head.record.last_error if head is not None and head.record is not None else None
        pending = stream.total - stream.delivered - stream.skipped
        return StreamState(sk[0], sk[1], sk[2], stream.delivered, pending, head, head_error, stream.skipped)


def index_of(keys: AssetKeys, items: Iterable[tuple[str, bytes, int]]) -> AssetIndex:
    """An index of (key, value, mod revision) triples read at one revision (a one-shot reader's)."""
    index = AssetIndex(keys)
    for key, value, rev in items:
        index.apply(key, value, rev)
    return index
