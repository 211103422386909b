"""One controller type, in controller-runtime's shape: a typed work queue of its own, workers that take keys from it,
one reconcile per key (or per batch of keys), and one process function that turns what a reconcile returned, or
raised, into what happens to its key next.

A concern of the watcher is a reconciler and one registration line in the manager (``manager/manager.py``); the
informer's events, another controller or a timer add its keys, and nothing else schedules its work.

Rules:
- **Result.** A reconcile returns a :class:`Result`: nothing more to do (the key's backoff is forgotten), the key again
  ``requeue_after`` seconds later (time as a requeue: a periodic concern is a key requeued at its interval), or
  ``retry``: the key again after its per-key exponential backoff (capped at ``retry_max_s``, else the controller's
  ``backoff_max_s``). A turn that judged nothing (a backoff's end that only hands the key on) says ``forget=False``:
  the backoff stays, so the next failure waits longer instead of starting over (client-go forgets only on success).
  A batch reconciler returns a result per key it has something to say about; a key of the batch it does not name is
  done; a key it names outside the batch is added as its result says (the next slice of a sweep, a withheld
  trigger).
- **Errors.** A reconcile that raises is the process function's to judge, never the worker's end: a lost leadership
  (``LeadershipLost``: the executor already told the campaign) puts the key back ``period_s`` later, or drops it; any
  other error is logged (``{name}.failed``; at DEBUG under an etcd alarm, which the probe reports once) and the key
  retried after its backoff. A failure never stops the watcher.
- **Leader only.** A controller that ``needs_leader`` reconciles only while its process leads: a key handed out on a
  standby is put back ``period_s`` later (a periodic concern keeps its rhythm) or dropped (a new leader's first
  passes find that work again: its sweep plans every partition, its first asset round submits every due stream).
  A concern declares it once, ``needs_leader=True``; who leads is the manager's to say (``Manager(leading=...)``
  hands it to every such controller it registers). A controller told by nobody never takes itself for the leader:
  its keys wait as on a standby.
- **Workers.** ``workers`` keys are reconciled at once, never the same key twice at once (``manager/queue.py``'s
  **One worker per key**); a batch controller has one worker that takes every ready key.
- **Liveness.** ``on_turn`` is called at every turn of each worker, at least every ``idle_s`` (the watcher's liveness
  probe beats from the triggers' worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar, runtime_checkable

from coordinator.errors import CoordinatorError, LeadershipLost, WritesRefused
from coordinator.manager.queue import WorkQueue

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for its key (**Result**; controller-runtime's ``Result``)."""

    #: The key again this many seconds later (0: at once, behind the keys already queued).
    requeue_after: float | None = None
    #: The key again after its per-key backoff: the reconcile could not finish and says so without raising.
    retry: bool = False
    #: The backoff's cap for this retry (else the controller's ``backoff_max_s``).
    retry_max_s: float | None = None
    #: Whether the key's backoff is forgotten (not for a retry): False for a turn that judged nothing.
    forget: bool = True


#: Nothing more to do for the key.
DONE = Result()


class Reconciler(Protocol[K_contra]):
    """One key at a time (**Result**)."""

    async def reconcile(self, key: K_contra, now: datetime) -> Result: ...


@runtime_checkable
class BatchReconciler(Protocol[K]):
    """Every ready key at once (**Result**): for a reconciler whose cost is per pass, not per key (the planner)."""

    async def reconcile_batch(self, keys: list[K], now: datetime) -> Mapping[K, Result]: ...


def wall_clock() -> datetime:
    """The one clock of the watcher and the manager (``manager/periodic.py``'s **Clock**): every other reader of the
    time is handed this (or a test's clock) and never reads the wall clock itself."""
    return datetime.now(UTC)


