"""The executor: the one place where a leading watcher's effects happen.

Both exactly-once protocols, the trigger intent (``core/intent.py``, its Airflow calls performed by
``watcher/actuator.py``) and the asset delivery (``core/delivery.py``, by ``watcher/deliveries.py``), are sans-IO:
they say what to do next and take what happened as an event. This module owns what they share: the fenced writes
(their ledger writes and error records among them), the Airflow calls, the one vocabulary of their instructions and
outcomes (``core/effects.py``), the loop that drives a protocol, what an attempt's end means for its key, and how
many attempts run at once. The leader's jobs (budget, adoption, deadlines, asset recording, retention, audit) write
through it too.

Rules:
- **Only writer.** Every etcd write a leader makes (ledger entries, the activation, budget counts, deadline records,
  asset events, marks and deliveries, the retention floor and its deletes, the plan checkpoint, the audit's repairs)
  is :meth:`Executor.cas` or :meth:`Executor.delete_unchanged`, fenced by the leader key of the term the election
  holds now: a write sent after that term ended is refused by etcd in the same transaction. The jobs hold the store
  only as ``etcd.Reads`` and write through ``etcd.Writes`` (this class), so ``mypy --strict`` refuses a leader write
  that bypasses the fence. A round whose decisions hold for one term only (the asset round's term rule, a deadline
  pass, a retention round, a checkpoint) writes through :meth:`Executor.pin`: fenced by the term it began in, so
  none of its writes lands in a later term of the same watcher (lost and won back in the middle of it).
- **Lost leadership.** A write refused because the leader key moved (``LeadershipLost``, also raised when this
  process never led) sets :attr:`Executor.leadership_lost`, which makes the campaign step down at once, and is raised
  to the caller: the attempt or round that made it ends where it stands, and the next leader starts from the ledger.
- **Error vocabulary.** :func:`failure` maps a failed Airflow call onto ``core/effects``: ``AirflowUnavailable``
  (5xx, transport, no answer in time) is ``Transient``, ``AirflowNotFound`` (404) ``NotFound``, any other
  ``AirflowError`` (403, 400, 409 left unexplained, no Airflow configured) ``Refused``; the error text is
  ``"{kind}: {message}"`` for both protocols. Each protocol decides what an outcome means for it (a 404 is a
  refusal for a trigger, a stale asset id for a delivery's POST). A lost leadership, etcd trouble and a bug are
  not outcomes: they end the attempt (**Ends**).
- **Retries.** One retry policy for Airflow calls that are safe to repeat (:meth:`Executor.call` with ``retry``):
  transient failures retried with exponential backoff and full jitter, bounded in attempts and time
  (:func:`airflow_call_retry`). A call held back because its instance refuses us (``AirflowBackingOff``: the client's
  one backoff per instance, ``airflow/gate.py``) is not retried here; the reconcilers ask :meth:`Executor.ready_in`
  before they start an attempt. A call that is not safe to repeat (an asset event's POST: Airflow has no
  idempotency key) is tried once, and may be bounded as a whole (``within_s``: no answer in time is ``Transient``,
  like a lost answer, and the protocol looks before it posts again).
- **One driver.** :meth:`Executor.drive` runs either protocol until it ends the attempt. It performs every ledger
  write itself, through a :class:`Ledger` (the entry's key, how its record is encoded, the fenced writer: this
  executor, or a pinned term's ``TermWrites``), and so every error record (``RecordError``: written, then the
  attempt ends FAILED whatever the compare answered); the reconciler performs only its protocol's Airflow calls.
  Each answer goes to the protocol's ``step``, a failed Airflow call as its outcome (**Error vocabulary**).
- **Ends.** One way to end an attempt, for both protocols: :func:`result_of` maps how it ended onto its key's next
  turn. Confirmed, skipped, settled or moved -> done (a moved entry's change comes back through the watch, or the
  asset round that submits every due stream, and its key is planned or submitted again from it); an error recorded
  -> again at the time the protocol recorded for it (the backoff is the protocol's, kept in its entry: a trigger's
  is ``core/error_backoff.py``, which holds across a failover); deferred -> again at the protocol's time; a lost
  leadership -> done (the next leader starts from the ledger); etcd trouble or a bug -> again after the key's
  backoff in the queue, capped at the reconciler's.
- **Concurrency.** :meth:`Executor.spawn` runs an attempt as a task in its pool: trigger attempts at most
  ``max_concurrent`` at once (one slow Airflow never holds the others), asset stream attempts
  (``watcher/deliveries.py``) at most ``max_concurrent_streams`` in a pool of their own, so a backlog of deliveries
  never waits in front of a trigger (``busy``, the gauge ``coordinator_actions_in_flight``, counts the triggers'
  pool only); :meth:`Executor.drain` waits for both (``reconcile``, the stop, a test), :meth:`Executor.cancel` ends
  them. Which attempt may start at all is the work queue's decision (one per key in processing), not this module's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from coordinator.airflow.client import AirflowClient
from coordinator.core.effects import (
    End,
    Ending,
    Failure,
    LedgerMoved,
    LedgerWritten,
    NotFound,
    RecordError,
    Refused,
    Transient,
    WriteLedger,
    Written,
)
from coordinator.core.instance_coverage import missing_airflow_fix
from coordinator.errors import AirflowError, AirflowNotFound, AirflowUnavailable, LeadershipLost
from coordinator.etcd import KV, CasResult, DeleteResult, EtcdStore, Fence, Writes
from coordinator.informer.expectations import Expectations
from coordinator.manager import DONE, Result, wall_clock
from coordinator.runtime.retry import RetryPolicy, retry_call

T = TypeVar("T")
S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
E = TypeVar("E")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorPolicy:
    """The bounds of **Retries** on one Airflow call, and of **Concurrency**."""

    # Transient Airflow errors: up to 5 tries within 30 s per attempt (rides out an api-server restart of ~6 s).
    attempts: int = 5
    max_attempt_s: float = 30.0
    backoff_max_s: float = 8.0
    max_concurrent: int = 16
    #: Asset stream attempts at once (**Concurrency**): each drives one stream's due events in order, a few Airflow
    #: calls apiece; four keep several targets busy while the triggers' pool stays free.
    max_concurrent_streams: int = 4


#: First delay of the in-attempt retries of a transient Airflow failure. 0.2 s doubling: with 5 attempts the sleeps
#: total at most 0.2 + 0.4 + 0.8 + 1.6 = 3 s (plus the request timeouts); a longer outage ends as ``Transient``,
#: which the protocol retries within seconds through the work queue, so nothing is lost.
AIRFLOW_RETRY_INITIAL_S = 0.2
#: Full jitter (each delay drawn from [0, d]): watchers and partitions that failed together spread out.
AIRFLOW_RETRY_JITTER = 1.0


def airflow_call_retry(policy: ExecutorPolicy) -> RetryPolicy:
    """The retry policy of one Airflow call (``runtime.retry``'s **A value**: a named policy whose numbers are
    explained here)."""
    return RetryPolicy(
        initial_s=AIRFLOW_RETRY_INITIAL_S,
        max_s=policy.backoff_max_s,
        jitter=AIRFLOW_RETRY_JITTER,
        max_attempts=policy.attempts,
        deadline_s=policy.max_attempt_s,
    )


class Pool(StrEnum):
    """**Concurrency**: which bound an attempt counts against."""

    TRIGGERS = "triggers"
    STREAMS = "streams"


def failure(exc: AirflowError) -> Failure:
    """**Error vocabulary**: the outcome of a failed Airflow call, in the vocabulary every protocol takes."""
    error = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, AirflowUnavailable):
        return Transient(error)
    if isinstance(exc, AirflowNotFound):
        return NotFound(error)
    return Refused(error)


class NoAirflow(AirflowError):
    """No Airflow is configured for the instance an instruction names (a refusal: **Error vocabulary**)."""


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Ledger(Generic[R]):
    """**One driver**: the ledger entry one attempt writes, and how."""

    key: str
    #: The fenced writer (**Only writer**): the executor, or the term an asset round or stream attempt pinned.
    writes: Writes
    encode: Callable[[R], bytes]
    #: Told of each write that landed (the instruction, the value written, its revision): the actuator's own writes,
    #: log lines, crash points. (The model learns of it from the informer's watch, never from here.)
    written: Callable[[WriteLedger[R], bytes, int], None] = field(default=_ignore)
    #: What is written with each record in the same transaction (a scheduled dependent's permit, semantics
    #: `permit-not-run`); None: the entry alone.
    also: Callable[[R], Sequence[tuple[str, bytes]]] | None = None

    async def write(self, instruction: WriteLedger[R]) -> Written:
        """One fenced compare-and-swap (``LeadershipLost`` is raised: **Lost leadership**)."""
        value = self.encode(instruction.record)
        if self.also is None:
            result = await self.writes.cas(self.key, value, instruction.expected_rev)
        else:
            result = await self.writes.cas(
                self.key, value, instruction.expected_rev, also=self.also(instruction.record)
            )
        if not result.succeeded:  # the watch brings the entry that moved
            return LedgerMoved()
        self.written(instruction, value, result.revision)
        return LedgerWritten(result.revision)


def result_of(end: End | Exception, *, backoff_max_s: float) -> Result:
    """**Ends**: what an attempt's end, or the exception that ended it, means for its key."""
    if isinstance(end, LeadershipLost):
        return DONE
    if isinstance(end, Exception):
        return Result(retry=True, retry_max_s=backoff_max_s)
    if end.how in (Ending.FAILED, Ending.DEFERRED):
        return Result(requeue_after=end.retry_in_s)
    return DONE


