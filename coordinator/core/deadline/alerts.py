"""When a recorded deadline transition alerts (runs its ``on_late_of`` handlers): no flapping
(semantics `deadlines-judged`).

A prediction can cross ``deadline - warn`` and back as facts arrive (a learned duration moves, a retry starts); each
crossing is a transition, and alerting each would page one partition twice for ``at_risk``. These rules decide,
from the previous record alone (in etcd, so they survive a failover), what a transition's record says about
alerting (:func:`plan_alert` under the DAG's :func:`alert_policy`, written into the record by
:func:`transition_record`). The shell (``watcher/deadline_alerts.py``) records, then alerts what :func:`due` says,
then marks it alerted.

Rules:
- **Pure**: records and ``now`` in, records out.
- **No repeat alerts.** A transition to ``on_time`` never alerts (a recovery is logged). A transition to a state already
  alerted for this partition (``alerted_states`` of the previous record) does not alert again, unless the rule says
  ``realert``: it is recorded ``alerted`` with ``repeat`` set, and the log says so.
- **Wait before alerting.** Any other transition alerts once it has lasted ``wait`` (the spec's ``expected_by.hold``;
  0: in the pass that records it): it is recorded ``alerted: false`` with ``alert_after``; a pass at or after that
  instant alerts it if the record still says that transition. A state that changes before (``at_risk`` -> ``on_time``
  within the wait) is replaced by the next transition's record and never alerts.
- **Alerted states carried.** ``alerted_states`` is carried from record to record for the partition and grows by a state
  when that state's handlers ran (:func:`mark_alerted`), so "already alerted" survives every later transition and a
  failover.
- **Exactly once by sequence.** Exactly once is the existing mechanism's: the handler run id names the transition's
  ``sequence``; a leader that dies between triggering and marking leaves ``alerted: false``, and the next one triggers
  the same run ids again. The shell alerts what is due both before and after recording a pass's transitions, so such a
  record is marked (and its state joins ``alerted_states``) before a new transition replaces it; otherwise a return to
  that state would page again (the property test in ``tests/test_deadline_alerts.py`` found this).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.core.deadline.levels import LevelTransition
from coordinator.core.deadline.records import DeadlineRecord, Transition
from coordinator.core.deadline.states import DeadlineState
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """A DAG's alerting rule: ``wait`` is the spec's ``expected_by.hold``, ``realert`` its ``expected_by.realert``."""

    wait: timedelta = timedelta(0)
    realert: bool = False


def alert_policy(graph: Graph, node: NodeId) -> AlertPolicy:
    """The DAG's ``hold`` and ``realert``; the defaults for a DAG no longer declared."""
    spec = graph.dags.get(node)
    rule = spec.expected_by if spec is not None else None
    if rule is None:
        return AlertPolicy()
    return AlertPolicy(timedelta(seconds=rule.hold), rule.realert)


@dataclass(frozen=True, slots=True)
class AlertPlan:
    """What a new transition's record says about alerting (**No repeat alerts**, **Wait before alerting** and
    **Alerted states carried**)."""

    #: Nothing left to do: on_time, a repeat, or no handlers.
    alerted: bool
    #: A state already alerted in this partition, not alerted again (**No repeat alerts**).
    repeat: bool
    alert_after: datetime | None
    alerted_states: tuple[DeadlineState, ...]


def plan_alert(
    previous: DeadlineRecord | None, state: DeadlineState, now: datetime, policy: AlertPolicy, handlers: bool
) -> AlertPlan:
    """**No repeat alerts**, **Wait before alerting** and **Alerted states carried** for a transition to ``state``
    recorded at ``now`` after ``previous``."""
    before = previous.alerted_states if previous is not None else ()
    if state is DeadlineState.ON_TIME:
        return AlertPlan(True, False, None, before)
    if state in before and not policy.realert:
        return AlertPlan(True, True, None, before)
    if not handlers:
        # Nothing to run: the transition's log line and metrics are its whole alert, so it counts as alerted now.
        return AlertPlan(True, False, None, _with(before, state))
    alert_after = now + policy.wait if policy.wait > timedelta(0) else None
    return AlertPlan(False, False, alert_after, before)


def transition_record(
    transition: Transition | LevelTransition, now: datetime, watcher: str, plan: AlertPlan,
    handler_date: datetime | None,
) -> DeadlineRecord:  # fmt: skip
    """The record of a transition (a DAG's or a level's) recorded at ``now`` by ``watcher``, carrying what ``plan``
    says about alerting and its handlers' logical date."""
    status = transition.status
    cause = status.cause
    state = transition.state if isinstance(transition, LevelTransition) else status.state
    return DeadlineRecord(
        state=state, deadline=status.deadline, eta=status.eta,
        cause=cause.text() if cause is not None else None, chain=cause.chain_text() if cause is not None else None,
        sequence=transition.sequence, changed_at=now.replace(microsecond=0), handler_date=handler_date,
        alerted=plan.alerted, watcher=watcher, alerted_states=plan.alerted_states, alert_after=plan.alert_after,
        repeat=plan.repeat, task=status.task,
    )  # fmt: skip


def due(record: DeadlineRecord, now: datetime) -> bool:
    """**Wait before alerting**: a recorded transition whose handlers should run at ``now``."""
    if record.alerted:
        return False
    return record.alert_after is None or now >= record.alert_after


def next_alert_after(records: Iterable[DeadlineRecord], now: datetime) -> datetime | None:
    """**Wait before alerting**: the earliest instant after ``now`` at which one of ``records`` becomes :func:`due`
    (None: none is waiting), so the shell can requeue its alert step at that instant."""
    return min((r.alert_after for r in records if not r.alerted and r.alert_after is not None and r.alert_after > now),
               default=None)  # fmt: skip


def mark_alerted(record: DeadlineRecord) -> DeadlineRecord:
    """**Alerted states carried**: the record once its handlers ran."""
    return record.model_copy(update={"alerted": True, "alerted_states": _with(record.alerted_states, record.state)})


def next_handler_date(now: datetime, latest: datetime | None) -> datetime:
    """A handler logical date after ``latest`` (the latest recorded or assigned one): ``now`` in whole seconds, or one
    second after ``latest``, so transitions recorded within one second (or by a leader whose clock is behind) never
    share one (``watcher/deadline_alerts.py``'s **Handlers once per transition**)."""
    candidate = now.replace(microsecond=0)
    if latest is not None and candidate <= latest:
        candidate = latest + timedelta(seconds=1)
    return candidate


def _with(states: tuple[DeadlineState, ...], state: DeadlineState) -> tuple[DeadlineState, ...]:
    return states if state in states else (*states, state)
