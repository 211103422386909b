"""Issue 16's edge semantics on a real Airflow 3.3 with a real ``coordinator watch`` (the session's Airflow and etcd):

- a ``shift`` (``"shift": "-4h"``): a 05:00 dependent waits for the same day's 01:00 upstream run only, so each day
  runs once and a rerun of one upstream day reruns that dependent day only;
- a task-level upstream (``"task": "extract"``): the dependent starts while the upstream DAG run is still running, and
  a clear of that one task reruns the dependent once;
- a self-dependency (``{"dag": <itself>, "shift": "-1d"}``): three days run in order, each once, and a rerun of a day
  does not rerun the next.

The DAGs are in ``tests/e2e/dags/e2e_edges.py``, their edges in ``harness.SESSION_GRAPH``. Counts come from Airflow's
own records over REST (runs per DAG and logical date, try numbers of the tasks), with the run-state keys for
``clear_number`` (not exposed over REST) and the trigger ledger for ``trigger_count``. Partitions are far in the past
(Airflow never starts a run with a future logical date).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest

from coordinator.core.model import RunState, canonical_partition, partition_datetime, run_id_for
from tests.e2e.harness import (
    E2E,
    SESSION_GRAPH,
    DagRun,
    assert_started_after,
    release,
    runs_between,
    task_runs,
    task_tries,
)
from tests.e2e.settle import wait_runs_settled

#: Task states of a task that has not finished.
UNFINISHED = ("scheduled", "queued", "running")

pytestmark = pytest.mark.e2e

WATCHER_ID = "e2e-edges"
#: A one-task DAG takes 1-3 s here; the bound only turns a hang into a failure.
TIMEOUT_S = 120.0
#: The module's watcher logs to <work dir>/<this>.log. After the last expected run, the tests wait for its idle pass
#: that saw the run's record (tests/e2e/settle.py): a duplicate or wrong trigger would be an action of that pass or
#: of one before it, done (a new or queued run in REST, an entry on the ledger) before the pass counts as idle.
WATCHER_LOG = "edges-watcher"


@pytest.fixture(scope="module")
def edges(airflow_e2e: E2E) -> Iterator[E2E]:
    """The session's Airflow with one watcher for this module, leading with SESSION_GRAPH adopted."""
    e2e = airflow_e2e
    e2e.revive_if_needed()
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    e2e.start_watcher(deps, "--id", WATCHER_ID, name=WATCHER_LOG)
    try:
        e2e.wait_for_leader(deps, WATCHER_ID)
        e2e.wait_for_named_tasks()  # the task-level scenario needs extract's state recorded
        yield e2e
    finally:
        e2e.stop_watchers()


def consecutive_days(e2e: E2E, count: int) -> list[str]:
    """``count`` fresh partitions (midnight UTC) on consecutive days."""
    days = [e2e.new_partition() for _ in range(count)]
    dates = [partition_datetime(day) for day in days]
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(dates)), days
    return days


def at(day: str, hour: int) -> str:
    return canonical_partition(partition_datetime(day) + timedelta(hours=hour))


def wait_success(e2e: E2E, dag_id: str, partition: str, clear_number: int = 0) -> None:
    e2e.wait_for_run_record(
        dag_id,
        partition,
        lambda r: r.state is RunState.SUCCESS and r.clear_number == clear_number,
        timeout_s=TIMEOUT_S,
        what=f"success of attempt {clear_number}",
    )


def assert_ran(e2e: E2E, dag_id: str, partition: str, tries: int, before: DagRun | None = None) -> DagRun:
    """``dag_id`` has one successful run for ``partition``, the coordinator's, its task tried ``tries`` times (and,
    given ``before``, it is still that same attempt: nothing ran since)."""
    # The listener writes the success before the scheduler commits it: Airflow's REST shows the end a moment later.
    e2e.stack.wait_for_run(dag_id, run_id_for(partition), ["success", "failed"], timeout_s=30)
    run = e2e.only_run(dag_id, partition)
    assert (run.state, run.run_id) == ("success", run_id_for(partition)), run
    assert set(task_tries(e2e.stack, dag_id, run.run_id).values()) == {tries}, f"{dag_id} {partition}: tries"
    if before is not None:
        assert run.start_date == before.start_date, f"{dag_id} {partition} ran again: {before} -> {run}"
    return run


