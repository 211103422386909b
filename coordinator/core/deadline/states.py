"""Deadlines: will each (DAG, partition) with an ``expected_by`` be on time, and if not, why
(semantics `deadlines-judged`).

Rules:
- **Pure**: :func:`deadline_states` takes the graph, the view, ``now`` and what the shell knows about Airflow (paused
  DAGs, unreachable instances) and returns one :class:`DeadlineStatus` per (DAG, partition). It never needs an Airflow
  run to exist: a gridded DAG's partitions come from its grid (the points in ``[now - horizon, now]``), an ungridded
  DAG's from the view: every partition where it or any ancestor has a fact, an ancestor's partition mapped down the
  edges to the DAG's (:func:`ungridded_scopes`; a failure two hops up a chain where nothing below it ran still gives the
  DAG that partition).
- **States**, first match wins: a success is ``on_time`` if it ended at or before the deadline, else ``late`` (by how
  much). It ended at its ``end_date``, else at the writer's ``updated_at`` (``RunFact.finished``: an outside writer that
  omits ``end_date`` had finished by then); a success with neither is ``on_time``: lateness cannot be proved. No success
  and the deadline has passed: ``missed``; a cause blocks it: ``blocked``; the predicted finish is after the deadline
  minus ``warn``: ``at_risk`` (its cause: the overdue root it waits for, if any, **ETA**); otherwise ``on_time``.
- **Causes.** A cause (``blocked``) is, along the success edges and through the grid mappings, the DEEPEST (DAG,
  partition) without a success that: failed (the latest attempt failed, so no retry is in flight), has an intent Airflow
  refused (a ledger entry in ``error``), is paused, or lives in an unreachable instance. Upstreams are searched before
  the DAG itself, so the cause is where the chain starts; ``chain`` lists the hops from the DAG to it.
- **ETA.** The predicted finish (ETA) of a (DAG, partition): its success's end; a running attempt's start
  (``start_date``, else the running state's ``updated_at``; without either: started now) plus the expected duration
  (never before ``now``); otherwise the latest ETA of the upstream partitions it needs (a gridded root: its predicted
  start, ``coordinator.core.deadline.start``: from its history, its timetable, its instance's Airflow version; an
  ungridded one: the partition), not before ``now``, plus the trigger latency (not for roots) and the expected duration.
  A gridded root without any fact whose start plus ``start.START_GRACE`` has passed is overdue, and so is every (DAG,
  partition) that waits for it without a fact of its own: an ``at_risk`` status names the earliest such root as its
  cause, ``has not started (due HH:MM, 5h late)``; being overdue alone changes no state (a day-old root with no run on a
  fresh install, the deadline weeks away, pages nobody), the ETA it pushes does. Task-level edges count as their whole
  DAG and gates (self-dependencies) are not predicted.
- **Expected duration**: a fixed ``duration``, else the learned one over the DAG's latest successes with a start and an
  end (``core.deadline.learning``: outliers dropped, a high percentile of the rest, too few samples learn nothing), else
  0.
- **Known instants.** The clock alone moves a status only at known instants: :func:`judge` decides **States**,
  **Causes** and **ETA** once as a :class:`Judgement`, whose ``status(now)`` is exactly what a pass at that later
  ``now`` returns while no input changes. The ETA is ``max(now + ahead, fixed)`` (:class:`Eta`), so ETA minus ``now``
  never grows: a success is final, a miss stays a miss, ``blocked`` and ``at_risk`` hold until the deadline, ``on_time``
  until ``deadline - warn - ahead`` (:meth:`Judgement.stays_until`). An overdue root changes an ``at_risk`` status's
  cause, not its state. ``coordinator.core.deadline.cache`` keeps passes incremental on this.
- **Task deadlines.** A task deadline (``expected_by.task``) is **States**, **Causes**, **ETA** and
  **Expected duration** on that task's state in the partition (the plugin records it: the graph names the task,
  ``task_facts``' **Names from the graph**): its success's end (else its ``updated_at``) decides ``on_time`` or ``late``
  though the DAG run still runs; its failure is the cause of ``blocked`` (``Cause.task``); a running task finishes at
  its start plus the task's expected duration (``duration``, else learned from the task's own successes,
  :func:`learned_task_durations`); the DAG's own duration, which its dependents' ETAs read, is then always learned
  (**Expected duration**). Without a task fact the DAG run stands in: its success (the task ended by then, or did not
  run), its causes, and its predicted start plus the task's duration instead of the DAG's (a running run: the task
  finishes at the run's start plus the task's duration at the earliest).
- **Scheduled dependents** (semantics `scheduled-permit`): a ``"runs": "scheduled"`` DAG's run that is running before
  any permit is granted for it only waits (semantics `permit-waiting-run`): it is predicted and judged as a triggered
  DAG's run not created yet (its upstreams' ETAs, their causes, an overdue root); once granted, its work starts at
  the later of its start and the grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from coordinator.core.deadline.eta import Cause, CauseReason, Eta, Overdue, PredictedStart
from coordinator.core.deadline.groups import group_blocked, group_eta
from coordinator.core.deadline.learning import (
    learned_durations,
    learned_starts,
    learned_task_durations,
    start_learners,
)
from coordinator.core.deadline.rules import window_end
from coordinator.core.deadline.start import START_GRACE, StartRule, Timetable, start_rule
from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.model import PARTITION_FORMAT, NodeId, RunState, TriggerStatus
from coordinator.core.view import RunFact, View

#: How far back a pass looks for gridded partitions: a day's partition with a next-day deadline stays in view.
DEFAULT_HORIZON = timedelta(days=2)
#: Seconds from an upstream's success to the dependent's run starting (the watcher's trigger plus Airflow's
#: scheduler loop): a minute is what the scenario tests and the demo stack measure with room to spare.
DEFAULT_LATENCY = timedelta(seconds=60)


class DeadlineState(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"
    MISSED = "missed"
    AT_RISK = "at_risk"
    BLOCKED = "blocked"


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
    #: The predicted start of the root that sets the ETA (**ETA**), and where that prediction came from.
    start: PredictedStart | None = None
    #: The task a task deadline is judged on (**Task deadlines**); None: the DAG run.
    task: str | None = None


_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class Judgement:
    """One (DAG, partition)'s status as a function of ``now`` while no input changes (**Known instants**): what
    **States**, **Causes** and **ETA** decided, without the parts that only the clock moves (slack, the ETA's ``now``
    floor, missed)."""

    node: NodeId
    partition: str
    deadline: datetime
    warn: timedelta
    #: The status of a success (``on_time`` or ``late`` for good): the clock changes nothing.
    final: DeadlineStatus | None = None
    cause: Cause | None = None
    eta: Eta | None = None
    #: **Task deadlines**: the task the status is judged on (shown by status and why).
    task: str | None = None

    def status(self, now: datetime) -> DeadlineStatus:
        """Exactly what **States** decides at ``now``."""
        if self.final is not None:
            return self.final
        deadline = self.deadline
        if now > deadline:
            return DeadlineStatus(self.node, self.partition, DeadlineState.MISSED, deadline, None, self.cause,
                                  (deadline - now).total_seconds(), task=self.task)  # fmt: skip
        if self.cause is not None:
            return DeadlineStatus(self.node, self.partition, DeadlineState.BLOCKED, deadline, None, self.cause,
                                  (deadline - now).total_seconds(), task=self.task)  # fmt: skip
        found = self.eta
        eta = (found.at(now) if found is not None else None) or now
        start = found.start if found is not None else None
        overdue = found.overdue if found is not None else None
        if eta <= deadline - self.warn:
            return DeadlineStatus(self.node, self.partition, DeadlineState.ON_TIME, deadline, eta, None,
                                  (deadline - eta).total_seconds(), start=start, task=self.task)  # fmt: skip
        # At risk: a root that should have started and has not is the story, not the ETA it pushes later (**ETA**).
        cause = overdue.cause(now) if overdue is not None and now > overdue.at else None
        return DeadlineStatus(self.node, self.partition, DeadlineState.AT_RISK, deadline, eta, cause,
                              (deadline - eta).total_seconds(), start=start, task=self.task)  # fmt: skip

    def state(self, now: datetime) -> DeadlineState:
        return self.timing(now)[0]

    def stays_until(self, now: datetime) -> datetime | None:
        """The last instant up to which the state at ``now`` stays the same with no new input (**Known instants**);
        None: forever. A success is final and a miss stays a miss; ``blocked`` and ``at_risk`` last until the deadline;
        ``on_time`` until ``deadline - warn - ahead``: the ETA minus ``now`` (``max(ahead, fixed - now)``) never
        grows as ``now`` advances, so the ETA first passes ``deadline - warn`` right after that instant."""
        return self.timing(now)[1]

    def slack_terms(self, now: datetime) -> tuple[datetime | None, timedelta | None]:
        """``(x, c)`` with ``slack = min(x - t, c)`` at every ``t`` from ``now`` to :meth:`stays_until` (a part left
        out when None), for an open partition: the metric's least slack is then kept without reading every status.
        (None, None) for a success."""
        return self.timing(now)[2]

    def timing(self, now: datetime) -> tuple[DeadlineState, datetime | None, tuple[datetime | None, timedelta | None]]:
        """``state``, ``stays_until`` and ``slack_terms`` at ``now`` from one reading of the ETA (the incremental
        pass asks all three of every status it holds)."""
        final = self.final
        if final is not None:
            return final.state, None, (None, None)
        deadline = self.deadline
        if now > deadline:
            return DeadlineState.MISSED, None, (deadline, None)
        if self.cause is not None:
            return DeadlineState.BLOCKED, deadline, (deadline, None)
        eta = self.eta
        ahead = eta.ahead if eta is not None else None
        fixed = eta.fixed if eta is not None else None
        if ahead is None and fixed is None:
            ahead = _ZERO  # no ETA reads as now (**States**)
        value = now + ahead if ahead is not None else None
        if fixed is not None and (value is None or fixed > value):
            value = fixed
        assert value is not None
        # deadline - max(t + ahead, fixed) = min((deadline - ahead) - t, deadline - fixed)
        terms = (deadline - ahead if ahead is not None else None, deadline - fixed if fixed is not None else None)
        if value > deadline - self.warn:
            return DeadlineState.AT_RISK, deadline, terms
        if ahead is None:
            return DeadlineState.ON_TIME, deadline, terms  # a fixed ETA: only the deadline changes the state
        return DeadlineState.ON_TIME, min(deadline, deadline - self.warn - ahead), terms


#: Memo sentinels of ``Judging`` (never returned: a cause and an ETA are compared by identity with them).
_UNSET_CAUSE = Cause(NodeId("", ""), "", CauseReason.FAILED)
_UNSET_ETA = Eta()


def task_targets(graph: Graph) -> dict[NodeId, str]:
    """The DAGs whose deadline names a task, with that task (**Task deadlines**)."""
    found = {}
    for node, spec in graph.dags.items():
        rule = spec.expected_by
        if rule is not None and rule.task is not None:
            found[node] = rule.task
    return found


def _key(at: datetime) -> str:
    return at.strftime(PARTITION_FORMAT)


def grid_partitions(grid: Grid, now: datetime, horizon: timedelta) -> tuple[str, ...]:
    """The points of ``grid`` in ``[now - horizon, now]`` (**Pure**), oldest first."""
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
class Judging:
    """One pass's reading of the view for **Causes**, **ETA** and **Expected duration**, memoised per (DAG, partition):
    a DAG's upstream partitions are shared by many of its dependents' partitions. Built per pass (full or incremental),
    never kept."""

    graph: Graph
    view: View
    now: datetime
    paused: frozenset[NodeId]
    unreachable: frozenset[str]
    latency: timedelta
    durations: Mapping[NodeId, float]
    #: The DAGs that can have a cause at all: those with a failed fact, a refused intent, paused or unreachable, and
    #: their descendants. Everything else skips **Causes**' search (nearly every DAG on a healthy day).
    tainted: frozenset[NodeId] = frozenset()
    #: **ETA**' start sources (``coordinator.core.deadline.start``): learned offsets (seconds), timetables seen,
    #: Airflow major version by instance; and how long a root may be late before it is overdue.
    starts: Mapping[NodeId, float] = field(default_factory=dict)
    timetables: Mapping[NodeId, Timetable] = field(default_factory=dict)
    majors: Mapping[str, int] = field(default_factory=dict)
    grace: timedelta = START_GRACE
    #: **Task deadlines**' learned durations of the deadline tasks, by DAG (seconds).
    task_durations: Mapping[NodeId, float] = field(default_factory=dict)
    _causes: dict[tuple[NodeId, str], Cause | None] = field(default_factory=dict)
    _rules: dict[NodeId, StartRule] = field(default_factory=dict)
    _etas: dict[tuple[NodeId, str], Eta | None] = field(default_factory=dict)
    _own: dict[NodeId, timedelta] = field(default_factory=dict)

    def duration(self, node: NodeId) -> timedelta:
        """**Expected duration**' expected duration, once per DAG and pass (every partition of a DAG asks for it)."""
        found = self._own.get(node)
        if found is None:
            spec = self.graph.dags.get(node)
            rule = spec.expected_by if spec is not None else None
            if rule is not None and rule.duration is not None and rule.task is None:  # a task's: not the DAG's
                found = timedelta(seconds=rule.duration)
            else:
                found = timedelta(seconds=self.durations.get(node, 0.0))
            self._own[node] = found
        return found

    def task_duration(self, node: NodeId) -> timedelta:
        """**Task deadlines**' expected duration of ``node``'s deadline task: declared, else learned, else 0."""
        spec = self.graph.dags.get(node)
        rule = spec.expected_by if spec is not None else None
        if rule is not None and rule.duration is not None:
            return timedelta(seconds=rule.duration)
        return timedelta(seconds=self.task_durations.get(node, 0.0))

    def start_rule(self, node: NodeId) -> StartRule:
        """**ETA**' start source for a root, once per DAG and pass."""
        found = self._rules.get(node)
        if found is None:
            found = self._rules[node] = start_rule(node, history=self.starts, timetables=self.timetables,
                                                   majors=self.majors)  # fmt: skip
        return found

    def fact(self, node: NodeId, partition: str) -> RunFact | None:
        return self.view.runs.get((node, partition))

    def sources(self, node: NodeId, partition: str) -> Iterable[tuple[NodeId, str]]:
        spec = self.graph.dags.get(node)
        if spec is None:
            return
        mapped = self.graph.mapped_edges.get(node, ())
        for up in spec.upstreams:
            if up not in mapped:  # equal dates: the common case needs no mapping (``grid``'s **Grids**)
                yield up, partition
                continue
            for source_partition in self.graph.source_partitions(node, up, partition):
                yield up, source_partition

    def source_etas(self, node: NodeId, partition: str) -> Iterator[Eta | None]:
        """The ETAs that bound ``node``'s start: each upstream partition's, a condition group's as one
        (``deadline.groups``: the need-th earliest member, bounded by a cutoff)."""
        spec = self.graph.dags.get(node)
        if spec is None or not spec.groups:
            yield from (self.eta(*source) for source in self.sources(node, partition))
            return
        grouped = {m[0] for g in spec.groups for m in g.members}
        yield from (self.eta(*source) for source in self.sources(node, partition) if source[0] not in grouped)
        for group in spec.groups:
            etas = {m: self._member_eta(node, m[0], partition) for m in group.members}
            yield group_eta(group, partition, etas, self.now)

    def _member_eta(self, node: NodeId, up: NodeId, partition: str) -> Eta | None:
        """A group member's ETA: the latest of the partitions it maps to (as an upstream's, ``sources``)."""
        found: Eta | None = None
        for q in self.graph.source_partitions(node, up, partition):
            eta = self.eta(up, q)
            if eta is not None and (found is None or (eta.at(self.now) or self.now) > (found.at(self.now) or self.now)):
                found = eta
        return found

    def blocking_sources(self, node: NodeId, partition: str) -> Iterator[tuple[NodeId, str]]:
        """The upstream partitions whose cause is ``node``'s (**Causes**): every one of a DAG without groups; of a
        group, only when too few members are left without a cause (``deadline.groups.group_blocked``)."""
        spec = self.graph.dags.get(node)
        if spec is None or not spec.groups:
            yield from self.sources(node, partition)
            return
        grouped = {m[0] for g in spec.groups for m in g.members}
        yield from (source for source in self.sources(node, partition) if source[0] not in grouped)
        for group in spec.groups:
            parts = {m: self.graph.source_partitions(node, m[0], partition) for m in group.members}
            blocked = {m for m, qs in parts.items() if any(self.cause(m[0], q) is not None for q in qs)}
            if group_blocked(group, blocked):
                yield from ((m[0], q) for m in group.members if m in blocked for q in parts[m])

    def waits_for_permit(self, node: NodeId, partition: str) -> bool:
        """**Scheduled dependents**: ``node``'s running run of ``partition`` only waits for its permit (none granted
        for it yet, semantics `permit-waiting-run`), so it is predicted as a triggered DAG's run not created yet."""
        if node not in self.graph.scheduled:
            return False
        ledger = self.view.ledger.get((node, partition))
        return ledger is None or not ledger.permit_granted

    def started(self, node: NodeId, partition: str, fact: RunFact) -> datetime | None:
        """When ``node``'s active run began its work: its start, or for a scheduled dependent whose run waited for
        the permit, the permit's grant when later (**Scheduled dependents**)."""
        started = fact.started
        if node in self.graph.scheduled:
            ledger = self.view.ledger.get((node, partition))
            granted = ledger.record.done_at if ledger is not None else None
            if granted is not None and (started is None or granted > started):
                return granted
        return started

    def cause(self, node: NodeId, partition: str) -> Cause | None:
        """**Causes**, memoised (a DAG's upstream partitions are shared by many of its dependents' partitions)."""
        if node not in self.tainted:
            return None
        at = (node, partition)
        causes = self._causes
        cached = causes.get(at, _UNSET_CAUSE)  # one lookup, not two: a pass asks this thousands of times
        if cached is not _UNSET_CAUSE:
            return cached
        causes[at] = None  # the graph is acyclic; this only guards a malformed one
        fact = self.view.runs.get(at)
        found: Cause | None = None
        if fact is None or fact.state is not RunState.SUCCESS:
            for source in self.blocking_sources(node, partition):
                deeper = self.cause(*source)
                if deeper is not None:
                    found = Cause(deeper.node, deeper.partition, deeper.reason, (at, *deeper.chain))
                    break
            if found is None:
                reason = self._own_reason(node, partition, fact)
                found = Cause(node, partition, reason, (at,)) if reason is not None else None
        causes[at] = found
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

    def eta(self, node: NodeId, partition: str) -> Eta | None:
        """**ETA** as a form of ``now`` (:class:`Eta`); None for a success without an end date (finished, time
        unknown)."""
        at = (node, partition)
        etas = self._etas
        cached = etas.get(at, _UNSET_ETA)
        if cached is not _UNSET_ETA:
            return cached
        etas[at] = None
        fact = self.view.runs.get(at)
        result: Eta | None
        if fact is not None and fact.state is RunState.SUCCESS:
            end = fact.end_date if fact.end_date is not None else fact.finished
            result = Eta(None, end) if end is not None else None
        elif fact is not None and fact.state.active and not self.waits_for_permit(node, partition):
            own = self.duration(node)
            started = self.started(node, partition, fact)
            result = Eta(_ZERO, started + own) if started is not None else Eta(own, None)
        else:
            if fact is not None and fact.state.active:
                fact = None  # **Scheduled dependents**: a run waiting for its permit has not started its work

            spec = self.graph.dags.get(node)
            ahead, fixed = _ZERO, None  # ready: not before now
            overdue: Overdue | None = None
            start: PredictedStart | None = None
            if spec is None or not spec.upstreams:
                grid = spec.grid if spec is not None else None
                if grid is None:
                    fixed = window_end(None, partition)
                else:
                    rule = self.start_rule(node)
                    fixed = rule.at(grid, partition)
                    start = PredictedStart(node, partition, fixed, rule)
                    if fact is None:  # a failed attempt has started (and is a cause)
                        overdue = Overdue(fixed + self.grace, fixed, (at,))
            else:
                latency = self.latency
                for up in self.source_etas(node, partition):
                    if up is None:
                        continue
                    if up.ahead is not None and up.ahead + latency > ahead:
                        ahead = up.ahead + latency
                    if up.fixed is not None and (fixed is None or up.fixed + latency > fixed):
                        fixed = up.fixed + latency
                        start = up.start
                    if up.overdue is not None and fact is None and (overdue is None or up.overdue.at < overdue.at):
                        overdue = Overdue(up.overdue.at, up.overdue.due, (at, *up.overdue.chain))
            own = self.duration(node)
            result = Eta(ahead + own, fixed + own if fixed is not None else None, overdue, start)
        etas[at] = result
        return result


