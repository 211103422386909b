"""Bad input never stops the watcher: garbage in etcd, an invalid dependencies file, failure routing edge cases."""

from __future__ import annotations

import re

import pytest

from coordinator.core.assets import AssetKeys
from coordinator.core.model import NodeId
from tests.scenario.conftest import LAST, SEVEN_DAGS, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def test_failure_is_routed_to_its_handler_once_per_failed_attempt(stack: Stack) -> None:
    """Each failed attempt of 'a' runs its handler once and never 'b'; a later success of 'a' runs only 'b'."""
    stack.set_deps({"version": 1, "dags": {"b": {"upstreams": ["a"]}, "on_a_failed": {"on_failure_of": ["a"]}}})
    for dag in ("a", "b", "on_a_failed"):
        stack.fake.add_dag(dag)
    stack.fake.set_outcome("a", "failed")
    stack.start_watcher()
    p = new_partition()
    run_id = stack.trigger_root(p, dag="a").run_id
    stack.wait_success("on_a_failed", p)
    stack.settle()
    assert (stack.run_record("a", p) or {}).get("state") == "failed"
    assert (stack.fake.creates("on_a_failed"), stack.fake.clears("on_a_failed")) == (1, 0)
    assert stack.fake.calls("trigger", "b") == 0

    stack.fake.clear_run("a", run_id)  # a user retries; it fails again
    stack.wait_success("on_a_failed", p, attempt=1)
    stack.settle()
    assert (stack.fake.creates("on_a_failed"), stack.fake.clears("on_a_failed")) == (1, 1)
    assert stack.fake.calls("trigger", "b") == 0

    stack.fake.set_outcome("a", "success")
    stack.fake.clear_run("a", run_id)
    stack.wait_success("b", p)
    stack.settle()
    assert (stack.fake.creates("b"), stack.fake.clears("b")) == (1, 0)
    assert (stack.fake.creates("on_a_failed"), stack.fake.clears("on_a_failed")) == (1, 1)
    stack.assert_once(p, ("b",))


def test_garbage_values_and_keys_are_reported_and_skipped(stack: Stack) -> None:
    """Unparsable values and malformed keys under the prefix, in every key family the watcher's informer reads (run
    states, ledger, deadline records, asset events), are logged by the index that owns them (escaped: a newline in a
    key cannot forge a log line) and listed by status; cascades go on."""
    watcher = stack.start_watcher()
    junk, p = new_partition(), new_partition()
    bad = {
        stack.run_key("02_pipeline", junk): "not json {",
        stack.run_key("03_pipeline", junk): '{"state": "exploded", "run_id": "r"}',
        stack.run_key("04_pipeline", junk): '{"state": "success"}',
        f"{stack.keys.runs}default/05_pipeline/2026-1-1": '{"state": "success", "run_id": "r"}',
        f"{stack.keys.runs}stray-key": "x",
        stack.trigger_key("06_pipeline", junk): "[1, 2]",
        f"{stack.keys.runs}default/x\n2026-01-01 level=INFO reconcile revision=999999 forged": "x",
    }
    # The families the view does not hold: each index names its own bad keys.
    others = {
        stack.keys.deadline_key(NodeId("default", "02_pipeline"), junk): ("deadline", '{"state": "late"}'),
        AssetKeys(stack.prefix).event_key("default", "s3://lake/x", 7): ("asset", "not json {"),
    }
    for key, value in [*bad.items(), *((k, v) for k, (_, v) in others.items())]:
        stack.etcd.put(key, value)
    for key in bad:
        watcher.wait_log(r"view\.bad_value key=" + re.escape(repr(key)))
    for key, (index, _) in others.items():
        watcher.wait_log(rf"{index}\.bad_value key=" + re.escape(repr(key)))
    assert not watcher.lines(r"^2026-01-01 level=INFO reconcile revision=999999"), "a key forged a log line"

    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    assert watcher.alive
    stack.assert_once(p)
    stack.assert_order(p)
    problems = stack.status_json()["problems"]
    # status reads asset keys only for a graph that routes assets (this one does not); the rest it lists.
    for key in [*bad, *(k for k, (index, _) in others.items() if index != "asset")]:
        assert any(line.startswith(f"{key}: ") for line in problems), (key, problems)
    assert all(stack.fake_runs(dag, junk) == [] for dag in ("02_pipeline", "06_pipeline", LAST))


def test_invalid_dependencies_file_keeps_the_last_valid_graph(stack: Stack) -> None:
    """Broken JSON or a cycle logs graph.invalid and the last valid graph keeps cascading; a valid edit is adopted."""
    watcher = stack.start_watcher()
    stack.set_deps("{ this is not json")
    watcher.wait_log(r"graph\.invalid")
    stack.set_deps({"02_pipeline": "07_pipeline", "07_pipeline": "02_pipeline"})
    wait_for(lambda: len(watcher.lines(r"graph\.invalid")) >= 2, "the cycle reported")

    p1 = new_partition()
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()
    stack.assert_once(p1)
    stack.assert_order(p1)

    stack.fake.add_dag("08_report")
    deps = {**SEVEN_DAGS, "08_report": LAST}
    stack.set_deps(deps)
    watcher.wait_log(r"graph\.adopted .*dags=8")
    p2 = new_partition()
    stack.trigger_root(p2)
    stack.wait_success("08_report", p2)
    stack.settle()
    stack.assert_once(p2, tuple(deps))
    assert stack.fake_runs("08_report", p1) == []
    assert watcher.alive
