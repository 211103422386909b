"""Scheduled dependents (semantics `scheduled-permit`): example tables for the planner's action and the intent
protocol's steps, and the in-memory world (tests/support/world.py) driving both with crashes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from coordinator.core import effects, intent
from coordinator.core.actions import Resume, Trigger
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunState, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.permit import dump_permit, parse_permit, parse_permit_key, permit_key, permit_of
from coordinator.core.retention import KeyKind, partition_facts
from tests.support.world import P1, P2, World, make_graph, n

NOW = datetime(2026, 1, 2, tzinfo=UTC)
UP, DOWN = "01_pipeline", "02_pipeline"
OWN = f"scheduled__{P1}"


def scheduled(graph: Graph, *dags: str) -> Graph:
    """``graph`` with ``dags`` declared ``"runs": "scheduled"``."""
    specs = dict(graph.dags)
    for dag in dags:
        specs[n(dag)] = replace(specs[n(dag)], scheduled=True)
    return Graph(dags=specs, instances=graph.instances)


def world(*dags: str) -> World:
    w = World(scheduled(make_graph({DOWN: [UP], "03_pipeline": [DOWN]}), *dags))
    w.adopt()
    return w


def only_action(w: World) -> Trigger | Resume | None:
    actions = w.plan([P1]).actions
    assert len(actions) <= 1, actions
    return actions[0] if actions else None


# -- the planner's action (semantics `permit-not-run`, `permit-waiting-run`, `permit-cascade`) -----------------------


def test_a_waiting_run_gets_a_create_that_names_airflows_own_run() -> None:
    """Semantics `permit-waiting-run`: the run waiting before any permit is no run in flight; the action is a create
    (a permit, no Airflow run) naming Airflow's scheduled run."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    assert only_action(w) is None  # its upstream has not succeeded: it waits
    w.state(UP, P1, RunState.SUCCESS)
    action = only_action(w)
    assert isinstance(action, Trigger) and action.node == n(DOWN)
    assert (action.action, action.run_id) == (TriggerAction.CREATE, OWN)


def test_a_triggered_dependents_running_run_keeps_it_back_as_always() -> None:
    """The contrast: the same facts for a triggered DAG decide nothing while its run is running (rule 5)."""
    w = world()
    w.schedule(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS)
    assert only_action(w) is None


def test_a_permit_can_be_granted_before_the_timetable_makes_the_run() -> None:
    """No run of P yet: the permit is granted ahead (the run's wait then goes on at once)."""
    w = world(DOWN)
    w.state(UP, P1, RunState.SUCCESS)
    action = only_action(w)
    assert isinstance(action, Trigger) and action.action is TriggerAction.CREATE


def test_the_grant_calls_no_airflow_and_the_permit_is_written_with_each_ledger_write() -> None:
    """Semantics `permit-not-run`: two ledger writes (pending, done), a permit with each, granted with the second;
    nothing reached Airflow; the DAG is then in flight and nothing more is planned."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS)
    assert w.act([P1]) == 1
    assert w.effects == []
    assert [p.granted for _, _, p in w.permit_writes] == [False, True]
    permit = w.permits[(n(DOWN), P1)]
    assert (permit.generation, permit.run_id, permit.inputs) == (
        1,
        OWN,
        {"default/01_pipeline": w.view.runs.get((n(UP), P1)).rev},
    )  # type: ignore[union-attr]
    assert w.act([P1]) == 0  # granted, its run running: in flight


def test_a_rerun_of_the_upstream_after_the_run_finished_clears_airflows_run_once_then_grants_again() -> None:
    """Semantics `permit-cascade`: the permit is withdrawn before the clear, the scheduled run is cleared once, and
    the permit of generation 2 granted; the dependent below runs once per generation as for any DAG."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS)
    w.act([P1])
    w.finish(DOWN, P1)  # the wait went on and the run succeeded
    w.settle()  # 03 (triggered) runs for DOWN's success
    assert [e[2] for e in w.effects] == ["create"]
    w.state(UP, P1, RunState.SUCCESS, clear_number=1)  # the upstream is rerun
    action = only_action(w)
    assert isinstance(action, Trigger) and (action.action, action.run_id) == (TriggerAction.CLEAR, OWN)
    before = len(w.permit_writes)
    w.apply_action(action)
    assert [e[:3] for e in w.effects[1:]] == [(n(DOWN), P1, "clear")]
    writes = [p for _, _, p in w.permit_writes[before:]]
    assert [(p.granted, p.generation) for p in writes] == [(False, 2), (False, 2), (True, 2)]
    assert only_action(w) is None  # cleared and granted: the run is in flight again


