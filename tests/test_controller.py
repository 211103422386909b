"""The manager's one controller type (coordinator/manager): keys, requeues, backoff and leader gating, driven by a fake
clock; timed concerns as keys requeued at their interval; the actions' controller keeps one action per key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from coordinator.core.actions import Trigger
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, run_id_for
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, LeadershipLost
from coordinator.manager import DONE, Controller, Manager, Periodic, Result, Watch, WorkQueue
from coordinator.watcher.actuator import Actuator, Offer
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import DagKey, Tick
from tests.conftest import run_coro
from tests.support.changes import changes_of
from tests.support.offers import submit

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """One clock for the queue (monotonic seconds) and the reconcilers (``now``), moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)


def due_after(queue: WorkQueue[Any], clock: FakeClock, seconds: float) -> list[Any]:
    """The keys handed out when ``seconds`` have passed (and none a millisecond earlier); they are put back."""
    clock.t += seconds - 0.001
    assert queue.get_nowait() == []
    clock.t += 0.001
    keys = queue.get_nowait()
    for key in keys:  # only looked at: handed out again by the next turn
        queue.done(key)
        queue.add(key)
    return keys


def turn(controller: Controller[Any]) -> int:
    """One turn of the controller's workers over what is ready now."""
    return run_coro(controller.drain_ready())


# -- a toy controller, registered in a few lines ---------------------------------------------------------------


@dataclass
class Greeter:
    """A toy concern: it reconciles partition names, asks for one partition again later, and fails one once."""

    seen: list[tuple[str, datetime]] = field(default_factory=list)
    fail_once: set[str] = field(default_factory=set)

    async def reconcile(self, key: str, now: datetime) -> Result:
        self.seen.append((key, now))
        if key in self.fail_once:
            self.fail_once.discard(key)
            raise CoordinatorError(f"{key}: etcd is away")
        return Result(requeue_after=30.0) if key == "again" else DONE


def toy(*, leading: list[bool] | None = None) -> tuple[Manager, Controller[str], Greeter, FakeClock]:
    clock = FakeClock()
    state = leading if leading is not None else [True]
    greeter = Greeter()
    manager = Manager()
    controller = manager.register(
        Controller("greeter", greeter, needs_leader=leading is not None, leading=lambda: state[0], now=clock.now,
                   queue=WorkQueue(clock=clock, backoff_base_s=1.0, backoff_max_s=8.0), backoff_max_s=8.0),
        Watch(lambda changes: sorted(changes.of(View.PARTITIONS))),
    )  # fmt: skip
    return manager, controller, greeter, clock


def test_a_toy_controller_sees_the_keys_the_informers_changes_bring_once_each() -> None:
    """Registered with an interest, a controller gets each key a change brings, deduplicated, reconciled once with
    the controller's ``now``; a key nobody added is never reconciled."""
    manager, controller, greeter, clock = toy()
    manager.dispatch(changes_of(5, partitions={"p1", "p2"}))
    manager.dispatch(changes_of(6, partitions={"p1"}))
    assert turn(controller) == 2
    assert sorted(greeter.seen) == [("p1", clock.now()), ("p2", clock.now())]
    assert turn(controller) == 0


def test_a_requeue_after_brings_the_key_back_exactly_then_and_an_error_backs_off_until_success_resets_it() -> None:
    """``Result(requeue_after=30)`` is due 30 s later and not before; a reconcile that raises is retried after 1,
    2, 4 s (the per-key backoff), and the first success forgets the backoff."""
    _, controller, greeter, clock = toy()
    controller.add("again")
    turn(controller)
    assert due_after(controller.queue, clock, 30.0) == ["again"]
    _, controller, greeter, clock = toy()
    for delay in (1.0, 2.0, 4.0):
        greeter.fail_once.add("flaky")
        controller.add("flaky")
        turn(controller)  # fails
        assert due_after(controller.queue, clock, delay) == ["flaky"]
        controller.queue.get_nowait()
        controller.queue.done("flaky")
    assert controller.queue.num_requeues("flaky") == 3
    controller.add("flaky")
    turn(controller)  # succeeds
    assert controller.queue.num_requeues("flaky") == 0 and greeter.seen[-1] == ("flaky", clock.now())


