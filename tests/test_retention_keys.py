"""The leader's retention as a controller of per-partition keys (``watcher/retention.py``'s **Leader-only, a key per
partition**), against a real etcd with the informer following it: a partition is pruned at its own time (time as a
requeue, the controller's clock driven by hand), a kept partition comes back after the interval, and a flood of events
in one partition is one reconcile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.view import ALL, View
from coordinator.etcd import EtcdStore, Fence
from coordinator.informer import Informer
from coordinator.informer.retention import FollowView, RetentionTracker
from coordinator.manager import Manager, Watch, WorkQueue
from coordinator.runtime.settings import EtcdSettings
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AllPartitions, RetentionPartition
from coordinator.watcher.retention import RetentionReconciler, due_in
from tests.conftest import run_coro
from tests.support.changes import changes_of

NOW = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD = timedelta(days=30)
#: Before the cutoff 10 s after NOW (it turns 30 days old 9 s after NOW, and the cutoff is whole seconds).
SOON = "2026-01-30T00:00:09Z"
#: A day later than SOON.
LATER = "2026-01-31T00:00:09Z"
#: Before the cutoff already.
OLD = "2026-01-10T00:00:00Z"
A, B = NodeId("default", "a"), NodeId("default", "b")


class Clock:
    """One clock for the controller's queue (monotonic seconds) and its reconciles (``now``), moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return NOW + timedelta(seconds=self.t - 1000.0)


@dataclass
class Leader:
    store: EtcdStore
    keys: KeyLayout
    clock: Clock
    informer: Informer
    retention: RetentionReconciler
    #: The revision of the test's last write, which the informer must have passed before a step looks.
    written: int = 0

    async def put(self, node: NodeId, partition: str, state: RunState, run_id: str = "r1") -> None:
        record = RunRecord(state=state, run_id=run_id, updated_at=self.clock.now())
        self.written = await self.store.put(self.keys.run_key(node, partition), dump_record(record))

    async def settle(self) -> None:
        """The informer has brought back the test's writes and the leader's own (floor, deletes), and the keys they
        brought are in the controller's queue."""
        expectations = self.informer.expectations
        for _ in range(500):
            if expectations.observed >= self.written and not expectations.awaited():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the informer did not bring the writes back")

    async def turn(self, seconds: float = 0.0) -> int:
        """Move the clock, then reconcile every ready key (the informer settled first); how many reconciles."""
        await self.settle()
        self.clock.t += seconds
        before = self.retention.controller.reconciles
        await self.retention.controller.drain_ready()
        await self.settle()
        return self.retention.controller.reconciles - before

    async def stored(self, partition: str) -> set[str]:
        """The DAGs whose run state of ``partition`` etcd holds."""
        return {dag for dag in ("a", "b") if await self.store.get(self.keys.run_key(NodeId("default", dag), partition))}


@asynccontextmanager
async def leading(settings: EtcdSettings, prefix: str, interval_s: float) -> AsyncIterator[Leader]:
    """A leader's retention over what ``prefix`` holds: its view loaded, the informer following the store and handing
    each batch's changes to the retention's interest (as the service does), its clock the test's."""
    keys = KeyLayout(prefix)
    async with await EtcdStore.connect(settings) as store:
        await store.put(keys.leader, b"w1")
        kv = await store.get(keys.leader)
        assert kv is not None
        fence = Fence(keys.leader, kv.create_revision)
        view, tracker = View(keys), RetentionTracker(keys)
        informer = Informer(view, [], [FollowView(tracker, view)])
        loaded = await informer.load(store, keys.root)
        executor = Executor(store, {}, fence=lambda: fence, expectations=informer.expectations)
        clock = Clock()
        retention = RetentionReconciler(
            executor, keys, PERIOD, interval_s, view, tracker, "w1", now=clock.now, queue=WorkQueue(clock=clock),
        )  # fmt: skip
        manager = Manager()
        manager.register(retention.controller, Watch(retention.interest))
        follow = asyncio.create_task(informer.run(store, keys.root, loaded.revision, then=manager.dispatch))
        try:
            yield Leader(store, keys, clock, informer, retention, written=loaded.revision)
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)


def seed(
    arun: Callable[..., Any], settings: EtcdSettings, prefix: str, runs: dict[tuple[NodeId, str], RunState]
) -> None:
    keys = KeyLayout(prefix)

    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            for (node, partition), state in runs.items():
                await store.put(keys.run_key(node, partition), dump_record(RunRecord(state=state, run_id="r0")))

    arun(write())


@pytest.mark.parametrize(
    ("partition", "now", "expected"),
    [
        (SOON, NOW, 10.0),
        (SOON, NOW + timedelta(seconds=9.5), 0.5),
        (SOON, NOW + timedelta(seconds=10), 0.0),
        (OLD, NOW, 0.0),
        ("2026-01-30", NOW, None),
        (ALL, NOW, None),
    ],
    ids=[
        "ten-seconds-to-go",
        "half-a-second-to-go",
        "due-at-the-second",
        "long-due",
        "not-canonical",
        "every-partition",
    ],
)
def test_a_partition_is_due_the_second_after_it_is_older_than_the_period(
    partition: str, now: datetime, expected: float | None
) -> None:
    """A partition's wait is the seconds until it sorts before the cutoff (whole seconds); a string that is not a
    canonical partition has no time and is never retention's."""
    assert due_in(partition, now, PERIOD) == expected


