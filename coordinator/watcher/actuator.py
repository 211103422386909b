"""The actuator: performs the intent protocol's instructions (etcd writes, Airflow calls). Owns all Airflow retries.

What to do for one trigger of DAG D for partition P, and in which order, is decided by ``coordinator/core/intent.py``
(its numbered rules are those of docs/semantics.md, "Acting on Airflow"); this module only schedules, performs the
I/O an instruction names and feeds the result back as an event.

Rules: one action per (DAG, partition) in flight at a time (the work queue's processing set); a bounded number of
Airflow calls in flight overall, so one slow partition never blocks the others; transient Airflow errors are retried
with exponential backoff and jitter (coordinator.retry) inside a bounded time (``_call``, the one place Airflow is
called); refusals (404, 403, paused, unknown instance) are recorded on the ledger and the key comes back through
the work queue's one requeue path, ``add_rate_limited``: a per-key backoff doubling from the queue's base up to the
protocol's delay for that error, reset by ``forget`` once an action for the key is confirmed. Never a busy loop.

An action planned before the view received this actuator's own last write of the same ledger key (the plan's view
revision is older than that write) is not started: it was decided on a ledger we already changed (a Trigger would
lose its CAS, a Resume would read back an intent we confirmed). The watch event of that write re-plans the key, so
nothing is lost; without this, most triggers cost a wasted etcd read or transaction while the watch catches up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coordinator.airflow.client import AirflowClient, TriggerResult
from coordinator.airflow.runs import DagRunInfo
from coordinator.core import intent
from coordinator.core.actions import Action, Resume, Trigger
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    TriggerRecord,
    dump_record,
    parse_trigger_record,
    partition_datetime,
)
from coordinator.errors import (
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
    CoordinatorError,
    LeadershipLost,
)
from coordinator.etcd import EtcdStore, Fence
from coordinator.retry import RetryPolicy, retry_call
from coordinator.watcher.faults import crash_point
from coordinator.watcher.paused import PausedDags, paused_lists
from coordinator.watcher.queue import DagKey, WorkKey, WorkQueue

log = logging.getLogger(__name__)

#: Seconds an "is not paused" answer is reused (see _paused_warning).
UNPAUSED_CACHE_S = 10.0


class _IntentMoved(CoordinatorError):
    """The ledger changed under us (another watcher, or a newer intent): stop; the next pass re-plans."""


@dataclass(frozen=True)
class ActuatorPolicy:
    # Transient Airflow errors: up to 5 tries within 30 s per attempt (rides out an api-server restart of ~6 s).
    attempts: int = 5
    max_attempt_s: float = 30.0
    backoff_max_s: float = 8.0
    # Refusals (404 DAG missing, 403, paused): retried this often; status shows the error meanwhile.
    error_retry_s: float = 30.0
    max_concurrent: int = 16


#: First delay of the in-attempt retries of a transient Airflow failure. 0.2 s doubling: with 5 attempts the sleeps
#: total at most 0.2 + 0.4 + 0.8 + 1.6 = 3 s (plus the request timeouts); a longer outage ends as an error that the
#: work queue brings back within ACTIVE_RETRY_S, so nothing is lost.
AIRFLOW_RETRY_INITIAL_S = 0.2
#: Full jitter (each delay drawn from [0, d]): watchers and partitions that failed together spread out.
AIRFLOW_RETRY_JITTER = 1.0


def airflow_call_retry(policy: ActuatorPolicy) -> RetryPolicy:
    """The retry policy of one Airflow call (retry rule 1: a named policy whose numbers are explained here)."""
    return RetryPolicy(
        initial_s=AIRFLOW_RETRY_INITIAL_S,
        max_s=policy.backoff_max_s,
        jitter=AIRFLOW_RETRY_JITTER,
        max_attempts=policy.attempts,
        deadline_s=policy.max_attempt_s,
    )


@dataclass
class Outcome:
    """Counters of one actuator's life, for the per-pass summary line."""

    done: int = 0
    errors: int = 0
    skipped: int = 0


