"""The delivery protocol: how one asset event of one Airflow reaches another Airflow exactly once. Pure, synchronous.

The one driver (``Executor.drive``) performs what an instruction says and feeds the answer back as an event;
:func:`step` decides the next instruction. The ledger writes, the error record and the end of an attempt are the
vocabulary shared with the trigger intent (``core/effects.py``), performed by the driver itself; this module keeps
only the Airflow calls of a delivery (performed by the asset streams' reconciler, ``watcher/deliveries.py``) and
their events. No I/O, no clock (``now`` is an argument), no logging. ``tests/test_delivery.py``
drives these functions against a simulated etcd and target Airflow and crashes between every two steps.

Airflow's ``POST /api/v2/assets/events`` has no idempotency key: each call creates one more event. Exactly once
therefore rests on the ledger (fenced like the trigger ledger) and on a look-up before any repeat.

Rules, named as in ``docs/semantics.md`` (semantics `asset-exactly-once`):

- semantics `delivery-intent-first`: Intent first. A delivery starts by writing its ledger entry as ``pending`` in a
  transaction that compares the revision the planner saw and that this watcher still holds the leader key (fencing). A
  lost race or lost leadership ends the attempt: nothing was sent. Every later write compares the revision of the
  previous one.
- semantics `delivery-resolve`: Resolve the target's asset by URI (and name) before posting: Airflow 3 takes an
  ``asset_id`` only. The id is cached by the caller and resolved afresh after a 404 (semantics `delivery-post-404`) and
  before any look-up (semantics `delivery-look-first`). An asset the target does not know is not a lost event: the
  delivery stays pending (``error``, retried) and ``why asset`` says so.
- semantics `delivery-look-first`: Post only what cannot have been posted. An intent this attempt recorded from nothing
  (no entry before) cannot have been sent: post at once. Any other entry (``pending`` or ``error``: a crash, a lost
  answer, a refusal) may have been: look the event up in the target first (events of that asset whose ``extra`` carries
  this delivery's marker) and post only when none is found.
- semantics `delivery-post`: Every POST carries the marker (``extra["coordinator_delivery"] = "{source}:{event id}"``)
  and the source event's ``extra`` and ``partition_key`` (an Airflow 2 target has no partition keys: the event goes
  without it and the entry says ``partition_dropped``).
- semantics `delivery-post-404`: A 404 to the POST means the cached asset id is stale (the asset was re-created) and
  nothing was created: resolve once more, bypassing the cache, and post again. A second 404 is a refusal
  (semantics `delivery-errors`).
- semantics `delivery-confirm`: Confirm: the entry becomes ``done`` with the target's event id. A resumed entry already
  ``done`` (or gone) is left alone.
- semantics `delivery-errors`: Errors are recorded and retried later: a refusal (a 404 to anything but the POST
  included) after ``error_retry_s``, a transient failure (no answer, 5xx) after at most ``TRANSIENT_RETRY_S``. The
  entry records the error and its ``retry_at`` (``RecordError``: the driver writes it and ends the attempt). A lost
  answer to the POST is transient: the retry looks first (semantics `delivery-look-first`).
- semantics `delivery-term-wait`: A new term's look waits for the old term's calls. An entry not written in this
  leader's current term (its mod revision is below the term's revision, the leader key's create revision: every ledger
  write is fenced, so only this term's leader can have written above it) may belong to a POST still in flight from a
  leader whose lease ran out. Until the term's ``look_after`` (its start + the longest an Airflow call can take + a
  margin, computed by the caller) a look could miss that POST and post a second event, so the delivery is deferred: no
  write, no call, the entry stays as it is and is due again at ``look_after`` (``DEFERRED``, ``retry_in_s``). An
  entry this term wrote, and a delivery with no entry, never wait. An entry with a skip request
  (semantics `delivery-skip`) is judged by the revision its last leader write had (``SkipRequest.entry_rev``), since
  the request itself is not a leader's write.
- semantics `delivery-lease-check`: (The caller's.) Immediately before a POST the caller checks that its lease is not in
  doubt and ends the round as on a lost leadership when it is: no POST leaves a leader that may already have been
  replaced, so the wait of semantics `delivery-term-wait` covers every POST of an earlier term.
- semantics `delivery-skip`: Skip (semantics `asset-skip`). An entry carrying an operator's skip request is given
  up where a POST would come: after its look-up found nothing (an entry with a request is never fresh), or when the
  target does not know the asset (no copy can be there). The entry becomes ``skipped`` and nothing is posted. A look-up
  that finds the event confirms it ``done`` as always: a skip never hides a delivery that happened.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import JsonValue

from coordinator.core.assets import MARKER, SETTLED, DeliveryRecord, DeliveryStatus, DueDelivery
from coordinator.core.effects import (
    CONFIRMED,
    MOVED,
    SKIPPED,
    End,
    Ending,
    Failure,
    LedgerMoved,
    LedgerWritten,
    NotFound,
    ProtocolError,
    RecordError,
    Refused,
    Transient,
    WriteLedger,
    Written,
    failed,
)

#: semantics `delivery-errors`: the delay (at most) after a transient failure: these clear up by themselves.
TRANSIENT_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class Term:
    """The leader's current term (semantics `delivery-term-wait`): ``revision``, the leader key's create revision (every
    ledger write of this term has a higher mod revision); ``look_after``, from when an entry of an earlier term may be
    looked up."""

    revision: int
    look_after: datetime


@dataclass(frozen=True, slots=True)
class TargetAsset:
    """The target Airflow's asset: its id (Airflow 3) and URI; ``v1``: an Airflow 2 target (no partition keys)."""

    asset_id: int
    uri: str
    v1: bool = False