def test_a_rerun_with_no_run_of_p_in_airflow_grants_without_creating_one() -> None:
    """Semantics `permit-cascade`: a clear whose run is gone in Airflow creates no run; the permit is granted."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS)
    w.act([P1])
    w.finish(DOWN, P1)
    del w.airflow[(n(DOWN), P1)]  # deleted in the UI
    w.state(UP, P1, RunState.SUCCESS, clear_number=1)
    w.act([P1])
    assert [e[2] for e in w.effects if e[0] == n(DOWN)] == []
    assert w.permits[(n(DOWN), P1)].granted and w.permits[(n(DOWN), P1)].generation == 2


@pytest.mark.parametrize("crash", ["after-intent", "after-effect"])
def test_a_crash_anywhere_still_grants_once_and_clears_once(crash: str) -> None:
    """A crash after the intent (or after the clear) is resumed, never re-decided: one clear, one grant per
    generation."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS)
    first = only_action(w)
    assert first is not None
    w.apply_action(first, crash_after_intent=True)
    assert not w.permits[(n(DOWN), P1)].granted
    resume = only_action(w)
    assert isinstance(resume, Resume)
    w.apply_action(resume)
    assert w.permits[(n(DOWN), P1)].granted
    w.finish(DOWN, P1)
    w.state(UP, P1, RunState.SUCCESS, clear_number=1)
    rerun = only_action(w)
    assert rerun is not None
    w.apply_action(rerun, crash_after_intent=crash == "after-intent", crash_after_effect=crash == "after-effect")
    while (again := only_action(w)) is not None:
        w.apply_action(again)
    assert [e[2] for e in w.effects] == ["clear"]
    assert [p.generation for _, _, p in w.permit_writes if p.granted] == [1, 2]


def test_another_partition_keeps_waiting() -> None:
    """A permit is per partition: P2's run waits while P1's is granted."""
    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.schedule(DOWN, P2)
    w.state(UP, P1, RunState.SUCCESS)
    w.act()
    assert (n(DOWN), P1) in w.permits and (n(DOWN), P2) not in w.permits


# -- semantics `permit-retracted` ------------------------------------------------------------------------------------


def test_a_lost_input_withdraws_a_permit_whose_run_has_not_started_and_a_new_success_grants_it_once() -> None:
    """The upstream's success is withdrawn (a failed attempt, as ``retract`` writes) after the permit was granted and
    before Airflow made the run: one write withdraws it (the reason kept); the run the timetable then makes waits;
    the upstream's next success grants generation 2 once, with no Airflow call."""
    w = world(DOWN)
    w.state(UP, P1, RunState.SUCCESS)
    w.act([P1])
    assert w.permits[(n(DOWN), P1)].granted
    w.state(UP, P1, RunState.FAILED, clear_number=1)
    action = only_action(w)
    assert isinstance(action, Resume) and action.withdraw is not None and "no longer a success" in action.withdraw
    w.apply_action(action)
    off = w.permits[(n(DOWN), P1)]
    assert (off.granted, off.generation, off.withdrawn) == (False, 1, action.withdraw)
    assert only_action(w) is None  # the upstream failed: nothing more
    w.schedule(DOWN, P1)
    assert only_action(w) is None  # the run waits
    w.state(UP, P1, RunState.SUCCESS, clear_number=2)
    while (again := only_action(w)) is not None:
        w.apply_action(again)
    assert w.effects == []
    assert [(p.granted, p.generation) for _, _, p in w.permit_writes] == [
        (False, 1), (True, 1), (False, 1), (False, 2), (True, 2)
    ]  # fmt: skip


