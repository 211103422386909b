"""Cascades through a real Airflow 3.3 with a real ``coordinator watch``: the first run of a partition, a cleared root,
a cleared middle DAG (docs/semantics.md, stories 1 and 2). Everything is checked where it is visible from outside:
Airflow's REST API (runs, states, start and end dates), the run-state keys (``clear_number``, which REST does not
expose) and the trigger ledger (``trigger_count``).

The three tests share one partition and one watcher (the module's ``cascade`` fixture runs the first cascade); each
reads the state it starts from, so the second and third also pass when run alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from coordinator.core.model import RunRecord, RunState, TriggerAction, TriggerRecord, TriggerStatus, run_id_for
from tests.e2e.harness import E2E, PIPELINES, SESSION_GRAPH, UPSTREAMS, DagRun, assert_started_after, timeline
from tests.e2e.settle import wait_runs_settled

pytestmark = pytest.mark.e2e

DOWNSTREAM = PIPELINES[1:]  # 02..07: what the coordinator runs
FAN_IN = PIPELINES[1:5]  # 02..05: 06 waits for all four
#: A cascade of six one-task DAGs takes 15-30 s on two loaded cores; the bound only turns a hang into a failure.
CASCADE_TIMEOUT_S = 150.0
#: The module's watcher logs to <work dir>/<this>.log (tests/e2e/settle.py reads its passes).
WATCHER_LOG = "cascades-watcher"
#: The plugin and REST may round start dates differently.
SAME_START = timedelta(seconds=1)


@dataclass(frozen=True)
class Attempt:
    """What is known of one DAG for the partition: the REST run, the run-state record, the ledger entry."""

    run: DagRun
    record: RunRecord
    ledger: TriggerRecord | None


@dataclass
class Cascade:
    e2e: E2E
    partition: str
    root_run_id: str

    def attempt(self, dag_id: str) -> Attempt:
        run = self.e2e.only_run(dag_id, self.partition)
        record, _ = self.e2e.read_run(dag_id, self.partition)
        assert record is not None, f"{dag_id}: no run-state record for {self.partition}"
        return Attempt(run, record, self.e2e.read_ledger(dag_id, self.partition))

    def snapshot(self) -> dict[str, Attempt]:
        return {dag_id: self.attempt(dag_id) for dag_id in PIPELINES}

    def wait_success(self, dag_id: str, clear_number: int) -> None:
        self.e2e.wait_for_run_record(
            dag_id,
            self.partition,
            lambda r: r.state is RunState.SUCCESS and r.clear_number == clear_number,
            timeout_s=CASCADE_TIMEOUT_S,
            what=f"success of attempt {clear_number}",
        )

    def settled(self, last: str, clear_number: int) -> dict[str, Attempt]:
        """Wait for ``last`` to succeed at ``clear_number``, then check that nothing else happens: the watcher's idle
        pass after every record of the partition would have planned a late or duplicate trigger (settle.py)."""
        self.wait_success(last, clear_number)
        before = self.snapshot()
        wait_runs_settled(self.e2e, WATCHER_LOG, [(dag_id, self.partition) for dag_id in PIPELINES])
        after = self.snapshot()
        assert after == before, "the partition changed after the cascade ended (a late or duplicate trigger)"
        for dag_id, attempt in after.items():
            assert attempt.run.state == "success", (dag_id, attempt.run)
            assert attempt.record.state is RunState.SUCCESS, (dag_id, attempt.record)
            # The record describes the attempt REST shows (REST has no clear_number, the record has).
            assert attempt.record.start_date is not None and attempt.run.start_date is not None
            assert abs(attempt.record.start_date - attempt.run.start_date) <= SAME_START, (dag_id, attempt)
        return after


def check_order(state: dict[str, Attempt], rerun: Iterable[str]) -> None:
    """Each DAG in ``rerun`` started after all its upstreams' (latest attempts) ended."""
    for dag_id in rerun:
        assert_started_after(state[dag_id].run, (state[u].run for u in UPSTREAMS[dag_id]))


def report(state: dict[str, Attempt], origin: str) -> str:
    return timeline((a.run for a in state.values()), state[origin].run.end_date)


@pytest.fixture(scope="module")
def cascade(airflow_e2e: E2E) -> Iterator[Cascade]:
    """One watcher for the module and the first cascade of a fresh partition (01 triggered by hand)."""
    e2e = airflow_e2e
    e2e.revive_if_needed()
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    watcher_id = "e2e-cascades"
    e2e.start_watcher(deps, "--id", watcher_id, name=WATCHER_LOG)
    try:
        e2e.wait_for_leader(deps, watcher_id)
        partition, run_id = e2e.new_partition(), e2e.run_id("cascade")
        e2e.stack.trigger("01_pipeline", run_id, partition)
        result = Cascade(e2e, partition, run_id)
        result.wait_success("07_pipeline", 0)
        yield result
    finally:
        e2e.stop_watchers()


