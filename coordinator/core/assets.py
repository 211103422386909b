"""Assets shared across deployments: routes, the recorded asset events, the delivery ledger and what is due.

Pure and synchronous (no I/O, no clock). :func:`streams`, :func:`due_deliveries` and :func:`prunable` take the whole
history, for one-shot readers (``status``, ``why asset``); the watcher's asset job (``coordinator/watcher/assets.py``)
asks ``core/asset_index.py`` instead, which gives the same answers from the streams with work, and drives each due
delivery through the protocol of ``core/delivery.py``.

Rules, named as in ``docs/semantics.md`` (semantics `assets-by-route`):

- semantics `asset-routes`: A route (``dependencies.json`` ``"assets"``) shares every event of the assets of instance
  ``from`` whose URI or name matches ``asset`` (``fnmatch`` wildcards ``*``, ``?``, ``[...]``) with each instance of
  ``to``.
- semantics `asset-facts`: An asset event is a fact once recorded under ``{prefix}/assets/{instance}/{asset}/{event
  id}``; the event id is the producing Airflow's own id, so recording the same event twice (the audit's overlapping
  windows, two leaders one after the other) writes the same key: the write is create-only and the second one is a no-op.
- semantics `asset-no-loops`: An event Airflow holds because the coordinator delivered it carries :data:`MARKER` in its
  ``extra``; it is never recorded as a fact, so it is never forwarded again (no loop between two deployments, nor
  through a third).
- semantics `asset-order`: One delivery per (event, target instance): its ledger key
  ``{prefix}/deliveries/{target}/{from}/{asset}/{event id}`` is the only thing that says it happened. Per (target,
  source instance, asset) the events are delivered in the order of their ids: only the oldest undelivered one is due, so
  a consumer sees the producer's order.
- semantics `asset-waiting`: A delivery in ``error`` is due again once its ``retry_at`` has passed (``now`` is an
  input), or at once when it carries a skip request (semantics `asset-skip`).
- semantics `asset-retention`: Retention (:func:`prunable`): an old event settled in every target its routes name, not
  the newest of its (source, asset) and out of its source's listing window, may be deleted with its delivery entries.
- semantics `asset-skip`: A delivery is settled when ``done`` or ``skipped`` (an operator's skip request that the leader
  applied instead of a POST, semantics `delivery-skip`): the stream's next event becomes due, retention may prune it,
  and ``status`` counts it apart (``skipped``), never as delivered.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from coordinator.core.model import NAME_RE

#: The ``extra`` field of every event the coordinator creates in a target (semantics `asset-no-loops`):
#: ``"{source}:{event id}"``.
MARKER = "coordinator_delivery"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # intent recorded, the target's event not confirmed
    DONE = "done"
    ERROR = "error"  # refused or failed; retried at ``retry_at``
    # semantics `asset-skip`: an operator asked to skip it and the leader applied that; never delivered
    SKIPPED = "skipped"


#: Semantics `asset-skip`: a stream moves past these.
SETTLED = frozenset({DeliveryStatus.DONE, DeliveryStatus.SKIPPED})


class SkipRequest(BaseModel):
    """An operator's request (``coordinator skip-event``) that one delivery be given up (semantics `asset-skip`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    by: str
    at: datetime
    reason: str = ""
    #: The entry's mod revision when the request was added: the last write of a leader (semantics `delivery-term-wait`
    #: judges whether that write is of the current term by it, not by the request's own, unfenced write). 0: unknown, so
    #: the entry counts as an earlier term's (the safe side: the leader waits before it looks).
    entry_rev: int = 0


@dataclass(frozen=True, slots=True)
class AssetRoute:
    """Semantics `asset-routes`: the assets matching ``pattern`` (URI or name) in ``source`` are shared with
    ``targets``."""

    pattern: str
    source: str
    targets: tuple[str, ...]

    def matches(self, uri: str, name: str | None) -> bool:
        return fnmatch.fnmatchcase(uri, self.pattern) or (name is not None and fnmatch.fnmatchcase(name, self.pattern))


def targets_of(routes: Iterable[AssetRoute], source: str, uri: str, name: str | None) -> tuple[str, ...]:
    """Every instance an event of asset (``uri``, ``name``) in ``source`` goes to, in route order, once each; never
    back to ``source`` itself."""
    found: list[str] = []
    for route in routes:
        if route.source == source and route.matches(uri, name):
            found.extend(t for t in route.targets if t != source and t not in found)
    return tuple(found)


