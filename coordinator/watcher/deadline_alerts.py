"""Recording and alerting the deadline transitions a pass found: each transition recorded once by a fenced
compare-and-swap, then its handlers triggered exactly once (log line, metrics, the ``on_late_of`` handlers, escalation
levels). The pass that finds them and decides when it runs is ``watcher/deadlines.py``; whether and when a recorded
transition alerts is ``core.deadline.alerts``.

Rules (semantics `deadlines-judged`):
- **Record first, alert after.** A transition is written by a fenced compare-and-swap (the executor's,
  ``watcher/executor.py``, pinned to the term the pass began in) against the revision this watcher last saw for that key
  (0: absent) with ``alerted`` false. Only the writer whose swap succeeded alerts, so two leaders (an old one whose
  lease is in doubt and the new one) never both alert one transition.
- **Own writes come back through the watch.** The pass never writes into the deadline index: the informer is its only
  writer, and the pass's records come back through the watch like anyone's. Within a pass, what it wrote is read from
  the pass itself (:class:`PassRecords`: the record and the revision it landed at), so the alert step after the record
  step alerts what was just recorded. Across passes, a key whose own write the index does not show yet (the executor's
  expectation is pending: ``informer/expectations.py``) is left alone, neither recorded nor alerted again; the cache
  keeps its mismatch, so a later pass, once the informer has brought the write, judges it again.
- **Handlers once per transition.** Then the handlers are triggered (through the executor, with its retries of a
  transient failure), when ``core.deadline.alerts`` says the transition alerts (not on_time, not a state already alerted
  for the partition, waited long enough: recorded ``alert_after``), with a deterministic run id (``late_run_id``) and
  logical date (recorded in the transition), and the record is swapped to ``alerted``. A leader that dies between the
  two leaves a record with ``alerted`` false: the next leader triggers the same run again, which Airflow refuses as
  existing, so each handler runs once per transition. A record already ``alerted`` is never alerted again.
- **One line per transition.** One log line per transition: ``deadline.transition``.
- **Escalation levels.** Escalation levels (``core.deadline.levels``), after the DAG's own transitions in the same pass:
  the statuses of the DAGs that declare levels are read from the cache at ``now``, each level's transition is recorded
  under its own key (``deadline_level_key``) exactly as in **Record first, alert after** and
  **Handlers once per transition**, and alerted with ``level_run_id`` and ``"level"`` in the conf; one
  ``deadline.level_transition`` line each. The deadline index keeps the level records too.
- **A failed alert holds its record.** A recorded transition whose handlers failed to trigger in this pass (Airflow
  refused, timed out, or lost the answer: the run may exist) is not replaced by a newer transition in the same pass: the
  next pass triggers the same run id again (Airflow answers "exists" when the lost call took effect), marks it, and only
  then records the new transition, which carries the state as alerted (``core.deadline.alerts``'s
  **Alerted states carried**). Otherwise a lost answer, then a return to on_time and back, pages twice. The wait is
  bounded by ``ALERT_RETRY_WINDOW`` from the transition, so a handler that cannot be triggered at all never freezes the
  partition's record (``deadline.alert_abandoned``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from coordinator.airflow.runs import TriggerResult
from coordinator.core.deadline.alerts import alert_policy, due, mark_alerted, plan_alert, transition_record
from coordinator.core.deadline.cache import DeadlineCache
from coordinator.core.deadline.levels import LevelKey, LevelTransition, graph_levels, level_run_id, level_transitions
from coordinator.core.deadline.records import DeadlineRecord, Transition, handler_conf, late_run_id
from coordinator.core.deadline.rules import Level
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, dump_record
from coordinator.errors import AirflowError
from coordinator.etcd import CasResult
from coordinator.informer.deadlines import DeadlineIndex
from coordinator.informer.expectations import Expectations
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.executor import Executor, TermWrites
from coordinator.watcher.faults import crash_point

log = logging.getLogger(__name__)

#: **A failed alert holds its record**: how long a transition whose handlers keep failing holds off the next transition
#: of its partition.
ALERT_RETRY_WINDOW = timedelta(minutes=10)


class PassWriter(Protocol):
    """What recording and alerting need of the deadlines' job (``watcher/deadlines.py``'s ``DeadlineJob``), and
    nothing else of it."""

    #: Every write (a fenced compare-and-swap of a record) and every handler's trigger goes through the executor.
    executor: Executor
    keys: KeyLayout
    #: The recorded transitions, kept warm by the informer; only read here (**Own writes come back through the
    #: watch**).
    tracker: DeadlineIndex
    metrics: Metrics
    watcher_id: str
    #: **Record first, alert after**: the current pass's writes, pinned to the term it began in.
    writes: TermWrites

    def next_handler_date(self, now: datetime) -> datetime:
        """**Handlers once per transition**: a handler logical date after every recorded and every assigned one."""
        ...


RK = TypeVar("RK", tuple[NodeId, str], LevelKey)


@dataclass
class PassRecords(Generic[RK]):
    """**Own writes come back through the watch**: one pass's reading of one kind of record (a DAG's or a level's): the
    index's, under what this pass wrote itself; a key whose earlier write has not come back yet is unseen, and left
    alone."""

    records: Mapping[RK, DeadlineRecord]
    revisions: Mapping[RK, int]
    #: The index's unalerted keys.
    unalerted_keys: set[RK]
    key: Callable[[RK], str]
    expectations: Expectations
    #: What this pass wrote: the record and the revision it landed at.
    wrote: dict[RK, tuple[DeadlineRecord, int]] = field(default_factory=dict)

    def unseen(self, at: RK) -> bool:
        """Whether an earlier write of ``at`` has not come back yet: the index is behind it, so nothing is decided on
        ``at`` this pass (judged again once the informer brings it)."""
        return at not in self.wrote and self.expectations.pending(self.key(at))

    def record(self, at: RK) -> DeadlineRecord | None:
        own = self.wrote.get(at)
        return own[0] if own is not None else self.records.get(at)

    def revision(self, at: RK) -> int:
        own = self.wrote.get(at)
        return own[1] if own is not None else self.revisions.get(at, 0)

    def unalerted(self) -> list[RK]:
        """The keys whose record is not alerted: the index's and this pass's own."""
        keys = {at for at in self.unalerted_keys if at not in self.wrote}
        keys.update(at for at, (record, _) in self.wrote.items() if not record.alerted)
        return sorted(keys)

    async def write(self, job: PassWriter, at: RK, record: DeadlineRecord) -> CasResult:
        """``record`` by the pass's fenced compare-and-swap against the revision this pass knows for ``at``; when it
        lands, this pass reads it from here (the index hears of it from the watch)."""
        result = await job.writes.cas(self.key(at), dump_record(record), self.revision(at))
        if result.succeeded:
            self.wrote[at] = (record, result.revision)
        return result


def dag_records(job: PassWriter) -> PassRecords[tuple[NodeId, str]]:
    tracker, keys = job.tracker, job.keys
    return PassRecords(tracker.records, tracker.revisions, tracker.unalerted, lambda at: keys.deadline_key(*at),
                       job.executor.expectations)  # fmt: skip


def level_records(job: PassWriter) -> PassRecords[LevelKey]:
    tracker, keys = job.tracker, job.keys
    return PassRecords(tracker.levels, tracker.level_revisions, tracker.levels_unalerted,
                       lambda at: keys.deadline_level_key(*at), job.executor.expectations)  # fmt: skip


async def record_transition(
    job: PassWriter,
    graph: Graph,
    records: PassRecords[tuple[NodeId, str]],
    transition: Transition,
    failing: set[Any],
    now: datetime,
) -> bool:
    """**Record first, alert after** and **One line per transition** for one transition: whether it was recorded."""
    status = transition.status
    at = (status.node, status.partition)
    if records.unseen(at):
        # **Own writes come back through the watch**: the cache keeps the mismatch, so a later pass offers it again.
        return False
    if _waits_for_alert(at, records.record(at), failing, now):
        # **A failed alert holds its record**: the cache keeps the mismatch, so the next pass offers this transition
        # again.
        return False
    handlers = graph.late_handlers.get(status.node, ())
    plan = plan_alert(records.record(at), status.state, now, alert_policy(graph, status.node), bool(handlers))
    handler_date = job.next_handler_date(now) if not plan.alerted else None
    record = transition_record(transition, now, job.watcher_id, plan, handler_date)
    result = await records.write(job, at, record)
    if not result.succeeded:
        return False  # another writer moved it: the watch brings its value, the next pass decides again
    job.metrics.deadline_transition(status.node.instance, str(status.state), status.lateness)
    log.warning(
        "deadline.transition dag=%s partition=%s from=%s to=%s deadline=%s eta=%s cause=%s chain=%r "
        "sequence=%d revision=%d repeat=%s hold_until=%s",
        status.node.qualified, status.partition, transition.previous, status.state, record.deadline.isoformat(),
        record.eta.isoformat() if record.eta else "-", record.cause or "-", record.chain or "-",
        record.sequence, result.revision, record.repeat,
        record.alert_after.isoformat() if record.alert_after else "-",
    )  # fmt: skip
    crash_point("after-deadline-transition")
    return True


async def level_pass(job: PassWriter, graph: Graph, cache: DeadlineCache, now: datetime) -> list[LevelTransition]:
    """Escalation levels (``core.deadline.levels``): complete what a dead leader left unalerted, record each level's
    transition by the same fenced compare-and-swap as the DAG's own, then alert what is due. The levels read the
    cache's statuses at ``now`` of the DAGs that declare levels only (none: nothing read, nothing written)."""
    levels = graph_levels(graph)
    tracker = job.tracker
    if not levels and not tracker.levels_unalerted:
        return []
    records = level_records(job)
    failing = await alert_pending_levels(job, levels, records, now)
    recorded: list[LevelTransition] = []
    for transition in level_transitions(cache.statuses_of(sorted(levels)), levels, tracker.levels):
        at = transition.key
        status = transition.status
        if records.unseen(at):
            continue  # **Own writes come back through the watch**: judged again from the statuses once it has
        if _waits_for_alert(at, records.record(at), failing, now):
            continue  # **A failed alert holds its record**: judged again from the statuses next pass
        plan = plan_alert(records.record(at), transition.state, now, alert_policy(graph, status.node),
                          bool(transition.level.handlers))  # fmt: skip
        handler_date = job.next_handler_date(now) if not plan.alerted else None
        record = transition_record(transition, now, job.watcher_id, plan, handler_date)
        result = await records.write(job, at, record)
        if not result.succeeded:
            continue  # another writer moved it: the watch brings its value, the next pass decides again
        recorded.append(transition)
        log.warning(
            "deadline.level_transition dag=%s partition=%s level=%s from=%s to=%s deadline=%s eta=%s cause=%s "
            "sequence=%d revision=%d repeat=%s hold_until=%s",
            status.node.qualified, status.partition, transition.level.name, transition.previous, transition.state,
            record.deadline.isoformat(), record.eta.isoformat() if record.eta else "-", record.cause or "-",
            record.sequence, result.revision, record.repeat,
            record.alert_after.isoformat() if record.alert_after else "-",
        )  # fmt: skip
        crash_point("after-deadline-level-transition")
    await alert_pending_levels(job, levels, records, now)
    return recorded