def test_a_run_recorded_before_the_withdrawal_landed_gets_its_permit_back() -> None:
    """The run's state reached etcd between the plan and the withdrawal's write (its wait may have gone on): the
    permit is given back, once, and the run is in flight as any granted run."""
    w = world(DOWN)
    w.state(UP, P1, RunState.SUCCESS)
    w.act([P1])
    w.state(UP, P1, RunState.FAILED, clear_number=1)
    withdraw = only_action(w)
    assert isinstance(withdraw, Resume) and withdraw.withdraw
    w.schedule(DOWN, P1)  # recorded meanwhile
    w.apply_action(withdraw)
    back = only_action(w)
    assert isinstance(back, Resume) and back.withdraw == ""
    w.apply_action(back)
    permit = w.permits[(n(DOWN), P1)]
    assert permit.granted and permit.withdrawn is None and permit.generation == 1
    assert only_action(w) is None


def test_a_triggered_dependent_and_a_running_scheduled_run_keep_their_grant() -> None:
    """Only a scheduled DAG's permit whose run has not started is withdrawn: a triggered dependent's run was created,
    and a scheduled run already running may have gone past its wait."""
    for dags, schedule in (((), False), ((DOWN,), True)):
        w = world(*dags)
        if schedule:
            w.schedule(DOWN, P1)
        w.state(UP, P1, RunState.SUCCESS)
        w.act([P1])
        w.state(UP, P1, RunState.FAILED, clear_number=1)
        assert only_action(w) is None


def test_intent_a_withdrawal_writes_once_and_settles_on_an_entry_already_so() -> None:
    """One write with ``withdrawn``; an entry already withdrawn (or not done) is left alone."""
    done = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id=OWN, intent_rev=10)
    state = intent.start_resume(P1, 30.0, scheduled=True, withdraw="01 is no longer a success")
    state, write = intent.step(state, intent.IntentFound(done, 12), NOW)
    assert isinstance(write, intent.WithdrawPermit) and write.record.withdrawn == "01 is no longer a success"
    assert write.expected_rev == 12 and not permit_of(write.record).granted
    _, end = intent.step(state, effects.LedgerWritten(13), NOW)
    assert end == effects.CONFIRMED
    again = intent.start_resume(P1, 30.0, scheduled=True, withdraw="again")
    _, settled = intent.step(again, intent.IntentFound(write.record, 13), NOW)
    assert settled == effects.SETTLED


# -- the intent protocol's steps -------------------------------------------------------------------------------------


def test_intent_a_scheduled_create_confirms_at_once_without_a_call() -> None:
    """Semantics `permit-not-run`: RecordIntent, then Confirm (done); no CallCreate."""
    trigger = Trigger(n(DOWN), P1, {"default/01_pipeline": 7}, TriggerAction.CREATE, OWN, "r", 7, 0, 1)
    state, first = intent.start_trigger(trigger, NOW, "w1", 30.0, scheduled=True)
    assert isinstance(first, intent.RecordIntent)
    state, second = intent.step(state, effects.LedgerWritten(10), NOW)
    assert isinstance(second, intent.Confirm) and second.record.status is TriggerStatus.DONE
    assert second.record.intent_rev == 10 and second.expected_rev == 10
    _, end = intent.step(state, effects.LedgerWritten(11), NOW)
    assert end == effects.CONFIRMED


