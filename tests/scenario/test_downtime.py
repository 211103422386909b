"""Downtime of the watcher or of its connection to etcd, with and without compaction: no lost, no duplicated work."""

from __future__ import annotations

import pytest

from tests.scenario.conftest import DOWNSTREAM, FAN_IN, JOIN, LAST, ROOT_DAG, Stack, TcpProxy, new_partition

pytestmark = pytest.mark.scenario


def test_work_done_while_the_watcher_was_down_is_picked_up_once(stack: Stack) -> None:
    """A root that finished while no watcher ran has its cascade completed, once, when a watcher starts."""
    p = new_partition()
    stack.start_watcher("w1").stop()
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()
    assert all(stack.fake_runs(dag, p) == [] for dag in DOWNSTREAM)

    stack.start_watcher("w2")
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)


def test_compaction_during_downtime_changes_nothing(private_stack: Stack) -> None:
    """Changes made and compacted away while the watcher was stopped end exactly as without downtime."""
    stack = private_stack
    p1, p2 = new_partition(), new_partition()
    stack.start_watcher("w1")
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()
    stack.watchers[0].stop()

    # While down: p1 is cleared at the root and p2 starts; then all that history is compacted away.
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p1}")
    stack.trigger_root(p2)
    stack.wait_success(ROOT_DAG, p1, attempt=1)
    stack.wait_success(ROOT_DAG, p2)
    stack.settle()
    stack.etcd.compact(stack.etcd.revision())

    stack.start_watcher("w2")
    stack.wait_success(LAST, p1, attempt=1)
    stack.wait_success(LAST, p2)
    stack.settle()
    stack.assert_once(p1, clears=1)
    stack.assert_order(p1, attempt=1)
    stack.assert_once(p2)
    stack.assert_order(p2)


def test_compaction_while_the_watcher_is_disconnected(private_stack: Stack) -> None:
    """A watcher cut off from etcd past its lease, across a restart and a compaction, loses and repeats nothing."""
    stack = private_stack
    assert stack.server is not None
    proxy = TcpProxy(stack.server.client_port)
    stack.add_cleanup(proxy.close)
    p1, p2 = new_partition(), new_partition()
    watcher = stack.start_watcher("w1", ttl=2, endpoint=proxy.endpoint)
    stack.trigger_root(p1)
    stack.wait_success(LAST, p1)
    stack.settle()

    proxy.cut()
    watcher.wait_log(r"leader\.lost")  # the outage outlasts the lease: leadership must be won again afterwards
    stack.server.restart()
    # Behind the watcher's back: p1's 03 is cleared (06 and 07 become due) and p2's root succeeds.
    stack.fake.clear_run("03_pipeline", stack.fake_runs("03_pipeline", p1)[0].run_id)
    stack.trigger_root(p2)
    stack.wait_success("03_pipeline", p1, attempt=1)
    stack.wait_success(ROOT_DAG, p2)
    for i in range(20):  # unrelated writes, so the compaction surely drops history the watcher has not seen
        stack.etcd.put(f"{stack.prefix}/noise/{i}", "x")
    stack.etcd.compact(stack.etcd.revision())
    proxy.restore()

    watcher.wait_log(r"etcd\.watch_relist")
    stack.wait_success(LAST, p1, attempt=1)
    stack.wait_success(LAST, p2)
    stack.settle()
    assert watcher.alive
    stack.assert_once(p1, (JOIN, LAST), clears=1)
    stack.assert_once(p1, tuple(d for d in FAN_IN if d != "03_pipeline"), clears=0)
    stack.assert_once(p2)
    stack.assert_order(p2)
