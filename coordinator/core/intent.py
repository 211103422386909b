"""The intent protocol: how one planned trigger reaches Airflow exactly once in effect. Pure and synchronous.

The one driver (``Executor.drive``) performs what an instruction says and feeds the answer back as an event;
``step`` decides the next instruction. The ledger writes, the error record and the end of an attempt are the
vocabulary shared with the asset delivery (``core/effects.py``), performed by the driver itself; this module keeps
only the Airflow calls of a trigger (performed by the actuator, ``coordinator/watcher/actuator.py``) and their
events. No I/O, no asyncio, no clock (the time comes in as an argument), no logging: the Hypothesis state
machine (``tests/test_planner_stateful.py``) drives these very functions against a simulated etcd and Airflow and
crashes between steps.

Rules, named as in ``docs/semantics.md`` (semantics `trigger-exactly-once`):

- semantics `trigger-intent-first`: Intent first. A trigger starts by recording a pending intent in its ledger key, in a
  transaction that compares the ledger revision the planner saw and that this watcher still holds the leader key
  (fencing). A lost race or lost leadership ends the attempt there (``LedgerMoved`` -> ``MOVED``): nothing
  happened and the next pass re-plans. Every later write of the same intent compares the revision of the previous one (a
  mismatch ends the attempt the same way) and carries ``intent_rev``, the revision that first recorded it.
- semantics `trigger-create`: Create idempotently. A create posts the partition's deterministic run id. A conflict on
  that same run id means an earlier attempt of this intent already created it: go on to confirm
  (semantics `trigger-confirm`).
- semantics `trigger-create-to-clear`: A create becomes a clear. A conflict because another run (scheduled, manual)
  holds the logical date turns the intent into a clear of that run; the switch (action clear, that run id, no queued_at)
  is written to the ledger before anything else happens.
- semantics `trigger-clear-once`: Clear once, proven by ``queued_at``. Before clearing, read the run by its id
  (``ReadQueuedAt``) and, when no run has that id, the run that holds the partition's logical date (``FindRunByDate``: a
  scheduled or manual run):
  a. `clear-run-gone`: no such run (deleted, or never created): create it under the deterministic id, record that run
     id, confirm;
  b. `clear-already-done`: the ledger holds a queued_at for this very run and Airflow shows a different one: the clear
     already happened (a crash after the call): confirm without clearing again;
  c. `clear-never-active`: the run is queued or running: clearing it would kill work in progress: record an error and
     retry soon (semantics `trigger-errors`);
  d. `clear-queued-at-first`: otherwise record the run's queued_at in the ledger, then clear. A clear retried after a
     lost answer re-reads the run before each try and clears only while :func:`clear_needed` says so (its queued_at has
     not moved: the lost answer was not a clear that happened). The actuator's retry loop does the read; the rule is
     here.
- semantics `trigger-confirm`: Confirm. After the effect, the intent is marked done (one more attempt, done_at, and a
  warning when the DAG is paused: the run waits until it is unpaused). A resumed intent whose run already reported a
  state after it is confirmed without calling Airflow (semantics `run-confirms-intent`: the call happened before a
  crash). A resumed intent that is already done, or gone, is left alone.
- semantics `trigger-errors`: Errors are recorded and retried later, never in a busy loop. A refusal (400, 403, 404,
  a 409 held by a run not ours, unknown instance, any unexpected failure) marks the intent ``error`` with the message,
  its ``errors`` in a row and ``retry_at``: the key's backoff (``core/error_backoff.py``), exponential with jitter and
  capped at ``error_retry_s``; a transient failure that outlived the bounded retries, or an active run (semantics
  `clear-never-active`), the same backoff capped at ``ACTIVE_RETRY_S`` (these clear by themselves). The attempt ends
  to be tried again at ``retry_at`` (``End.retry_in_s``). The record is the intent as this attempt last wrote it,
  compared with that write's revision like every later write (``RecordError``: the driver writes it and ends the
  attempt). The intent stays the same intent: the planner resumes it, never re-decides it; a confirmation clears
  ``errors`` and ``retry_at``.
- semantics `scheduled-permit`: for a scheduled dependent (``IntentState.scheduled``) the effect is its permit, which
  the driver writes with every ledger write (``core/permit.py``): a create calls nothing and confirms at once
  (semantics `permit-not-run`); a clear clears Airflow's run of the partition as above, and where no run exists creates
  none, it confirms (semantics `permit-cascade`). A resume that withdraws a permit (``Resume.withdraw``, semantics
  `permit-retracted`) reads the entry and, when it is still a done intent in the other state, writes it once with
  ``withdrawn`` set (or cleared, to give it back), the permit with it; anything else was changed meanwhile: settled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from coordinator.core.actions import Trigger
from coordinator.core.effects import (
    CONFIRMED,
    MOVED,
    SETTLED,
    End,
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
from coordinator.core.error_backoff import error_count, error_delay
from coordinator.core.model import TriggerAction, TriggerRecord, TriggerStatus, run_id_for

#: semantics `trigger-errors`: the backoff's cap after a transient failure or an active run: these clear up by
#: themselves.
ACTIVE_RETRY_S = 5.0


# -- what Airflow shows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AirflowRun:
    """The run to clear as Airflow shows it (semantics `trigger-clear-once`). ``queued_at`` is a stamp: ISO 8601 UTC, ""
    when unknown."""

    run_id: str
    state: str
    queued_at: str


# -- events: what happened (fed to ``step``) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntentFound:
    """A resume read the ledger: the intent (None: the key is gone) at ``mod_rev``. ``observed``: the planner saw
    the triggered run report a state after the intent (semantics `run-confirms-intent`)."""

    record: TriggerRecord | None
    mod_rev: int
    observed: bool = False


@dataclass(frozen=True, slots=True)
class Created:
    """Airflow created the run."""

    run_id: str


@dataclass(frozen=True, slots=True)
class ConflictSameRun:
    """409: a run with this id exists (an earlier attempt created it)."""

    run_id: str


@dataclass(frozen=True, slots=True)
class ConflictOtherRun:
    """409: another run holds the logical date."""

    run_id: str


@dataclass(frozen=True, slots=True)
class RunObserved:
    """The answer of ``ReadQueuedAt`` (the run with that id) or ``FindRunByDate`` (the run of the partition's logical
    date); None: there is none."""

    run: AirflowRun | None


@dataclass(frozen=True, slots=True)
class Cleared:
    """The clear was applied (or a re-read showed it already was)."""


@dataclass(frozen=True, slots=True)
class PausedChecked:
    """The courtesy check of semantics `trigger-confirm`: a warning when the DAG is paused, else None."""

    warning: str | None


Event = (
    IntentFound
    | Created
    | ConflictSameRun
    | ConflictOtherRun
    | RunObserved
    | Cleared
    | PausedChecked
    | Written
    | Failure
)


# -- instructions: what to do next (returned by ``step``) --------------------------------------------------------


#: The trigger ledger's writes (``core/effects``' **Ledger writes**): a failed compare ends the attempt
#: (semantics `trigger-intent-first`). The subclasses name the step, for the actuator's log and crash points.
IntentWrite = WriteLedger[TriggerRecord]


@dataclass(frozen=True, slots=True)
class RecordIntent(IntentWrite):
    """Semantics `trigger-intent-first`."""


@dataclass(frozen=True, slots=True)
class SwitchToClear(IntentWrite):
    """Semantics `trigger-create-to-clear`."""


@dataclass(frozen=True, slots=True)
class RecordQueuedAt(IntentWrite):
    """Semantics `clear-queued-at-first`."""


@dataclass(frozen=True, slots=True)
class RecordRunId(IntentWrite):
    """Semantics `clear-run-gone`."""


@dataclass(frozen=True, slots=True)
class WithdrawPermit(IntentWrite):
    """Semantics `permit-retracted`: ``record`` is the done record with ``withdrawn`` set, or cleared."""


@dataclass(frozen=True, slots=True)
class Confirm(IntentWrite):
    """Semantics `trigger-confirm`: ``record`` is the done record."""


@dataclass(frozen=True, slots=True)
class CallCreate:
    """Create ``run_id`` for the partition (conf from ``record``); answer Created / ConflictSameRun /
    ConflictOtherRun."""

    run_id: str
    record: TriggerRecord


@dataclass(frozen=True, slots=True)
class ReadQueuedAt:
    """Read run ``run_id`` (by id only); answer RunObserved (semantics `trigger-clear-once`)."""

    run_id: str


@dataclass(frozen=True, slots=True)
class FindRunByDate:
    """Read the run that holds the partition's logical date, whatever its id; answer RunObserved
    (semantics `trigger-clear-once`: the run the intent names is gone, or was never the one Airflow holds for the
    date)."""


@dataclass(frozen=True, slots=True)
class CallClear:
    """Clear ``run_id`` unless its queued_at is no longer ``queued_at`` (semantics `clear-queued-at-first`,
    :func:`clear_needed`); answer Cleared."""

    run_id: str
    queued_at: str


@dataclass(frozen=True, slots=True)
class CheckPaused:
    """Ask whether the DAG is paused; answer PausedChecked (semantics `trigger-confirm`). ``effect`` says what reached
    Airflow."""

    effect: Effect


#: The Airflow calls of a trigger: what the actuator performs.
Call = CallCreate | ReadQueuedAt | FindRunByDate | CallClear | CheckPaused
#: Everything ``step`` may return: a call, a ledger write (``RecordError`` among them), or the end.
Instruction = Call | IntentWrite | End


class Effect(StrEnum):
    """What reached Airflow before the confirmation (for the log line)."""

    CREATED = "created"
    ALREADY_CREATED = "already_exists"
    CLEARED = "cleared"
    ALREADY_CLEARED = "already_cleared"
    #: Semantics `permit-cascade`: no run to clear; the permit alone is granted.
    GRANTED = "granted"


class Step(StrEnum):
    """What the protocol waits for. Each protocol has its own steps (the delivery's resolve, look and post have no
    counterpart here); what they share is the instructions and the ends (``core/effects.py``)."""

    RECORDING = "recording"
    FINDING = "finding"
    CREATING = "creating"
    SWITCHING = "switching"
    READING = "reading"
    READING_BY_DATE = "reading_by_date"
    RECORDING_QUEUED_AT = "recording_queued_at"
    CLEARING = "clearing"
    CREATING_MISSING = "creating_missing"
    RECORDING_RUN_ID = "recording_run_id"
    CHECKING_PAUSED = "checking_paused"
    CONFIRMING = "confirming"
    WITHDRAWING = "withdrawing"
    OVER = "over"


@dataclass(frozen=True, slots=True)
class IntentState:
    """Where one attempt stands: the intent as last written (``record`` at ``mod_rev``) and what it waits for; how an
    error of it waits (semantics `trigger-errors`: the cap, the jitter drawn for this attempt, and whether its backoff
    starts over)."""

    step: Step
    partition: str
    record: TriggerRecord | None
    mod_rev: int
    error_retry_s: float
    draw: float = 0.0
    fresh: bool = False
    #: Semantics `scheduled-permit`: the DAG keeps its own timetable; the effect is its permit, never a created run.
    scheduled: bool = False
    #: Semantics `permit-retracted`: this resume withdraws the permit for this reason ("" gives it back).
    withdraw: str | None = None
    #: Semantics `trigger-errors`: the definition the attempt was planned under (the action's ``definition``), which
    #: its error records as ``tried_under``; 0: none adopted yet, recorded as absent.
    definition: int = 0


def start_trigger(
    trigger: Trigger,
    now: datetime,
    watcher: str,
    error_retry_s: float,
    *,
    draw: float = 0.0,
    scheduled: bool = False,
) -> tuple[IntentState, Instruction]:
    """Semantics `trigger-intent-first`: the first instruction of a trigger is its pending intent, compared with the
    planned ledger revision. ``draw`` (in [0, 1)): the jitter of this attempt's backoff, should it fail."""
    record = trigger.intent(requested_at=now, watcher=watcher)
    state = IntentState(
        Step.RECORDING, trigger.partition, record, trigger.ledger_rev, error_retry_s, draw, scheduled=scheduled,
        definition=trigger.definition,
    )  # fmt: skip
    return state, RecordIntent(record, trigger.ledger_rev)