class AssetEventFact(BaseModel):
    """One asset event of a producing Airflow (semantics `asset-facts`), as recorded in etcd."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: int
    uri: str
    name: str | None = None
    partition_key: str | None = None
    extra: dict[str, JsonValue] = {}
    source_dag_id: str | None = None
    source_run_id: str | None = None
    source_task_id: str | None = None
    timestamp: datetime
    recorded_by: str = ""


class DeliveryRecord(BaseModel):
    """The ledger entry of one delivery (semantics `asset-order`), written only by the leading watcher, fenced."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: DeliveryStatus
    source: str
    event_id: int
    uri: str
    name: str | None = None
    partition_key: str | None = None
    #: The target's own event id once confirmed (from the POST's answer or the look-up that found it).
    target_event_id: int | None = None
    #: The target is an Airflow 2 (v1): the event went without its partition key.
    partition_dropped: bool = False
    intent_rev: int = 0
    requested_at: datetime
    done_at: datetime | None = None
    retry_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    watcher: str = ""
    #: Semantics `asset-skip`: set by ``coordinator skip-event`` (a compare-and-swap on this entry); the leader applies
    #: it instead of its next POST, unless its look-up finds the event in the target (then it is done, as always).
    skip: SkipRequest | None = None

    @property
    def marker(self) -> str:
        return marker_of(self.source, self.event_id)


def marker_of(source: str, event_id: int) -> str:
    """The value of :data:`MARKER` for the delivery of ``source``'s event ``event_id`` (semantics `asset-no-loops`)."""
    return f"{source}:{event_id}"


def is_delivered_copy(extra: Mapping[str, Any] | None) -> bool:
    """Semantics `asset-no-loops`: the event was created by the coordinator (in this or any deployment)."""
    return bool(extra) and MARKER in extra  # type: ignore[operator]


def escape_asset(uri: str) -> str:
    """One key segment for an asset URI or name: percent-encoded, so '/' and ':' never split the key."""
    return quote(uri, safe="")


@dataclass(frozen=True, slots=True)
class AssetKeys:
    """The asset keys of ``docs/keys.md`` under ``prefix``."""

    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}/assets/"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}/deliveries/"

    @property
    def marks(self) -> str:
        return f"{self.prefix}/asset_marks/"

    def mark_key(self, instance: str) -> str:
        """Where the first listing of ``instance`` starts while none of its events is recorded
        (semantics `asset-facts`)."""
        return f"{self.marks}{instance}"

    @property
    def changes(self) -> str:
        """The plugin's hints (one key per instance): an asset event just happened there; list its events now."""
        return f"{self.prefix}/asset_changes/"

    def change_key(self, instance: str) -> str:
        return f"{self.changes}{instance}"

    def event_key(self, instance: str, uri: str, event_id: int) -> str:
        return f"{self.events}{instance}/{escape_asset(uri)}/{event_id}"

    def delivery_key(self, target: str, source: str, uri: str, event_id: int) -> str:
        return f"{self.deliveries}{target}/{source}/{escape_asset(uri)}/{event_id}"

    def parse_event_key(self, key: str) -> tuple[str, str, int] | None:
        """(instance, asset uri, event id), or None for a key that is not one."""
        parts = key.removeprefix(self.events).split("/") if key.startswith(self.events) else []
        if len(parts) != 3 or not NAME_RE.match(parts[0]) or not parts[2].isdigit():
            return None
        return parts[0], unquote(parts[1]), int(parts[2])

    def parse_delivery_key(self, key: str) -> tuple[str, str, str, int] | None:
        """(target, source, asset uri, event id), or None."""
        parts = key.removeprefix(self.deliveries).split("/") if key.startswith(self.deliveries) else []
        if len(parts) != 4 or not (NAME_RE.match(parts[0]) and NAME_RE.match(parts[1])) or not parts[3].isdigit():
            return None
        return parts[0], parts[1], unquote(parts[2]), int(parts[3])


def parse_fact(value: bytes) -> AssetEventFact | None:
    try:
        return AssetEventFact.model_validate_json(value)
    except ValidationError:
        return None


def parse_delivery(value: bytes) -> DeliveryRecord | None:
    try:
        return DeliveryRecord.model_validate_json(value)
    except ValidationError:
        return None


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A recorded event (semantics `asset-facts`) of ``source``."""

    source: str
    fact: AssetEventFact


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One delivery to make now: the event, its target, and the ledger entry as last seen (None, 0: none yet)."""

    event: SourceEvent
    target: str
    record: DeliveryRecord | None
    ledger_rev: int


@dataclass(frozen=True, slots=True)
class Ledger:
    """The delivery ledger as read: (target, source, uri, event id) -> (record, mod revision)."""

    entries: Mapping[tuple[str, str, str, int], tuple[DeliveryRecord, int]]


