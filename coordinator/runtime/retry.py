"""The one retry and backoff policy: every adapter and loop that waits before trying again uses this module.

Rules:
- **A value.** A :class:`RetryPolicy` is a value: the first delay, the growth factor, the cap, the jitter, and when to
  stop (a number of attempts and/or a deadline). Each call site defines its policy as a named constant whose numbers are
  explained where it is defined.
- **Capped, jittered delays.** The n-th delay is ``min(max_s, initial_s * factor ** (n - 1))``, then jittered down:
  drawn uniformly from ``[d * (1 - jitter), d]``. ``jitter=1`` is "full jitter", ``0.5`` "equal jitter", ``0`` none.
  Jitter never raises a delay above the cap, so the cap is a promise.
- **Only what is retryable.** :func:`retry_call` retries only what ``retryable`` accepts; anything else surfaces at
  once, unchanged. It stops after ``max_attempts`` calls, or before a sleep that would end past ``deadline_s`` from the
  first call (so nothing waits beyond the deadline only to give up), and then re-raises the last error.
- **No hidden clock** or randomness: ``sleep``, ``clock`` and ``rng`` are injectable, so tests run with a fake clock.
- **tenacity runs the loop.** tenacity (the maintained standard) runs the loop; this module only supplies the policy as
  its stop and wait. The first attempt runs before the loop is built (most calls succeed at once) and a retryable
  failure of it is replayed as the loop's first attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait between attempts and when to give up (**A value**, **Capped, jittered delays**,
    **Only what is retryable**). None = no such limit."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0
    max_attempts: int | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError(f"need 0 <= initial_s <= max_s, got {self.initial_s} and {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")


def backoff_delay(policy: RetryPolicy, attempt: int, u: float = 0.0) -> float:
    """The delay after failed attempt number ``attempt`` (1-based), for a uniform random ``u`` in [0, 1).

    ``u`` is passed in rather than drawn so that the function is pure: the result is ``d * (1 - jitter * u)``, which
    spans ``(d * (1 - jitter), d]`` as ``u`` spans [0, 1); ``u=0`` gives the un-jittered delay ``d``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    try:
        raw = policy.initial_s * policy.factor ** (attempt - 1)
    except OverflowError:  # a loop that has failed thousands of times is simply at the cap
        raw = policy.max_s
    delay = min(policy.max_s, raw)
    return delay * (1.0 - policy.jitter * u)


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """A failed attempt that will be retried: its number (1-based), its error and the delay before the next one."""

    number: int
    error: BaseException
    delay: float


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    *,
    on_retry: Callable[[RetryAttempt], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """Await ``fn()`` until it returns, retrying the errors ``retryable`` accepts as ``policy`` says
    (**Only what is retryable**).

    ``on_retry`` runs before each sleep (logging, switching endpoints, dropping a broken connection). tenacity runs
    the loop; the policy decides: the stop condition draws the next delay first, because **Only what is retryable**
    stops BEFORE a sleep that would end past the deadline (tenacity's own stop_after_delay looks at time already spent,
    on its own clock).
    """
    started = clock()
    # The first attempt runs outside tenacity: its loop objects cost ~25 us per call, paid by every etcd and Airflow
    # call (several per trigger), while almost every call succeeds at once. A retryable failure is replayed as the
    # loop's first attempt, so the policy sees exactly the same sequence of attempts as before.
    try:
        return await fn()
    except BaseException as exc:
        if not retryable(exc):
            raise
        first_error = exc
    replayed = False

    async def attempt() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_error
        return await fn()

    def retry_if(exc: BaseException) -> bool:
        # The replayed first error was already judged retryable: a stateful predicate is asked once per failure.
        return exc is first_error or retryable(exc)

    delays: dict[int, float] = {}

    def delay_after(number: int) -> float:
        # Drawn once per attempt, whichever of stop and wait tenacity asks first (the order changed across versions).
        if number not in delays:
            delays[number] = backoff_delay(policy, number, rng())
        return delays[number]

    def stop(state: RetryCallState) -> bool:
        number = state.attempt_number
        if policy.max_attempts is not None and number >= policy.max_attempts:
            return True
        return policy.deadline_s is not None and clock() - started + delay_after(number) > policy.deadline_s

    def wait(state: RetryCallState) -> float:
        return delay_after(state.attempt_number)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(RetryAttempt(state.attempt_number, error, delay_after(state.attempt_number)))

    retrying = AsyncRetrying(
        retry=retry_if_exception(retry_if),
        stop=stop,
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    async for tenacity_attempt in retrying:
        with tenacity_attempt:
            return await attempt()
    raise AssertionError("tenacity ends with a result or the last error (reraise=True)")  # pragma: no cover
