"""The seven-DAG cascade through a real watcher: exactly once, in order, per partition, and reruns after clears."""

from __future__ import annotations

import pytest

from tests.scenario.conftest import DOWNSTREAM, JOIN, LAST, PIPELINE, ROOT_DAG, Stack, new_partition

pytestmark = pytest.mark.scenario


def run_cascade(stack: Stack, partition: str) -> None:
    stack.trigger_root(partition)
    stack.wait_success(LAST, partition)
    stack.settle()


def test_cascade_runs_each_dag_once_in_dependency_order(stack: Stack) -> None:
    """Triggering 01 creates 02..07 once each; 06 starts after 02..05 all ended and 07 after 06."""
    p = new_partition()
    stack.start_watcher()
    run_cascade(stack, p)
    stack.assert_once(p)
    stack.assert_order(p)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == 1
        assert stack.fake.clears(dag) == 0
        ledger = stack.ledger(dag, p)
        assert ledger is not None and ledger["status"] == "done" and ledger["action"] == "create", ledger


def test_clear_of_root_reruns_every_dependent_once(stack: Stack) -> None:
    """Clearing 01's run clears each of 02..07 exactly once; 06's rerun starts after all four reruns ended."""
    p = new_partition()
    stack.start_watcher()
    run_cascade(stack, p)
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    stack.wait_success(LAST, p, attempt=1)
    stack.settle()
    stack.assert_once(p, clears=1)
    stack.assert_order(p, attempt=1)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == 1
        assert stack.fake.clears(dag) == 1


def test_clear_of_one_fan_in_dag_reruns_only_its_descendants(stack: Stack) -> None:
    """Clearing 03 reruns 06 and 07 once each and nothing else."""
    p = new_partition()
    stack.start_watcher()
    run_cascade(stack, p)
    run_id = stack.fake_runs("03_pipeline", p)[0].run_id
    stack.fake.clear_run("03_pipeline", run_id)
    stack.wait_success(LAST, p, attempt=1)
    stack.settle()
    stack.assert_once(p, (JOIN, LAST), clears=1)
    stack.assert_once(p, ("02_pipeline", "04_pipeline", "05_pipeline"), clears=0)
    assert [stack.fake.clears(d) for d in PIPELINE] == [0, 0, 1, 0, 0, 1, 1]
    assert min(e.started for e in stack.executions(JOIN, p) if e.attempt == 1) >= max(
        e.ended or 0.0 for e in stack.executions("03_pipeline", p)
    )


def test_partitions_are_isolated(stack: Stack) -> None:
    """Two partitions in flight at once cascade once each; a partition where 04 never ran does not release 06."""
    p1, p2, p3 = new_partition(), new_partition(), new_partition()
    stack.start_watcher()
    stack.trigger_root(p1)
    stack.trigger_root(p2)
    stack.wait_success(LAST, p1)
    stack.wait_success(LAST, p2)
    stack.settle()
    for p in (p1, p2):
        stack.assert_once(p)
        stack.assert_order(p)

    # 04 is paused: its run for p3 is created but stays queued, so it never runs.
    stack.fake.set_paused("04_pipeline", True)
    stack.trigger_root(p3)
    for dag in ("02_pipeline", "03_pipeline", "05_pipeline"):
        stack.wait_success(dag, p3)
    stack.settle()
    assert stack.fake_runs("04_pipeline", p3)[0].state == "queued"
    assert stack.fake_runs(JOIN, p3) == []
    assert stack.fake_runs(LAST, p3) == []
    row = next(r for r in stack.status_json(p3)["rows"] if r["dag"] == JOIN)
    assert row["waiting_on"] == ["04_pipeline"], row

    stack.fake.set_paused("04_pipeline", False)
    stack.wait_success(LAST, p3)
    stack.settle()
    stack.assert_once(p3)
    stack.assert_order(p3)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == 3
        assert stack.fake.clears(dag) == 0
