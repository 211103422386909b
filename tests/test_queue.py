"""A controller's work queue (coordinator/manager/queue.py): dedup, processing set, delays, backoff, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.core.model import NodeId
from coordinator.manager.queue import WorkQueue
from coordinator.watcher.keys import AllPartitions, DagKey, PartitionKey, TriggerKey
from tests.conftest import run_coro

P1 = "2026-01-01T00:00:00Z"
P2 = "2026-01-02T00:00:00Z"
A = DagKey(NodeId.parse("a"), P1)
B = DagKey(NodeId.parse("b"), P1)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock | None = None) -> tuple[WorkQueue[TriggerKey], FakeClock]:
    clock = clock or FakeClock()
    return WorkQueue(clock=clock, backoff_base_s=1.0, backoff_max_s=8.0), clock


def test_keys_added_many_times_are_handed_out_once_in_order() -> None:
    """Adding A, B, A, P1-partition, everything, everything hands out A, B, the partition and everything once each."""
    queue, _ = make()
    for key in (A, B, A, PartitionKey(P1), AllPartitions, AllPartitions):
        queue.add(key)
    assert queue.get_nowait() == [A, B, PartitionKey(P1), AllPartitions]
    assert queue.get_nowait() == []


def test_keys_are_typed_values_not_strings() -> None:
    """Equal partitions make equal keys; a partition key never equals the everything key or a DAG key."""
    assert PartitionKey(P1) == PartitionKey(P1) and PartitionKey(P1) != PartitionKey(P2)
    distinct: set[TriggerKey] = {AllPartitions, PartitionKey("*"), DagKey(NodeId.parse("a"), P1), A}
    assert len(distinct) == 3


def test_a_key_being_processed_is_not_handed_out_again() -> None:
    """A key added while it is processed stays out of get until done, then comes back once."""
    queue, _ = make()
    queue.add(A)
    assert queue.get_nowait() == [A]
    queue.add(A)
    queue.add(A)
    assert queue.get_nowait() == []
    assert queue.processing(A)
    queue.done(A)
    assert queue.get_nowait() == [A]
    queue.done(A)
    assert queue.get_nowait() == []


def test_done_all_requeues_exactly_the_keys_added_during_processing() -> None:
    """A batch marked done in bulk brings back only the keys added while it was processed, once each."""
    queue, _ = make()
    for key in (A, B, AllPartitions):
        queue.add(key)
    batch = queue.get_nowait()
    queue.add(B)
    queue.add(B)
    queue.done_all(batch)
    assert not any(queue.processing(key) for key in batch)
    assert queue.get_nowait() == [B]


def test_done_without_a_new_add_does_not_requeue() -> None:
    """A key processed and done without being added meanwhile is gone."""
    queue, _ = make()
    queue.add(A)
    queue.get_nowait()
    queue.done(A)
    assert len(queue) == 0 and not queue.processing(A)


def test_done_of_a_key_never_handed_out_does_not_queue_it_twice() -> None:
    """A key queued (dirty, not in processing) and then marked done, alone or in bulk, by a caller that settles keys
    it did not take (a one-shot pass) is handed out once."""
    queue, _ = make()
    queue.add(AllPartitions)
    queue.done(AllPartitions)
    queue.done_all([AllPartitions])
    assert queue.get_nowait() == [AllPartitions]


def test_add_after_hands_the_key_out_once_its_time_has_come() -> None:
    """A key added with a 5 s delay is not ready at 4.9 s and ready at 5 s; the earliest of two delays wins."""
    queue, clock = make()
    queue.add_after(A, 5.0)
    queue.add_after(A, 9.0)
    clock.now += 4.9
    assert queue.get_nowait() == []
    clock.now += 0.1
    assert queue.get_nowait() == [A]
    clock.now += 10.0
    queue.done(A)
    assert queue.get_nowait() == [], "the later delay of the same key was superseded"


def test_rate_limited_backoff_doubles_is_capped_and_forget_resets_it() -> None:
    """Backoff per key: 1, 2, 4, 8, 8 s (capped); forget starts again at 1 s; other keys are not affected."""
    queue, _ = make()
    assert [queue.add_rate_limited(A) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert queue.num_requeues(A) == 5
    assert queue.add_rate_limited(B) == 1.0
    queue.forget(A)
    assert queue.num_requeues(A) == 0
    assert queue.add_rate_limited(A) == 1.0


def test_rate_limited_cap_named_by_the_caller_bounds_that_keys_backoff() -> None:
    """A caller's cap replaces the queue's maximum for that add: 1, 2, 4, 8, 16, 30, 30 s under a 30 s cap, 1, 2, 2 s
    under a 2 s one; each key keeps its own failure count, and forget resets it."""
    queue, _ = make()
    assert [queue.add_rate_limited(A, max_s=30.0) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [queue.add_rate_limited(B, max_s=2.0) for _ in range(3)] == [1.0, 2.0, 2.0]
    queue.forget(A)
    assert queue.add_rate_limited(A, max_s=30.0) == 1.0


def test_a_rate_limited_key_is_handed_out_after_its_backoff() -> None:
    """The second failure of a key brings it back after 2 s, not before."""
    queue, clock = make()
    queue.add_rate_limited(A)
    clock.now += 1.0
    assert queue.get_nowait() == [A]
    queue.done(A)
    queue.add_rate_limited(A)
    clock.now += 1.9
    assert queue.get_nowait() == []
    clock.now += 0.1
    assert queue.get_nowait() == [A]


def test_get_waits_for_a_key_added_by_another_task() -> None:
    """A getter blocked on an empty queue returns the key another task adds."""

    async def scenario() -> list[TriggerKey]:
        queue: WorkQueue[TriggerKey] = WorkQueue()
        getter = asyncio.create_task(queue.get(timeout_s=30.0))
        await asyncio.sleep(0.01)
        assert not getter.done()
        queue.add(A)
        return await getter

    assert run_coro(scenario()) == [A]


def test_get_wakes_for_a_delayed_key_and_returns_empty_on_timeout() -> None:
    """A delayed key wakes a getter when due (real clock); an empty queue returns [] after the timeout."""

    async def scenario() -> tuple[list[TriggerKey], list[TriggerKey]]:
        queue: WorkQueue[TriggerKey] = WorkQueue()
        queue.add_after(A, 0.05)
        delayed = await queue.get(timeout_s=30.0)
        empty = await queue.get(timeout_s=0.05)
        return delayed, empty

    assert run_coro(scenario()) == ([A], [])


def test_shutdown_wakes_getters_and_refuses_new_keys() -> None:
    """After shutdown a blocked getter returns [] at once and adds of any kind are ignored."""

    async def scenario() -> tuple[list[TriggerKey], int]:
        queue: WorkQueue[TriggerKey] = WorkQueue()
        getter = asyncio.create_task(queue.get(timeout_s=30.0))
        await asyncio.sleep(0.01)
        queue.shutdown()
        got = await getter
        queue.add(A)
        queue.add_after(B, 0.0)
        queue.add_rate_limited(AllPartitions)
        return got, len(queue)

    assert run_coro(scenario(), timeout=10.0) == ([], 0)
    queue, _ = make()
    queue.shutdown()
    assert queue.shutting_down


@pytest.mark.parametrize("wake", [pytest.param("add", id="by-an-add"), pytest.param("shutdown", id="by-the-shutdown")])
def test_a_getter_cancelled_as_it_is_woken_ends_cancelled_and_takes_no_key(wake: str) -> None:
    """A getter cancelled in the same turn of the loop as it is woken (by an add, or by the shutdown as at every
    stop) ends cancelled and leaves the key queued; Python 3.11's wait_for returned instead (gh-86296)."""

    async def scenario() -> tuple[bool, list[TriggerKey]]:
        queue: WorkQueue[TriggerKey] = WorkQueue()
        getter = asyncio.create_task(queue.get(timeout_s=30.0))
        await asyncio.sleep(0.01)
        assert not getter.done()
        if wake == "add":
            queue.add(A)
        else:
            queue.shutdown()
        getter.cancel()
        await asyncio.wait({getter})
        return getter.cancelled(), queue.get_nowait()

    assert run_coro(scenario(), timeout=10.0) == (True, [A] if wake == "add" else [])


@pytest.mark.parametrize(
    "key",
    [pytest.param(A, id="dag"), pytest.param(PartitionKey(P1), id="partition"), pytest.param(AllPartitions, id="all")],
)
def test_every_key_kind_is_deduplicated_while_processing(key: TriggerKey) -> None:
    """Each kind of key, added twice while processed, comes back exactly once after done."""
    queue, _ = make()
    queue.add(key)
    queue.get_nowait()
    queue.add(key)
    queue.add(key)
    queue.done(key)
    assert queue.get_nowait() == [key]