def test_a_controller_that_needs_the_leader_reconciles_nothing_on_a_standby() -> None:
    """On a standby a handed-out key is dropped without a reconcile (no delay kept); once leading, a key added is
    reconciled."""
    leading = [False]
    _, controller, greeter, _ = toy(leading=leading)
    controller.add("p1")
    assert turn(controller) == 1 and greeter.seen == []
    assert len(controller.queue) == 0 and not controller.busy("p1")
    leading[0] = True
    controller.add("p1")
    assert turn(controller) == 1 and [key for key, _ in greeter.seen] == ["p1"]


def test_two_controllers_of_one_name_are_refused() -> None:
    """A second registration under a name in use is an error, not a silent replacement."""
    manager, controller, _, _ = toy()
    try:
        manager.register(controller)
    except ValueError as exc:
        assert "greeter" in str(exc)
    else:
        raise AssertionError("registered twice")


def test_a_key_being_reconciled_is_not_handed_to_a_second_worker() -> None:
    """With two workers, a key added again while its reconcile runs waits for it and runs once more after it, never
    alongside it."""

    class Slow:
        def __init__(self) -> None:
            self.running: set[str] = set()
            self.overlaps = 0
            self.runs = 0

        async def reconcile(self, key: str, now: datetime) -> Result:
            self.overlaps += key in self.running
            self.running.add(key)
            await asyncio.sleep(0.05)
            self.running.discard(key)
            self.runs += 1
            return DONE

    async def main() -> Slow:
        slow = Slow()
        controller: Controller[str] = Controller("slow", slow, workers=2)
        workers = asyncio.create_task(controller.run())
        controller.add("k")
        await asyncio.sleep(0.01)
        controller.add("k")  # while it runs
        controller.add("k")
        await asyncio.sleep(0.2)
        workers.cancel()
        await asyncio.gather(workers, return_exceptions=True)
        return slow

    slow = run_coro(main())
    assert slow.overlaps == 0 and slow.runs == 2


# -- timed concerns: time as a requeue --------------------------------------------------------------------------


@dataclass
class FakeJob:
    """A job that records the ``now`` of each round, takes ``takes_s`` of clock time and fails while told to."""

    clock: FakeClock
    name: str = "audit"
    interval_s: float = 60.0
    takes_s: float = 0.0
    fail: list[BaseException] = field(default_factory=list)
    ran_at: list[datetime] = field(default_factory=list)
    #: What each round returns as its ``requeue_after``, in turn (None once used up: one interval).
    requeue: list[float] = field(default_factory=list)

    async def run_once(self, now: datetime) -> float | None:
        self.ran_at.append(now)
        self.clock.t += self.takes_s
        if self.fail:
            raise self.fail.pop(0)
        return self.requeue.pop(0) if self.requeue else None


def timed(name: str = "audit", interval_s: float = 60.0, leading: list[bool] | None = None) -> tuple[
    Controller[Tick], FakeJob, FakeClock
]:  # fmt: skip
    """A timed concern registered as the watcher registers one: its key first due one interval ahead."""
    clock = FakeClock()
    job = FakeJob(clock, name=name, interval_s=interval_s)
    state = leading if leading is not None else [True]
    controller: Controller[Tick] = Controller(
        name, Periodic(job), needs_leader=True, leading=lambda: state[0], period_s=interval_s,
        backoff_max_s=interval_s, now=clock.now, queue=WorkQueue(clock=clock, backoff_max_s=interval_s),
    )  # fmt: skip
    Manager().register(controller, start_after=(Tick(name), interval_s))
    return controller, job, clock


