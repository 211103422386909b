"""The actuator: the reconciler of the actions' controller, keyed by (DAG, partition). It performs the intent protocol's
instructions through the one executor (``watcher/executor.py``). What to do for one trigger of DAG D for partition P,
and in which order, is decided by ``coordinator/core/intent.py`` (its steps are those of docs/semantics.md, "Acting on
Airflow"); the executor owns the fenced writes, the Airflow calls and their retries, the ledger writes (the error record
among them) and what an attempt's end means for its key (the executor's **Ends**). This module only says what each
Airflow call of the protocol is as I/O, and answers the planner's one question, ``offer``.

Rules:
- **One action per key.** The planner (``watcher/triggers.py``) offers each action it decided (``offer``) and starts
  those the actuator would start now (``start``, after the trigger budget counted them); each is a key of the actions'
  controller, so at most one attempt per (DAG, partition) runs at a time (the queue's *one worker per key*). The
  action a queued key will start is the one table the queue cannot hold (its keys carry no payload). An action offered
  while the key's attempt is queued or runs is not started (``Offer.BUSY``); while the key waits out an error's
  backoff nothing starts either (``Offer.WAITING``).
- **The end plans the key again.** Every attempt's end (and a backoff's end with nothing to start) hands its key back
  to the planner, level-triggered: planned on the view as it is then. So changes of a key whose attempt is queued or
  runs need not be planned meanwhile (``under_way``: the planner skips them), however many events (its own ledger
  writes, its run's states) came.
- **Errors back off per key.** A refusal (400, 403, 404, a 409 held by a run not ours, unknown instance) or a failure
  is recorded on the ledger entry by the driver with the key's next try, ``retry_at``: exponential with jitter up to
  ``COORDINATOR_ERROR_RETRY_S`` (``core/error_backoff.py``, semantics `trigger-errors`), and the key comes back then
  (the executor's **Ends**). Its resume is not started before ``retry_at`` (``Offer.WAITING``, the key requeued for
  that time), by this leader or the next one: the backoff is in etcd. etcd trouble ends the attempt without a record
  (etcd is what failed) and the key comes back after the queue's per-key backoff (``actuator.store_error``), which
  a turn that only hands the key on never forgets. Never a busy loop.
- **A fix retries at once.** A refused intent is tried at once, its backoff started over (``fresh``), when what may
  have fixed it happened: the DAG's definition in force was adopted after the one the refused try was planned under
  (the planner's ``Resume.redefined``: the graph changed for that DAG), or an operator released a hold that kept its
  retry back (``retry_now``, from the holds gate). A DAG fixed in Airflow alone is tried at its next step, within the
  cap.
- **Own writes.** An action planned on a view that has not received this leader's own last write of the same ledger
  key (the informer's expectations, ``informer/expectations.py``, which the executor feeds with every write that lands)
  is not started (``Offer.UNSEEN``): it was decided on a ledger we already changed (a Trigger would lose its CAS, a
  Resume would read back an intent we confirmed). The watch event of that write re-plans the key, so nothing is lost;
  without this, most triggers cost a wasted etcd read or transaction while the watch catches up.
- **Parked while refused.** While an instance refuses our credentials (or throttles us), its calls wait out ONE
  backoff, the instance's (``airflow/gate.py``), not one per key: an action for it is not started but parked, its key
  back when the instance's step ends (a requeue: ``Executor.ready_in``), and at once when the instance accepts again
  (``instance_changed``). Its intent, if recorded, stays pending in the ledger; the action stays queued to start (it is
  under way meanwhile, as any queued action), and its attempt, like any, starts from the ledger as it is then (a moved
  entry ends it). One key per step makes the probe, so N parked keys cost one login per step.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from coordinator.airflow.client import AirflowClient, TriggerResult
from coordinator.airflow.runs import DagRunInfo
from coordinator.core import intent
from coordinator.core.actions import Action, Resume, Trigger
from coordinator.core.data_interval import DataInterval
from coordinator.core.effects import End, Ending, RecordError, WriteLedger
from coordinator.core.graph import Graph
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    parse_trigger_record,
)
from coordinator.core.partition import airflow_partition_key, trigger_logical_date
from coordinator.core.permit import permit_writes
from coordinator.errors import AirflowError, CoordinatorError, LeadershipLost, WritesRefused
from coordinator.manager import DONE, Controller, Handle, Manager, Result, wall_clock
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor, Ledger, result_of
from coordinator.watcher.faults import crash_point
from coordinator.watcher.keys import PLANNER, DagKey
from coordinator.watcher.paused import PausedDags

log = logging.getLogger(__name__)

#: Seconds an "is not paused" answer is reused (see _paused_warning).
UNPAUSED_CACHE_S = 10.0
#: Refusals (400, 404 DAG missing, 403): the cap of their backoff (rule *errors back off per key*); status shows the
#: error and the next try meanwhile.
ERROR_RETRY_S = 30.0


class _Unreadable(CoordinatorError):
    """The ledger entry to resume holds a value nobody can parse."""


@dataclass
class Outcome:
    """Counters of one actuator's life, for the per-pass summary line."""

    done: int = 0
    errors: int = 0
    skipped: int = 0