def trigger_count(e2e: E2E, dag_id: str, partition: str) -> int:
    ledger = e2e.read_ledger(dag_id, partition)
    assert ledger is not None, f"{dag_id} {partition}: no ledger entry"
    return ledger.trigger_count


def test_a_4h_shift_runs_each_0500_day_once_and_a_rerun_of_one_0100_day_reruns_only_that_day(edges: E2E) -> None:
    """e2e_shift_up at 01:00 for three days triggers e2e_shift_down at 05:00 of the same day, once each and at no
    other date; clearing the upstream's middle day reruns the middle dependent day once and nothing else."""
    e2e = edges
    days = consecutive_days(e2e, 3)
    ups, downs = [at(day, 1) for day in days], [at(day, 5) for day in days]
    up_runs = {up: e2e.run_id("shift") for up in ups}
    for up in ups:
        e2e.stack.trigger("e2e_shift_up", up_runs[up], up)
    for down in downs:
        wait_success(e2e, "e2e_shift_down", down)
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_shift_up", up) for up in ups] + [("e2e_shift_down", d) for d in downs])

    window = (days[0], at(days[-1], 47))  # one day beyond the last: a run at an upstream date would show too
    assert [r.logical_date for r in runs_between(e2e.stack, "e2e_shift_down", *window)] == [
        partition_datetime(down) for down in downs
    ], "the dependent ran at other dates than 05:00 of the three days"
    first: dict[str, DagRun] = {}
    for up, down in zip(ups, downs, strict=True):
        first[down] = assert_ran(e2e, "e2e_shift_down", down, tries=1)
        assert_started_after(first[down], [e2e.only_run("e2e_shift_up", up)])
        ledger = e2e.read_ledger("e2e_shift_down", down)
        # Exactly one upstream run: the same day's 01:00 (the overlap rule would also name the next day's).
        assert ledger is not None and list(ledger.inputs) == [f"default/e2e_shift_up@{up}"], ledger
        assert ledger.trigger_count == 1, ledger

    e2e.stack.clear("e2e_shift_up", up_runs[ups[1]])
    wait_success(e2e, "e2e_shift_down", downs[1], clear_number=1)
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_shift_up", ups[1]), ("e2e_shift_down", downs[1])])
    rerun = assert_ran(e2e, "e2e_shift_down", downs[1], tries=2)
    assert_started_after(rerun, [e2e.only_run("e2e_shift_up", ups[1])])
    assert trigger_count(e2e, "e2e_shift_down", downs[1]) == 2
    for down in (downs[0], downs[2]):
        assert_ran(e2e, "e2e_shift_down", down, tries=1, before=first[down])
        assert trigger_count(e2e, "e2e_shift_down", down) == 1
    assert len(runs_between(e2e.stack, "e2e_shift_down", *window)) == 3


