"""The one retry policy: delays grow and stop at the cap, jitter stays in bounds, attempts and deadlines are respected,
and an error the predicate does not accept surfaces at once. A fake clock: no test sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from coordinator.runtime.retry import RetryAttempt, RetryPolicy, backoff_delay, retry_call


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


def failing(times: int, error: Callable[[], Exception] = Transient, result: str = "ok") -> Callable[[], Any]:
    """A coroutine factory that raises ``error()`` ``times`` times, then returns ``result``; counts its calls."""
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise error()
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def run(fn: Callable[[], Any], policy: RetryPolicy, clock: FakeClock, rng: float = 0.0, **kw: Any) -> Any:
    return asyncio.run(
        retry_call(
            fn,
            policy,
            lambda exc: isinstance(exc, Transient),
            sleep=clock.sleep,
            clock=clock,
            rng=lambda: rng,
            **kw,
        )
    )


def test_delays_grow_by_the_factor_until_the_cap() -> None:
    """Without jitter the n-th delay is initial * factor^(n-1), never above max_s, even after thousands of attempts."""
    policy = RetryPolicy(initial_s=0.1, max_s=1.0, factor=3.0)
    assert [round(backoff_delay(policy, n), 6) for n in range(1, 6)] == [0.1, 0.3, 0.9, 1.0, 1.0]
    assert backoff_delay(policy, 10_000) == 1.0


@pytest.mark.parametrize("jitter", [0.0, 0.2, 0.5, 1.0], ids=["none", "fifth", "equal", "full"])
def test_jitter_stays_within_its_bounds(jitter: float) -> None:
    """A jittered delay lies in (d * (1 - jitter), d]: never above the un-jittered delay, never below its floor."""
    policy = RetryPolicy(initial_s=0.2, max_s=5.0, jitter=jitter)
    for attempt in range(1, 10):
        d = backoff_delay(policy, attempt)
        for u in (0.0, 0.25, 0.5, 0.999999):
            delay = backoff_delay(policy, attempt, u)
            assert d * (1 - jitter) <= delay <= d
        assert backoff_delay(policy, attempt, 0.0) == d
    assert backoff_delay(policy, 5, 0.5) == pytest.approx(min(5.0, 0.2 * 16) * (1 - jitter / 2))


def test_retries_transient_errors_with_the_policy_delays_then_returns() -> None:
    """Three transient failures are retried after 0.1, 0.2, 0.4 s and the fourth call's result is returned."""
    clock = FakeClock()
    seen: list[RetryAttempt] = []
    fn = failing(3)
    result = run(fn, RetryPolicy(initial_s=0.1, max_s=1.0, max_attempts=5), clock, on_retry=seen.append)
    assert result == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert [a.number for a in seen] == [1, 2, 3]
    assert all(isinstance(a.error, Transient) for a in seen)


def test_max_attempts_bounds_the_calls_and_reraises_the_last_error() -> None:
    """With max_attempts=4 the function is called 4 times, slept between 3 times, and the last error is raised."""
    clock = FakeClock()
    fn = failing(100)
    with pytest.raises(Transient):
        run(fn, RetryPolicy(initial_s=0.1, max_s=1.0, max_attempts=4), clock)
    assert fn.calls[0] == 4  # type: ignore[attr-defined]
    assert len(clock.sleeps) == 3


def test_deadline_is_respected_no_sleep_ends_past_it() -> None:
    """With a 5 s deadline and no attempt limit, the total slept stays within 5 s and the error surfaces."""
    clock = FakeClock()
    fn = failing(1000)
    with pytest.raises(Transient):
        run(fn, RetryPolicy(initial_s=0.5, max_s=2.0, deadline_s=5.0), clock)
    assert sum(clock.sleeps) <= 5.0
    assert clock.sleeps == pytest.approx([0.5, 1.0, 2.0])  # a 4th sleep of 2 s would end at 5.5 s
    assert fn.calls[0] == 4  # type: ignore[attr-defined]


def test_deadline_counts_the_time_spent_in_calls() -> None:
    """Time spent inside slow attempts counts against the deadline, not only the sleeps."""
    clock = FakeClock()
    calls = [0]

    async def slow_failure() -> None:
        calls[0] += 1
        clock.now += 3.0  # each attempt takes 3 s before failing
        raise Transient

    with pytest.raises(Transient):
        run(slow_failure, RetryPolicy(initial_s=0.1, max_s=0.1, deadline_s=6.0), clock)
    assert calls[0] == 2  # 3 s + 0.1 s + 3 s = 6.1 s: another sleep would already end past the 6 s deadline


def test_a_non_retryable_error_surfaces_at_once() -> None:
    """An error the predicate rejects is raised unchanged from the first call, with no sleep."""
    clock = FakeClock()
    fn = failing(1, error=Permanent)
    with pytest.raises(Permanent):
        run(fn, RetryPolicy(initial_s=0.1, max_s=1.0, max_attempts=10), clock)
    assert fn.calls[0] == 1  # type: ignore[attr-defined]
    assert clock.sleeps == []


def test_the_predicate_sees_each_error_and_can_change_its_mind() -> None:
    """The predicate is asked after every failure, so a caller can bound one kind of error separately."""
    clock = FakeClock()
    fn = failing(100)
    asked: list[BaseException] = []

    def retryable(exc: BaseException) -> bool:
        asked.append(exc)
        return len(asked) < 3

    with pytest.raises(Transient):
        asyncio.run(retry_call(fn, RetryPolicy(initial_s=0.0, max_s=0.0), retryable, sleep=clock.sleep, clock=clock))
    assert len(asked) == 3
    assert fn.calls[0] == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"initial_s": -1.0, "max_s": 1.0}, id="negative-initial"),
        pytest.param({"initial_s": 2.0, "max_s": 1.0}, id="cap-below-initial"),
        pytest.param({"initial_s": 0.1, "max_s": 1.0, "factor": 0.5}, id="shrinking-factor"),
        pytest.param({"initial_s": 0.1, "max_s": 1.0, "jitter": 1.5}, id="jitter-above-one"),
        pytest.param({"initial_s": 0.1, "max_s": 1.0, "max_attempts": 0}, id="zero-attempts"),
        pytest.param({"initial_s": 0.1, "max_s": 1.0, "deadline_s": 0.0}, id="zero-deadline"),
    ],
)
def test_inconsistent_policies_are_refused(kwargs: dict[str, Any]) -> None:
    """A policy that could not mean what it says (cap below start, jitter > 1, no attempts) raises ValueError."""
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