def test_a_timed_concern_is_due_at_its_interval_counted_from_the_end_of_each_round() -> None:
    """Registered at t, audit (60 s) is handed out at t+60 and not before; a round that ends at T brings its key
    back at exactly T+60, and the round is told the controller's ``now``."""
    controller, job, clock = timed()
    start = clock.t
    assert due_after(controller.queue, clock, 60.0) == [Tick("audit")]
    job.takes_s = 2.5
    turn(controller)
    assert job.ran_at == [EPOCH + timedelta(seconds=start + 60.0)]
    assert due_after(controller.queue, clock, 60.0) == [Tick("audit")]
    assert clock.t == start + 122.5


def test_a_timed_concern_runs_only_while_leading_and_a_standby_puts_it_back_for_one_interval() -> None:
    """A key that comes due on a standby runs no round and is due again one interval later; once leading, it runs."""
    leading = [False]
    controller, job, clock = timed(leading=leading)
    clock.t += 60.0
    turn(controller)
    assert job.ran_at == []
    assert due_after(controller.queue, clock, 60.0) == [Tick("audit")]
    leading[0] = True
    turn(controller)
    assert len(job.ran_at) == 1


def test_a_failed_round_backs_off_capped_at_the_interval_and_a_lost_leadership_waits_one_interval() -> None:
    """A job with a 3 s interval that keeps failing is retried after 1, 2, 3, 3 s; a round that finds its leadership
    lost is due again one interval later; a round that succeeds resets the backoff."""
    controller, job, clock = timed(interval_s=3.0)
    clock.t += 3.0
    job.fail = [CoordinatorError("etcd away") for _ in range(4)]
    delays = []
    for _ in range(4):
        turn(controller)
        for delay in (1.0, 2.0, 3.0):
            clock.t += delay - 0.001
            if controller.queue.get_nowait():
                raise AssertionError("due too early")
            clock.t += 0.001
            if len(controller.queue):
                delays.append(delay)
                break
            clock.t -= delay
        else:
            raise AssertionError("never due")
    assert delays == [1.0, 2.0, 3.0, 3.0]
    job.fail = [LeadershipLost("moved")]
    turn(controller)
    assert due_after(controller.queue, clock, 3.0) == [Tick("audit")]
    turn(controller)  # succeeds
    assert controller.queue.num_requeues(Tick("audit")) == 0


def test_a_round_that_asks_for_a_sooner_round_is_due_then_and_never_later_than_its_interval() -> None:
    """A round returning 0.25 s is due 0.25 s after it ends; one asking for more than the interval is due at the
    interval; the next round asking nothing, at the interval."""
    controller, job, clock = timed()
    clock.t += 60.0
    job.requeue = [0.25, 500.0]
    turn(controller)
    assert due_after(controller.queue, clock, 0.25) == [Tick("audit")]
    turn(controller)
    assert due_after(controller.queue, clock, 60.0) == [Tick("audit")]


# -- the actions' controller: one action per key ---------------------------------------------------------------

NODE = NodeId("default", "child")
PARTITION = "2026-01-01T00:00:00Z"


def trigger() -> Trigger:
    return Trigger(node=NODE, partition=PARTITION, inputs={"default/root": 1}, action=TriggerAction.CREATE,
                   run_id=run_id_for(PARTITION), reason="root succeeded", cause_rev=1, ledger_rev=0,
                   trigger_count=1)  # fmt: skip


def actuator(leading: list[bool] | None = None) -> tuple[Actuator, list[DagKey]]:
    replanned: list[DagKey] = []
    executor = Executor(cast(Any, None), {}, fence=lambda: None)
    state = leading if leading is not None else [True]
    act = Actuator(executor, KeyLayout("/t"), watcher_id="w", replan=replanned.append, paused={},
                   leading=lambda: state[0])  # fmt: skip
    return act, replanned


