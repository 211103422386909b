"""Example tables for the intent protocol (coordinator/core/intent.py), one group per numbered rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core import effects, intent
from coordinator.core.actions import Resume, Trigger
from coordinator.core.model import NodeId, RunState, TriggerAction, TriggerRecord, TriggerStatus, run_id_for
from tests.support.world import P1, SEVEN, World, make_graph, n

P = "2026-01-01T00:00:00Z"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OURS = run_id_for(P)
RETRY_S = 30.0


def trigger(action: TriggerAction = TriggerAction.CREATE, run_id: str = OURS, ledger_rev: int = 0) -> Trigger:
    return Trigger(
        node=NodeId.parse("02_pipeline"),
        partition=P,
        inputs={"default/01_pipeline": 7},
        action=action,
        run_id=run_id,
        reason="all upstreams succeeded",
        cause_rev=7,
        ledger_rev=ledger_rev,
        trigger_count=1 if ledger_rev == 0 else 2,
    )


def recorded(
    action: TriggerAction = TriggerAction.CREATE, run_id: str = OURS, rev: int = 10
) -> tuple[intent.IntentState, intent.Instruction]:
    """A trigger whose intent write succeeded at ``rev``."""
    state, _ = intent.start_trigger(trigger(action, run_id), NOW, "w1", RETRY_S)
    return intent.step(state, effects.LedgerWritten(rev), NOW)


def resumed(record: TriggerRecord, mod_rev: int = 20) -> tuple[intent.IntentState, intent.Instruction]:
    """A resume that found ``record`` in the ledger at ``mod_rev``."""
    return intent.step(intent.start_resume(P, RETRY_S), intent.IntentFound(record, mod_rev), NOW)


def pending(**changes: object) -> TriggerRecord:
    base = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CLEAR, run_id=OURS, intent_rev=10)
    return base.model_copy(update=changes)


# -- rule 1: intent first --------------------------------------------------------------------------------------------


def test_rule1_a_trigger_starts_with_a_pending_intent_compared_with_the_planned_revision() -> None:
    """The first instruction writes a pending intent with the planned inputs, guarded by the planned ledger rev."""
    _, first = intent.start_trigger(trigger(ledger_rev=4), NOW, "w1", RETRY_S)
    assert isinstance(first, intent.RecordIntent)
    assert first.expected_rev == 4
    assert first.record.status is TriggerStatus.PENDING
    assert (first.record.requested_at, first.record.watcher, first.record.inputs) == (
        NOW,
        "w1",
        {"default/01_pipeline": 7},
    )


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(TriggerAction.CREATE, intent.CallCreate, id="create-calls-create"),
        pytest.param(TriggerAction.CLEAR, intent.ReadQueuedAt, id="clear-reads-the-run-first"),
    ],
)
def test_rule1_the_effect_follows_the_intent_and_carries_intent_rev(action: TriggerAction, expected: type) -> None:
    """Once recorded at revision 10, the intent's next instruction is its effect, and the record carries intent_rev."""
    state, instruction = recorded(action, rev=10)
    assert isinstance(instruction, expected)
    assert state.record is not None and state.record.intent_rev == 10 and state.mod_rev == 10


def test_rule1_every_later_write_compares_the_previous_writes_revision() -> None:
    """Switch (after the intent at 10), queued_at (after the switch at 11) and confirm each compare the last write."""
    state, _ = recorded(rev=10)
    state, switch = intent.step(state, intent.ConflictOtherRun("scheduled__x"), NOW)
    assert isinstance(switch, intent.SwitchToClear) and switch.expected_rev == 10
    state, _ = intent.step(state, intent.LedgerWritten(11), NOW)
    state, record_q = intent.step(state, intent.RunObserved(intent.AirflowRun("scheduled__x", "success", "q1")), NOW)
    assert isinstance(record_q, intent.RecordQueuedAt) and record_q.expected_rev == 11
    assert record_q.record.intent_rev == 10
    state, _ = intent.step(state, intent.LedgerWritten(12), NOW)
    state, _ = intent.step(state, intent.Cleared(), NOW)
    _, confirm = intent.step(state, intent.PausedChecked(None), NOW)
    assert isinstance(confirm, intent.Confirm) and confirm.expected_rev == 12 and confirm.record.intent_rev == 10


