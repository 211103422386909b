"""A controller's work queue, in the spirit of client-go's ``workqueue``: every requeue of a controller goes through
its own queue (``manager/controller.py``), and nothing else schedules its work.

Rules:
- **Dedup.** A key added any number of times before it is handed out is handed out once.
- **One worker per key.** A key being processed is never handed out again: added meanwhile, it is marked dirty and
  queued when ``done`` (so a change that arrives during a reconcile is reconciled after it, never alongside it).
- **Time is a requeue.** ``add_after`` hands a key out after a delay (the earliest of several delays wins);
  ``add_rate_limited`` does the same with a per-key exponential backoff (client-go's
  ItemExponentialFailureRateLimiter), capped by the cap the caller names (else the queue's maximum), that
  ``forget`` resets when the key's work succeeds.
- **Shutdown.** After ``shutdown`` nothing is added and getters return at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from contextlib import suppress
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicated dirty keys, a processing set, delayed and rate-limited adds (the module's rules)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        # The watcher's one rate-limited key is a failed pass (etcd trouble): retried after 1, 2, 4, 5, 5... s, soon
        # after a blip, without re-planning everything every second while etcd is down.
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        #: key -> when its delayed add is due; the heap may hold older entries of a key, skipped when popped.
        self._waiting_at: dict[K, float] = {}
        self._waiting: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False
        self._wake = asyncio.Event()

    # -- adding ---------------------------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Mark ``key`` dirty (**dedup**, **one worker per key**)."""
        if self._shutdown:
            return
        dirty = len(self._dirty)
        self._dirty.add(key)
        if len(self._dirty) == dirty:
            return  # already dirty (one hash instead of a lookup and an insert: this runs per watch event)
        if not self._processing or key not in self._processing:
            self._queue.append(key)
            self._wake.set()

    def add_after(self, key: K, delay_s: float) -> None:
        """Add ``key`` once ``delay_s`` seconds have passed (**time is a requeue**)."""
        if self._shutdown:
            return
        if delay_s <= 0:
            self.add(key)
            return
        due = self._clock() + delay_s
        if self._waiting_at.get(key, due + 1.0) <= due:
            return  # an earlier add of the same key is pending
        self._waiting_at[key] = due
        heapq.heappush(self._waiting, (due, next(self._seq), key))
        self._wake.set()  # a getter may be sleeping past the new due time

    def add_rate_limited(self, key: K, max_s: float | None = None) -> float:
        """Add ``key`` after its backoff (base * 2^failures, capped at ``max_s``, else at the queue's maximum); return
        that delay (**time is a requeue**)."""
        delay = self.backoff(key, max_s)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)
        return delay

    def backoff(self, key: K, max_s: float | None = None) -> float:
        """The delay the next ``add_rate_limited`` of ``key`` would wait (nothing changes)."""
        cap = self._backoff_max_s if max_s is None else max_s
        return min(self._backoff_base_s * 2.0 ** min(self._failures.get(key, 0), 62), cap)

    def forget(self, key: K) -> None:
        """The key's work succeeded: its next ``add_rate_limited`` starts from the base delay again."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    # -- handing out ----------------------------------------------------------------------------------------------

    def get_nowait(self, limit: int | None = None) -> list[K]:
        """Every key that is ready (at most ``limit``, oldest first), now in processing (possibly none)."""
        self._promote()
        if limit is None or limit >= len(self._queue):
            batch = list(self._queue)
            self._queue.clear()
        else:
            batch = [self._queue.popleft() for _ in range(limit)]
        # Set operations on the whole batch: a pass after a flood of events takes thousands of keys at once.
        self._dirty.difference_update(batch)
        self._processing.update(batch)
        return batch

    async def get(self, timeout_s: float, limit: int | None = None) -> list[K]:
        """Wait up to ``timeout_s`` for ready keys and take them (at most ``limit``) into processing; [] on timeout
        or shutdown."""
        deadline = self._clock() + timeout_s
        while True:
            self._wake.clear()
            batch = self.get_nowait(limit)
            now = self._clock()
            if batch or self._shutdown or now >= deadline:
                return batch
            wait = deadline - now
            if self._waiting:
                wait = min(wait, max(0.0, self._waiting[0][0] - now))
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that meets a wake-up (gh-86296),
            # as at every stop (shutdown() wakes the getter, then its task is cancelled) or an add as the consumer is
            # cancelled: the getter returned as if not cancelled and its caller went on.
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def done(self, key: K) -> None:
        """Processing of ``key`` ended; if it was added meanwhile it is queued now (**one worker per key**). A key that
        was not in processing is queued already if dirty (``add`` queued it): never twice."""
        if key not in self._processing:
            return
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._wake.set()

    def done_all(self, keys: Iterable[K]) -> None:
        """``done`` for each of ``keys`` (a whole batch), in bulk."""
        processing = self._processing
        keys = [key for key in keys if key in processing]
        processing.difference_update(keys)
        if self._dirty and not self._shutdown:
            again = [key for key in keys if key in self._dirty]
            if again:
                self._queue.extend(again)
                self._wake.set()

    # -- state ----------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Refuse new keys and wake every getter (**shutdown**)."""
        self._shutdown = True
        self._wake.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def processing(self, key: K) -> bool:
        return key in self._processing

    def waiting(self, key: K) -> bool:
        """A delayed add of ``key`` is pending."""
        return key in self._waiting_at

    def holds(self, match: Callable[[K], bool], *, delayed: bool = True) -> bool:
        """Whether a key that ``match``es is queued, processed or (``delayed``) waiting for its delayed add: work
        still to do or under way for it (the trigger reconciler's settled check)."""
        places: list[Iterable[K]] = [self._dirty, self._processing]
        if delayed:
            places.append(self._waiting_at)
        return any(match(key) for place in places for key in place)

    def __len__(self) -> int:
        """Keys ready to be handed out."""
        self._promote()
        return len(self._queue)

    def _promote(self) -> None:
        """Move delayed keys whose time has come to the queue."""
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            if self._waiting_at.get(key) == due:
                del self._waiting_at[key]
                self.add(key)