class Offer(StrEnum):
    """The answer to the planner's one question (rule *one action per key*)."""

    #: Would start now (``start`` queues it).
    READY = "ready"
    #: The key's attempt is queued or runs: its end plans the key again.
    BUSY = "busy"
    #: The key waits out an error's backoff (the queue's, or its entry's ``retry_at``): its end plans the key again.
    WAITING = "waiting"
    #: Planned before the view received our own last write of its ledger key: that write's event plans it again.
    UNSEEN = "unseen"


class Actuator:
    """Executes actions for the leader. ``start`` never blocks on Airflow; the executor's ``drain`` waits for what
    was submitted.

    It only says what each instruction is as I/O: what to do next is decided by the intent protocol
    (``core/intent.py``), which gets the outcome of every etcd write and Airflow call as an event, and the executor
    performs it.
    """

    def __init__(
        self,
        executor: Executor,
        keys: KeyLayout,
        *,
        watcher_id: str,
        replan: Callable[[DagKey], None],
        paused: Mapping[str, PausedDags],
        leading: Callable[[], bool] = lambda: True,
        error_retry_s: float = ERROR_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = wall_clock,
        on_result: Callable[[str, str, str], None] | None = None,
        graph: Callable[[], Graph | None] = lambda: None,
        rng: Callable[[], float] = random.random,
        on_permit: Callable[[str, float], None] = lambda instance, delay_s: None,
    ) -> None:
        self.executor = executor
        #: The jitter of each attempt's backoff, should it fail (rule *errors back off per key*).
        self.rng = rng
        #: Rule *a fix retries at once*: keys whose next attempt starts at once with a fresh backoff, and the keys
        #: queued or running that started so.
        self._released: set[DagKey] = set()
        self._fresh: set[DagKey] = set()
        #: The graph in force: how each DAG is triggered (its ``partition_key``, ``Graph.partition_key``).
        self.graph = graph
        self.keys = keys
        self.watcher_id = watcher_id
        #: Asks the planner to plan a key again (rule *the end plans the key again*).
        self.replan = replan
        #: The actions' controller: its workers are the attempts that may run at once (``max_concurrent``).
        #: Only the leader acts; the reconcile asks (not the controller): a key handed out while the lease is in
        #: doubt must also drop its pending action, or a later plan of it would be refused for ever.
        self.leading = leading
        self.controller: Controller[DagKey] = Controller(
            "actions", self, workers=executor.policy.max_concurrent, backoff_max_s=error_retry_s, now=now
        )
        #: The action each key queued to start or running will start (rule *one action per key*): what the queue's
        #: keys cannot carry.
        self._pending: dict[DagKey, Action] = {}
        self.error_retry_s = error_retry_s
        self.clock = clock
        #: The time each step of the intent protocol is told (``manager/periodic.py``'s **Clock**).
        self.now = now
        self.outcome = Outcome()
        #: Told (instance, action, result) of every finished action (the watcher's metrics): action is create, clear
        #: or resume; result ok, conflict (the ledger moved under it), error or skipped (nothing to do).
        self.on_result = on_result or (lambda instance, action, result: None)
        #: Told (instance, seconds since the newest upstream ended) of each permit granted (semantics
        #: `scheduled-permit`; the metric ``coordinator_permit_delay_seconds``).
        self.on_permit = on_permit
        self._unpaused_until: dict[NodeId, float] = {}  # the per-DAG fallback's cache (_paused_warning)
        #: One shared, cached paused-DAG list per instance: a trigger costs one Airflow request, not two. Given by
        #: the watcher, so the deadline pass reads the same lists (``paused_lists``).
        self._paused = paused

    # -- scheduling -------------------------------------------------------------------------------------------

    def offer(self, action: Action, *, view_revision: int | None = None) -> Offer:
        """Whether ``action``, planned on the view at ``view_revision``, would start now (it changes nothing: the
        trigger budget counts only what would start, then ``start`` queues it). Rules *one action per key*, *the end
        plans the key again* and *own writes*."""
        key = DagKey(action.node, action.partition)
        queue = self.controller.queue
        if key in self._pending or queue.processing(key):
            return Offer.BUSY
        if self._fixed(action, key):
            pass  # rule *a fix retries at once*: neither the entry's retry_at nor a delayed turn holds it back
        elif (wait := self._retry_in(action)) > 0:
            queue.add_after(key, wait)  # rule *errors back off per key*: back at its retry_at, however it was planned
            return Offer.WAITING
        elif queue.waiting(key):
            return Offer.WAITING
        expectations = self.executor.expectations
        # Rule *own writes* (the ledger key is only spelt out while a write of this leader is awaited).
        if (
            view_revision is not None
            and expectations.awaited()
            and expectations.after(self.keys.trigger_key(action.node, action.partition), view_revision)
        ):
            return Offer.UNSEEN
        return Offer.READY

    def start(self, action: Action) -> None:
        """Queue ``action``, which ``offer`` found ``READY`` (nothing else starts a key's attempt meanwhile: the
        planner is the only one that offers)."""
        key = DagKey(action.node, action.partition)
        self._pending[key] = action
        if self._fixed(action, key):
            self._fresh.add(key)
        self._released.discard(key)
        self.controller.add(key)

    def retry_now(self, key: DagKey) -> None:
        """Rule *a fix retries at once*: an operator released what kept ``key`` back; should it wait out a refusal, its
        next attempt starts when it is next planned, with a fresh backoff."""
        self._released.add(key)

    def _fixed(self, action: Action, key: DagKey) -> bool:
        """Rule *a fix retries at once*: whether ``action`` retries a refused intent that something may have fixed."""
        return (
            isinstance(action, Resume)
            and action.ledger.status is TriggerStatus.ERROR
            and (action.redefined or key in self._released)
        )

    def _retry_in(self, action: Action) -> float:
        """Rule *errors back off per key*: seconds until the refused intent ``action`` resumes may be tried (its
        entry's ``retry_at``); 0 for anything else."""
        if not isinstance(action, Resume) or action.ledger.status is not TriggerStatus.ERROR:
            return 0.0
        at = action.ledger.record.retry_at
        return 0.0 if at is None else (at - self.now()).total_seconds()

    def under_way(self, key: DagKey) -> bool:
        """Whether ``key``'s attempt is queued to start or runs: its end plans the key again (rule *the end plans the
        key again*)."""
        return key in self._pending

    def holds(self) -> bool:
        """Whether an action is queued, in flight or waiting out a backoff (the leader's settled check)."""
        return self.controller.queue.holds(lambda key: True)

    async def reconcile(self, key: DagKey, now: datetime) -> Result:
        """One key of the actions' controller: its action's attempt; a key whose backoff ended (nothing to start) is
        planned again."""
        action = self._pending.get(key)
        if action is None:
            self.replan(key)
            # A backoff's end judged nothing: a key whose attempts keep failing on etcd must keep backing off.
            return Result(forget=False)
        parked = False  # rule *parked while refused*: the key's turn goes on
        try:
            if not self.leading():
                # Dropped: a new term plans every partition again (``watcher/triggers.py``'s **Keys**).
                return DONE
            wait = self.executor.ready_in(action.node.instance)
            if wait > 0:
                # Rule *parked while refused*: the action waits, queued to start, until the instance's step ends or
                # it accepts us again.
                parked = True
                return Result(requeue_after=wait)
            name = f"act {action.node} {action.partition}"
            return await self.executor.run(lambda: self._run(action, key), name=name)
        finally:
            if not parked:  # rule *the end plans the key again*
                del self._pending[key]
                self._fresh.discard(key)
                self.replan(key)

    def instance_changed(self, instance: str, refusal: object) -> None:
        """An instance took a backoff step or (``refusal`` None) accepts us again: then its parked keys come back now
        (rule *parked while refused*). A parked key is one whose action waits to start and whose queue delay is the
        instance's step: only a parked key's turn is delayed (``start`` adds at once, a backoff has no action)."""
        if refusal is not None:
            return
        queue = self.controller.queue
        for key, action in self._pending.items():
            if action.node.instance == instance and queue.waiting(key):
                self.controller.add(key)

    # -- one action ---------------------------------------------------------------------------------------------

    async def _run(self, action: Action, key: DagKey) -> Result:
        ledger_key = self.keys.trigger_key(action.node, action.partition)
        result = "error"
        end: End | Exception
        try:
            end = await self._attempt(action, ledger_key)
            result = self._ended(action, key, end)
        except LeadershipLost as exc:  # the executor already told the campaign (its **Lost leadership**)
            end, result = exc, "conflict"
            log.warning("actuator.fenced node=%s partition=%s error=%s", action.node, action.partition, exc)
        except _Unreadable as exc:
            # Nothing to resume from: the view reports the bad value (view.bad_value), and a fixed value comes back
            # through the watch and is planned then.
            end, result = End(Ending.MOVED), "conflict"
            self.outcome.skipped += 1
            log.warning("actuator.moved node=%s partition=%s detail=%s", action.node, action.partition, exc)
        except CoordinatorError as exc:
            # etcd trouble (the executor's **Error vocabulary**: not an outcome, and nothing can be recorded where it
            # failed): the attempt ends where it stands, and the key comes back after its backoff to be planned again.
            end = exc
            self.outcome.errors += 1
            # Under an etcd alarm every key would repeat it: the probe logs the alarm once (etcd.alarm_raised).
            level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING
            log.log(level, "actuator.store_error node=%s partition=%s error=%s retry_in_s=%.1f", action.node,
                    action.partition, exc, self.controller.queue.backoff(key, self.error_retry_s))  # fmt: skip
        except Exception as exc:
            # A bug (the protocol refused an event): the service survives it, and the key is retried slowly.
            end = exc
            self.outcome.errors += 1
            log.exception("actuator.bug node=%s partition=%s error=%r", action.node, action.partition, exc)
        finally:
            self.on_result(action.node.instance, action.action if isinstance(action, Trigger) else "resume", result)
        return result_of(end, backoff_max_s=self.error_retry_s)

    async def _attempt(self, action: Action, ledger_key: str) -> End:
        """Drive the intent protocol to its end (the driver writes the ledger and records an error)."""
        draw = self.rng()  # rule *errors back off per key*: this attempt's jitter, should it fail
        scheduled = self._scheduled(action.node)
        if isinstance(action, Trigger):
            now, retry_s = self.now(), self.error_retry_s
            state, instruction = intent.start_trigger(action, now, self.watcher_id, retry_s, draw=draw,
                                                      scheduled=scheduled)  # fmt: skip
        else:
            fresh = DagKey(action.node, action.partition) in self._fresh
            state = intent.start_resume(action.partition, self.error_retry_s, draw=draw, fresh=fresh,
                                        scheduled=scheduled, withdraw=action.withdraw,
                                        definition=action.definition)  # fmt: skip
            state, instruction = intent.step(state, await self._find(ledger_key, action), self.now())

        async def perform(state: intent.IntentState, instruction: intent.Instruction) -> intent.Event:
            assert not isinstance(instruction, (WriteLedger, End))  # the driver's own (the executor's **One driver**)
            return await self._perform(action, instruction)

        def written(instruction: WriteLedger[TriggerRecord], value: bytes, rev: int) -> None:
            self._written(action, ledger_key, instruction, rev)

        # Semantics `permit-not-run`: a scheduled DAG's permit is written with every write of its intent.
        also = permit_writes(self.keys, action.node, action.partition) if scheduled else None
        ledger: Ledger[TriggerRecord] = Ledger(ledger_key, self.executor, dump_record, written=written, also=also)
        state, end = await self.executor.drive(state, instruction, step=intent.step, perform=perform, ledger=ledger)
        if end.how is Ending.MOVED:
            log.info("actuator.moved node=%s partition=%s step=%s", action.node, action.partition, state.step)
        return end

    def _ended(self, action: Action, key: DagKey, end: End) -> str:
        """Count and log how the attempt ended; its result for ``on_result``."""
        if end.how is Ending.FAILED:
            self.outcome.errors += 1
            # The protocol's backoff (rule *errors back off per key*): the entry says retry_at, the key comes back then.
            log.warning("actuator.error node=%s partition=%s error=%r retry_in_s=%.1f", action.node, action.partition,
                        end.error, end.retry_in_s or 0.0)  # fmt: skip
            return "error"
        if end.how is Ending.CONFIRMED:
            self.outcome.done += 1
            return "ok"
        self.outcome.skipped += 1
        return "conflict" if end.how is Ending.MOVED else "skipped"

    async def _find(self, ledger_key: str, action: Resume) -> intent.Event:
        current = await self._load(ledger_key)
        if current is None:
            return intent.IntentFound(None, 0, action.observed)
        return intent.IntentFound(current[0], current[1], action.observed)

    def _written(self, action: Action, ledger_key: str, instruction: WriteLedger[TriggerRecord], rev: int) -> None:
        """A ledger write of the attempt landed (the driver's; the executor expects it back: rule *own writes*): the
        log, the crash point."""
        if isinstance(instruction, intent.RecordIntent):
            assert isinstance(action, Trigger)
            log.info(
                "actuator.intent node=%s partition=%s action=%s run_id=%s cause_rev=%d intent_rev=%d reason=%r",
                action.node, action.partition, action.action, action.run_id, action.cause_rev, rev, action.reason,
            )  # fmt: skip
            crash_point("after-intent")  # test-only (faults.py): the intent is committed, Airflow not yet called
        elif isinstance(instruction, intent.WithdrawPermit):  # semantics `permit-retracted`
            log.info("actuator.permit_%s node=%s partition=%s generation=%d reason=%r",
                     "withdrawn" if instruction.record.withdrawn else "given_back", action.node, action.partition,
                     instruction.record.trigger_count, instruction.record.withdrawn or action.reason)  # fmt: skip
        elif isinstance(instruction, intent.Confirm) and self._scheduled(action.node):
            log.info("actuator.permit_granted node=%s partition=%s generation=%d run_id=%s", action.node,
                     action.partition, instruction.record.trigger_count, instruction.record.run_id)  # fmt: skip
            done_at = instruction.record.done_at
            if isinstance(action, Trigger) and action.cause_at is not None and done_at is not None:
                self.on_permit(action.node.instance, (done_at - action.cause_at).total_seconds())
        elif isinstance(instruction, intent.Confirm) and isinstance(action, Resume) and action.observed:
            log.info("actuator.confirmed key=%s run_id=%s detail=%r", ledger_key, instruction.record.run_id,
                     "run already started")  # fmt: skip
        elif isinstance(instruction, RecordError):
            log.debug("actuator.error_recorded key=%s revision=%d", ledger_key, rev)

    async def _perform(self, action: Action, instruction: intent.Call) -> intent.Event:
        """Do what ``instruction`` (an Airflow call) says through the executor; its result as an event."""
        node, partition = action.node, action.partition
        client = self.executor.client(node.instance)
        if isinstance(instruction, intent.CallCreate):
            run_id, conf = instruction.run_id, _conf(partition, instruction.record)
            at, key = trigger_logical_date(partition), self._partition_key(node, partition)
            interval = self._data_interval(node, partition)
            outcome = await self.executor.call(lambda: client.trigger(node.dag_id, run_id, at, conf, key, interval))
            crash_point("after-airflow-call")  # test-only: Airflow answered, the ledger is not confirmed yet
            answers: dict[TriggerResult, Callable[[str], intent.Event]] = {
                TriggerResult.CREATED: intent.Created,
                TriggerResult.ALREADY_EXISTS: intent.ConflictSameRun,
                TriggerResult.LOGICAL_DATE_TAKEN: intent.ConflictOtherRun,
            }
            return answers[outcome.result](outcome.run.run_id)
        if isinstance(instruction, intent.ReadQueuedAt):
            wanted = instruction.run_id
            return intent.RunObserved(_shown(await self.executor.call(lambda: client.get_run(node.dag_id, wanted))))
        if isinstance(instruction, intent.FindRunByDate):
            return intent.RunObserved(_shown(await self._holder(client, node, partition)))
        if isinstance(instruction, intent.CallClear):
            await self.executor.call(self._clear_once(client, node, instruction))
            crash_point("after-airflow-call")  # test-only: Airflow answered, the ledger is not confirmed yet
            return intent.Cleared()
        if isinstance(instruction, intent.CheckPaused):
            self._log_effect(action, instruction.effect)
            return intent.PausedChecked(await self._paused_warning(client, node))
        raise AssertionError(f"unexpected instruction {instruction!r}")  # pragma: no cover

    def _scheduled(self, node: NodeId) -> bool:
        """Whether the graph in force keeps ``node`` on its own timetable (semantics `scheduled-permit`)."""
        graph = self.graph()
        return graph is not None and node in graph.scheduled

    def _partition_key(self, node: NodeId, partition: str) -> str | None:
        """The ``partition_key`` a run of ``partition`` is triggered with: the graph's rule for the DAG, else (a DAG
        the graph in force no longer has) a segment as it is and a time without one."""
        graph = self.graph()
        if graph is not None and node in graph.dags:
            return graph.partition_key(node, partition)
        return airflow_partition_key(partition, None)

    def _data_interval(self, node: NodeId, partition: str) -> DataInterval | None:
        """The data interval a run of ``partition`` is triggered with (semantics `triggered-data-interval`): the
        graph's rule for the DAG; none for a DAG the graph in force no longer has (Airflow's timetable decides)."""
        graph = self.graph()
        return graph.data_interval(node, partition) if graph is not None and node in graph.dags else None

    async def _holder(self, client: AirflowClient, node: NodeId, partition: str) -> DagRunInfo | None:
        """The run Airflow holds for ``partition``, whatever its id: by partition key when the DAG is triggered with
        one (Airflow's own partitioned runs have no logical date), else by logical date; a segment without a key has
        none."""
        key, at = self._partition_key(node, partition), trigger_logical_date(partition)
        if key is not None:
            return await self.executor.call(lambda: client.find_run_by_partition_key(node.dag_id, key))
        if at is None:
            return None
        return await self.executor.call(lambda: client.find_run_by_logical_date(node.dag_id, at))

    def _clear_once(
        self, client: AirflowClient, node: NodeId, instruction: intent.CallClear
    ) -> Callable[[], Awaitable[None]]:
        async def clear_once() -> None:
            # Semantics `clear-queued-at-first`: a clear whose answer was lost (timeout) may still have happened:
            # re-read before every try, so a retry never reruns the DAG a second time. The decision is the protocol's
            # (clear_needed).
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
        """The ledger entry as etcd holds it now; an unparsable one ends the attempt (nothing to resume from)."""
        kv = await self.executor.get(key)
        if kv is None:
            return None
        record, problem = parse_trigger_record(kv.value)
        if record is None:
            raise _Unreadable(f"ledger value {key} unparsable: {problem}")
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
    """A run as the intent protocol reads it (semantics `trigger-clear-once`): id, state and the queued_at stamp."""
    return None if run is None else intent.AirflowRun(run.run_id, run.state, _stamp(run.queued_at))


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


#: What the actions' concern provides (``manager/manager.py``'s **Handles**): the planner submits to it.
ACTUATOR: Handle[Actuator] = Handle("actions")


def setup(manager: Manager, deps: Deps) -> Actuator:
    """The actions' concern: its reconciler (one intent protocol attempt per (DAG, partition)); the planner adds its
    keys, and it hands a key back to the planner (``replan``) through the manager; an instance that starts or stops
    refusing us unparks its keys."""
    settings = deps.settings
    actuator = Actuator(
        deps.executor, settings.keys, watcher_id=deps.watcher_id,
        replan=lambda key: manager.get(PLANNER).add(key), paused=deps.paused,
        leading=deps.leading, error_retry_s=settings.error_retry_s, on_result=deps.metrics.action_result,
        graph=deps.graph, now=deps.clock, on_permit=deps.metrics.permit_granted,
    )  # fmt: skip
    deps.refusals.listeners.append(actuator.instance_changed)
    manager.register(actuator.controller)
    return manager.provide(ACTUATOR, actuator)
