"""Failure routing on a real Airflow: a failed run starts its failure handler (``on_failure_of``) once per failed
attempt, and never its normal dependents (only a success satisfies a dependency).

09_flaky fails unless its conf says otherwise; 08_on_failure is its handler and e2e_dependent a normal dependent
(SESSION_GRAPH in harness.py).
"""

from __future__ import annotations

import pytest

from coordinator.core.model import RunState, run_id_for
from tests.e2e.harness import E2E, SESSION_GRAPH, assert_started_after
from tests.e2e.settle import wait_runs_settled

pytestmark = pytest.mark.e2e


def test_a_failed_run_triggers_its_handler_once_per_attempt_and_not_its_dependents(e2e: E2E) -> None:
    """09_flaky failing for P runs 08_on_failure once per failed attempt; its dependent e2e_dependent never runs."""
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    e2e.start_watcher(deps, "--id", "e2e-failure", name="failure-watcher")
    e2e.wait_for_leader(deps, "e2e-failure")
    partition, run_id = e2e.new_partition(), e2e.run_id("flaky")
    e2e.stack.trigger("09_flaky", run_id, partition)

    for attempt in (0, 1):
        if attempt:
            e2e.stack.clear("09_flaky", run_id)  # fails again: a second failed attempt
        e2e.wait_for_run_record(
            "09_flaky",
            partition,
            lambda r, n=attempt: r.state is RunState.FAILED and r.clear_number == n,
            timeout_s=90,
            what=f"failure of attempt {attempt}",
        )
        e2e.wait_for_run_record(
            "08_on_failure",
            partition,
            lambda r, n=attempt: r.state is RunState.SUCCESS and r.clear_number == n,
            timeout_s=90,
            what=f"handler success of attempt {attempt}",
        )
        # The listener writes before the scheduler commits: Airflow's REST shows the run's end a moment later.
        e2e.stack.wait_for_run("09_flaky", run_id, ["failed"], timeout_s=30)
        e2e.stack.wait_for_run("08_on_failure", run_id_for(partition), ["success"], timeout_s=30)
        failed, handler = e2e.only_run("09_flaky", partition), e2e.only_run("08_on_failure", partition)
        assert failed.state == "failed" and handler.state == "success", (failed, handler)
        assert handler.run_id == run_id_for(partition)
        assert_started_after(handler, [failed])
        ledger = e2e.read_ledger("08_on_failure", partition)
        assert ledger is not None and ledger.trigger_count == attempt + 1, ledger
        assert handler.start_date is not None and failed.end_date is not None
        delay = (handler.start_date - failed.end_date).total_seconds()
        print(f"\nfailure attempt {attempt}: 09 ended -> 08 started {delay:.1f} s")

    # A dependent wrongly triggered by a failure, or a second handler run, would be an action of the watcher's idle pass
    # after the last records of 09_flaky and 08_on_failure, or of one before it (tests/e2e/settle.py).
    wait_runs_settled(e2e, "failure-watcher", [("09_flaky", partition), ("08_on_failure", partition)])
    handler_record, _ = e2e.read_run("08_on_failure", partition)
    assert handler_record is not None and handler_record.clear_number == 1, "the handler ran more than once per failure"
    assert e2e.runs("e2e_dependent", partition) == []
    assert e2e.read_ledger("e2e_dependent", partition) is None
    assert e2e.read_run("e2e_dependent", partition) == (None, 0)