def _partitions(graph: Graph, view: View, node: NodeId, now: datetime, horizon: timedelta,
                ungridded: Mapping[NodeId, set[str]]) -> Sequence[str]:  # fmt: skip
    spec = graph.dags[node]
    if spec.grid is not None:
        return grid_partitions(spec.grid, now, horizon)
    return sorted(ungridded.get(node, ()))


def ancestors(graph: Graph, nodes: Iterable[NodeId]) -> set[NodeId]:
    """Every DAG ``nodes`` reach through success edges upwards (their upstreams, theirs, ...), in one walk."""
    seen: set[NodeId] = set()
    stack = list(nodes)
    while stack:
        spec = graph.dags.get(stack.pop())
        for up in spec.upstreams if spec is not None else ():
            if up not in seen:
                seen.add(up)
                stack.append(up)
    return seen


def fed_partitions(graph: Graph, source: NodeId, partition: str) -> Iterable[tuple[NodeId, str]]:
    """The (DAG, partition) pairs that need ``source``'s ``partition`` directly, through the grid mappings."""
    mapped = graph.mapped_targets.get(source, ())
    for child in graph.downstreams.get(source, ()):
        if child in mapped:
            for target in graph.target_partitions(child, source, partition):
                yield child, target
        else:
            yield child, partition