async def alert_pending_levels(
    job: PassWriter, levels: Mapping[NodeId, tuple[Level, ...]], records: PassRecords[LevelKey], now: datetime
) -> set[LevelKey]:  # fmt: skip
    """``alert_pending`` for escalation levels: each due level record's handlers, with the level's run ids; the
    keys whose handlers failed to trigger (**A failed alert holds its record**)."""
    failing: set[LevelKey] = set()
    for at in records.unalerted():
        record = records.record(at)
        if record is None or records.unseen(at) or not due(record, now):
            continue
        node, partition, name = at
        level = next((lv for lv in levels.get(node, ()) if lv.name == name), None)
        handlers = tuple(NodeId.parse(h) for h in level.handlers) if level is not None else ()
        run_id = level_run_id(node, partition, name, record.sequence)
        conf = handler_conf(record, node, partition, name)
        if not await _trigger_all(job, node, partition, handlers, run_id, record, conf):
            failing.add(at)
            continue
        await records.write(job, at, mark_alerted(record))
    return failing


def _waits_for_alert(
    at: object, record: DeadlineRecord | None, failing: set[Any], now: datetime
) -> bool:  # fmt: skip
    """**A failed alert holds its record**: whether a new transition at ``at`` waits for the failed alert of the record
    it would replace."""
    if at not in failing or record is None:
        return False
    if now - record.changed_at < ALERT_RETRY_WINDOW:
        return True
    log.warning("deadline.alert_abandoned key=%r sequence=%d state=%s changed_at=%s", at, record.sequence,
                record.state, record.changed_at.isoformat())  # fmt: skip
    return False