class Controller(Generic[K]):
    """A named concern: its queue, its workers, its reconciler (the module's rules)."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler[K] | BatchReconciler[K],
        *,
        workers: int = 1,
        needs_leader: bool = False,
        leading: Callable[[], bool] | None = None,
        period_s: float | None = None,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 5.0,
        idle_s: float = 2.0,
        on_turn: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = wall_clock,
        queue: WorkQueue[K] | None = None,
    ) -> None:
        self.name = name
        #: Rule *workers*: which of the two shapes the reconciler has, decided once.
        self._batch: BatchReconciler[K] | None = None
        self._one: Reconciler[K] | None = None
        if isinstance(reconciler, BatchReconciler):
            self._batch = reconciler
        else:
            self._one = reconciler
        self.batch = self._batch is not None
        self.workers = 1 if self.batch else max(1, workers)
        self.needs_leader = needs_leader
        self.period_s = period_s
        self.backoff_max_s = backoff_max_s
        self.idle_s = idle_s
        self.on_turn = on_turn
        self._leading = leading
        self._now = now
        self.queue: WorkQueue[K] = (
            queue if queue is not None else WorkQueue(backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s)
        )
        #: Reconciles run (keys or batches) since the start, for tests and the status of the service.
        self.reconciles = 0

    # -- what the informer, other controllers and timers call ---------------------------------------------------

    def add(self, key: K) -> None:
        self.queue.add(key)

    def add_after(self, key: K, delay_s: float) -> None:
        self.queue.add_after(key, delay_s)

    @property
    def told_who_leads(self) -> bool:
        """Whether this controller knows who leads (its own ``leading``, or the manager's: **Leader only**)."""
        return self._leading is not None

    def bind_leading(self, leading: Callable[[], bool]) -> None:
        """**Leader only**: the manager says who leads (once, at registration)."""
        self._leading = leading

    def busy(self, key: K) -> bool:
        """Whether ``key`` is being reconciled or waits out a delay (work under way or promised for it)."""
        return self.queue.processing(key) or self.queue.waiting(key)

    # -- the workers ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Rule *workers*: the workers, until cancelled or the queue shuts down."""
        workers = [asyncio.create_task(self._work(), name=f"{self.name}-{n}") for n in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self) -> None:
        while not self.queue.shutting_down:
            keys = await self.queue.get(timeout_s=self.idle_s, limit=None if self.batch else 1)
            self.on_turn()
            if keys:
                await self.process(keys)

    async def drain_ready(self) -> int:
        """Reconcile every ready key, ``workers`` at a time, until none is ready: a one-shot run, which has no
        workers (``coordinator reconcile``, a test). How many keys were reconciled."""
        total = 0
        while keys := self.queue.get_nowait(None if self.batch else self.workers):
            if self.batch:
                await self.process(keys)
            else:
                await asyncio.gather(*(self.process([key]) for key in keys))
            total += len(keys)
        return total

    async def process(self, keys: list[K]) -> None:
        """The one process function: reconcile ``keys`` (taken from the queue, in processing) and settle each."""
        if self.needs_leader and (self._leading is None or not self._leading()):
            self._standby(keys)  # **Leader only**
            return
        self.reconciles += 1
        now = self._now()
        if self._one is not None:
            (key,) = keys
            try:
                result = await self._one.reconcile(key, now)
            except Exception as exc:  # **Errors**: judged here, never the worker's end
                self._failed(key, exc)
                return
            self._settle(key, result, handed=True)
            return
        assert self._batch is not None
        try:
            results = await self._batch.reconcile_batch(keys, now)
        except Exception as exc:
            for key in keys:
                self._failed(key, exc)
            return
        self.settle(keys, results)

    def settle(self, keys: list[K], results: Mapping[K, Result]) -> None:
        """Rule *result* for a batch: each of ``keys`` (handed out, in processing) ends as ``results`` says (done when
        it says nothing); a key ``results`` names outside the batch is added as its result says."""
        handed = set(keys)
        for key in keys:
            self._settle(key, results.get(key, DONE), handed=True)
        for key, result in results.items():
            if key not in handed:
                self._settle(key, result, handed=False)

    def _settle(self, key: K, result: Result, *, handed: bool) -> None:
        """Rule *result* for one key: forget or back off, requeue, and end its processing if it was handed out."""
        queue = self.queue
        if result.retry:
            queue.add_rate_limited(key, max_s=result.retry_max_s or self.backoff_max_s)
        else:
            if result.forget:
                queue.forget(key)
            if result.requeue_after is not None:
                queue.add_after(key, result.requeue_after)
            elif not handed:
                queue.add(key)
        if handed:
            queue.done(key)

    def _failed(self, key: K, exc: Exception) -> None:
        """Rule *errors*."""
        queue = self.queue
        if isinstance(exc, LeadershipLost):
            log.warning("%s.fenced error=%s", self.name, exc)
            queue.done(key)
            if self.period_s is not None:
                queue.add_after(key, self.period_s)
            return
        retry = queue.add_rate_limited(key, max_s=self.backoff_max_s)
        queue.done(key)
        level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING
        # A bug (not the store's or Airflow's trouble) is logged with its traceback.
        log.log(level, "%s.failed error=%s retry_in_s=%.1f", self.name, exc, retry,
                exc_info=not isinstance(exc, CoordinatorError))  # fmt: skip

    def _standby(self, keys: list[K]) -> None:
        """Rule *leader only*: back after ``period_s``, or dropped."""
        for key in keys:
            self.queue.done(key)
            if self.period_s is not None:
                self.queue.add_after(key, self.period_s)
            else:
                self.queue.forget(key)