def test_rule1_a_resumed_intent_keeps_its_intent_rev_or_gets_its_first_revision() -> None:
    """An intent recorded with intent_rev keeps it; one written without it takes the revision that recorded it."""
    state, _ = resumed(pending(intent_rev=10), mod_rev=20)
    assert state.record is not None and state.record.intent_rev == 10
    state, _ = resumed(pending(intent_rev=0), mod_rev=20)
    assert state.record is not None and state.record.intent_rev == 20


# -- rule 2: create idempotently -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "effect"),
    [
        pytest.param(intent.Created(OURS), intent.Effect.CREATED, id="created"),
        pytest.param(intent.ConflictSameRun(OURS), intent.Effect.ALREADY_CREATED, id="409-same-run-id"),
    ],
)
def test_rule2_created_or_already_created_goes_on_to_confirm(answer: intent.Event, effect: intent.Effect) -> None:
    """A create answered "created" or "409, that same run id exists" is confirmed; nothing is called again."""
    state, _ = recorded()
    state, check = intent.step(state, answer, NOW)
    assert check == intent.CheckPaused(effect)
    _, confirm = intent.step(state, intent.PausedChecked(None), NOW)
    assert isinstance(confirm, intent.Confirm) and confirm.record.run_id == OURS


# -- rule 3: a create becomes a clear --------------------------------------------------------------------------------


def test_rule3_a_409_for_another_run_switches_the_intent_to_a_clear_of_that_run_first() -> None:
    """The switch (clear, that run id, no queued_at) is written before that run is read."""
    state, _ = recorded()
    state, switch = intent.step(state, intent.ConflictOtherRun("scheduled__x"), NOW)
    assert isinstance(switch, intent.SwitchToClear)
    assert (switch.record.action, switch.record.run_id, switch.record.prior_queued_at) == (
        TriggerAction.CLEAR,
        "scheduled__x",
        None,
    )
    _, read = intent.step(state, intent.LedgerWritten(11), NOW)
    assert read == intent.ReadQueuedAt("scheduled__x")


# -- rule 4: clear once, proven by queued_at -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "run", "expected"),
    [
        pytest.param(pending(), None, intent.CallCreate, id="a-run-gone-is-created"),
        pytest.param(
            pending(prior_queued_at="q1"),
            intent.AirflowRun(OURS, "queued", "q2"),
            intent.CheckPaused(intent.Effect.ALREADY_CLEARED),
            id="b-queued-at-moved-already-cleared",
        ),
        pytest.param(
            pending(prior_queued_at="q1"),
            intent.AirflowRun(OURS, "success", "q1"),
            intent.CallClear(OURS, "q1"),
            id="b-queued-at-recorded-not-moved-clears",
        ),
        pytest.param(pending(), intent.AirflowRun(OURS, "running", "q1"), effects.RecordError, id="c-running-waits"),
        pytest.param(pending(), intent.AirflowRun(OURS, "queued", "q1"), effects.RecordError, id="c-queued-waits"),
        pytest.param(
            pending(),
            intent.AirflowRun(OURS, "success", "q1"),
            intent.RecordQueuedAt(pending(prior_queued_at="q1"), 20),
            id="d-records-queued-at-first",
        ),
        pytest.param(
            pending(prior_queued_at="q1"),
            intent.AirflowRun("manual__x", "failed", "q9"),
            intent.RecordQueuedAt(pending(prior_queued_at="q9", run_id="manual__x"), 20),
            id="d-another-run-of-the-date-is-not-proof",
        ),
    ],
)
def test_rule4_the_run_as_airflow_shows_it_decides_the_clear(
    record: TriggerRecord, run: intent.AirflowRun | None, expected: intent.Instruction | type
) -> None:
    """Each case of rule 4: create a missing run, skip a clear that happened, wait for an active run, else record."""
    state, read = resumed(record)
    assert read == intent.ReadQueuedAt(OURS)
    if run is None or run.run_id != OURS:  # no run by the intent's id: the run of the logical date is read next
        state, find = intent.step(state, intent.RunObserved(None), NOW)
        assert find == intent.FindRunByDate()
    _, instruction = intent.step(state, intent.RunObserved(run), NOW)
    if isinstance(expected, type):
        assert isinstance(instruction, expected)
    else:
        assert instruction == expected