def ungridded_scopes(graph: Graph, view: View, targets: Iterable[NodeId]) -> dict[NodeId, set[str]]:
    """**Pure** for the DAGs without a grid among ``targets``: the partitions where the DAG or any of its ancestors
    has a fact, each ancestor's partition mapped down the edges to the DAG's own (a failure two hops up an
    ungridded chain, where nothing below it ran, still gives the DAG that partition)."""
    wanted = [node for node in targets if graph.dags[node].grid is None]
    if not wanted:
        return {}
    relevant = set(wanted) | ancestors(graph, wanted)
    reach: dict[NodeId, set[str]] = {node: set() for node in relevant}
    for partition, nodes in view.partitions.items():
        for node in nodes:
            if node in reach:
                reach[node].add(partition)
    for node in graph.topo_order:  # upstreams first: each DAG's set is complete before it is pushed down
        if node not in relevant:
            continue
        mapped = graph.mapped_targets.get(node, ())
        for child in graph.downstreams.get(node, ()):
            if child not in relevant:
                continue
            if child in mapped:
                for partition in reach[node]:
                    reach[child].update(graph.target_partitions(child, node, partition))
            else:
                reach[child] |= reach[node]
    return {node: reach[node] for node in wanted}


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
    majors: Mapping[str, int] | None = None,
    timetables: Mapping[NodeId, Timetable] | None = None,
    grace: timedelta = START_GRACE,
) -> dict[tuple[NodeId, str], DeadlineStatus]:
    """The deadline status of every (DAG with an ``expected_by``, partition) in scope (**Pure** to
    **Expected duration**); ``partitions`` replaces **Pure**' scope with these (``why`` about one partition, however
    old)."""
    wanted = targets(graph)
    if not wanted:
        return {}
    if durations is None:
        durations = learned_durations(view, graph.dags)
    if partitions is not None:
        partitions = tuple(partitions)
    run = Judging(graph, view, now, frozenset(paused), frozenset(unreachable), latency, durations)
    run.tainted = _tainted(graph, view, run.paused, run.unreachable)
    run.starts = learned_starts(view, start_learners(graph, graph.dags))
    run.timetables, run.majors, run.grace = timetables or {}, majors or {}, grace
    run.task_durations = learned_task_durations(view, task_targets(graph))
    ungridded = ungridded_scopes(graph, view, wanted) if partitions is None else {}
    by_partition = view.runs.by_partition  # C-level lookups: one per status
    none: dict[NodeId, RunFact] = {}
    result: dict[tuple[NodeId, str], DeadlineStatus] = {}
    for node in wanted:
        spec = graph.dags[node]
        rule = spec.expected_by
        assert rule is not None
        warn = timedelta(seconds=rule.warn)
        table = rule.deadlines(spec.grid)
        scope = _partitions(graph, view, node, now, horizon, ungridded) if partitions is None else partitions
        for partition in scope:
            if rule.applies(partition):
                deadline = table[partition]
                fact = by_partition.get(partition, none).get(node)
                if rule.task is None and fact is not None and fact.state is RunState.SUCCESS:  # most: no judgement
                    result[(node, partition)] = succeeded(node, partition, deadline, fact)
                else:
                    result[(node, partition)] = judge(run, node, partition, deadline, warn).status(now)
    return result