class Executor:
    """The module's rules for one watcher: its fenced writes, its Airflow calls, its attempts in flight."""

    def __init__(
        self,
        store: EtcdStore,
        clients: Mapping[str, AirflowClient],
        *,
        fence: Callable[[], Fence | None],
        policy: ExecutorPolicy | None = None,
        now: Callable[[], datetime] = wall_clock,
        expectations: Expectations | None = None,
    ) -> None:
        self._store = store
        #: **Only writer**: each write that lands is expected back through the informer's watch
        #: (``informer/expectations.py``); reconcilers ask it, never write the model.
        self.expectations = expectations if expectations is not None else Expectations()
        self._clients = clients
        self._fence = fence
        self.policy = policy or ExecutorPolicy()
        self._now = now
        self._retry = airflow_call_retry(self.policy)
        #: **Lost leadership**: set by a write refused for a lost leadership; the campaign clears it when it leads
        #: again.
        self.leadership_lost = asyncio.Event()
        #: **Concurrency**: only to count, wait for or cancel them.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pools: dict[Pool, set[asyncio.Task[Any]]] = {pool: set() for pool in Pool}
        self._slots = {
            Pool.TRIGGERS: asyncio.Semaphore(self.policy.max_concurrent),
            Pool.STREAMS: asyncio.Semaphore(self.policy.max_concurrent_streams),
        }

    # -- only writer: the fenced writes -----------------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        """The key as etcd holds it now (the read a compare-and-swap writer makes before it writes)."""
        return await self._store.get(key)

    async def cas(
        self, key: str, value: bytes, expected_mod_revision: int, *, also: Sequence[tuple[str, bytes]] = ()
    ) -> CasResult:
        """Write ``value`` if ``key`` still has ``expected_mod_revision`` (0: absent) and this watcher leads; ``also``
        in the same transaction."""
        return await self._cas(key, value, expected_mod_revision, self._current(), also)

    async def delete_unchanged(self, items: Sequence[tuple[str, int]]) -> DeleteResult:
        """Delete every (key, mod revision) of ``items`` in one transaction, if none changed and this watcher leads."""
        return await self._delete_unchanged(items, self._current())

    def pin(self) -> TermWrites:
        """**Only writer**'s writes pinned to the term this watcher leads now (its fence says which): refused once
        that term ends, even when this watcher leads again meanwhile. For a round whose decisions hold for one term
        only. Raises LeadershipLost (**Lost leadership**) when this watcher leads no term."""
        fence = self._current()
        if fence is None:
            self.leadership_lost.set()
            raise LeadershipLost("no term to pin: this executor writes unfenced")
        return TermWrites(self, fence)

    def _current(self) -> Fence | None:
        try:
            return self._fence()
        except LeadershipLost:  # **Lost leadership**: this watcher does not lead (any more)
            self.leadership_lost.set()
            raise

    async def _cas(
        self, key: str, value: bytes, expected_mod_revision: int, fence: Fence | None,
        also: Sequence[tuple[str, bytes]] = (),
    ) -> CasResult:  # fmt: skip
        result = await self._refused(self._store.cas(key, value, expected_mod_revision, fence=fence, also=also))
        if result.succeeded:
            self.expectations.expect(key, result.revision)
        return result

    async def _delete_unchanged(self, items: Sequence[tuple[str, int]], fence: Fence | None) -> DeleteResult:
        result = await self._refused(self._store.delete_unchanged(items, fence=fence))
        if result.succeeded:
            self.expectations.expect_all((key for key, _ in items), result.revision)
        return result

    async def _refused(self, write: Awaitable[T]) -> T:
        """**Lost leadership**: a write refused for a lost leadership says so once, here, for every writer."""
        try:
            return await write
        except LeadershipLost:
            self.leadership_lost.set()
            raise

    # -- error vocabulary and retries: the Airflow calls ------------------------------------------------------------

    def client(self, instance: str) -> AirflowClient:
        """The client of ``instance``; NoAirflow (a refusal) when none is configured."""
        client = self._clients.get(instance)
        if client is None:
            fix = missing_airflow_fix((instance,), self._clients, None)
            raise NoAirflow(f"no Airflow configured for instance {instance!r}: {fix}")
        return client

    def ready_in(self, instance: str) -> float:
        """Seconds before an attempt that calls ``instance`` should start (0: now): its client's one backoff while it
        refuses our credentials (``airflow/gate.py``); 0 for an instance without Airflow (the attempt records that)."""
        client = self._clients.get(instance)
        return 0.0 if client is None else client.ready_in()

    async def call(
        self, fn: Callable[[], Awaitable[T]], *, retry: bool = True, within_s: float | None = None, what: str = ""
    ) -> T:
        """**Retries**: ``fn()``, its transient failures retried when ``retry``; bounded as a whole by ``within_s`` (no
        answer in time raises ``AirflowUnavailable`` naming ``what``)."""
        if within_s is None:
            return await (retry_call(fn, self._retry, _transient) if retry else fn())
        try:
            async with asyncio.timeout(within_s):
                return await (retry_call(fn, self._retry, _transient) if retry else fn())
        except TimeoutError:
            raise AirflowUnavailable(f"{what}: no answer within {within_s:g} s") from None

    # -- one driver -------------------------------------------------------------------------------------------------

    async def drive(
        self,
        state: S,
        instruction: I,
        *,
        step: Callable[[S, E | Written | Failure, datetime], tuple[S, I]],
        perform: Callable[[S, I], Awaitable[E]],
        ledger: Ledger[R],
        at: datetime | None = None,
    ) -> tuple[S, End]:
        """**One driver**: perform ``instruction`` (a ledger write through ``ledger``, else an Airflow call:
        ``perform`` is handed only the protocol's own calls) and feed its answer to ``step`` until the protocol, or an
        error record, ends the attempt; the last state and the end. Each step is told the time ``at`` (a round's
        time), else the executor's clock."""
        while not isinstance(instruction, End):
            answer: E | Written | Failure
            if isinstance(instruction, WriteLedger):
                answer = await ledger.write(instruction)
                if isinstance(instruction, RecordError):
                    return state, instruction.end()
            else:
                try:
                    answer = await perform(state, instruction)
                except AirflowError as exc:
                    answer = failure(exc)
            state, instruction = step(state, answer, at if at is not None else self._now())
        return state, instruction

    # -- concurrency: attempts in flight ----------------------------------------------------------------------------

    def spawn(self, attempt: Callable[[], Awaitable[T]], *, name: str, pool: Pool = Pool.TRIGGERS) -> asyncio.Task[T]:
        """Run ``attempt()`` as a task once a slot of ``pool`` is free (started only then: a task cancelled while it
        waits leaves no attempt half begun)."""
        slots = self._slots[pool]

        async def slotted() -> T:
            async with slots:
                return await attempt()

        task = asyncio.create_task(slotted(), name=name)
        self._tasks.add(task)
        self._pools[pool].add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._pools[pool].discard)
        return task

    async def run(self, attempt: Callable[[], Awaitable[T]], *, name: str, pool: Pool = Pool.TRIGGERS) -> T:
        """**Concurrency** for a controller's worker: ``attempt()`` as a task of ``pool``, awaited. The task is
        shielded from the worker: a worker cancelled at the stop leaves the attempt running for :meth:`drain` to wait
        for."""
        return await asyncio.shield(self.spawn(attempt, name=name, pool=pool))

    @property
    def busy(self) -> int:
        """Trigger attempts in flight (or waiting for a slot): ``coordinator_actions_in_flight``, bounded by
        ``max_concurrent``."""
        return len(self._pools[Pool.TRIGGERS])

    def busy_in(self, pool: Pool) -> int:
        """Attempts of ``pool`` in flight (or waiting for a slot)."""
        return len(self._pools[pool])

    async def drain(self) -> None:
        """Wait for every spawned attempt to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """End every spawned attempt (the stop, once draining ran out of time)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TermWrites:
    """**Only writer** for one term: the executor's writes, each fenced by the term pinned when this was made (``pin``);
    ``fence`` names the term (its revision: every write of the term has a higher one)."""

    def __init__(self, executor: Executor, fence: Fence) -> None:
        self._executor = executor
        self.fence = fence

    async def get(self, key: str) -> KV | None:
        return await self._executor.get(key)

    async def cas(
        self, key: str, value: bytes, expected_mod_revision: int, *, also: Sequence[tuple[str, bytes]] = ()
    ) -> CasResult:
        return await self._executor._cas(key, value, expected_mod_revision, self.fence, also)

    async def delete_unchanged(self, items: Sequence[tuple[str, int]]) -> DeleteResult:
        return await self._executor._delete_unchanged(items, self.fence)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, AirflowUnavailable)