def start_resume(
    partition: str,
    error_retry_s: float,
    *,
    draw: float = 0.0,
    fresh: bool = False,
    scheduled: bool = False,
    withdraw: str | None = None,
    definition: int = 0,
) -> IntentState:
    """A resume begins by reading the ledger (the planner's copy may be behind); feed ``IntentFound``. ``fresh``: an
    error of this attempt is counted as the first in a row (semantics `trigger-errors`, ``core/error_backoff.py``'s
    **Starts over**); ``definition``: the one it was planned under (its error records it)."""
    return IntentState(Step.FINDING, partition, None, 0, error_retry_s, draw, fresh, scheduled, withdraw, definition)


def step(state: IntentState, event: Event, now: datetime) -> tuple[IntentState, Instruction]:
    """The next instruction after ``event``."""
    if isinstance(event, LedgerMoved):
        # semantics `trigger-intent-first`: the ledger changed under this attempt (another watcher, or a newer intent):
        # nothing more to do here; the watch brings the change and the next pass re-plans from it.
        return _over(state), MOVED
    if isinstance(event, (Refused, NotFound, Transient)):
        # semantics `trigger-errors`: whatever step failed, the intent stays and is retried later (a 404 is a refusal
        # like any other).
        cap = min(state.error_retry_s, ACTIVE_RETRY_S) if isinstance(event, Transient) else state.error_retry_s
        return _fail(state, event.error, cap, now)
    if isinstance(event, IntentFound) and state.step is Step.FINDING:
        return _found(state, event, now)
    if isinstance(event, LedgerWritten):
        return _written(state, event.mod_rev, now)
    record = _record(state)
    if state.step is Step.CREATING:
        if isinstance(event, (Created, ConflictSameRun)):
            # semantics `trigger-create`: either way the run exists now; the done record names it.
            effect = Effect.CREATED if isinstance(event, Created) else Effect.ALREADY_CREATED
            created = replace_record(record, run_id=event.run_id)
            return _at(state, Step.CHECKING_PAUSED, record=created), CheckPaused(effect)
        if isinstance(event, ConflictOtherRun):
            # semantics `trigger-create-to-clear`: Airflow keeps one run per logical date: rerun the one that exists
            # instead of failing.
            switched = replace_record(record, action=TriggerAction.CLEAR, run_id=event.run_id, prior_queued_at=None)
            return _at(state, Step.SWITCHING, record=switched), SwitchToClear(switched, state.mod_rev)
    if state.step is Step.CREATING_MISSING and isinstance(event, (Created, ConflictSameRun, ConflictOtherRun)):
        # semantics `clear-run-gone`: whichever run now holds the logical date is the intent's run.
        updated = replace_record(record, run_id=event.run_id)
        return _at(state, Step.RECORDING_RUN_ID, record=updated), RecordRunId(updated, state.mod_rev)
    if state.step is Step.READING and isinstance(event, RunObserved):
        if event.run is None:
            # semantics `trigger-clear-once`: no run has the intent's id; the logical date may be held by another run
            # (scheduled, manual).
            return _at(state, Step.READING_BY_DATE), FindRunByDate()
        return _observed(state, record, event.run, now)
    if state.step is Step.READING_BY_DATE and isinstance(event, RunObserved):
        return _observed(state, record, event.run, now)
    if state.step is Step.CLEARING and isinstance(event, Cleared):
        return _at(state, Step.CHECKING_PAUSED), CheckPaused(Effect.CLEARED)
    if state.step is Step.CHECKING_PAUSED and isinstance(event, PausedChecked):
        # semantics `trigger-confirm`: the DAG may be paused: the run exists but waits; the operator sees why in
        # ``status``.
        done = replace_record(
            record, status=TriggerStatus.DONE, done_at=now, last_error=event.warning, attempts=record.attempts + 1,
            errors=None, retry_at=None, tried_under=None,
        )  # fmt: skip
        return _at(state, Step.CONFIRMING, record=done), Confirm(done, state.mod_rev)
    raise ProtocolError(f"event {type(event).__name__} at step {state.step}")