def targets(graph: Graph) -> list[NodeId]:
    """The DAGs with an ``expected_by``, upstreams first."""
    return [node for node in graph.topo_order if graph.dags[node].expected_by is not None]


def _tainted(graph: Graph, view: View, paused: frozenset[NodeId], unreachable: frozenset[str]) -> frozenset[NodeId]:
    """Every DAG **Causes** could find a cause at or above (see ``Judging.tainted``)."""
    roots = {node for (node, _), fact in view.runs.items() if fact.state is RunState.FAILED}
    roots |= {node for (node, _), fact in view.ledger.items() if fact.status is TriggerStatus.ERROR}
    roots |= paused | {node for node in graph.dags if node.instance in unreachable}
    return tainted_by(graph, roots)


def tainted_by(graph: Graph, roots: Iterable[NodeId]) -> frozenset[NodeId]:
    """``roots`` and every DAG below them through success edges (one walk, each DAG visited once)."""
    found = set(roots)
    stack = [node for node in found if node in graph.dags]
    while stack:
        for child in graph.downstreams.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return frozenset(found)


def succeeded(node: NodeId, partition: str, deadline: datetime, fact: RunFact) -> DeadlineStatus:
    """**States** for a success: ``on_time`` or ``late`` for good."""
    end = fact.end_date
    if end is None:  # the property only where needed: a full pass reads ~150,000 successes' ends
        end = fact.finished
    if end is not None and end > deadline:
        lateness = (end - deadline).total_seconds()
        return DeadlineStatus(node, partition, DeadlineState.LATE, deadline, end, None, -lateness, lateness, True)
    slack = (deadline - end).total_seconds() if end is not None else 0.0
    return DeadlineStatus(node, partition, DeadlineState.ON_TIME, deadline, end, None, slack, succeeded=True)


