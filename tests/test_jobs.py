"""The leader's periodic jobs as timed keys of the work queue (coordinator/watcher/jobs.py), driven by a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from coordinator.errors import CoordinatorError, LeadershipLost
from coordinator.watcher.jobs import LeaderJobs
from coordinator.watcher.queue import AllPartitions, JobKey, WorkKey, WorkQueue
from tests.conftest import run_coro

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """One clock for the queue (monotonic seconds) and the jobs (``now``), moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)


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


#: Leadership losses reported by the runner of the current test.
LOST: list[bool] = []


def make(
    *jobs_of: str, leading: list[bool] | None = None
) -> tuple[WorkQueue[WorkKey], FakeClock, LeaderJobs, dict[str, FakeJob]]:
    """A queue and a runner on one fake clock; audit every 60 s, retention every 300 s; ``leading[0]`` says whether
    this process leads."""
    clock = FakeClock()
    queue: WorkQueue[WorkKey] = WorkQueue(clock=clock, backoff_base_s=1.0, backoff_max_s=5.0)
    jobs = {name: FakeJob(clock, name=name, interval_s=60.0 if name == "audit" else 300.0) for name in jobs_of}
    state = leading if leading is not None else [True]
    LOST.clear()
    lost = LOST.append
    runner = LeaderJobs(
        queue, list(jobs.values()), leading=lambda: state[0], on_leadership_lost=lambda: lost(True), now=clock.now
    )
    return queue, clock, runner, jobs


def due_after(queue: WorkQueue[WorkKey], clock: FakeClock, seconds: float) -> list[WorkKey]:
    """The keys handed out when ``seconds`` have passed (and none a millisecond earlier)."""
    clock.t += seconds - 0.001
    assert queue.get_nowait() == []
    clock.t += 0.001
    return queue.get_nowait()


def round_of(queue: WorkQueue[WorkKey], runner: LeaderJobs, keys: list[WorkKey]) -> None:
    """What the watcher's loops do with handed-out job keys: hand them over, run each."""
    for key in keys:
        assert isinstance(key, JobKey)
        run_coro(runner.run_key(key))


def test_each_job_is_due_exactly_at_its_own_interval_and_then_every_interval() -> None:
    """Scheduled at t, audit (60 s) is handed out at t+60 and not before, retention (300 s) at t+300; a round that
    ends at T brings its key back at exactly T+interval, at the ``now`` of the loop's clock."""
    queue, clock, runner, jobs = make("audit", "retention")
    start = clock.t
    runner.schedule()
    assert due_after(queue, clock, 60.0) == [JobKey("audit")]
    jobs["audit"].takes_s = 2.5  # the round takes clock time: the next one counts from its end
    round_of(queue, runner, [JobKey("audit")])
    assert jobs["audit"].ran_at == [EPOCH + timedelta(seconds=start + 60.0)]
    assert due_after(queue, clock, 60.0) == [JobKey("audit")]
    assert clock.t == start + 122.5
    round_of(queue, runner, [JobKey("audit")])  # ends at start + 125: audit due at 185, retention still at 300
    assert due_after(queue, clock, 60.0) == [JobKey("audit")]
    assert due_after(queue, clock, 300.0 - 185.0) == [JobKey("retention")]
    assert runner.rounds == {"audit": 2, "retention": 0}


def test_a_job_runs_only_while_leading_and_a_standby_puts_it_back_for_one_interval() -> None:
    """A key that comes due on a standby does not run its job and is due again one interval later; once leading,
    the next due key runs it."""
    leading = [False]
    queue, clock, runner, jobs = make("audit", leading=leading)
    runner.schedule()
    keys = due_after(queue, clock, 60.0)
    round_of(queue, runner, keys)
    assert jobs["audit"].ran_at == [] and runner.rounds["audit"] == 0
    leading[0] = True
    keys = due_after(queue, clock, 60.0)
    assert keys == [JobKey("audit")]
    round_of(queue, runner, keys)
    assert len(jobs["audit"].ran_at) == 1