def clear_needed(instruction: CallClear, latest: AirflowRun | None) -> bool:
    """Semantics `clear-queued-at-first`: whether a (re)try of ``instruction`` may clear, given the run as Airflow shows
    it just before the try. A queued_at other than the recorded one means a clear already happened (an earlier try whose
    answer was lost): clearing again would rerun the DAG twice. A run that cannot be read is left to the clear call to
    report."""
    return latest is None or latest.queued_at == instruction.queued_at


def failed_record(
    current: TriggerRecord | None,
    mod_rev: int,
    error: str,
    *,
    errors: int = 1,
    retry_at: datetime | None = None,
    tried_under: int | None = None,
) -> TriggerRecord | None:
    """Semantics `trigger-errors`: the ledger value that records ``error`` on the intent in the ledger (``current`` at
    ``mod_rev``), ``errors`` in a row, tried again at ``retry_at``, made under the definition ``tried_under``; None
    when there is nothing to record it on (no intent, or one already done)."""
    if current is None or current.status is TriggerStatus.DONE:
        return None
    return replace_record(
        current,
        status=TriggerStatus.ERROR,
        last_error=error[:500],
        attempts=current.attempts + 1,
        intent_rev=current.intent_rev or mod_rev,
        errors=errors,
        retry_at=retry_at,
        tried_under=tried_under,
    )