def judge(run: Judging, node: NodeId, partition: str, deadline: datetime, warn: timedelta) -> Judgement:
    """**States**, **Causes** and **ETA** for one (DAG, partition), as a function of the clock (:class:`Judgement`);
    **Task deadlines** for a task deadline."""
    spec = run.graph.dags.get(node)
    task = spec.expected_by.task if spec is not None and spec.expected_by is not None else None
    if task is not None:
        return _judge_task(run, node, task, partition, deadline, warn)
    fact = run.view.runs.get((node, partition))
    if fact is not None and fact.state is RunState.SUCCESS:
        return Judgement(node, partition, deadline, warn, succeeded(node, partition, deadline, fact))
    cause = run.cause(node, partition)
    if cause is not None or run.now > deadline:  # blocked, or missed for good: no prediction needed
        return Judgement(node, partition, deadline, warn, None, cause)
    return Judgement(node, partition, deadline, warn, None, None, run.eta(node, partition))


def _judge_task(run: Judging, node: NodeId, task: str, partition: str, deadline: datetime,
                warn: timedelta) -> Judgement:  # fmt: skip
    """**Task deadlines**: the task's own fact first, then the DAG run standing in for it."""
    fact = run.view.tasks.get((node, task, partition))
    if fact is not None and fact.state is RunState.SUCCESS:
        done = replace(succeeded(node, partition, deadline, fact), task=task)
        return Judgement(node, partition, deadline, warn, done, task=task)
    if fact is not None and fact.state is RunState.FAILED:
        failed = Cause(node, partition, CauseReason.FAILED, ((node, partition),), task=task)
        return Judgement(node, partition, deadline, warn, None, failed, task=task)
    run_fact = run.view.runs.get((node, partition))
    if run_fact is not None and run_fact.state is RunState.SUCCESS:  # the task ended by then (or never ran)
        done = replace(succeeded(node, partition, deadline, run_fact), task=task)
        return Judgement(node, partition, deadline, warn, done, task=task)
    cause = run.cause(node, partition)
    if cause is not None or run.now > deadline:
        return Judgement(node, partition, deadline, warn, None, cause, task=task)
    own = run.task_duration(node)
    if fact is None and run_fact is not None and run_fact.state.active and not run.waits_for_permit(node, partition):
        fact = run_fact  # the run has started, its task not yet (as far as we know): the task starts no earlier
    if fact is not None:  # running (a task fact is running, success or failed)
        started = fact.started
        return Judgement(node, partition, deadline, warn, None, None,
                         Eta(_ZERO, started + own) if started is not None else Eta(own, None), task)  # fmt: skip
    dag = run.eta(node, partition)
    if dag is None:
        return Judgement(node, partition, deadline, warn, None, None, None, task)
    # The DAG's ETA ends with the DAG's own duration (**ETA**); the task's replaces it: ``max`` and ``+`` commute.
    shift = own - run.duration(node)
    ahead = dag.ahead + shift if dag.ahead is not None else None
    eta = Eta(ahead, dag.fixed + shift if dag.fixed is not None else None, dag.overdue, dag.start)
    return Judgement(node, partition, deadline, warn, None, None, eta, task)
