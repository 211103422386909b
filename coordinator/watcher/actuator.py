"""The actuator: turns planned actions into Airflow calls, exactly once in effect. All retries live here.

Protocol for one trigger of DAG D for partition P (docs/semantics.md, "Acting on Airflow"):
1. Record the intent in the ledger key with a transaction that compares the ledger's revision as planned AND that
   this watcher still holds the leader key (fencing). A lost race or lost leadership stops here: nothing happened.
2. Call Airflow idempotently:
   - create: a 409 whose GET finds our deterministic run id means an earlier attempt already created it;
     a 409 because another run holds the logical date turns the intent into a clear of that run.
   - clear: before the first clear, the run's ``queued_at`` is written into the intent (``prior_queued_at``). When
     the intent is resumed after a crash, a different ``queued_at`` proves the clear already happened.
3. Confirm (status done). A crash anywhere leaves either no intent (nothing happened) or a pending one, which the
   planner turns into a Resume: completed, never re-decided, never duplicated.

Rules: one action per (DAG, partition) in flight at a time; a bounded number of Airflow calls in flight overall, so one
slow partition never blocks the others; transient Airflow errors are retried with exponential backoff and jitter
(tenacity) inside a bounded time; refusals (404, 403, paused, unknown instance) are recorded on the ledger and
retried slowly, never in a busy loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from coordinator.airflow_api import AirflowClient, DagRunInfo, TriggerResult
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    parse_trigger_record,
    partition_datetime,
    run_id_for,
)
from coordinator.core.planner import Action, Trigger
from coordinator.errors import (
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
    CoordinatorError,
    LeadershipLost,
)
from coordinator.etcd_store import EtcdStore, Fence
from coordinator.watcher.faults import crash_point

log = logging.getLogger("coordinator.actuator")

#: Seconds an "is not paused" answer is reused (see _paused_warning).
UNPAUSED_CACHE_S = 10.0


class _RunActive(AirflowError):
    """The run to clear is queued or running in Airflow: clearing it would kill work in progress; wait instead."""


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


@dataclass
class Outcome:
    """Counters of one actuator's life, for the per-pass summary line."""

    done: int = 0
    errors: int = 0
    skipped: int = 0


