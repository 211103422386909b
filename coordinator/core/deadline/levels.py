"""Escalation levels of a deadline (semantics `deadlines-judged`, "Escalation"): several alerts for one (DAG,
partition), each with its own slack, handlers and exactly-once record.

Rules:
- **Pure**: statuses and records in, transitions out; no clock, no I/O.
- **A level is the state at its slack.** A level's state is ``core.deadline.states``' **States** with the level's
  ``slack`` as ``warn``: a success is ``on_time`` or ``late``, a passed deadline ``missed``, a cause ``blocked`` for
  every level alike; only ``at_risk`` depends on the level: the predicted finish is after the deadline minus the level's
  slack. So a level with more slack is never less alarmed than one with less (``warn`` fires before ``page``), and the
  DAG's own state (its ``warn``) is untouched by its levels.
- **A record per level.** Each level keeps its own record
  (``{prefix}/deadlines/{instance}/{dag_id}/{partition}/{level}``, a
  :class:`~coordinator.core.deadline.records.DeadlineRecord`): a transition is a level state that differs from the one
  recorded for that level (absent reads as ``on_time``), recorded by the shell with the same fenced compare-and-swap
  before alerting. Alerting then follows ``core.deadline.alerts`` per level (``hold``, ``realert``, ``alerted_states``
  are the level record's): a level never alerts one state twice in a partition.
- **Run ids name the level.** A level's handler run id names the level (:func:`level_run_id`), so two levels that share
  a handler DAG, and the DAG's own ``on_late_of`` handlers, never collide, and a retry after a failover reuses the same
  id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.rules import Level
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId

#: (DAG, partition, level name): a level record's place.
LevelKey = tuple[NodeId, str, str]

_OPEN = (DeadlineState.ON_TIME, DeadlineState.AT_RISK)


def graph_levels(graph: Graph) -> dict[NodeId, tuple[Level, ...]]:
    """The DAGs that declare escalation levels, with their levels in spec order."""
    found = {}
    for node, spec in graph.dags.items():
        if spec.expected_by is not None and spec.expected_by.levels:
            found[node] = spec.expected_by.levels
    return found


def level_state(status: DeadlineStatus, slack: timedelta) -> DeadlineState:
    """**A level is the state at its slack**: ``status``'s state for a level with this slack."""
    if status.succeeded or status.state not in _OPEN:
        return status.state
    eta = status.eta
    if eta is None:
        return status.state
    return DeadlineState.AT_RISK if eta > status.deadline - slack else DeadlineState.ON_TIME


def level_states(status: DeadlineStatus, levels: Iterable[Level]) -> tuple[tuple[str, DeadlineState], ...]:
    """Each level's name and state (**A level is the state at its slack**), in the order the spec lists them (what
    status and why show)."""
    return tuple((level.name, level_state(status, timedelta(seconds=level.slack))) for level in levels)


@dataclass(frozen=True, slots=True)
class LevelTransition:
    """A level's state moved from ``previous`` (**A record per level**); ``sequence`` numbers the level record's
    transitions."""

    status: DeadlineStatus
    level: Level
    state: DeadlineState
    previous: DeadlineState
    sequence: int

    @property
    def key(self) -> LevelKey:
        return self.status.node, self.status.partition, self.level.name


def level_transitions(
    statuses: Iterable[DeadlineStatus],
    levels: Mapping[NodeId, tuple[Level, ...]],
    recorded: Mapping[LevelKey, DeadlineRecord],
) -> list[LevelTransition]:
    """**A record per level**: every (status, level) whose level state differs from the level's record, in key order."""
    found = []
    for status in sorted(statuses, key=lambda s: (s.node, s.partition)):
        for level in levels.get(status.node, ()):
            state = level_state(status, timedelta(seconds=level.slack))
            record = recorded.get((status.node, status.partition, level.name))
            previous = record.state if record is not None else DeadlineState.ON_TIME
            if state is not previous:
                sequence = record.sequence + 1 if record is not None else 1
                found.append(LevelTransition(status, level, state, previous, sequence))
    return found


def level_run_id(node: NodeId, partition: str, level: str, sequence: int) -> str:
    """**Run ids name the level**: the deterministic run id of a level handler's run for one transition of that
    level."""
    return f"coordinator_late__{node.instance}__{node.dag_id}__{partition}__{level}__{sequence}"