class Actuator:
    """Executes actions for the leader. ``submit`` never blocks on Airflow; ``drain`` waits for what was submitted.

    It only schedules and performs I/O: what to do next is decided by the intent protocol (``core/intent.py``), which
    gets the result of every etcd write and Airflow call as an event.
    """

    def __init__(
        self,
        store: EtcdStore,
        keys: KeyLayout,
        clients: Mapping[str, AirflowClient],
        *,
        fence: Callable[[], Fence | None],
        watcher_id: str,
        queue: WorkQueue[WorkKey],
        policy: ActuatorPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[str, str, str], None] | None = None,
        paused: Mapping[str, PausedDags] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clients = clients
        self.fence = fence
        self.watcher_id = watcher_id
        self.queue = queue
        self.policy = policy or ActuatorPolicy()
        self.clock = clock
        self.outcome = Outcome()
        #: Told (instance, action, result) of every finished action (the watcher's metrics): action is create, clear
        #: or resume; result ok, conflict (the ledger moved under it), error or skipped (nothing to do).
        self.on_result = on_result or (lambda instance, action, result: None)
        self.leadership_lost = asyncio.Event()
        #: Only to wait for or cancel them: which action may start is the queue's decision (its processing set).
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.policy.max_concurrent)
        self._unpaused_until: dict[NodeId, float] = {}  # the per-DAG fallback's cache (_paused_warning)
        #: One shared, cached paused-DAG list per instance: a trigger costs one Airflow request, not two. Given by
        #: the watcher, so the deadline pass reads the same lists (``paused_lists``).
        self._paused = paused if paused is not None else paused_lists(clients, clock)
        #: The revision of our last ledger write per key, until a plan's view revision shows the view has it (submit).
        self._own_writes: dict[DagKey, int] = {}
        #: The one retry policy of every Airflow call (built once: it depends only on the policy).
        self._retry = airflow_call_retry(self.policy)

    # -- scheduling -------------------------------------------------------------------------------------------

    def submit(self, action: Action, *, view_revision: int | None = None) -> bool:
        """Start the action unless one for the same (DAG, partition) is in flight (the key is re-planned when it
        ends), waiting out an error delay (the queue brings the key back then), or planned on a view that has not
        received our own last write of its ledger key yet (``view_revision``; that write's event re-plans it)."""
        key = DagKey(action.node, action.partition)
        if view_revision is not None and self._own_writes:
            self._forget_seen(view_revision)
            if self._own_writes.get(key, 0) > view_revision:
                return False
        if not self.queue.try_start(key):
            return False
        task = asyncio.create_task(self._run(action, key), name=f"act {action.node} {action.partition}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def can_start(self, action: Action, *, view_revision: int) -> bool:
        """Whether ``submit`` would start ``action`` now (it changes nothing): what the trigger budget counts. One
        refused is a repeat of an attempt in flight or waiting, whose intent's compare-and-swap makes it no new run."""
        key = DagKey(action.node, action.partition)
        if self._own_writes.get(key, 0) > view_revision:
            return False
        return not self.queue.processing(key) and not self.queue.waiting(key)

    def _forget_seen(self, view_revision: int) -> None:
        """Drop the own writes the view has received (oldest first; one written out of order waits a little)."""
        writes = self._own_writes
        while writes:
            key = next(iter(writes))
            if writes[key] > view_revision:
                return
            del writes[key]

    def _wrote(self, action: Action, revision: int) -> None:
        key = DagKey(action.node, action.partition)
        self._own_writes.pop(key, None)  # re-inserted at the end: the dict stays ordered by write
        self._own_writes[key] = revision

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for every submitted action to finish (reconcile --once, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one action ---------------------------------------------------------------------------------------------

    async def _run(self, action: Action, key: DagKey) -> None:
        ledger_key = self.keys.trigger_key(action.node, action.partition)
        result = "error"
        try:
            async with self._slots:
                result = await self._drive(action, ledger_key)
        except LeadershipLost as exc:
            result = "conflict"
            log.warning("actuator.fenced node=%s partition=%s error=%s", action.node, action.partition, exc)
            self.leadership_lost.set()
        except _IntentMoved as exc:
            result = "conflict"
            self.outcome.skipped += 1
            log.info("actuator.moved node=%s partition=%s detail=%s", action.node, action.partition, exc)
        except Exception as exc:
            # A bug (the protocol refused an event): the service survives it, and the key is retried slowly.
            self.outcome.errors += 1
            log.exception("actuator.bug node=%s partition=%s error=%r", action.node, action.partition, exc)
            self.queue.add_rate_limited(key, max_s=self.policy.error_retry_s)
        finally:
            if result == "ok":  # confirmed
                self.queue.forget(key)
            self.queue.done(key)
            self.on_result(action.node.instance, action.action if isinstance(action, Trigger) else "resume", result)

    async def _drive(self, action: Action, ledger_key: str) -> str:
        """Run the intent protocol to its end; "ok" when the intent was confirmed, else why not (see on_result)."""
        retry_s = self.policy.error_retry_s
        if isinstance(action, Trigger):
            state, instruction = intent.start_trigger(action, datetime.now(UTC), self.watcher_id, retry_s)
        else:
            state = intent.start_resume(action.partition, retry_s)
            found = await self._attempt(self._find(ledger_key, action))
            assert found is not None  # _find always answers
            state, instruction = intent.step(state, found, _now())
        while True:
            if isinstance(instruction, intent.Done):
                if instruction.confirmed:
                    self.outcome.done += 1
                else:
                    self.outcome.skipped += 1
                return "ok" if instruction.confirmed else "skipped"
            if isinstance(instruction, intent.RecordError):
                self.outcome.errors += 1
                await self._record_error(action, ledger_key, instruction)
                return "error"
            event = await self._attempt(self._perform(action, ledger_key, instruction))
            if event is None:  # lost the race for the intent
                self.outcome.skipped += 1
                return "conflict"
            state, instruction = intent.step(state, event, _now())

    async def _attempt(self, io: Awaitable[intent.Event | None]) -> intent.Event | None:
        """Await one step's I/O; a failure becomes the protocol's error event (intent rule 6)."""
        try:
            return await io
        except (LeadershipLost, _IntentMoved):
            raise
        except AirflowUnavailable as exc:
            return intent.Transient(_message(exc))
        except Exception as exc:
            # Any other failure (Airflow refusal, etcd trouble, a bug) is recorded and retried slowly: the
            # service must survive it and the operator must see it.
            return intent.Refused(_message(exc))

    async def _find(self, ledger_key: str, action: Resume) -> intent.Event:
        current = await self._load(ledger_key)
        if current is None:
            return intent.IntentFound(None, 0, action.observed)
        return intent.IntentFound(current[0], current[1], action.observed)

    async def _perform(self, action: Action, ledger_key: str, instruction: intent.Instruction) -> intent.Event | None:
        """Do what ``instruction`` says; its result as an event (None: the ledger moved before our intent)."""
        node, partition = action.node, action.partition
        if isinstance(instruction, intent.WriteLedger):
            result = await self.store.cas(
                ledger_key, dump_record(instruction.record), instruction.expected_rev, fence=self.fence()
            )
            if result.succeeded:
                self._wrote(action, result.revision)
            if isinstance(instruction, intent.RecordIntent):
                if not result.succeeded:
                    log.info("actuator.lost_race node=%s partition=%s", node, partition)
                    return None
                assert isinstance(action, Trigger)
                log.info(
                    "actuator.intent node=%s partition=%s action=%s run_id=%s cause_rev=%d intent_rev=%d reason=%r",
                    node, partition, action.action, action.run_id, action.cause_rev, result.revision, action.reason,
                )  # fmt: skip
                crash_point("after-intent")  # test-only (faults.py): the intent is committed, Airflow not yet called
                return intent.IntentRecorded(result.revision)
            if not result.succeeded:
                raise _IntentMoved(f"ledger {ledger_key} changed (expected revision {instruction.expected_rev})")
            if isinstance(instruction, intent.Confirm) and isinstance(action, Resume) and action.observed:
                log.info("actuator.confirmed key=%s run_id=%s detail=%r", ledger_key, instruction.record.run_id,
                         "run already started")  # fmt: skip
            return intent.LedgerWritten(result.revision)
        client = self.clients.get(node.instance)
        if client is None:
            raise AirflowNotFound(
                f"no Airflow configured for instance {node.instance!r}: add it to the instances file "
                "(COORDINATOR_INSTANCES_FILE) or set COORDINATOR_AIRFLOW_URL for 'default'"
            )
        if isinstance(instruction, intent.CallCreate):
            run_id, conf = instruction.run_id, _conf(partition, instruction.record)
            outcome = await self._call(lambda: client.trigger(node.dag_id, run_id, partition_datetime(partition), conf))
            crash_point("after-airflow-call")  # test-only: Airflow answered, the ledger is not confirmed yet
            answers: dict[TriggerResult, Callable[[str], intent.Event]] = {
                TriggerResult.CREATED: intent.Created,
                TriggerResult.ALREADY_EXISTS: intent.ConflictSameRun,
                TriggerResult.LOGICAL_DATE_TAKEN: intent.ConflictOtherRun,
            }
            return answers[outcome.result](outcome.run.run_id)
        if isinstance(instruction, intent.ReadQueuedAt):
            wanted = instruction.run_id
            return intent.RunObserved(_shown(await self._call(lambda: client.get_run(node.dag_id, wanted))))
        if isinstance(instruction, intent.FindRunByDate):
            at = partition_datetime(partition)
            found = await self._call(lambda: client.find_run_by_logical_date(node.dag_id, at))
            return intent.RunObserved(_shown(found))
        if isinstance(instruction, intent.CallClear):
            await self._call(self._clear_once(client, node, instruction))
            crash_point("after-airflow-call")  # test-only: Airflow answered, the ledger is not confirmed yet
            return intent.Cleared()
        if isinstance(instruction, intent.CheckPaused):
            self._log_effect(action, instruction.effect)
            return intent.PausedChecked(await self._paused_warning(client, node))
        raise AssertionError(f"unexpected instruction {instruction!r}")  # pragma: no cover

    def _clear_once(
        self, client: AirflowClient, node: NodeId, instruction: intent.CallClear
    ) -> Callable[[], Awaitable[None]]:
        async def clear_once() -> None:
            # Intent rule 4d: a clear whose answer was lost (timeout) may still have happened: re-read before every
            # try, so a retry never reruns the DAG a second time. The decision is the protocol's (clear_needed).
            latest = _shown(await client.get_run(node.dag_id, instruction.run_id))
            if intent.clear_needed(instruction, latest):
                await client.clear(node.dag_id, instruction.run_id)

        return clear_once

    def _log_effect(self, action: Action, effect: intent.Effect) -> None:
        node, partition = action.node, action.partition
        if effect is intent.Effect.ALREADY_CLEARED:
            log.info("actuator.already_cleared node=%s partition=%s", node, partition)
        elif effect is intent.Effect.CLEARED:
            log.info("actuator.cleared node=%s partition=%s", node, partition)
        else:
            log.info("actuator.created node=%s partition=%s result=%s", node, partition, effect)

    async def _load(self, key: str) -> tuple[TriggerRecord, int] | None:
        kv = await self.store.get(key)
        if kv is None:
            return None
        record, problem = parse_trigger_record(kv.value)
        if record is None:
            raise _IntentMoved(f"ledger value unparsable: {problem}")
        return record, kv.mod_revision

    async def _paused_warning(self, client: AirflowClient, node: NodeId) -> str | None:
        # The instance's shared paused list answers first (watcher/paused.py); "paused" there is re-checked below
        # for this DAG, so an unpause shows at once. Only when the list failed does each DAG ask for itself, and
        # then an unpaused answer is reused for a few seconds. A paused answer is never reused.
        paused = self._paused.get(node.instance)
        listed = None if paused is None else await paused.is_paused(node.dag_id)
        if listed is False or (listed is None and self._unpaused_until.get(node, 0.0) > self.clock()):
            return None
        try:
            dag = await client.get_dag(node.dag_id)
        except AirflowError:
            return None  # only a courtesy check: the trigger itself succeeded
        if dag.is_paused:
            self._unpaused_until.pop(node, None)
            return f"{node} is paused in Airflow: the run waits until the DAG is unpaused"
        self._unpaused_until[node] = self.clock() + UNPAUSED_CACHE_S
        return None

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Retry transient Airflow failures with exponential backoff and jitter, bounded in attempts and time."""
        return await retry_call(fn, self._retry, lambda exc: isinstance(exc, AirflowUnavailable))

    async def _record_error(self, action: Action, ledger_key: str, instruction: intent.RecordError) -> None:
        """Intent rule 6: come back after the key's backoff, capped by the protocol's delay (through the queue), log,
        and record the error on the ledger."""
        delay = self.queue.add_rate_limited(DagKey(action.node, action.partition), max_s=instruction.retry_in_s)
        log.warning(
            "actuator.error node=%s partition=%s error=%r retry_in_s=%.1f",
            action.node,
            action.partition,
            instruction.error,
            delay,
        )
        try:
            current = await self._load(ledger_key)
            if current is None:
                return
            failed = intent.failed_record(current[0], current[1], instruction.error)
            if failed is None:
                return
            result = await self.store.cas(ledger_key, dump_record(failed), current[1], fence=self.fence())
            if not result.succeeded:
                raise _IntentMoved(f"ledger {ledger_key} changed (expected revision {current[1]})")
            self._wrote(action, result.revision)
        except LeadershipLost:
            self.leadership_lost.set()
        except Exception as inner:  # the error is already logged; etcd may be down too
            log.warning("actuator.error_not_recorded node=%s error=%s", action.node, inner)


def _now() -> datetime:
    return datetime.now(UTC)


def _message(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _conf(partition: str, record: TriggerRecord) -> dict[str, Any]:
    """The ``conf`` of a created run: which partition and which upstream generations it was started for."""
    return {
        "coordinator": {
            "partition": partition,
            "inputs": dict(record.inputs),
            "reason": record.reason,
            "trigger": record.trigger_count,
        }
    }


def _shown(run: DagRunInfo | None) -> intent.AirflowRun | None:
    """A run as the intent protocol reads it (rule 4): id, state and the queued_at stamp."""
    return None if run is None else intent.AirflowRun(run.run_id, run.state, _stamp(run.queued_at))


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""
