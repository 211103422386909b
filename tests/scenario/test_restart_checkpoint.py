"""A restart with a plan checkpoint (semantics rule 19): real watcher processes, a real etcd, the fake Airflow. The
restart plans first what changed while it was down, then every partition; a checkpoint that claims too much costs
time, never a trigger; a one-shot pass ignores it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.scenario.conftest import FAN_IN, LAST, ROOT_DAG, Stack, _b64, new_partition, wait_for

pytestmark = pytest.mark.scenario

#: No periodic resync within a test: only the full pass that follows a start may find what the first pass skipped.
NO_RESYNC = "600"


def checkpoint_of(stack: Stack) -> dict[str, Any] | None:
    raw = stack.etcd.get(stack.keys.config_key("checkpoint"))
    return None if raw is None else dict(json.loads(raw))


def mod_revision(stack: Stack, key: str) -> int:
    kvs = stack.etcd.call("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
    assert kvs, key
    return int(kvs[0]["mod_revision"])


def root_succeeds_behind_a_wrong_checkpoint(stack: Stack) -> str:
    """A leader records a checkpoint and stops; a root succeeds in a new partition while no watcher runs; then the
    checkpoint is overwritten to claim everything in the store was planned (a wrong hint). The partition."""
    p = new_partition()
    first = stack.start_watcher("w1", COORDINATOR_CHECKPOINT_INTERVAL_S="0.5")
    wait_for(lambda: checkpoint_of(stack) is not None, "a first checkpoint")
    assert first.stop() == 0
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()
    current = checkpoint_of(stack)
    assert current is not None
    stack.etcd.put(stack.keys.config_key("checkpoint"), json.dumps(current | {"revision": stack.etcd.revision()}))
    return p


def test_a_restart_plans_first_what_changed_while_it_was_down_then_everything(stack: Stack) -> None:
    """The leader records a checkpoint past the first cascade and stops; a root succeeds while no watcher runs; the
    next watcher's first pass plans that change alone (not every partition) and triggers its fan-in, a full pass
    follows, and both cascades ran exactly once."""
    p1, p2 = new_partition(), new_partition()
    first = stack.start_watcher("w1", COORDINATOR_CHECKPOINT_INTERVAL_S="0.5")
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()
    last = mod_revision(stack, stack.run_key(LAST, p1))
    wait_for(lambda: int((checkpoint_of(stack) or {}).get("revision", 0)) >= last, "a checkpoint past the cascade")
    assert first.lines(r"checkpoint\.recorded revision=")
    assert first.stop() == 0

    stack.trigger_root(p2)
    stack.wait_success(ROOT_DAG, p2)
    stack.settle()
    second = stack.start_watcher("w2", COORDINATOR_RESYNC_INTERVAL_S=NO_RESYNC)
    line = second.lines(r"reconcile\.first_work ")[0]
    found = re.search(r"keys=(\d+) everything=False", line)
    assert found is not None and 1 <= int(found.group(1)) <= 2, line  # p2's root (and nothing of p1's cascade)
    stack.wait_success(LAST, p2)
    second.wait_log(r"reconcile .*dirty=all .*leader=True")
    leading = second.lines(r"reconcile revision=.*leader=True")
    assert "dirty=all" not in leading[0] and re.search(r" triggers=[1-9]", leading[0]), leading[:3]
    stack.settle()
    stack.assert_once(p1)
    stack.assert_once(p2)
    stack.assert_order(p2)


def test_a_checkpoint_that_claims_too_much_costs_time_never_a_trigger(stack: Stack) -> None:
    """A checkpoint claiming a root's success was planned when no watcher saw it: the restart plans nothing first,
    and the full pass that follows every start triggers the cascade, once."""
    p = root_succeeds_behind_a_wrong_checkpoint(stack)

    second = stack.start_watcher("w2", COORDINATOR_RESYNC_INTERVAL_S=NO_RESYNC, COORDINATOR_CHECKPOINT_INTERVAL_S="0")
    assert "keys=0 everything=False" in second.lines(r"reconcile\.first_work ")[0]
    stack.wait_success(LAST, p)
    full = second.lines(r"reconcile .*dirty=all .*leader=True")
    assert full and re.search(r" triggers=[1-9]", full[0]), second.lines(r"reconcile revision=")[:3]
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)


def test_a_one_shot_pass_plans_every_partition_whatever_the_checkpoint_says(stack: Stack) -> None:
    """``reconcile`` (the watcher DAG's pass) has no full pass after it: a checkpoint claiming a root's
    success was planned does not narrow it, and the root's fan-in is triggered."""
    p = root_succeeds_behind_a_wrong_checkpoint(stack)

    done = stack.cli("reconcile", airflow=True)
    assert f"{len(FAN_IN)} action(s)" in done.stdout, done.stdout
    for dag in FAN_IN:
        assert len(stack.fake_runs(dag, p)) == 1, dag