def test_rule4a_a_missing_run_is_created_under_the_deterministic_id_and_that_id_recorded() -> None:
    """A clear whose run is gone creates run_id_for(P), records the run id Airflow answered, then confirms."""
    state, _ = resumed(pending(run_id="manual__old"))
    state, find = intent.step(state, intent.RunObserved(None), NOW)
    assert find == intent.FindRunByDate()
    state, create = intent.step(state, intent.RunObserved(None), NOW)
    assert isinstance(create, intent.CallCreate) and create.run_id == OURS
    state, record_id = intent.step(state, intent.Created(OURS), NOW)
    assert isinstance(record_id, intent.RecordRunId) and record_id.record.run_id == OURS
    _, check = intent.step(state, intent.LedgerWritten(21), NOW)
    assert check == intent.CheckPaused(intent.Effect.CREATED)


def test_rule4c_an_active_run_is_retried_soon() -> None:
    """An active run is never cleared: the error names it and its backoff is capped at ACTIVE_RETRY_S, however many
    errors came before."""
    state, _ = resumed(pending(status=TriggerStatus.ERROR, errors=9))
    _, error = intent.step(state, intent.RunObserved(intent.AirflowRun(OURS, "running", "q1")), NOW)
    assert isinstance(error, effects.RecordError)
    assert error.retry_in_s == intent.ACTIVE_RETRY_S and "would kill" in error.error
    assert error.record.errors == 10


def test_rule4d_the_clear_names_the_recorded_queued_at_and_ends_in_a_confirmation() -> None:
    """After recording queued_at q1, the clear is asked only while queued_at is q1; a cleared answer confirms."""
    state, _ = resumed(pending())
    state, _ = intent.step(state, intent.RunObserved(intent.AirflowRun(OURS, "success", "q1")), NOW)
    state, clear = intent.step(state, intent.LedgerWritten(21), NOW)
    assert clear == intent.CallClear(OURS, "q1")
    _, check = intent.step(state, intent.Cleared(), NOW)
    assert check == intent.CheckPaused(intent.Effect.CLEARED)


# -- rule 5: confirm -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "warning", [pytest.param(None, id="unpaused"), pytest.param("02_pipeline is paused", id="paused-warns")]
)
def test_rule5_confirmation_marks_done_counts_the_attempt_and_warns_when_paused(
    warning: str | None,
) -> None:
    """Done, done_at = now, one more attempt, last_error = the pause warning; the write's success ends the attempt."""
    state, _ = recorded()
    state, _ = intent.step(state, intent.Created(OURS), NOW)
    state, confirm = intent.step(state, intent.PausedChecked(warning), NOW)
    assert isinstance(confirm, intent.Confirm)
    done = confirm.record
    assert (done.status, done.done_at, done.last_error, done.attempts) == (TriggerStatus.DONE, NOW, warning, 1)
    _, last = intent.step(state, intent.LedgerWritten(11), NOW)
    assert last == effects.CONFIRMED