def test_intent_a_scheduled_clear_whose_run_is_gone_grants_without_creating() -> None:
    """Semantics `permit-cascade`: no run by id nor by date: the courtesy check, then the confirmation."""
    record = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CLEAR, run_id=OWN, intent_rev=10)
    state = intent.start_resume(P1, 30.0, scheduled=True)
    state, read = intent.step(state, intent.IntentFound(record, 20), NOW)
    assert read == intent.ReadQueuedAt(OWN)
    state, find = intent.step(state, intent.RunObserved(None), NOW)
    assert find == intent.FindRunByDate()
    state, check = intent.step(state, intent.RunObserved(None), NOW)
    assert check == intent.CheckPaused(intent.Effect.GRANTED)
    _, confirm = intent.step(state, intent.PausedChecked(None), NOW)
    assert isinstance(confirm, intent.Confirm) and confirm.record.status is TriggerStatus.DONE


# -- the permit's value and key --------------------------------------------------------------------------------------


def test_permit_value_round_trips_and_a_bad_value_reads_as_none() -> None:
    """A permit written reads back the same; a value that is no permit is None (the wait keeps waiting)."""
    record = TriggerRecord(
        status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="coordinator__x", inputs={"a/b": 3},
        trigger_count=2, done_at=NOW,
    )  # fmt: skip
    permit = permit_of(record)
    assert permit.granted and permit.run_id == "" and permit.generation == 2 and permit.granted_at == NOW
    assert parse_permit(dump_permit(permit)) == permit
    assert parse_permit(b"not json") is None and parse_permit(b'{"granted": true}') is None


def test_permit_key_layout() -> None:
    """{prefix}/permits/{instance}/{dag_id}/{partition}, and back."""
    keys = KeyLayout("/c")
    key = permit_key(keys, NodeId("team_b", "g_daily"), P1)
    assert key == f"/c/permits/team_b/g_daily/{P1}"
    assert parse_permit_key(keys, key) == (NodeId("team_b", "g_daily"), P1)
    assert parse_permit_key(keys, f"/c/triggers/team_b/g_daily/{P1}") is None


# -- shown: status and the page (report.row_status), why (the verdict) ------------------------------------------------


def test_status_says_waiting_in_airflow_then_permit_granted_then_running() -> None:
    """A scheduled DAG's waiting run is "waiting in Airflow" (why: for its permit, the run, what it waits for); a
    permit not yet taken by a run is "permit granted"; a triggered DAG with the same facts says what it always said."""
    from coordinator.explain.report import status_rows

    def row(w: World) -> tuple[str, str]:
        plan = w.plan([P1])
        (found,) = [r for r in status_rows(w.graph, plan, [P1], w.view) if r.dag == DOWN]
        return found.status, found.summary

    w = world(DOWN)
    w.schedule(DOWN, P1)
    status, summary = row(w)
    assert status == "waiting in Airflow"
    assert summary == f"{DOWN} waits in Airflow for its permit (run {OWN}): {UP} has not run for this partition"
    w2 = world(DOWN)
    w2.state(UP, P1, RunState.SUCCESS)
    w2.act([P1])
    status, summary = row(w2)
    assert status == "permit granted" and summary.startswith(f"{DOWN}'s permit is granted (generation 1, revision ")
    assert summary.endswith("its run has not started yet")
    w3 = world()
    w3.schedule(DOWN, P1)
    assert row(w3) == ("running", f"{DOWN} waits: {UP} has not run for this partition")


def test_doctor_counts_granted_permits_and_names_the_runs_waiting_in_airflow() -> None:
    """doctor's check: one permit granted (P1), one run waiting (P2, named with its run); informative, never failing."""
    from coordinator.diagnosis.model import CheckStatus
    from coordinator.diagnosis.permit_checks import permits_check

    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.schedule(DOWN, P2)
    w.state(UP, P1, RunState.SUCCESS)
    w.act()
    check = permits_check(w.graph, w.view, None)
    assert check.status is CheckStatus.OK
    assert check.summary == "1 scheduled DAG(s): 1 permit(s) granted, 1 run(s) waiting in Airflow for one"
    assert check.details == (f"{DOWN} {P2}: run scheduled__{P2} waits in Airflow since an unknown time",)