def test_a_failed_round_backs_off_through_the_queue_capped_at_the_interval_and_success_resets_it() -> None:
    """Failures bring the key back after 1, 2, 4 s (the queue's per-key backoff, never beyond the job's interval);
    after a successful round the key is due one interval later and the next failure starts again at 1 s."""
    queue, clock, runner, jobs = make("audit")
    job = jobs["audit"]
    job.fail = [CoordinatorError("etcd away")] * 3
    runner.schedule()
    keys = due_after(queue, clock, 60.0)
    for delay in (1.0, 2.0, 4.0):
        round_of(queue, runner, keys)
        keys = due_after(queue, clock, delay)
        assert keys == [JobKey("audit")]
    round_of(queue, runner, keys)  # succeeds
    assert runner.rounds["audit"] == 1 and queue.num_requeues(JobKey("audit")) == 0
    keys = due_after(queue, clock, 60.0)
    job.fail = [CoordinatorError("again")]
    round_of(queue, runner, keys)
    assert due_after(queue, clock, 1.0) == [JobKey("audit")]


def test_backoff_never_exceeds_the_jobs_interval() -> None:
    """A job with a 3 s interval that keeps failing is retried after 1, 2, 3, 3 s: its interval caps the backoff."""
    queue, clock, runner, jobs = make("audit")
    job = jobs["audit"]
    job.interval_s = 3.0
    job.fail = [ValueError("bug")] * 4
    runner.schedule()
    keys = due_after(queue, clock, 3.0)
    for delay in (1.0, 2.0, 3.0, 3.0):
        round_of(queue, runner, keys)
        keys = due_after(queue, clock, delay)
        assert keys == [JobKey("audit")]


def test_lost_leadership_is_reported_and_the_key_waits_one_interval() -> None:
    """A round that finds leadership lost calls on_leadership_lost and its key is due one interval later."""
    queue, clock, runner, jobs = make("retention")
    jobs["retention"].fail = [LeadershipLost("fenced")]
    runner.schedule()
    round_of(queue, runner, due_after(queue, clock, 300.0))
    assert LOST == [True]
    assert due_after(queue, clock, 300.0) == [JobKey("retention")]


def test_a_job_key_in_processing_is_not_handed_out_twice() -> None:
    """While a round runs its key stays in processing: added again meanwhile, it is not handed out until done;
    other keys of the one queue are handed out as usual."""
    queue, clock, runner, _ = make("audit")
    runner.schedule()
    keys = due_after(queue, clock, 60.0)
    assert keys == [JobKey("audit")]
    queue.add(JobKey("audit"))
    queue.add(AllPartitions)
    assert queue.get_nowait() == [AllPartitions]
    queue.done(AllPartitions)
    round_of(queue, runner, keys)  # done: the add made meanwhile is handed out now
    assert queue.get_nowait() == [JobKey("audit")]


def test_a_round_that_asks_for_a_sooner_round_is_due_then_and_never_later_than_its_interval() -> None:
    """A round returning ``requeue_after`` 0.25 s brings its key back 0.25 s after it ends, not one interval later;
    one asking for more than the interval is due at the interval; the next round asking nothing, at the interval."""
    queue, clock, runner, jobs = make("audit")
    runner.schedule()
    jobs["audit"].requeue = [0.25, 600.0]
    round_of(queue, runner, due_after(queue, clock, 60.0))
    keys = due_after(queue, clock, 0.25)
    assert keys == [JobKey("audit")]
    round_of(queue, runner, keys)  # asks for 600 s: capped at the 60 s interval
    keys = due_after(queue, clock, 60.0)
    assert keys == [JobKey("audit")]
    round_of(queue, runner, keys)  # asks nothing: one interval
    assert due_after(queue, clock, 60.0) == [JobKey("audit")]
    assert runner.rounds["audit"] == 3