def replace_record(record: TriggerRecord, **changes: object) -> TriggerRecord:
    """A copy of a (frozen) ledger record with some fields changed."""
    return record.model_copy(update=changes)


# -- the steps ------------------------------------------------------------------------------------------------------


def _found(state: IntentState, event: IntentFound, now: datetime) -> tuple[IntentState, Instruction]:
    record = event.record
    if state.withdraw is not None:
        return _withdraw(state, event)
    if record is None or record.status is TriggerStatus.DONE:
        # semantics `trigger-confirm`: completed by us or another watcher (the planner's view was behind), or deleted:
        # nothing to do.
        return _over(state), SETTLED
    if event.observed:
        # semantics `trigger-confirm` / semantics `run-confirms-intent`: the run reported after the intent, so the
        # Airflow call happened: confirm only.
        done = replace_record(
            record,
            status=TriggerStatus.DONE,
            intent_rev=record.intent_rev or event.mod_rev,
            done_at=now,
            last_error=None,
            errors=None,
            retry_at=None,
            tried_under=None,
        )
        return replace(state, step=Step.CONFIRMING, record=done, mod_rev=event.mod_rev), Confirm(done, event.mod_rev)
    return _act(replace(state, step=Step.RECORDING, record=record, mod_rev=event.mod_rev), event.mod_rev, now)


