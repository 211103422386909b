"""The watcher's one work queue, in the spirit of client-go's ``workqueue``: every requeue path goes through it.

Rules:
1. Keys are deduplicated: a key added any number of times before it is handed out is handed out once.
2. A key being processed is never handed out again: added meanwhile, it is marked dirty and queued when ``done``.
3. ``add_after`` hands a key out after a delay (the earliest of several delays wins); ``add_rate_limited`` does the
   same with a per-key exponential backoff (client-go's ItemExponentialFailureRateLimiter), capped by the cap the
   caller names (else the queue's maximum), that ``forget`` resets when the key's work succeeds.
4. ``try_start`` takes a key into processing without it being handed out (the actuator: an action was planned for
   it). It refuses while the key is processed (the key is marked dirty, so it is re-planned after ``done``) and while
   a delayed add of the key is pending (a retry waits for its time; that add brings the key back).
5. After ``shutdown`` nothing is added and getters return at once.

Keys are typed: ``AllPartitions`` (re-plan everything), ``NextSlice`` (the next slice of a sweep over everything),
``PartitionKey`` (re-plan one partition), ``DagKey`` (the facts of one DAG in one partition changed; an action for
it is in flight while it is processed), ``AssetStream`` (one asset stream has an event to deliver; its attempt runs
while it is processed) and ``JobKey`` (a periodic job is due: time as a key, client-go's ``AddAfter``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from typing import Generic, NamedTuple, TypeVar

from coordinator.core.model import NodeId


class _All(Enum):
    ALL = "all"
    NEXT_SLICE = "next slice"

    def __repr__(self) -> str:
        return "AllPartitions" if self is _All.ALL else "NextSlice"


#: Every partition must be re-planned (start, graph change, resync, new leadership, a failed pass).
AllPartitions = _All.ALL
#: The watcher's sweep over every partition has slices left to plan (``watcher/triggers.py`` rule 3): queued behind
#: whatever the watch brought meanwhile, so a sweep never holds an event for longer than a slice.
NextSlice = _All.NEXT_SLICE
AllPartitionsType = _All


@dataclass(frozen=True, slots=True)
class PartitionKey:
    """One partition must be re-planned whole (a backfill request)."""

    partition: str


class DagKey(NamedTuple):
    """The run state or ledger entry of one DAG in one partition changed: it and what depends on it are re-planned.
    Also the unit of the actuator: one action per key in flight.

    A named tuple rather than a frozen dataclass: one is made and hashed per watch event, and a tuple is made and
    hashed three times faster (a pass of 100,000 events would otherwise spend ~0.1 s of CPU on keys alone)."""

    node: NodeId
    partition: str


class AssetStream(NamedTuple):
    """The (target, source, asset uri) stream of asset deliveries (semantics rule 16d): its due events are delivered
    in order by one attempt at a time (``watcher/deliveries.py``). A tuple, as the asset index's stream keys are."""

    target: str
    source: str
    uri: str


@dataclass(frozen=True, slots=True)
class JobKey:
    """A periodic job of the leader is due (``watcher/jobs.py``): added with ``add_after`` its interval ahead."""

    name: str


WorkKey = AllPartitionsType | PartitionKey | DagKey | AssetStream | JobKey

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Deduplicated dirty keys, a processing set, delayed and rate-limited adds (module rules 1-5)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        # The watcher's one rate-limited key is a failed pass (etcd trouble): retried after 1, 2, 4, 5, 5... s, close
        # to the fixed 1 s it had before this queue, without re-planning everything every second while etcd is down.
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
        """Mark ``key`` dirty (rules 1 and 2)."""
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
        """Add ``key`` once ``delay_s`` seconds have passed (rule 3)."""
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
        that delay (rule 3)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        cap = self._backoff_max_s if max_s is None else max_s
        delay = min(self._backoff_base_s * 2.0 ** min(failures, 62), cap)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key's work succeeded: its next ``add_rate_limited`` starts from the base delay again."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)

    # -- handing out ----------------------------------------------------------------------------------------------

    def get_nowait(self) -> list[K]:
        """Every key that is ready, now in processing (possibly none)."""
        self._promote()
        batch = list(self._queue)
        self._queue.clear()
        # Set operations on the whole batch: a pass after a flood of events takes thousands of keys at once.
        self._dirty.difference_update(batch)
        self._processing.update(batch)
        return batch

    async def get(self, timeout_s: float) -> list[K]:
        """Wait up to ``timeout_s`` for ready keys and take them all into processing; [] on timeout or shutdown."""
        deadline = self._clock() + timeout_s
        while True:
            self._wake.clear()
            batch = self.get_nowait()
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

    def try_start(self, key: K) -> bool:
        """Take ``key`` into processing directly (rule 4); False when it is processed or its delayed add pending."""
        if key in self._processing:
            self.add(key)  # re-queued after done: whatever wanted it then is planned afresh
            return False
        if key in self._waiting_at:
            return False
        if key in self._dirty:
            # Queued to be handed out: it stays dirty and is queued again when done (rule 2).
            self._queue.remove(key)
        self._processing.add(key)
        return True

    def done(self, key: K) -> None:
        """Processing of ``key`` ended; if it was added meanwhile it is queued now (rule 2)."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._wake.set()

    def done_all(self, keys: Iterable[K]) -> None:
        """``done`` for each of ``keys`` (a whole batch), in bulk."""
        keys = list(keys)
        self._processing.difference_update(keys)
        if self._dirty and not self._shutdown:
            again = [key for key in keys if key in self._dirty]
            if again:
                self._queue.extend(again)
                self._wake.set()

    # -- state ----------------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Refuse new keys and wake every getter (rule 5)."""
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
