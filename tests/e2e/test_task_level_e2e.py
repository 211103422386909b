"""Task-level upstreams end to end on a real Airflow 3.3 (with the core's planner): plugin task fact -> etcd ->
watcher -> REST trigger, while the upstream DAG run is still running; a clear of that one task cascades once.

Counts come from Airflow's own records over REST: runs per DAG and logical date, and the try number of each task.
"""

from __future__ import annotations

import time

import pytest

from coordinator.core.model import RunState, run_id_for
from tests.e2e.harness import E2E, task_tries, wait_for

pytestmark = pytest.mark.e2e

GRAPH = {"version": 1, "dags": {"e2e_task_dependent": {"upstreams": [{"dag": "e2e_task_level", "task": "produce"}]}}}
#: Long enough for a duplicate trigger or clear (decided within a second of the fact it reacts to) to show.
SETTLE_S = 6.0


def test_task_level_dependent_starts_while_upstream_runs_and_a_task_clear_cascades_once(e2e: E2E) -> None:
    """e2e_task_dependent runs once as soon as e2e_task_level's produce succeeded (before the upstream run ends);
    clearing only produce reruns the dependent exactly once."""
    deps = e2e.write_dependencies(GRAPH, name="task-level.json")
    e2e.start_watcher(deps, "--id", "e2e-task-level", name="task-level-watcher")
    e2e.wait_for_leader(deps, "e2e-task-level")
    partition, run_id = e2e.new_partition(), e2e.run_id("tasklevel")
    e2e.stack.trigger("e2e_task_level", run_id, partition)

    dependent_record = e2e.wait_for_run_record(
        "e2e_task_dependent", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success"
    )
    upstream = e2e.only_run("e2e_task_level", partition)
    dependent = e2e.only_run("e2e_task_dependent", partition)
    assert dependent_record.run_id == run_id_for(partition)
    # The dependent started before the upstream DAG run ended (its tail task still running, or just finished).
    assert dependent.start_date is not None
    assert upstream.end_date is None or dependent.start_date < upstream.end_date, (upstream, dependent)
    e2e.stack.wait_for_run("e2e_task_level", run_id, ["success"], timeout_s=60)

    # Clear only the named task: it reruns (try 2) in the same run; the dependent reruns once.
    status, body = e2e.stack.request(
        "POST",
        "/api/v2/dags/e2e_task_level/clearTaskInstances",
        {"dry_run": False, "only_failed": False, "task_ids": ["produce"], "dag_run_id": run_id},
    )
    assert status == 200, body
    wait_for(
        lambda: task_tries(e2e.stack, "e2e_task_dependent", run_id_for(partition)) == {"work": 2} or None,
        timeout_s=120,
        what="the dependent's rerun",
    )
    e2e.stack.wait_for_run("e2e_task_dependent", run_id_for(partition), ["success"], timeout_s=60)
    e2e.stack.wait_for_run("e2e_task_level", run_id, ["success"], timeout_s=60)
    time.sleep(SETTLE_S)
    assert len(e2e.runs("e2e_task_dependent", partition)) == 1
    assert task_tries(e2e.stack, "e2e_task_dependent", run_id_for(partition)) == {"work": 2}
    assert task_tries(e2e.stack, "e2e_task_level", run_id) == {"produce": 2, "tail": 1}
    ledger = e2e.read_ledger("e2e_task_dependent", partition)
    assert ledger is not None and ledger.trigger_count == 2, ledger