def test_a_task_level_upstream_starts_the_dependent_while_its_dag_runs_and_a_clear_of_the_task_cascades_once(
    edges: E2E,
) -> None:
    """e2e_task_down starts after e2e_task_up's ``extract`` succeeded while e2e_task_up is still running; the
    upstream run's own success later triggers nothing more; clearing ``extract`` alone reruns e2e_task_down once."""
    e2e = edges
    partition, up_run = e2e.new_partition(), e2e.run_id("taskup")
    e2e.stack.trigger("e2e_task_up", up_run, partition)
    wait_success(e2e, "e2e_task_down", partition)

    # The dependent succeeded, and the upstream run is STILL running: its `hold` task waits for the test.
    upstream = e2e.only_run("e2e_task_up", partition)
    up_tasks = task_runs(e2e.stack, "e2e_task_up", up_run)
    assert upstream.state == "running", upstream
    # hold has not finished (on a loaded machine it may not even have started: scheduled or queued).
    assert up_tasks["extract"].state == "success" and up_tasks["hold"].state in UNFINISHED, up_tasks
    down = assert_ran(e2e, "e2e_task_down", partition, tries=1)
    down_task = task_runs(e2e.stack, "e2e_task_down", down.run_id)["work"]
    extract_end = up_tasks["extract"].end_date
    assert down_task.start_date and extract_end and down_task.start_date > extract_end, (down_task, extract_end)

    release(e2e.stack, "e2e_task_up", partition)
    e2e.stack.wait_for_run("e2e_task_up", up_run, ["success"], timeout_s=TIMEOUT_S)
    wait_success(e2e, "e2e_task_up", partition)
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_task_up", partition), ("e2e_task_down", partition)])
    # Task facts (docs/keys.md) exist for the task the graph names, and only for it; the plugin wrote it from the
    # task process (the REST audit, the safety net, would sign "audit:default").
    tasks = f"{e2e.prefix}/tasks/{e2e.stack.instance}"
    extract, _ = e2e.read_task("e2e_task_up", "extract", partition)
    assert extract is not None and extract.source == f"airflow-plugin:{e2e.stack.instance}", extract
    assert e2e.read_key(f"{tasks}/e2e_task_up/hold/{partition}") is None
    assert e2e.read_key(f"{tasks}/e2e_task_down/work/{partition}") is None
    # The whole run's success is not an input of a task-level edge.
    assert_ran(e2e, "e2e_task_down", partition, tries=1, before=down)
    assert trigger_count(e2e, "e2e_task_down", partition) == 1

    e2e.stack.clear_task("e2e_task_up", up_run, "extract")
    wait_success(e2e, "e2e_task_down", partition, clear_number=1)
    e2e.stack.wait_for_run("e2e_task_up", up_run, ["success"], timeout_s=TIMEOUT_S)
    # The listener wrote the upstream's success before REST showed it.
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_task_up", partition), ("e2e_task_down", partition)])
    up_tasks = task_runs(e2e.stack, "e2e_task_up", up_run)
    assert (up_tasks["extract"].try_number, up_tasks["hold"].try_number) == (2, 1), up_tasks
    rerun = assert_ran(e2e, "e2e_task_down", partition, tries=2)
    rerun_task = task_runs(e2e.stack, "e2e_task_down", rerun.run_id)["work"]
    extract_end = up_tasks["extract"].end_date
    assert rerun_task.start_date and extract_end and rerun_task.start_date > extract_end, (rerun_task, extract_end)
    assert trigger_count(e2e, "e2e_task_down", partition) == 2


def test_a_self_dependency_runs_three_days_in_order_once_each_and_a_rerun_does_not_rerun_the_next_day(
    edges: E2E,
) -> None:
    """With e2e_chain_root done for three days, e2e_chain runs day 1, then day 2 only after day 1 succeeded, then day
    3, once each; rerunning day 1 afterwards does not rerun day 2."""
    e2e = edges
    days = consecutive_days(e2e, 3)
    roots = {day: e2e.run_id("chainroot") for day in days}
    for day in days:
        e2e.stack.trigger("e2e_chain_root", roots[day], day)
    for day in days:
        e2e.stack.wait_for_run("e2e_chain_root", roots[day], ["success"], timeout_s=TIMEOUT_S)

    for i, day in enumerate(days):
        # Day i runs (its task holds until released); the later days, whose root succeeded, wait for it.
        e2e.wait_for_run_record(
            "e2e_chain", day, lambda r: r.state is RunState.RUNNING, timeout_s=TIMEOUT_S, what="running"
        )
        # The idle pass that saw day i running and every root's success did not trigger a later day.
        wait_runs_settled(e2e, WATCHER_LOG, [("e2e_chain", day)] + [("e2e_chain_root", d) for d in days])
        for later in days[i + 1 :]:
            assert e2e.runs("e2e_chain", later) == [], f"e2e_chain {later} started before {day} succeeded"
            assert e2e.read_ledger("e2e_chain", later) is None, f"e2e_chain {later} decided before {day} succeeded"
        release(e2e.stack, "e2e_chain", day)
        wait_success(e2e, "e2e_chain", day)
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_chain", day) for day in days])

    first = {day: assert_ran(e2e, "e2e_chain", day, tries=1) for day in days}
    for previous, day in itertools.pairwise(days):
        assert_started_after(first[day], [first[previous]])
    assert [trigger_count(e2e, "e2e_chain", day) for day in days] == [1, 1, 1]

    # A user reruns day 1: day 2 already ran with day 1 as its predecessor and is not rerun.
    e2e.stack.clear("e2e_chain", run_id_for(days[0]))
    wait_success(e2e, "e2e_chain", days[0], clear_number=1)
    wait_runs_settled(e2e, WATCHER_LOG, [("e2e_chain", days[0])])
    assert_ran(e2e, "e2e_chain", days[0], tries=2)
    for day in days[1:]:
        assert_ran(e2e, "e2e_chain", day, tries=1, before=first[day])
    assert [trigger_count(e2e, "e2e_chain", day) for day in days] == [1, 1, 1]