def test_a_batch_brings_each_touched_partition_once_and_everything_after_a_relist() -> None:
    """A watch batch's touched partitions become keys, once each, none the controller already waits on; a relist or a
    "re-plan everything" change adds the sweep key."""
    keys = KeyLayout("/t")
    view = View(keys)
    retention = RetentionReconciler(None, keys, PERIOD, 60.0, view, RetentionTracker(keys), "w1")  # type: ignore[arg-type]
    nodes = [(A, SOON)] * 1000 + [(B, LATER)]
    changes = changes_of(5, nodes=nodes, partitions={OLD})
    assert retention.interest(changes) == [RetentionPartition(p) for p in (OLD, SOON, LATER)]
    retention.controller.add_after(RetentionPartition(SOON), 10.0)
    assert retention.interest(changes) == [RetentionPartition(OLD), RetentionPartition(LATER)]
    assert retention.interest(changes_of(6, relisted=True)) == [AllPartitions]
    assert retention.interest(changes_of(7, partitions={ALL})) == [AllPartitions]


def test_a_standby_keeps_each_key_for_an_interval_and_a_partition_that_is_not_a_time_is_dropped() -> None:
    """On a standby a due partition's key is not reconciled but waits one interval (a new leader still holds it); a key
    whose partition is not a canonical time is reconciled once and dropped, touching nothing."""
    keys, clock, leads = KeyLayout("/t"), Clock(), [False]
    retention = RetentionReconciler(
        None, keys, PERIOD, 60.0, View(keys), RetentionTracker(keys), "w1",  # type: ignore[arg-type]
        leading=lambda: leads[0], now=clock.now, queue=WorkQueue(clock=clock),
    )  # fmt: skip
    controller = retention.controller
    controller.add(RetentionPartition(OLD))
    assert arun_drain(controller) == 1 and controller.reconciles == 0 and controller.busy(RetentionPartition(OLD))
    clock.t += 59.999
    assert arun_drain(controller) == 0
    leads[0] = True
    controller.add(RetentionPartition("2026-01-30"))
    assert arun_drain(controller) == 1 and controller.reconciles == 1
    assert not controller.busy(RetentionPartition("2026-01-30")) and len(controller.queue) == 0


def arun_drain(controller: Any) -> int:
    result: int = run_coro(controller.drain_ready())
    return result


def test_each_partition_is_pruned_at_its_own_time_and_not_a_moment_before(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first sweep keys every partition; one turning 30 days old in 10 s is pruned 10 s later (not a millisecond
    before), with the floor recorded first and one retention.pruned line; one a day younger waits a day for its own
    turn; a young partition stays."""
    young = "2026-02-20T00:00:00Z"
    seed(arun, etcd_settings, etcd_prefix, {(A, SOON): RunState.SUCCESS, (B, SOON): RunState.SUCCESS,
                                            (A, LATER): RunState.SUCCESS, (A, young): RunState.SUCCESS})  # fmt: skip
    caplog.set_level(logging.INFO, logger="coordinator.watcher.retention")

    async def go() -> None:
        async with leading(etcd_settings, etcd_prefix, interval_s=10 * 86400.0) as h:
            h.retention.controller.add(AllPartitions)
            assert await h.turn() == 4  # the sweep, then each of the three partitions: none is due
            assert await h.turn(9.999) == 0 and await h.stored(SOON) == {"a", "b"}
            assert await h.turn(0.001) >= 1
            assert await h.stored(SOON) == set() and await h.stored(LATER) == {"a"}
            floor = h.retention.tracker.floor
            assert floor is not None and floor.before == "2026-01-30T00:00:10Z" and floor.by == "w1"
            await h.turn(86400.0 - 0.001)
            assert await h.stored(LATER) == {"a"}
            await h.turn(0.001)
            assert await h.stored(LATER) == set() and await h.stored(young) == {"a"}

    arun(go())
    pruned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention.pruned")]
    assert [line.split()[1] for line in pruned] == [f"partition={SOON}", f"partition={LATER}"]
    assert "deleted=2 partitions=1 runs=2 ledger=0 backfill=0 kept_partitions=0" in pruned[0]


def test_a_kept_partition_comes_back_after_the_interval_and_events_in_it_do_not_reconcile_it(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A due partition with a running run is kept (retention.kept) and looked at again one interval later, not when
    its 100 later events arrive; once the run has ended it is pruned then. A young partition written 100 times is
    reconciled once."""
    young = "2026-02-20T00:00:00Z"
    seed(arun, etcd_settings, etcd_prefix, {(A, OLD): RunState.RUNNING, (B, OLD): RunState.SUCCESS})
    caplog.set_level(logging.INFO, logger="coordinator.watcher.retention")

    async def go() -> None:
        async with leading(etcd_settings, etcd_prefix, interval_s=60.0) as h:
            h.retention.controller.add(AllPartitions)
            # The sweep, OLD (kept), and the sweep the floor brings when it comes back (a "re-plan everything"), which
            # adds nothing: in this turn or the next, as the watch is quick.
            assert await h.turn() + await h.turn() == 3
            assert await h.stored(OLD) == {"a", "b"}
            for n in range(100):
                await h.put(A, OLD, RunState.RUNNING if n < 99 else RunState.SUCCESS, run_id=f"r{n}")
                await h.put(A, young, RunState.RUNNING if n < 99 else RunState.SUCCESS, run_id=f"r{n}")
                if n % 10 == 9:
                    assert await h.turn() == (1 if n == 9 else 0)  # the young partition's first key only
            assert await h.turn(60.0 - 0.001) == 0 and await h.stored(OLD) == {"a", "b"}
            assert await h.turn(0.001) >= 1
            assert await h.stored(OLD) == set() and await h.stored(young) == {"a"}

    arun(go())
    kept = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention.kept")]
    assert kept == [f"retention.kept partition={OLD} reasons='default/a: running (run r0)'"]