def read_events_and_ledger(
    keys: AssetKeys, events: Iterable[tuple[str, bytes]], deliveries: Iterable[tuple[str, bytes, int]]
) -> tuple[list[SourceEvent], Ledger]:
    """The recorded events (key, value) and the delivery ledger (key, value, mod revision) as read from etcd, parsed
    whole; keys or values that do not parse are left out. The whole-history reading the asset index
    (``core/asset_index.py``), which every reader uses, is held to by ``tests/test_asset_index.py``."""
    recorded = [
        SourceEvent(parsed[0], fact)
        for key, value in events
        if (parsed := keys.parse_event_key(key)) is not None and (fact := parse_fact(value)) is not None
    ]
    entries = {
        at: (record, rev)
        for key, value, rev in deliveries
        if (at := keys.parse_delivery_key(key)) is not None and (record := parse_delivery(value)) is not None
    }
    return recorded, Ledger(entries)


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where one (target, source, asset) stream stands, for ``status`` and ``why asset``."""

    target: str
    source: str
    uri: str
    delivered: int
    pending: int
    head: DueDelivery | None  # the oldest undelivered event, due or waiting for its retry
    head_error: str | None
    skipped: int = 0


def streams(events: Sequence[SourceEvent], ledger: Ledger, routes: Sequence[AssetRoute]) -> list[StreamState]:
    """Semantics `asset-order`: per (target, source, asset), how many events are delivered and which one is next."""
    by_stream: dict[tuple[str, str, str], list[SourceEvent]] = {}
    for event in events:
        for target in targets_of(routes, event.source, event.fact.uri, event.fact.name):
            by_stream.setdefault((target, event.source, event.fact.uri), []).append(event)
    result: list[StreamState] = []
    for (target, source, uri), items in sorted(by_stream.items()):
        items.sort(key=lambda e: e.fact.event_id)
        delivered = skipped = 0
        head: DueDelivery | None = None
        for event in items:
            found = ledger.entries.get((target, source, uri, event.fact.event_id))
            if found is not None and found[0].status is DeliveryStatus.DONE:
                delivered += 1
            elif found is not None and found[0].status is DeliveryStatus.SKIPPED:
                skipped += 1  # semantics `asset-skip`
            elif head is None:
                head = DueDelivery(event, target, found[0] if found else None, found[1] if found else 0)
        head_error = head.record.last_error if head is not None and head.record is not None else None
        pending = len(items) - delivered - skipped
        result.append(StreamState(target, source, uri, delivered, pending, head, head_error, skipped))
    return result


def due_deliveries(
    events: Sequence[SourceEvent], ledger: Ledger, routes: Sequence[AssetRoute], now: datetime
) -> list[DueDelivery]:
    """Semantics `asset-order`-e: the head of every stream whose retry time (if any) has come."""
    due: list[DueDelivery] = []
    for stream in streams(events, ledger, routes):
        head = stream.head
        if head is None:
            continue
        record = head.record
        waiting = (
            record is not None and record.status is DeliveryStatus.ERROR and record.retry_at and record.retry_at > now
        )
        # semantics `asset-skip`: a skip request is acted on at once
        if waiting and record is not None and record.skip is None:
            continue
        due.append(head)
    return due


def prunable(
    events: Sequence[SourceEvent], ledger: Ledger, routes: Sequence[AssetRoute], cutoff: datetime, overlap: timedelta
) -> list[tuple[SourceEvent, list[tuple[str, int]]]]:
    """Retention: the recorded events that may be deleted, each with its delivery entries' (target, mod revision).

    An event qualifies when it is older than ``cutoff``, settled (semantics `asset-skip`) in every target its routes
    name, and older than its source's audit mark (the newest recorded timestamp of that source less ``overlap``): an
    event the audit can still list would otherwise be recorded again, as new, and delivered twice. The newest event of
    each (source, asset) always stays."""
    newest: dict[tuple[str, str], int] = {}
    marks: dict[str, datetime] = {}
    for event in events:
        key = (event.source, event.fact.uri)
        newest[key] = max(newest.get(key, 0), event.fact.event_id)
        marks[event.source] = max(marks.get(event.source, event.fact.timestamp), event.fact.timestamp)
    done: list[tuple[SourceEvent, list[tuple[str, int]]]] = []
    for event in events:
        fact = event.fact
        if newest[(event.source, fact.uri)] == fact.event_id:
            continue
        if fact.timestamp >= cutoff or fact.timestamp >= marks[event.source] - overlap:
            continue
        targets = targets_of(routes, event.source, fact.uri, fact.name)
        found = [(t, ledger.entries.get((t, event.source, fact.uri, fact.event_id))) for t in targets]
        if targets and all(f is not None and f[0].status in SETTLED for _, f in found):
            done.append((event, [(t, f[1]) for t, f in found if f is not None]))
    return done


@dataclass(frozen=True, slots=True)
class TargetAssets:
    """What ``validate --airflow`` learned of one target instance: its assets as (uri, name, consumer DAGs), and
    whether it is an Airflow 2 (no partition keys)."""

    instance: str
    assets: tuple[tuple[str, str | None, tuple[str, ...]], ...]
    airflow2: bool


def route_warnings(routes: Sequence[AssetRoute], targets: Mapping[str, TargetAssets]) -> list[str]:
    """Semantics `asset-routes` checked against the targets: a route whose assets no DAG of a target schedules on
    (delivered, consumed by nobody: a warning, the events are not lost), and an Airflow 2 target (partition keys
    dropped)."""
    found: list[str] = []
    for index, route in enumerate(routes):
        for target in route.targets:
            seen = targets.get(target)
            if seen is None:
                continue
            matched = [a for a in seen.assets if route.matches(a[0], a[1])]
            where = f"$.assets[{index}] ({route.pattern!r} -> {target})"
            if not matched:
                found.append(
                    f"{where}: warning: no asset of {target} matches: its events wait there as pending until a DAG "
                    "there declares the asset (schedule=[Asset(...)])"
                )
            elif not any(consumers for _, _, consumers in matched):
                names = ", ".join(sorted(a[0] for a in matched)[:3])
                found.append(f"{where}: warning: no DAG of {target} schedules on {names}: events are delivered, "
                             "nobody consumes them")  # fmt: skip
            if seen.airflow2:
                found.append(
                    f"{where}: warning: {target} is an Airflow 2 (no partition keys): events are delivered without "
                    "their partition_key"
                )
    return found


def why_asset(
    uri: str,
    routes: Sequence[AssetRoute],
    events: Sequence[SourceEvent],
    ledger: Ledger,
    leader_rev: int | None = None,
) -> list[str]:
    """``coordinator why asset <uri>`` in plain words: routed where, produced where, delivered, pending, refused.

    ``leader_rev``: the leader key's create revision (None: nobody leads); an unfinished entry written before it waits
    for the earlier leader's calls (semantics `delivery-term-wait`) and says so."""
    mine = [e for e in events if e.fact.uri == uri or e.fact.name == uri]
    names = {e.fact.name for e in mine if e.fact.name}
    routed = [(i, r) for i, r in enumerate(routes) if r.matches(uri, None) or any(r.matches(uri, n) for n in names)]
    if not routed:
        return [f'{uri}: no route in dependencies.json shares it (add one under "assets")']
    lines = [f"{uri}: route $.assets[{i}] shares {r.pattern!r} from {r.source} with {', '.join(r.targets)}"
             for i, r in routed]  # fmt: skip
    sources = sorted({r.source for _, r in routed})
    for source in sources:
        produced = sorted((e for e in mine if e.source == source), key=lambda e: e.fact.event_id)
        if not produced:
            lines.append(f"produced in {source}: no event recorded yet (the leader lists its events every round)")
            continue
        last = produced[-1].fact
        key = f", partition_key {last.partition_key}" if last.partition_key else ""
        lines.append(f"produced in {source}: {len(produced)} event(s) recorded, newest #{last.event_id} at "
                     f"{last.timestamp.isoformat()}{key}")  # fmt: skip
    for stream in streams(mine, ledger, [r for _, r in routed]):
        line = f"delivered to {stream.target}: {stream.delivered}, pending {stream.pending}"
        line += f", skipped {stream.skipped}" if stream.skipped else ""
        head = stream.head
        if head is not None:
            record = head.record
            event = f"#{head.event.fact.event_id} of {stream.source}"
            if record is None:
                line += f"; next {event}: due at the next round"
            elif record.skip is not None:
                line += (f"; next {event}: skip requested by {record.skip.by} at {record.skip.at.isoformat()}, "
                         "applied at the next attempt unless the event is found there")  # fmt: skip
            elif record.status is DeliveryStatus.ERROR:
                retry = record.retry_at.isoformat() if record.retry_at else "soon"
                line += (f"; next {event}: refused ({record.last_error}), retried at {retry}; to give it up: "
                         f"coordinator skip-event {head.event.fact.uri} {head.event.fact.event_id} "
                         f"--from {stream.source} --to {stream.target} --reason TEXT")  # fmt: skip
            else:
                line += f"; next {event}: intent recorded at {record.requested_at.isoformat()}, being delivered"
            if record is not None and leader_rev is not None and head.ledger_rev < leader_rev:
                by = record.watcher or "an earlier leader"
                line += (
                    f"; written by {by} before the current leader took over (revision {leader_rev}): looked up in "
                    f"{stream.target} only once any POST sent under the earlier lease has been answered or timed out "
                    "(COORDINATOR_AIRFLOW_TIMEOUT_S + 2 s after the takeover, semantics `delivery-term-wait`)"
                )
        lines.append(line)
    return lines