def test_the_state_gauges_count_granted_permits_and_waiting_runs() -> None:
    """coordinator_permits_granted / _waiting: one granted (P1), one run waiting (P2); zero without scheduled DAGs."""
    from coordinator.runtime.health import watcher_state

    w = world(DOWN)
    w.schedule(DOWN, P1)
    w.schedule(DOWN, P2)
    w.state(UP, P1, RunState.SUCCESS)
    w.act()
    state = watcher_state(w.view, leading=True, in_flight=0, graph=w.graph, graph_invalid=False)
    assert (state.permits_granted, state.permits_waiting) == (1, 1)
    plain = watcher_state(w.view, leading=True, in_flight=0, graph=world().graph, graph_invalid=False)
    assert (plain.permits_granted, plain.permits_waiting) == (0, 0)


def test_a_grant_carries_when_its_newest_upstream_ended_for_the_delay_metric() -> None:
    """The planned create of a scheduled DAG names the end of the upstream run it waits for; a triggered one none."""
    from coordinator.core.model import RunRecord, dump_record

    w = world(DOWN)
    ended = datetime(2026, 1, 1, 6, tzinfo=UTC)
    record = RunRecord(state=RunState.SUCCESS, run_id="r", start_date=ended, end_date=ended)
    w.write(w.keys.run_key(n(UP), P1), dump_record(record))
    action = only_action(w)
    assert isinstance(action, Trigger) and action.cause_at == ended
    t = world()
    t.write(t.keys.run_key(n(UP), P1), dump_record(record))
    triggered = only_action(t)
    assert isinstance(triggered, Trigger) and triggered.cause_at is None


def test_a_rerun_without_cascade_of_the_upstream_leaves_the_scheduled_dependent_alone() -> None:
    """`rerun --no-cascade` treats a scheduled DAG as a triggered one: the upstream's waived success clears nothing
    and grants no new permit; a later plain rerun cascades through the permit once."""
    from coordinator.core.no_cascade import NoCascadeRecord, dump_no_cascade

    w = world(DOWN)
    w.schedule(DOWN, P1)
    first = w.state(UP, P1, RunState.SUCCESS, run_id="scheduled__up")
    w.act([P1])
    w.finish(DOWN, P1)
    waiver = NoCascadeRecord(run_id="scheduled__up", clear_number=0, replaces=first)
    w.write(w.keys.no_cascade_key(n(UP), P1), dump_no_cascade(waiver))
    w.state(UP, P1, RunState.SUCCESS, run_id="scheduled__up", clear_number=1)
    assert [a for a in w.plan([P1]).actions if a.node == n(DOWN)] == []
    w.state(UP, P1, RunState.SUCCESS, run_id="scheduled__up", clear_number=2)
    action = only_action(w)
    assert isinstance(action, Trigger) and action.node == n(DOWN) and action.action is TriggerAction.CLEAR


def test_the_leaders_retention_selects_a_permit_with_its_ledger_entry_at_its_revision() -> None:
    """Semantics `prune-deletes`: with the graph's scheduled DAGs, a partition's facts carry each scheduled ledger
    entry's permit at the entry's mod revision (written in one transaction); without them, none."""
    w = world(DOWN)
    w.state(UP, P1, RunState.SUCCESS)
    w.settle()
    facts = partition_facts(w.view, P1, w.graph.scheduled)
    ledger = {f.node: f for f in facts if f.kind is KeyKind.LEDGER}
    permits = [f for f in facts if f.kind is KeyKind.PERMIT]
    assert [(f.key, f.mod_rev) for f in permits] == [(permit_key(w.keys, n(DOWN), P1), ledger[n(DOWN)].mod_rev)]
    assert not [f for f in partition_facts(w.view, P1) if f.kind is KeyKind.PERMIT]
