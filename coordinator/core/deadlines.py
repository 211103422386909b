"""Deadlines: will each (DAG, partition) with an ``expected_by`` be on time, and if not, why (semantics rule 13).

Rules:
1. Pure: :func:`deadline_states` takes the graph, the view, ``now`` and what the shell knows about Airflow (paused
   DAGs, unreachable instances) and returns one :class:`DeadlineStatus` per (DAG, partition). It never needs an
   Airflow run to exist: a gridded DAG's partitions come from its grid (the points in ``[now - horizon, now]``), an
   ungridded DAG's from the view (every partition where it or an upstream has a fact).
2. States, first match wins: a success is ``on_time`` if it ended at or before the deadline, else ``late`` (by how
   much; a success without an end date is ``on_time``: lateness cannot be proved); no success and the deadline has
   passed: ``missed``; a cause blocks it: ``blocked``; the predicted finish is after the deadline minus ``warn``:
   ``at_risk``; otherwise ``on_time``.
3. A cause (``blocked``) is, along the success edges and through the grid mappings, the DEEPEST (DAG, partition)
   without a success that: failed (the latest attempt failed, so no retry is in flight), has an intent Airflow
   refused (a ledger entry in ``error``), is paused, or lives in an unreachable instance. Upstreams are searched
   before the DAG itself, so the cause is where the chain starts; ``chain`` lists the hops from the DAG to it.
4. The predicted finish (ETA) of a (DAG, partition): its success's end; a running attempt's start plus the expected
   duration (never before ``now``); otherwise the latest ETA of the upstream partitions it needs (a root: its window
   end, when Airflow schedules it), not before ``now``, plus the trigger latency (not for roots) and the expected
   duration. Task-level edges count as their whole DAG and gates (self-dependencies) are not predicted.
5. Expected duration: a fixed ``duration``, else the learned one (:func:`learned_duration`) over the DAG's latest
   :data:`LEARN_SAMPLES` successes with a start and an end, else 0. Learning ignores outliers: a run longer than
   :data:`OUTLIER_FACTOR` times the median (a run that waited a day in a queue, a backfill) is dropped, then the
   :data:`LEARN_PERCENTILE` percentile of the rest is taken; fewer than :data:`MIN_SAMPLES` samples learn nothing.
6. A transition is a status whose state differs from the state recorded for it (nothing recorded reads as
   ``on_time``): :func:`transitions`. The shell records each by compare-and-swap before it alerts, so one
   transition alerts exactly once; every state but ``on_time`` triggers the ``on_late_of`` handlers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.model import PARTITION_FORMAT, NodeId, RunState, TriggerStatus
from coordinator.core.spec.deadline import window_end
from coordinator.core.view import RunFact, View

#: How far back a pass looks for gridded partitions: a day's partition with a next-day deadline stays in view.
DEFAULT_HORIZON = timedelta(days=2)
#: Seconds from an upstream's success to the dependent's run starting (the watcher's trigger plus Airflow's
#: scheduler loop): a minute is what the scenario tests and the demo stack measure with room to spare.
DEFAULT_LATENCY = timedelta(seconds=60)
LEARN_SAMPLES = 20
MIN_SAMPLES = 3
OUTLIER_FACTOR = 3.0
LEARN_PERCENTILE = 0.9


class DeadlineState(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"
    MISSED = "missed"
    AT_RISK = "at_risk"
    BLOCKED = "blocked"


class CauseReason(StrEnum):
    FAILED = "failed"
    INTENT_ERROR = "intent_error"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a partition cannot finish (rule 3): the deepest blocked (DAG, partition) and the hops to it."""

    node: NodeId
    partition: str
    reason: CauseReason
    #: (DAG, partition) from the DAG whose status this is down to ``node`` (both included).
    chain: tuple[tuple[NodeId, str], ...] = ()

    @property
    def instance(self) -> str:
        return self.node.instance

    def text(self) -> str:
        """``instance/dag@partition reason`` (what status, why, the log and the handler's conf show)."""
        return f"{self.node.qualified}@{self.partition} {self.reason}"

    def chain_text(self) -> str:
        return " <- ".join(f"{n.qualified}@{p}" for n, p in self.chain)