def _written(state: IntentState, mod_rev: int, now: datetime) -> tuple[IntentState, Instruction]:
    record = _record(state)
    if state.step is Step.RECORDING:
        return _act(state, mod_rev, now)
    moved = replace(state, mod_rev=mod_rev)
    if state.step is Step.SWITCHING:
        return _at(moved, Step.READING), ReadQueuedAt(record.run_id)
    if state.step is Step.RECORDING_QUEUED_AT:
        assert record.prior_queued_at is not None
        return _at(moved, Step.CLEARING), CallClear(record.run_id, record.prior_queued_at)
    if state.step is Step.RECORDING_RUN_ID:
        return _at(moved, Step.CHECKING_PAUSED), CheckPaused(Effect.CREATED)
    if state.step in (Step.CONFIRMING, Step.WITHDRAWING):
        return _over(moved), CONFIRMED
    raise ProtocolError(f"ledger write at step {state.step}")


def _withdraw(state: IntentState, event: IntentFound) -> tuple[IntentState, Instruction]:
    """Semantics `permit-retracted`: one write of the done intent as found, its permit with it; an entry that is no
    done intent in the other state changed since it was planned (the watch plans it again): settled."""
    record, want = event.record, state.withdraw or None
    if record is None or record.status is not TriggerStatus.DONE or (record.withdrawn is None) is (want is None):
        return _over(state), SETTLED
    changed = replace_record(record, withdrawn=want)
    moved = replace(state, step=Step.WITHDRAWING, record=changed, mod_rev=event.mod_rev)
    return moved, WithdrawPermit(changed, event.mod_rev)