# -- events: what happened --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The target's asset (None: the target does not know it)."""

    asset: TargetAsset | None


@dataclass(frozen=True, slots=True)
class Looked:
    """The look-up of semantics `delivery-look-first`: the target's id of the event carrying the marker, or None."""

    target_event_id: int | None


@dataclass(frozen=True, slots=True)
class Posted:
    """The target created the event ``target_event_id``."""

    target_event_id: int


Event = Resolved | Looked | Posted | Written | Failure


# -- instructions: what to do next ------------------------------------------------------------------------------------


#: The delivery ledger's writes (``core/effects``' **Ledger writes**; semantics `delivery-intent-first`).
DeliveryWrite = WriteLedger[DeliveryRecord]


@dataclass(frozen=True, slots=True)
class Resolve:
    """Find the target's asset by ``uri`` (``fresh``: bypass the cache); answer Resolved."""

    uri: str
    name: str | None
    fresh: bool


@dataclass(frozen=True, slots=True)
class Look:
    """Find an event of ``asset`` whose ``extra`` carries ``marker``, among those since about ``requested_at`` (when
    the delivery was first recorded: no earlier POST of it can exist); answer Looked."""

    asset: TargetAsset
    marker: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Post:
    """Create the event in the target; answer Posted, NotFound (404), Refused or Transient."""

    asset: TargetAsset
    extra: dict[str, JsonValue]
    partition_key: str | None


#: The Airflow calls of a delivery: what the asset streams' reconciler performs.
Call = Resolve | Look | Post
#: Everything ``step`` may return: a call, a ledger write (``RecordError`` among them), or the end.
Instruction = Call | DeliveryWrite | End