@dataclass(frozen=True, slots=True)
class DeadlineStatus:
    node: NodeId
    partition: str
    state: DeadlineState
    deadline: datetime
    #: Predicted (or actual) finish; None when blocked or missed without a prediction.
    eta: datetime | None = None
    cause: Cause | None = None
    #: Seconds between the deadline and the ETA (or ``now`` when there is none); negative: behind.
    slack: float = 0.0
    #: Seconds after the deadline a late success ended (``late`` only).
    lateness: float | None = None
    #: The partition succeeded (``on_time`` or ``late`` for good); the others are still open.
    succeeded: bool = False


def learned_duration(samples: Iterable[float]) -> float | None:
    """Rule 5's learned duration of these run times (seconds), or None with too few samples."""
    values = sorted(s for s in samples if s >= 0)
    if len(values) < MIN_SAMPLES:
        return None
    middle = len(values) // 2
    median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    kept = [v for v in values if v <= OUTLIER_FACTOR * median] if median > 0 else values
    index = max(0, math.ceil(LEARN_PERCENTILE * len(kept)) - 1)
    return kept[index]


def learned_durations(view: View, nodes: Iterable[NodeId]) -> dict[NodeId, float]:
    """The learned duration of each of ``nodes`` that has enough history (rule 5), from its latest successes."""
    wanted = set(nodes)
    found: dict[NodeId, list[tuple[str, float]]] = {}
    for (node, partition), fact in view.runs.items():
        if node in wanted and fact.state is RunState.SUCCESS and fact.start_date and fact.end_date:
            found.setdefault(node, []).append((partition, (fact.end_date - fact.start_date).total_seconds()))
    result: dict[NodeId, float] = {}
    for node, items in found.items():
        items.sort(reverse=True)
        value = learned_duration(seconds for _, seconds in items[:LEARN_SAMPLES])
        if value is not None:
            result[node] = value
    return result


def _key(at: datetime) -> str:
    return at.strftime(PARTITION_FORMAT)


def grid_partitions(grid: Grid, now: datetime, horizon: timedelta) -> tuple[str, ...]:
    """The points of ``grid`` in ``[now - horizon, now]`` (rule 1), oldest first."""
    # Cron points fall on whole minutes, so the bounds can be rounded inwards to minutes without changing the answer;
    # then within one minute the key is the same and a pass walks each grid once.
    end = now.replace(second=0, microsecond=0)
    start = now - horizon
    floor = start.replace(second=0, microsecond=0)
    return _grid_points(grid, end, floor if floor == start else floor + timedelta(minutes=1))


@lru_cache(maxsize=4096)
def _grid_points(grid: Grid, end: datetime, start: datetime) -> tuple[str, ...]:
    found: list[str] = []
    point = grid.floor(end)
    while point >= start:
        found.append(_key(point))
        point = grid.prev(point)
    return tuple(reversed(found))