def test_first_run_triggers_each_dependent_once_in_order(cascade: Cascade) -> None:
    """01 succeeding for P runs 02..07 exactly once each for P, 06 after all of 02..05 ended and 07 after 06."""
    state = cascade.settled("07_pipeline", 0)
    for dag_id in DOWNSTREAM:
        attempt = state[dag_id]
        assert attempt.run.run_id == run_id_for(cascade.partition), attempt.run
        assert attempt.record.clear_number == 0, attempt.record  # never cleared
        assert attempt.ledger is not None, f"{dag_id}: no ledger entry"
        assert (attempt.ledger.trigger_count, attempt.ledger.action, attempt.ledger.status) == (
            1,
            TriggerAction.CREATE,
            TriggerStatus.DONE,
        ), attempt.ledger
        # The run carries the coordinator's decision in its conf.
        assert attempt.run.conf["coordinator"]["partition"] == cascade.partition, attempt.run.conf
    check_order(state, DOWNSTREAM)
    root = state["01_pipeline"]
    assert root.run.run_id == cascade.root_run_id and root.record.clear_number == 0 and root.ledger is None
    print(f"\nfirst cascade (s since 01 ended): {report(state, '01_pipeline')}")


def test_clearing_the_root_reruns_each_dependent_once(cascade: Cascade) -> None:
    """Clearing 01's run for P reruns 02..07 once each (same run ids, clear_number +1), 06 after all four reran."""
    before = cascade.settled("07_pipeline", cascade.snapshot()["07_pipeline"].record.clear_number)
    cascade.e2e.stack.clear("01_pipeline", cascade.root_run_id)
    root_clears = before["01_pipeline"].record.clear_number + 1
    cascade.wait_success("01_pipeline", root_clears)
    after = cascade.settled("07_pipeline", before["07_pipeline"].record.clear_number + 1)
    assert after["01_pipeline"].record.clear_number == root_clears
    for dag_id in DOWNSTREAM:
        old, new = before[dag_id], after[dag_id]
        assert new.run.run_id == old.run.run_id == run_id_for(cascade.partition)
        assert new.record.clear_number == old.record.clear_number + 1, (dag_id, old.record, new.record)
        assert new.ledger is not None and old.ledger is not None
        assert (new.ledger.trigger_count, new.ledger.action) == (old.ledger.trigger_count + 1, TriggerAction.CLEAR)
        assert new.run.start_date and old.run.end_date and new.run.start_date > old.run.end_date, (old.run, new.run)
    # 06 waited for the four reruns, not for their old successes.
    check_order(after, DOWNSTREAM)
    print(f"\nrerun cascade (s since 01 ended): {report(after, '01_pipeline')}")


def test_clearing_a_middle_dag_reruns_only_its_descendants(cascade: Cascade) -> None:
    """Clearing 03's run for P reruns 06 and 07 once each; 01, 02, 04 and 05 do not run again."""
    before = cascade.settled("07_pipeline", cascade.snapshot()["07_pipeline"].record.clear_number)
    cascade.e2e.stack.clear("03_pipeline", run_id_for(cascade.partition))
    cascade.wait_success("03_pipeline", before["03_pipeline"].record.clear_number + 1)
    after = cascade.settled("07_pipeline", before["07_pipeline"].record.clear_number + 1)
    for dag_id in ["01_pipeline", "02_pipeline", "04_pipeline", "05_pipeline"]:
        assert after[dag_id] == before[dag_id], f"{dag_id} changed: {before[dag_id]} -> {after[dag_id]}"
    # 03 was cleared by the user, not by the coordinator: its ledger entry is untouched.
    assert after["03_pipeline"].ledger == before["03_pipeline"].ledger
    for dag_id in ["06_pipeline", "07_pipeline"]:
        old, new = before[dag_id], after[dag_id]
        assert new.record.clear_number == old.record.clear_number + 1, (dag_id, old.record, new.record)
        assert new.ledger is not None and old.ledger is not None
        assert new.ledger.trigger_count == old.ledger.trigger_count + 1, (dag_id, new.ledger)
    check_order(after, ["06_pipeline", "07_pipeline"])
    print(f"\nmiddle rerun (s since 03 ended): {report(after, '03_pipeline')}")
