"""Extended edges (semantics rule 12) through a real watcher, real etcd and the fake Airflow: a task-level upstream
starts its dependent while the upstream run is still running and a clear of that task cascades once; a self-gated
DAG runs a three-day chain in order, once each."""

from __future__ import annotations

import itertools
import json

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId
from tests.scenario.conftest import Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def put_task(stack: Stack, dag: str, task: str, partition: str, state: str, run_id: str, attempt: int = 0) -> None:
    """What the plugin does when a task instance the graph names ends (or is cleared)."""
    record = {"state": state, "run_id": run_id, "clear_number": attempt, "source": "scenario"}
    stack.etcd.put(stack.keys.task_key(NodeId(DEFAULT_INSTANCE, dag), task, partition), json.dumps(record))


def test_task_level_upstream_starts_early_and_a_task_clear_cascades_once(stack: Stack) -> None:
    """The dependent runs as soon as the upstream's task succeeded (its run still running); a rerun of the task
    reruns the dependent exactly once; the activation names the task for the plugin."""
    stack.fake.add_dag("producer")
    stack.fake.add_dag("consumer")
    stack.fake.set_duration("producer", 8.0)  # the producer's run is still running while its task's edge acts
    stack.set_deps({"version": 1, "dags": {"consumer": {"upstreams": [{"dag": "producer", "task": "publish"}]}}})
    day = new_partition()
    stack.start_watcher()
    graph = json.loads(stack.etcd.get(stack.keys.config_key("graph")) or b"{}")
    assert graph["upstream_tasks"] == {"default/producer": ["publish"]}
    run = stack.trigger_root(day, dag="producer")
    wait_for(lambda: (stack.run_record("producer", day) or {}).get("state") == "running", "producer running")
    put_task(stack, "producer", "publish", day, "success", run.run_id)
    stack.wait_success("consumer", day)
    assert stack.fake_runs("producer", day)[0].state == "running"
    ledger = stack.ledger("consumer", day)
    assert ledger is not None and list(ledger["inputs"]) == ["default/producer:publish"]

    put_task(stack, "producer", "publish", day, "running", run.run_id, attempt=1)
    put_task(stack, "producer", "publish", day, "success", run.run_id, attempt=1)
    stack.wait_success("consumer", day, attempt=1)
    assert stack.fake_runs("producer", day)[0].state == "running"
    stack.wait_success("producer", day, timeout=30.0)  # the run's own success is no rerun of the task
    stack.settle()
    stack.assert_once(day, ("consumer",), clears=1)
    assert stack.fake.creates("consumer") == 1 and stack.fake.clears("consumer") == 1
    assert stack.fake.calls("trigger", "producer") == 0 and stack.fake.calls("clear", "producer") == 0


def test_self_dependency_runs_a_three_day_chain_in_order_once_each(stack: Stack) -> None:
    """Three upstream days succeed at once: the gated DAG runs day 1, then day 2, then day 3, each exactly once."""
    stack.fake.add_dag("daily_src")
    stack.fake.add_dag("chained")
    stack.fake.set_duration("chained", 0.3)
    stack.set_deps(
        {
            "version": 1,
            "dags": {
                "daily_src": {"partitions": {"cron": "@daily"}},
                "chained": {
                    "partitions": {"cron": "@daily"},
                    "upstreams": ["daily_src", {"dag": "chained", "offset": -1}],
                },
            },
        }
    )
    days = [new_partition() for _ in range(3)]
    stack.start_watcher()
    for day in days:
        stack.trigger_root(day, dag="daily_src")
    for day in days:
        stack.wait_success("chained", day)
    stack.settle()
    for day in days:
        stack.assert_once(day, ("chained",), clears=0)
    spans = [stack.executions("chained", day)[0] for day in days]
    assert all(a.ended is not None and a.ended <= b.started for a, b in itertools.pairwise(spans)), spans
    assert stack.fake.creates("chained") == 3 and stack.fake.clears("chained") == 0