def test_rule5_an_observed_run_is_confirmed_without_calling_airflow() -> None:
    """A resume whose run already reported after the intent goes straight to the confirmation (planner rule 8)."""
    record = pending(intent_rev=0, attempts=2, last_error="RunActive: ...")
    state, confirm = intent.step(intent.start_resume(P, RETRY_S), intent.IntentFound(record, 20, observed=True), NOW)
    assert isinstance(confirm, intent.Confirm) and confirm.expected_rev == 20
    done = confirm.record
    assert (done.status, done.intent_rev, done.attempts, done.last_error, done.done_at) == (
        TriggerStatus.DONE,
        20,
        2,
        None,
        NOW,
    )
    _, last = intent.step(state, intent.LedgerWritten(21), NOW)
    assert last == effects.CONFIRMED


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(None, id="ledger-key-gone"),
        pytest.param(pending(status=TriggerStatus.DONE), id="already-done"),
    ],
)
def test_rule5_a_resume_of_an_intent_done_or_gone_does_nothing(record: TriggerRecord | None) -> None:
    """The planner's view was behind: the attempt ends at once, skipped."""
    _, instruction = intent.step(intent.start_resume(P, RETRY_S), intent.IntentFound(record, 20), NOW)
    assert instruction == effects.SETTLED


# -- rule 6: errors are recorded and retried later -------------------------------------------------------------------


REFUSED = intent.Refused("AirflowError: 400: Dag 'd' is not a partitioned Dag and does not accept a partition_key")
LOST = intent.Transient("AirflowUnavailable: 503")


@pytest.mark.parametrize(
    ("error_retry_s", "event", "before", "draw", "fresh", "delay"),
    [
        pytest.param(30.0, REFUSED, None, 0.0, False, 1.0, id="first-refusal-first-step"),
        pytest.param(30.0, REFUSED, 4, 0.0, False, 16.0, id="fifth-refusal-doubled-four-times"),
        pytest.param(30.0, REFUSED, 4, 0.5, False, 12.0, id="jittered-down-within-the-step"),
        pytest.param(30.0, REFUSED, 9, 0.0, False, 30.0, id="capped-at-error-retry-s"),
        pytest.param(30.0, REFUSED, 9, 0.0, True, 1.0, id="fresh-starts-over"),
        pytest.param(30.0, LOST, 9, 0.0, False, intent.ACTIVE_RETRY_S, id="transient-capped-soon"),
        pytest.param(2.0, LOST, 9, 0.0, False, 2.0, id="transient-never-slower-than-refusal"),
    ],
)
def test_rule6_a_failure_at_any_step_is_recorded_with_the_keys_next_step_of_backoff(
    error_retry_s: float, event: intent.Event, before: int | None, draw: float, fresh: bool, delay: float
) -> None:
    """A failure of a resumed intent becomes RecordError compared with the attempt's last read, counting one more
    error in a row (one, when fresh) and recording retry_at = now + the key's backoff step, the attempt's end saying the
    same delay."""
    record = pending(status=TriggerStatus.ERROR if before else TriggerStatus.PENDING, errors=before)
    start = intent.start_resume(P, error_retry_s, draw=draw, fresh=fresh)
    state, _ = intent.step(start, intent.IntentFound(record, 20), NOW)
    _, instruction = intent.step(state, event, NOW)
    assert isinstance(instruction, effects.RecordError)
    assert (instruction.retry_in_s, instruction.expected_rev) == (delay, 20)
    assert instruction.error == getattr(event, "error", None)
    failed = instruction.record
    assert failed.status is TriggerStatus.ERROR and failed.intent_rev == 10
    assert failed.errors == (1 if fresh or before is None else before + 1)
    assert failed.retry_at == NOW + timedelta(seconds=delay)
    assert instruction.end() == effects.End(effects.Ending.FAILED, getattr(event, "error", None), delay)