def _act(state: IntentState, mod_rev: int, now: datetime) -> tuple[IntentState, Instruction]:
    """The intent is in the ledger at ``mod_rev``: make its effect (semantics `trigger-create` and
    `trigger-clear-once`)."""
    record = _record(state)
    if not record.intent_rev:
        # semantics `trigger-intent-first`: every later write of this intent carries the revision that first recorded
        # it.
        record = replace_record(record, intent_rev=mod_rev)
    state = replace(state, record=record, mod_rev=mod_rev)
    if record.action is TriggerAction.CREATE and state.scheduled:
        # semantics `permit-not-run`: Airflow's own run waits for the permit, which the confirmation grants.
        return _grant(state, record, now)
    if record.action is TriggerAction.CREATE:
        return _at(state, Step.CREATING), CallCreate(record.run_id, record)
    return _at(state, Step.READING), ReadQueuedAt(record.run_id)


def _observed(
    state: IntentState, record: TriggerRecord, run: AirflowRun | None, now: datetime
) -> tuple[IntentState, Instruction]:
    """Semantics `trigger-clear-once`: decide from the run as Airflow shows it."""
    if run is None and state.scheduled:
        # semantics `permit-cascade`: no run of the partition in Airflow: none is created, the permit is granted for
        # the run the DAG's timetable makes (after the courtesy check: a paused DAG is noted as for any trigger).
        return _at(state, Step.CHECKING_PAUSED), CheckPaused(Effect.GRANTED)
    if run is None:
        # semantics `clear-run-gone`: the run is gone (deleted in the UI, or never existed in Airflow): create it
        # instead.
        return _at(state, Step.CREATING_MISSING), CallCreate(run_id_for(state.partition), record)
    if record.prior_queued_at is not None and record.run_id == run.run_id:
        if run.queued_at != record.prior_queued_at:
            # semantics `clear-already-done`
            return _at(state, Step.CHECKING_PAUSED), CheckPaused(Effect.ALREADY_CLEARED)
        # semantics `clear-queued-at-first`, resumed: queued_at is already recorded and has not moved, so the clear did
        # not happen yet.
        return _at(state, Step.CLEARING), CallClear(run.run_id, run.queued_at)
    if run.state in ("queued", "running"):
        # semantics `clear-never-active`
        error = f"run {run.run_id} is {run.state} in Airflow; clearing it would kill it: waiting"
        return _fail(state, f"RunActive: {error}", min(state.error_retry_s, ACTIVE_RETRY_S), now)
    # semantics `clear-queued-at-first`
    updated = replace_record(record, prior_queued_at=run.queued_at, run_id=run.run_id)
    return _at(state, Step.RECORDING_QUEUED_AT, record=updated), RecordQueuedAt(updated, state.mod_rev)


def _grant(state: IntentState, record: TriggerRecord, now: datetime) -> tuple[IntentState, Instruction]:
    """Semantics `permit-not-run`: confirm at once; the permit written with the done record is the grant."""
    done = replace_record(
        record, status=TriggerStatus.DONE, done_at=now, last_error=None, attempts=record.attempts + 1, errors=None,
        retry_at=None, tried_under=None,
    )  # fmt: skip
    return _at(state, Step.CONFIRMING, record=done), Confirm(done, state.mod_rev)


def _fail(state: IntentState, error: str, cap_s: float, now: datetime) -> tuple[IntentState, Instruction]:
    """Semantics `trigger-errors`: record ``error`` on the intent as this attempt last wrote it (``state.mod_rev``),
    with the key's next step of backoff (capped at ``cap_s``); before this attempt wrote or read an intent there is
    nothing to record it on, and the attempt just ends after the first step."""
    previous = (state.record.errors or 0) if state.record is not None else 0
    errors = error_count(previous, fresh=state.fresh)
    delay = error_delay(errors, cap_s, state.draw)
    at = now + timedelta(seconds=delay)
    record = (
        None
        if state.step is Step.RECORDING
        else failed_record(
            state.record, state.mod_rev, error, errors=errors, retry_at=at, tried_under=state.definition or None
        )
    )
    if record is None:
        return _over(state), failed(error, delay)
    return _over(state), RecordError(record, state.mod_rev, error, delay)


def _record(state: IntentState) -> TriggerRecord:
    if state.record is None:
        raise ProtocolError(f"no intent at step {state.step}")
    return state.record


def _at(state: IntentState, step_: Step, *, record: TriggerRecord | None = None) -> IntentState:
    return replace(state, step=step_, record=record if record is not None else state.record)


def _over(state: IntentState) -> IntentState:
    return _at(state, Step.OVER)