def test_an_action_offered_while_its_keys_attempt_runs_is_busy_and_the_attempts_end_plans_the_key_again() -> None:
    """While (DAG, partition)'s attempt is queued or in processing a newly planned action for it is busy and nothing
    is queued; when the attempt ends the key goes back to the planner once (planned afresh, on the view as it is
    then)."""
    act, replanned = actuator([False])  # the attempt ends without acting: only its end matters here
    key = DagKey(NODE, PARTITION)
    assert submit(act, trigger())
    assert act.offer(trigger()) is Offer.BUSY and act.under_way(key)
    queue = act.controller.queue
    assert len(queue) == 1  # the one key, queued once
    assert act.offer(trigger(), view_revision=0) is Offer.BUSY
    assert replanned == []
    assert turn(act.controller) == 1  # the attempt ends
    assert replanned == [key] and not act.under_way(key) and len(queue) == 0


def test_an_action_waiting_out_its_error_backoff_is_not_started_and_the_backoff_brings_the_key_to_the_planner() -> None:
    """After an error the key waits out its backoff: an action planned meanwhile is refused; when the backoff ends
    the key is handed out with nothing pending, and the reconcile hands it back to the planner without acting, and
    without forgetting the backoff (a turn that judged nothing is no success: the next failure waits longer)."""
    act, replanned = actuator()
    key = DagKey(NODE, PARTITION)
    queue = act.controller.queue
    queue.add_rate_limited(key, max_s=30.0)
    assert act.offer(trigger()) is Offer.WAITING and not submit(act, trigger())
    assert queue.waiting(key)
    result = run_coro(act.reconcile(key, EPOCH))  # the backoff ended: nothing pending
    assert result == Result(forget=False) and replanned == [key]
    act.controller.settle([key], {key: result})
    assert queue.num_requeues(key) == 1 and queue.backoff(key, 30.0) == 2.0


def test_an_action_handed_out_while_the_lease_is_in_doubt_is_dropped_and_the_next_plan_of_it_starts() -> None:
    """A submitted action whose key is handed out while this watcher does not lead (a lease in doubt) starts nothing
    and leaves nothing behind: once leading again, the next plan of the same DAG and partition is accepted."""
    leading = [True]
    act, _ = actuator(leading)
    assert submit(act, trigger())
    leading[0] = False
    assert turn(act.controller) == 1  # handed out, dropped without an attempt
    assert act.outcome.done == act.outcome.errors == act.outcome.skipped == 0
    leading[0] = True
    assert submit(act, trigger()), "a dropped action kept its key from ever being planned again"


def test_a_dag_whose_attempt_is_under_way_is_left_to_the_attempts_end_which_plans_it_once() -> None:
    """A DAG with nothing under way is not left to anything; while its action waits to start or runs, its changes
    are left to the attempt (under way), and the attempt's end plans the key exactly once, however many came."""
    leading = [True]
    act, replanned = actuator(leading)
    key = DagKey(NODE, PARTITION)
    assert not act.under_way(key)
    assert submit(act, trigger())
    assert act.under_way(key) and act.under_way(key)  # its own intent write, then its run's first state
    assert replanned == []
    leading[0] = False  # the attempt ends without acting (the lease in doubt): its end still plans the key
    assert turn(act.controller) == 1
    assert replanned == [key]
    assert not act.under_way(key)


def test_leader_only_is_declared_once_and_the_manager_says_who_leads() -> None:
    """A needs_leader controller takes its leadership from the manager that registers it (a standby's key waits, the
    leader's is reconciled); a manager that knows no leadership refuses it; told by nobody, it never acts."""
    state = [False]

    class Count:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def reconcile(self, key: str, now: datetime) -> Result:
            self.seen.append(key)
            return DONE

    counted = Count()
    controller: Controller[str] = Controller("once", counted, needs_leader=True)
    assert not controller.told_who_leads
    with pytest.raises(ValueError, match="needs the leader"):
        Manager().register(controller)
    Manager(leading=lambda: state[0]).register(controller)
    controller.add("k")
    asyncio.run(controller.drain_ready())
    assert counted.seen == []  # a standby
    state[0] = True
    controller.add("k")
    asyncio.run(controller.drain_ready())
    assert counted.seen == ["k"]
    nobody = Count()
    alone: Controller[str] = Controller("alone", nobody, needs_leader=True)
    alone.add("k")
    asyncio.run(alone.drain_ready())
    assert nobody.seen == []