@pytest.mark.parametrize("event", [pytest.param(REFUSED, id="refused"), pytest.param(LOST, id="transient")])
def test_rule6_a_failure_before_the_intent_is_written_just_ends_after_the_first_step(event: intent.Event) -> None:
    """Before the intent is written there is nothing to record a failure on: the attempt ends, back after one step."""
    unwritten = intent.start_trigger(trigger(), NOW, "w1", RETRY_S)[0]
    _, ended = intent.step(unwritten, event, NOW)
    assert ended == effects.End(effects.Ending.FAILED, getattr(event, "error", None), 1.0)
    written = intent.step(unwritten, effects.LedgerWritten(10), NOW)[0]
    _, instruction = intent.step(written, event, NOW)
    assert isinstance(instruction, effects.RecordError) and instruction.record.errors == 1


def test_rule6_an_error_records_the_definition_its_attempt_was_planned_under() -> None:
    """A trigger's or a resume's failure writes tried_under, the since of the definition its action was planned
    under (the planner tells a later definition from it); an action planned before any adoption writes none."""
    planned = Trigger(**{**{f: getattr(trigger(), f) for f in Trigger.__slots__}, "definition": 41})
    state, _ = intent.start_trigger(planned, NOW, "w1", RETRY_S)
    state, _ = intent.step(state, effects.LedgerWritten(10), NOW)
    _, instruction = intent.step(state, REFUSED, NOW)
    assert isinstance(instruction, effects.RecordError) and instruction.record.tried_under == 41

    record = pending(status=TriggerStatus.ERROR, errors=2, tried_under=41)
    state, _ = intent.step(intent.start_resume(P, RETRY_S, definition=57), intent.IntentFound(record, 20), NOW)
    _, instruction = intent.step(state, REFUSED, NOW)
    assert isinstance(instruction, effects.RecordError) and instruction.record.tried_under == 57

    state, _ = recorded()
    _, instruction = intent.step(state, REFUSED, NOW)
    assert isinstance(instruction, effects.RecordError) and instruction.record.tried_under is None


def test_rule6_a_confirmation_clears_the_backoff() -> None:
    """A refused intent that goes through is done with neither errors, retry_at nor tried_under left in its
    entry."""
    record = pending(status=TriggerStatus.ERROR, errors=5, retry_at=NOW, action=TriggerAction.CREATE, tried_under=41)
    state, create = intent.step(intent.start_resume(P, RETRY_S), intent.IntentFound(record, 20), NOW)
    assert isinstance(create, intent.CallCreate)
    state, _ = intent.step(state, intent.Created(OURS), NOW)
    _, confirm = intent.step(state, intent.PausedChecked(None), NOW)
    assert isinstance(confirm, intent.Confirm)
    assert confirm.record.status is TriggerStatus.DONE
    assert (confirm.record.errors, confirm.record.retry_at, confirm.record.tried_under) == (None, None, None)


def test_rule6_the_failed_record_keeps_the_intent_and_counts_the_attempt() -> None:
    """The ledger keeps the same intent, now status error with the (bounded) message, one more attempt, intent_rev."""
    failed = intent.failed_record(pending(intent_rev=0, attempts=1), 20, "x" * 600)
    assert failed is not None
    assert (failed.status, failed.attempts, failed.intent_rev, len(failed.last_error or "")) == (
        TriggerStatus.ERROR,
        2,
        20,
        500,
    )
    assert (failed.action, failed.run_id, failed.inputs) == (TriggerAction.CLEAR, OURS, {})


@pytest.mark.parametrize(
    "current",
    [pytest.param(None, id="gone"), pytest.param(pending(status=TriggerStatus.DONE), id="done-meanwhile")],
)
def test_rule6_an_error_is_not_recorded_on_an_intent_done_or_gone(current: TriggerRecord | None) -> None:
    """An intent completed meanwhile (or deleted) is not turned back into an error."""
    assert intent.failed_record(current, 20, "boom") is None