@dataclass
class _Pass:
    graph: Graph
    view: View
    now: datetime
    paused: frozenset[NodeId]
    unreachable: frozenset[str]
    latency: timedelta
    durations: Mapping[NodeId, float]
    #: The DAGs that can have a cause at all: those with a failed fact, a refused intent, paused or unreachable, and
    #: their descendants. Everything else skips rule 3's search (nearly every DAG on a healthy day).
    tainted: frozenset[NodeId] = frozenset()
    _causes: dict[tuple[NodeId, str], Cause | None] = field(default_factory=dict)
    _etas: dict[tuple[NodeId, str], datetime | None] = field(default_factory=dict)

    def duration(self, node: NodeId) -> timedelta:
        spec = self.graph.dags.get(node)
        rule = spec.expected_by if spec is not None else None
        if rule is not None and rule.duration is not None:
            return timedelta(seconds=rule.duration)
        return timedelta(seconds=self.durations.get(node, 0.0))

    def fact(self, node: NodeId, partition: str) -> RunFact | None:
        return self.view.runs.get((node, partition))

    def sources(self, node: NodeId, partition: str) -> Iterable[tuple[NodeId, str]]:
        spec = self.graph.dags.get(node)
        if spec is None:
            return
        for up in spec.upstreams:
            for source_partition in self.graph.source_partitions(node, up, partition):
                yield up, source_partition

    def cause(self, node: NodeId, partition: str) -> Cause | None:
        """Rule 3, memoised (a DAG's upstream partitions are shared by many of its dependents' partitions)."""
        if node not in self.tainted:
            return None
        at = (node, partition)
        if at in self._causes:
            return self._causes[at]
        self._causes[at] = None  # the graph is acyclic; this only guards a malformed one
        fact = self.fact(node, partition)
        found: Cause | None = None
        if fact is None or fact.state is not RunState.SUCCESS:
            for source in self.sources(node, partition):
                deeper = self.cause(*source)
                if deeper is not None:
                    found = Cause(deeper.node, deeper.partition, deeper.reason, (at, *deeper.chain))
                    break
            if found is None:
                reason = self._own_reason(node, partition, fact)
                found = Cause(node, partition, reason, (at,)) if reason is not None else None
        self._causes[at] = found
        return found

    def _own_reason(self, node: NodeId, partition: str, fact: RunFact | None) -> CauseReason | None:
        if fact is not None and fact.state is RunState.FAILED:
            return CauseReason.FAILED
        ledger = self.view.ledger.get((node, partition))
        if ledger is not None and ledger.status is TriggerStatus.ERROR:
            return CauseReason.INTENT_ERROR
        if node in self.paused:
            return CauseReason.PAUSED
        if node.instance in self.unreachable:
            return CauseReason.UNREACHABLE
        return None

    def eta(self, node: NodeId, partition: str) -> datetime | None:
        """Rule 4; None for a success without an end date (finished, time unknown)."""
        at = (node, partition)
        if at in self._etas:
            return self._etas[at]
        self._etas[at] = None
        fact = self.fact(node, partition)
        result: datetime | None
        if fact is not None and fact.state is RunState.SUCCESS:
            result = fact.end_date
        elif fact is not None and fact.state.active:
            result = max(self.now, (fact.start_date or self.now) + self.duration(node))
        else:
            spec = self.graph.dags.get(node)
            ready = self.now
            if spec is None or not spec.upstreams:
                ready = max(ready, window_end(spec.grid if spec is not None else None, partition))
            else:
                for source in self.sources(node, partition):
                    up = self.eta(*source)
                    if up is not None and up + self.latency > ready:
                        ready = up + self.latency
            result = ready + self.duration(node)
        self._etas[at] = result
        return result


def _partitions(graph: Graph, view: View, node: NodeId, now: datetime, horizon: timedelta) -> Sequence[str]:
    spec = graph.dags[node]
    if spec.grid is not None:
        return grid_partitions(spec.grid, now, horizon)
    near = {node, *spec.upstreams}
    return sorted(p for p, nodes in view.partitions.items() if not near.isdisjoint(nodes))


def deadline_states(
    graph: Graph,
    view: View,
    now: datetime,
    *,
    paused: Iterable[NodeId] = (),
    unreachable: Iterable[str] = (),
    latency: timedelta = DEFAULT_LATENCY,
    horizon: timedelta = DEFAULT_HORIZON,
    durations: Mapping[NodeId, float] | None = None,
    partitions: Iterable[str] | None = None,
) -> dict[tuple[NodeId, str], DeadlineStatus]:
    """The deadline status of every (DAG with an ``expected_by``, partition) in scope (rules 1-5); ``partitions``
    replaces rule 1's scope with these (``why`` about one partition, however old)."""
    targets = [node for node in graph.topo_order if graph.dags[node].expected_by is not None]
    if not targets:
        return {}
    if durations is None:
        durations = learned_durations(view, graph.dags)
    if partitions is not None:
        partitions = tuple(partitions)
    run = _Pass(graph, view, now, frozenset(paused), frozenset(unreachable), latency, durations)
    run.tainted = _tainted(graph, view, run.paused, run.unreachable)
    result: dict[tuple[NodeId, str], DeadlineStatus] = {}
    for node in targets:
        spec = graph.dags[node]
        rule = spec.expected_by
        assert rule is not None
        scope = _partitions(graph, view, node, now, horizon) if partitions is None else partitions
        for partition in scope:
            if rule.applies(partition):
                result[(node, partition)] = _status(run, node, partition, rule.deadline(spec.grid, partition),
                                                    timedelta(seconds=rule.warn))  # fmt: skip
    return result