async def alert_pending(
    job: PassWriter, graph: Graph, records: PassRecords[tuple[NodeId, str]], now: datetime
) -> set[tuple[NodeId, str]]:  # fmt: skip
    """Trigger the handlers of every recorded transition due to alert (``alerts.due``: not yet alerted, held long
    enough), then mark it alerted (**Handlers once per transition**); the keys whose handlers failed to trigger
    (**A failed alert holds its record**). A key whose earlier write has not come back is left for a later pass."""
    failing: set[tuple[NodeId, str]] = set()
    for at in records.unalerted():
        record = records.record(at)
        if record is None or records.unseen(at) or not due(record, now):
            continue
        node, partition = at
        run_id = late_run_id(node, partition, record.sequence)
        conf = handler_conf(record, node, partition)
        if not await _trigger_all(job, node, partition, graph.late_handlers.get(node, ()), run_id, record, conf):
            failing.add(at)
            continue
        await records.write(job, at, mark_alerted(record))
    return failing


async def _trigger_all(
    job: PassWriter, node: NodeId, partition: str, handlers: tuple[NodeId, ...], run_id: str,
    record: DeadlineRecord, conf: dict[str, Any],
) -> bool:  # fmt: skip
    """Trigger each handler's run for one recorded transition; True when every one exists now (so the record may be
    marked alerted), False to try again next pass."""
    ok = True
    for handler in handlers:
        at = record.handler_date or record.changed_at
        try:
            client = job.executor.client(handler.instance)
            # The executor's retries (``airflow_call_retry``): the handler's run id is deterministic, so a repeat is a
            # 409.
            outcome = await job.executor.call(partial(client.trigger, handler.dag_id, run_id, at, conf))
        except AirflowError as exc:
            ok = False
            log.warning("deadline.handler_failed dag=%s partition=%s handler=%s error=%s", node.qualified,
                        partition, handler.qualified, exc)  # fmt: skip
            continue
        if outcome.result is TriggerResult.LOGICAL_DATE_TAKEN:
            # Another run holds the date (not ours: ours would be found by its run id): retried next pass.
            ok = False
            log.warning("deadline.handler_date_taken dag=%s partition=%s handler=%s run_id=%s", node.qualified,
                        partition, handler.qualified, run_id)  # fmt: skip
            continue
        log.info("deadline.handler dag=%s partition=%s handler=%s run_id=%s result=%s", node.qualified,
                 partition, handler.qualified, run_id, outcome.result)  # fmt: skip
    return ok