def test_an_event_the_protocol_cannot_receive_at_this_step_is_a_bug() -> None:
    """A Cleared answer to a create is a caller bug: ProtocolError, never a silent wrong decision."""
    state, _ = recorded()
    with pytest.raises(effects.ProtocolError):
        intent.step(state, intent.Cleared(), NOW)


# -- the whole protocol against the test world's etcd and Airflow (tests/support/world.py) --------------------------


def _cascaded_world() -> World:
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}")
    world.settle()
    return world


@pytest.mark.parametrize(
    ("rerun", "kind"),
    [pytest.param(False, "create", id="create"), pytest.param(True, "clear", id="clear")],
)
def test_an_effect_applied_before_a_crash_is_not_repeated_when_resumed_before_the_run_reports(
    rerun: bool, kind: str
) -> None:
    """Crash right after the Airflow call, resume before the run reported: rules 2 and 4b keep it to one effect."""
    if rerun:
        world = _cascaded_world()
        world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    else:
        world = World(SEVEN)
        world.adopt()
        world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}")
    before = world.count("02_pipeline", kind=kind)
    first = next(a for a in world.plan().actions if a.node == n("02_pipeline"))
    assert isinstance(first, Trigger) and first.action is TriggerAction(kind)
    world.apply_action(first, crash_after_effect=True)
    assert world.count("02_pipeline", kind=kind) == before + 1
    resume = next(a for a in world.plan().actions if a.node == n("02_pipeline"))
    assert isinstance(resume, Resume) and not resume.observed
    world.apply_action(resume)
    assert world.count("02_pipeline", kind=kind) == before + 1, "the resumed intent called Airflow again"
    assert world.view.ledger[(n("02_pipeline"), P1)].record.status is TriggerStatus.DONE


def test_rule4_a_run_found_by_its_logical_date_is_the_one_cleared() -> None:
    """When no run has the intent's id, the run holding the logical date is read next and its queued_at recorded."""
    state, _ = resumed(pending())
    state, find = intent.step(state, intent.RunObserved(None), NOW)
    assert find == intent.FindRunByDate()
    _, record = intent.step(state, intent.RunObserved(intent.AirflowRun("scheduled__x", "success", "q7")), NOW)
    assert isinstance(record, intent.RecordQueuedAt)
    assert (record.record.run_id, record.record.prior_queued_at) == ("scheduled__x", "q7")


@pytest.mark.parametrize(
    ("latest", "needed"),
    [
        pytest.param(intent.AirflowRun(OURS, "success", "q1"), True, id="queued_at-unchanged-clears"),
        pytest.param(intent.AirflowRun(OURS, "queued", "q2"), False, id="queued_at-moved-is-a-clear-that-happened"),
        pytest.param(None, True, id="unreadable-run-is-left-to-the-clear-call"),
    ],
)
def test_rule4d_clear_needed_only_while_queued_at_has_not_moved(latest: intent.AirflowRun | None, needed: bool) -> None:
    """A (re)try of a clear clears only while the run's queued_at is the recorded one: a moved one was our clear."""
    assert intent.clear_needed(intent.CallClear(OURS, "q1"), latest) is needed


def test_a_clear_whose_answer_was_lost_is_retried_without_a_second_clear() -> None:
    """A rerun's clear takes effect but its answer is lost; the retry re-reads the run, ``clear_needed`` sees the
    moved queued_at, and the dependent reruns once (the test world calls the protocol's guard, as the actuator does)."""
    world = World(make_graph({"b": ["a"]}))
    world.adopt()
    world.state("a", P1, "success")
    world.settle()
    assert world.count("b", kind="create") == 1
    world.state("a", P1, "success", run_id="manual__rerun")  # a's rerun: a new generation
    (action,) = world.plan([P1]).actions
    world.apply_action(action, lose_answer=True)
    assert world.count("b", kind="clear") == 1
    world.settle()
    assert world.count("b", kind="clear") == 1