class Actuator:
    """Executes actions for the leader. ``submit`` never blocks on Airflow; ``drain`` waits for what was submitted."""

    def __init__(
        self,
        store: EtcdStore,
        keys: KeyLayout,
        clients: Mapping[str, AirflowClient],
        *,
        fence: Callable[[], Fence | None],
        watcher_id: str,
        policy: ActuatorPolicy | None = None,
        on_retry_due: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clients = clients
        self.fence = fence
        self.watcher_id = watcher_id
        self.policy = policy or ActuatorPolicy()
        self.on_retry_due = on_retry_due
        self.clock = clock
        self.outcome = Outcome()
        self.leadership_lost = asyncio.Event()
        self._inflight: dict[tuple[NodeId, str], asyncio.Task[None]] = {}
        self._not_before: dict[tuple[NodeId, str], float] = {}
        self._slots = asyncio.Semaphore(self.policy.max_concurrent)
        self._unpaused_until: dict[NodeId, float] = {}

    # -- scheduling -------------------------------------------------------------------------------------------

    def submit(self, action: Action) -> bool:
        """Start the action unless one for the same (DAG, partition) is running or waiting out an error delay."""
        at = (action.node, action.partition)
        if at in self._inflight:
            return False
        if self._not_before.get(at, 0.0) > self.clock():
            return False
        task = asyncio.create_task(self._run(action), name=f"act {action.node} {action.partition}")
        self._inflight[at] = task
        task.add_done_callback(lambda _t, at=at: self._inflight.pop(at, None))  # type: ignore[misc]
        return True

    @property
    def busy(self) -> int:
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait for every submitted action to finish (reconcile --once, shutdown)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def cancel(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _retry_later(self, node: NodeId, partition: str, delay: float) -> None:
        self._not_before[(node, partition)] = self.clock() + delay
        if self.on_retry_due is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(delay + 0.01, self.on_retry_due, partition)

    # -- one action ---------------------------------------------------------------------------------------------

    async def _run(self, action: Action) -> None:
        key = self.keys.trigger_key(action.node, action.partition)
        async with self._slots:
            try:
                if isinstance(action, Trigger):
                    started = await self._record_intent(key, action)
                    if started is None:
                        self.outcome.skipped += 1
                        return
                    record, mod_rev = started
                else:
                    current = await self._load(key)
                    if current is None or current[0].status is TriggerStatus.DONE:
                        self.outcome.skipped += 1
                        return  # already completed by us or another watcher; the view was behind
                    record, mod_rev = current
                    if action.observed:
                        await self._confirm(key, record, mod_rev)
                        self.outcome.done += 1
                        return
                await self._complete(action.node, action.partition, key, record, mod_rev)
                self.outcome.done += 1
            except LeadershipLost as exc:
                log.warning("actuator.fenced node=%s partition=%s error=%s", action.node, action.partition, exc)
                self.leadership_lost.set()
            except _IntentMoved as exc:
                self.outcome.skipped += 1
                log.info("actuator.moved node=%s partition=%s detail=%s", action.node, action.partition, exc)
            except Exception as exc:
                # Any other failure (Airflow refusal, etcd trouble, a bug) is recorded and retried slowly: the
                # service must survive it and the operator must see it.
                self.outcome.errors += 1
                await self._record_error(action, key, exc)

    async def _load(self, key: str) -> tuple[TriggerRecord, int] | None:
        kv = await self.store.get(key)
        if kv is None:
            return None
        record, problem = parse_trigger_record(kv.value)
        if record is None:
            raise _IntentMoved(f"ledger value unparsable: {problem}")
        return record, kv.mod_revision

    async def _write(self, key: str, record: TriggerRecord, expected: int) -> int:
        result = await self.store.cas(key, dump_record(record), expected, fence=self.fence())
        if not result.succeeded:
            raise _IntentMoved(f"ledger {key} changed (expected revision {expected})")
        return result.revision

    async def _record_intent(self, key: str, action: Trigger) -> tuple[TriggerRecord, int] | None:
        record = action.intent(requested_at=datetime.now(UTC), watcher=self.watcher_id)
        result = await self.store.cas(key, dump_record(record), action.ledger_rev, fence=self.fence())
        if not result.succeeded:
            log.info("actuator.lost_race node=%s partition=%s", action.node, action.partition)
            return None
        log.info(
            "actuator.intent node=%s partition=%s action=%s run_id=%s cause_rev=%d intent_rev=%d reason=%r",
            action.node, action.partition, action.action, action.run_id, action.cause_rev, result.revision,
            action.reason,
        )  # fmt: skip
        crash_point("after-intent")
        return record.model_copy(update={"intent_rev": result.revision}), result.revision

    async def _complete(self, node: NodeId, partition: str, key: str, record: TriggerRecord, mod_rev: int) -> None:
        client = self.clients.get(node.instance)
        if client is None:
            raise AirflowNotFound(
                f"no Airflow configured for instance {node.instance!r}: add it to the instances file "
                "(COORDINATOR_INSTANCES_FILE) or set COORDINATOR_AIRFLOW_URL for 'default'"
            )
        if not record.intent_rev:
            # Every later write of this intent carries the revision that first recorded it.
            record = record.model_copy(update={"intent_rev": mod_rev})
        if record.action is TriggerAction.CREATE:
            conf = _conf(partition, record)
            outcome = await self._call(
                lambda: client.trigger(node.dag_id, record.run_id, partition_datetime(partition), conf)
            )
            crash_point("after-airflow-call")
            if outcome.result is TriggerResult.LOGICAL_DATE_TAKEN:
                # Airflow keeps one run per logical date: rerun the one that exists instead of failing.
                record, mod_rev = await self._switch_to_clear(key, record, mod_rev, outcome.run)
                record, mod_rev = await self._clear(client, node, partition, key, record, mod_rev)
            else:
                record = record.model_copy(update={"run_id": outcome.run.run_id})
                log.info("actuator.created node=%s partition=%s run_id=%s result=%s", node, partition,
                         record.run_id, outcome.result)  # fmt: skip
        else:
            record, mod_rev = await self._clear(client, node, partition, key, record, mod_rev)
        warning = await self._paused_warning(client, node)
        done = record.model_copy(
            update={
                "status": TriggerStatus.DONE,
                "done_at": datetime.now(UTC),
                "last_error": warning,
                "attempts": record.attempts + 1,
            }
        )
        await self._write(key, done, mod_rev)

    async def _confirm(self, key: str, record: TriggerRecord, mod_rev: int) -> None:
        """Mark an intent done because its run already reported a state: no Airflow call (it already happened)."""
        done = record.model_copy(
            update={
                "status": TriggerStatus.DONE,
                "intent_rev": record.intent_rev or mod_rev,
                "done_at": datetime.now(UTC),
                "last_error": None,
            }
        )
        await self._write(key, done, mod_rev)
        log.info("actuator.confirmed key=%s run_id=%s detail=%r", key, record.run_id, "run already started")

    async def _switch_to_clear(
        self, key: str, record: TriggerRecord, mod_rev: int, run: DagRunInfo
    ) -> tuple[TriggerRecord, int]:
        updated = record.model_copy(
            update={"action": TriggerAction.CLEAR, "run_id": run.run_id, "prior_queued_at": None}
        )
        return updated, await self._write(key, updated, mod_rev)

    async def _clear(
        self, client: AirflowClient, node: NodeId, partition: str, key: str, record: TriggerRecord, mod_rev: int
    ) -> tuple[TriggerRecord, int]:
        """Clear the run once: record its queued_at first, and on resume skip the clear if queued_at moved."""
        run = await self._call(lambda: client.get_run(node.dag_id, record.run_id))
        if run is None:
            run = await self._call(lambda: client.find_run_by_logical_date(node.dag_id, partition_datetime(partition)))
        if run is None:
            # The run is gone (deleted in the UI, or it never existed in Airflow): create it instead.
            fresh_id = run_id_for(partition)
            conf = _conf(partition, record)
            created = await self._call(
                lambda: client.trigger(node.dag_id, fresh_id, partition_datetime(partition), conf)
            )
            updated = record.model_copy(update={"run_id": created.run.run_id})
            return updated, await self._write(key, updated, mod_rev)
        seen = _stamp(run.queued_at)
        if record.prior_queued_at is not None and record.run_id == run.run_id:
            if seen != record.prior_queued_at:
                log.info("actuator.already_cleared node=%s run_id=%s", node, run.run_id)
                return record, mod_rev
        elif run.state in ("queued", "running"):
            raise _RunActive(f"run {run.run_id} is {run.state} in Airflow; clearing it would kill it: waiting")
        else:
            record = record.model_copy(update={"prior_queued_at": seen, "run_id": run.run_id})
            mod_rev = await self._write(key, record, mod_rev)
        run_id = run.run_id

        async def clear_once() -> None:
            # A clear whose answer was lost (timeout) may still have happened: re-read before every try, so a
            # retry never reruns the DAG a second time.
            latest = await client.get_run(node.dag_id, run_id)
            if latest is not None and _stamp(latest.queued_at) != seen:
                return
            await client.clear(node.dag_id, run_id)

        await self._call(clear_once)
        crash_point("after-airflow-call")
        log.info("actuator.cleared node=%s partition=%s run_id=%s", node, partition, run.run_id)
        return record, mod_rev

    async def _paused_warning(self, client: AirflowClient, node: NodeId) -> str | None:
        # An unpaused answer is reused for a few seconds: a cascade triggers many DAGs at once, and this courtesy
        # check would otherwise double the Airflow requests per trigger. A paused answer is never reused.
        if self._unpaused_until.get(node, 0.0) > self.clock():
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
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(AirflowUnavailable),
            stop=stop_after_attempt(self.policy.attempts) | stop_after_delay(self.policy.max_attempt_s),
            wait=wait_random_exponential(multiplier=0.2, max=self.policy.backoff_max_s),
            reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record_error(self, action: Action, key: str, exc: Exception) -> None:
        delay = self.policy.error_retry_s
        if isinstance(exc, (_RunActive, AirflowUnavailable)):
            delay = min(delay, 5.0)
        message = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "actuator.error node=%s partition=%s error=%r retry_in_s=%.1f",
            action.node,
            action.partition,
            message,
            delay,
        )
        self._retry_later(action.node, action.partition, delay)
        try:
            current = await self._load(key)
            if current is None or current[0].status is TriggerStatus.DONE:
                return
            record, mod_rev = current
            failed = record.model_copy(
                update={
                    "status": TriggerStatus.ERROR,
                    "last_error": message,
                    "attempts": record.attempts + 1,
                    "intent_rev": record.intent_rev or mod_rev,
                }
            )
            await self._write(key, failed, mod_rev)
        except LeadershipLost:
            self.leadership_lost.set()
        except Exception as inner:  # the error is already logged; etcd may be down too
            log.warning("actuator.error_not_recorded node=%s error=%s", action.node, inner)


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


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""