class Step(StrEnum):
    """What the protocol waits for. Each protocol has its own steps (the trigger's create, clear and paused check
    have no counterpart here); what they share is the instructions and the ends (``core/effects.py``)."""

    RECORDING = "recording"
    RESOLVING = "resolving"
    LOOKING = "looking"
    POSTING = "posting"
    CONFIRMING = "confirming"
    SKIPPING = "skipping"
    OVER = "over"


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where one attempt stands."""

    step: Step
    record: DeliveryRecord
    mod_rev: int
    #: semantics `delivery-look-first`: this attempt recorded the intent from nothing, so nothing can have been posted
    #: before.
    fresh: bool
    extra: dict[str, JsonValue]
    error_retry_s: float
    asset: TargetAsset | None = None
    refreshed: bool = False


def start(
    due: DueDelivery, now: datetime, watcher: str, error_retry_s: float, term: Term
) -> tuple[DeliveryState, Instruction]:
    """Semantics `delivery-intent-first` (or 6, or 8): the first instruction of a due delivery."""
    fact = due.event.fact
    record = due.record
    if record is not None and record.status in SETTLED:
        return _placeholder(due, now, watcher, error_retry_s), End(Ending.SETTLED)
    # semantics `delivery-term-wait` judges the last LEADER write: an operator's skip request
    # (semantics `delivery-skip`) rewrites the entry without a fence.
    written = record.skip.entry_rev if record is not None and record.skip is not None else due.ledger_rev
    if record is not None and written < term.revision and now < term.look_after:
        # semantics `delivery-term-wait`: before the write, or the rewritten entry would look like this term's own once
        # the wait is over.
        wait = max(0.0, (term.look_after - now).total_seconds())
        return _placeholder(due, now, watcher, error_retry_s), End(Ending.DEFERRED, retry_in_s=wait)
    if record is None:
        record = DeliveryRecord(
            status=DeliveryStatus.PENDING,
            source=due.event.source,
            event_id=fact.event_id,
            uri=fact.uri,
            name=fact.name,
            partition_key=fact.partition_key,
            requested_at=now,
            watcher=watcher,
        )
    else:
        record = record.model_copy(update={"status": DeliveryStatus.PENDING, "retry_at": None, "watcher": watcher})
    extra: dict[str, JsonValue] = {**fact.extra, MARKER: record.marker}
    state = DeliveryState(Step.RECORDING, record, due.ledger_rev, due.record is None, extra, error_retry_s)
    return state, WriteLedger(record, due.ledger_rev)


def step(state: DeliveryState, event: Event, now: datetime) -> tuple[DeliveryState, Instruction]:
    """The next instruction after ``event``."""
    if isinstance(event, LedgerMoved):
        return _over(state), MOVED
    if isinstance(event, LedgerWritten):
        return _written(state, event.mod_rev)
    if isinstance(event, Transient):
        return _error(state, event.error, min(state.error_retry_s, TRANSIENT_RETRY_S), now)
    if isinstance(event, Refused) or (isinstance(event, NotFound) and state.step is not Step.POSTING):
        # semantics `delivery-errors` (a 404 to a read is a refusal)
        return _error(state, event.error, state.error_retry_s, now)
    if state.step is Step.RESOLVING and isinstance(event, Resolved):
        if event.asset is None:
            if state.record.skip is not None:
                return _skip(state, now)  # semantics `delivery-skip`: no asset there, so no copy either
            # semantics `delivery-resolve`: not a lost event; it waits for the target to know the asset.
            error = f"asset {state.record.uri} is not known in the target: pending until it is"
            return _error(state, f"AssetUnknown: {error}", state.error_retry_s, now)
        moved = replace(state, asset=event.asset)
        if state.fresh:
            return _post(moved, now)
        return replace(moved, step=Step.LOOKING), Look(
            event.asset, state.record.marker, state.record.requested_at
        )  # semantics `delivery-look-first`
    if state.step is Step.LOOKING and isinstance(event, Looked):
        if event.target_event_id is not None:
            # semantics `delivery-look-first`: it was posted before the crash
            return _confirm(state, event.target_event_id, now)
        return _post(state, now)
    if state.step is Step.POSTING and isinstance(event, Posted):
        return _confirm(state, event.target_event_id, now)
    if state.step is Step.POSTING and isinstance(event, NotFound):
        if not state.refreshed:
            # semantics `delivery-post-404`: nothing was created; the cached id is stale.
            return replace(state, step=Step.RESOLVING, refreshed=True), Resolve(
                state.record.uri, state.record.name, fresh=True
            )
        return _error(state, event.error, state.error_retry_s, now)
    raise ProtocolError(f"event {type(event).__name__} at step {state.step}")


def _written(state: DeliveryState, mod_rev: int) -> tuple[DeliveryState, Instruction]:
    if state.step is Step.RECORDING:
        record = state.record
        if not record.intent_rev:
            record = record.model_copy(update={"intent_rev": mod_rev})
        moved = replace(state, step=Step.RESOLVING, record=record, mod_rev=mod_rev, refreshed=not state.fresh)
        # semantics `delivery-look-first`: a look-up with a stale id would find nothing and post a second event: resolve
        # afresh first.
        return moved, Resolve(record.uri, record.name, fresh=not state.fresh)
    if state.step is Step.CONFIRMING:
        return replace(state, step=Step.OVER, mod_rev=mod_rev), CONFIRMED
    if state.step is Step.SKIPPING:
        return replace(state, step=Step.OVER, mod_rev=mod_rev), SKIPPED
    raise ProtocolError(f"ledger write at step {state.step}")


def _post(state: DeliveryState, now: datetime) -> tuple[DeliveryState, Instruction]:
    if state.record.skip is not None:
        return _skip(state, now)  # semantics `delivery-skip`: where the POST would come
    assert state.asset is not None
    # semantics `delivery-post`: an Airflow 2 target has no partition keys.
    key = None if state.asset.v1 else state.record.partition_key
    return replace(state, step=Step.POSTING), Post(state.asset, state.extra, key)


def _confirm(state: DeliveryState, target_event_id: int, now: datetime) -> tuple[DeliveryState, Instruction]:
    dropped = state.asset is not None and state.asset.v1 and state.record.partition_key is not None
    done = state.record.model_copy(
        update={
            "status": DeliveryStatus.DONE,
            "target_event_id": target_event_id,
            "partition_dropped": dropped,
            "done_at": now,
            "retry_at": None,
            "last_error": None,
            "attempts": state.record.attempts + 1,
        }
    )
    return replace(state, step=Step.CONFIRMING, record=done), WriteLedger(done, state.mod_rev)


def _skip(state: DeliveryState, now: datetime) -> tuple[DeliveryState, Instruction]:
    """Semantics `delivery-skip`: the entry becomes ``skipped``; nothing is posted."""
    skipped = state.record.model_copy(
        update={"status": DeliveryStatus.SKIPPED, "done_at": now, "retry_at": None, "last_error": None}
    )
    return replace(state, step=Step.SKIPPING, record=skipped), WriteLedger(skipped, state.mod_rev)


def _error(state: DeliveryState, error: str, delay_s: float, now: datetime) -> tuple[DeliveryState, Instruction]:
    """Semantics `delivery-errors`. Before the intent is in the ledger nothing can be recorded: the attempt just
    ends."""
    if state.step is Step.RECORDING:
        return _over(state), failed(error, delay_s)
    record = state.record.model_copy(
        update={
            "status": DeliveryStatus.ERROR,
            "last_error": error[:500],
            "retry_at": now + timedelta(seconds=delay_s),
            "attempts": state.record.attempts + 1,
        }
    )
    return replace(state, step=Step.OVER, record=record), RecordError(record, state.mod_rev, error, delay_s)


def _over(state: DeliveryState) -> DeliveryState:
    return replace(state, step=Step.OVER)


def _placeholder(due: DueDelivery, now: datetime, watcher: str, error_retry_s: float) -> DeliveryState:
    assert due.record is not None
    return DeliveryState(Step.OVER, due.record, due.ledger_rev, False, {}, error_retry_s)