def _tainted(graph: Graph, view: View, paused: frozenset[NodeId], unreachable: frozenset[str]) -> frozenset[NodeId]:
    """Every DAG rule 3 could find a cause at or above (see ``_Pass.tainted``)."""
    roots = {node for (node, _), fact in view.runs.items() if fact.state is RunState.FAILED}
    roots |= {node for (node, _), fact in view.ledger.items() if fact.status is TriggerStatus.ERROR}
    roots |= paused | {node for node in graph.dags if node.instance in unreachable}
    found = set(roots)
    for node in roots:
        if node in graph.dags:
            found |= graph.descendants(node)
    return frozenset(found)


def _status(run: _Pass, node: NodeId, partition: str, deadline: datetime, warn: timedelta) -> DeadlineStatus:
    fact = run.fact(node, partition)
    if fact is not None and fact.state is RunState.SUCCESS:
        end = fact.end_date
        if end is not None and end > deadline:
            lateness = (end - deadline).total_seconds()
            return DeadlineStatus(node, partition, DeadlineState.LATE, deadline, end, None, -lateness, lateness, True)
        slack = (deadline - end).total_seconds() if end is not None else 0.0
        return DeadlineStatus(node, partition, DeadlineState.ON_TIME, deadline, end, None, slack, succeeded=True)
    cause = run.cause(node, partition)
    if run.now > deadline:
        return DeadlineStatus(node, partition, DeadlineState.MISSED, deadline, None, cause,
                              (deadline - run.now).total_seconds())  # fmt: skip
    if cause is not None:
        return DeadlineStatus(node, partition, DeadlineState.BLOCKED, deadline, None, cause,
                              (deadline - run.now).total_seconds())  # fmt: skip
    eta = run.eta(node, partition) or run.now
    slack = (deadline - eta).total_seconds()
    state = DeadlineState.AT_RISK if eta > deadline - warn else DeadlineState.ON_TIME
    return DeadlineStatus(node, partition, state, deadline, eta, None, slack)


class DeadlineRecord(BaseModel):
    """Value of a transition key ``{prefix}/deadlines/{instance}/{dag_id}/{partition}`` (docs/keys.md): the last
    state recorded for this (DAG, partition), written by the leader by compare-and-swap (rule 6)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    state: DeadlineState
    deadline: datetime
    eta: datetime | None = None
    cause: str | None = None
    chain: str | None = None
    #: How many transitions this (DAG, partition) had: names the handler run (``late_run_id``), so completing a
    #: handler after a failover reuses the same run id and Airflow refuses a second run.
    sequence: int = 1
    changed_at: datetime
    #: The logical date of the handlers' runs for this transition, whole seconds, distinct from every other recorded
    #: transition's (Airflow allows one run per DAG and logical date); chosen when recorded, so a retry asks again.
    handler_date: datetime | None = None
    #: The handlers were triggered (or there are none); False: a transition recorded but not yet alerted.
    alerted: bool = False
    watcher: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    status: DeadlineStatus
    previous: DeadlineState
    sequence: int

    @property
    def alerts(self) -> bool:
        """Every state but ``on_time`` alerts (rule 6); a recovery is logged, not alerted."""
        return self.status.state is not DeadlineState.ON_TIME


def transitions(
    statuses: Mapping[tuple[NodeId, str], DeadlineStatus], recorded: Mapping[tuple[NodeId, str], DeadlineRecord]
) -> list[Transition]:
    """The statuses whose state differs from the recorded one (absent reads as ``on_time``), in key order."""
    found = []
    for at in sorted(statuses):
        status = statuses[at]
        record = recorded.get(at)
        previous = record.state if record is not None else DeadlineState.ON_TIME
        if status.state is not previous:
            found.append(Transition(status, previous, (record.sequence + 1) if record is not None else 1))
    return found


def late_run_id(node: NodeId, partition: str, sequence: int) -> str:
    """Deterministic run id of a late handler's run (one per transition), so a retried trigger is refused."""
    return f"coordinator_late__{node.instance}__{node.dag_id}__{partition}__{sequence}"
