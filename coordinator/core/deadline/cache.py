"""Incremental deadline passes: the leader's cache of every (DAG, partition) status, invalidated explicitly
(semantics `deadlines-judged`, "an incremental pass equals a full pass").

Level-triggered like a client-go informer cache: the cache holds one :class:`~.states.Judgement`
per (DAG with an ``expected_by``, partition) in scope and, per status, the instant up to which the clock alone cannot
change its state (``Judgement.stays_until``), in a heap. Nothing here reads a clock, does I/O or logs; ``now`` and
the changed keys are inputs.

Rules:
- **Rebuild and update.** :meth:`DeadlineCache.rebuild` judges everything (the same code as ``deadline_states``);
  :meth:`DeadlineCache.update` judges again only:
  a. the statuses the clock alone moved: one whose ``stays_until`` is before ``now`` is re-read from its judgement
     at ``now`` (``states``' **Known instants**: exactly what a full pass decides; nothing is recomputed from the view),
     then scheduled at its next instant;
  b. the grid points that entered ``[now - horizon, now]`` (new statuses); those that left it are dropped;
  c. for every (DAG, partition) whose run fact, task fact, ledger entry or backfill changed: the (descendant,
     partition it maps to) through the success edges (``states.fed_partitions``), walked in topological order,
     that have a status and whose inputs may have moved: what a dependent reads of a (DAG, partition) is its cause
     and, when it has none, its ETA (``states``' **Causes** and **ETA**); the walk goes on below a status only when its
     new judgement shows either changed (a judgement that shows no ETA, missed or new, counts as changed; a task
     deadline's judgement is its task's, not what a dependent reads: the walk always goes on below it), below a
     key without a status unless it is a success, and it judges neither a success nor a running or queued attempt
     that only ETAs reached (their own ETA comes from their own fact), as nothing they read moved; plus every
     (descendant, partition) an ungridded DAG gains (``states``' **Pure**: only from a key the view indexes);
  d. every open status of the DAGs that became or stopped being paused or unreachable and of everything below
     them; every status with a prediction (not blocked, not missed) of the DAGs whose learned duration changed and
     of everything below them;
  e. everything (a rebuild) when the change set is unknown (None: a snapshot, a relist, a moved retention floor),
     when ``now`` went back, or for a new graph, latency or horizon (a new cache).
- **Nothing else changes.** Nothing else can change: a status is a function of its own and its ancestors' facts through
  the mappings, their durations, the paused and unreachable sets and ``now`` (``states``' **States** to
  **Expected duration**), and (c) and (d) cover every one of those inputs; (a) covers ``now``. Where (c) stops, every
  input of the statuses below is what it was when they were judged (each cached judgement is a full pass's at the last
  update: the invariant this rule keeps).
- **Learned durations from facts.** Learned durations are kept per DAG from the facts
  (``states``' **Expected duration**, kept as ``learning``'s :class:`~.learning.Samples`): a success, a rerun or a
  deletion changes a DAG's duration only when its partition is among the DAG's latest ``LEARN_SAMPLES`` before or after.
  A deadline task's duration (``states``' **Task deadlines**) is learned again from its task facts whenever one of its
  DAG's keys changed, and a change counts as a changed duration (1d). The learned start offsets of the gridded roots
  (``start``'s **First source that knows** (a)) are kept the same way, from every scheduled run with a start, and a
  change counts as a changed duration (1d). The other start sources (timetables, Airflow versions) and the overdue grace
  are fixed for a cache, like the latency: a change of any is a new cache.
- **Transitions from what changed.** Transitions (:meth:`DeadlineCache.transitions`) compare with the recorded states
  only the statuses whose state changed or that entered the scope since the last call, the keys whose record changed,
  and those that differed last time; every other status equalled its record then and neither side moved, so the list
  equals ``deadlines.transitions`` over every status.
- **The clock's next move.** :meth:`DeadlineCache.next_instant` says when the clock alone next changes a state or
  brings a grid point into the horizon (the heap's top, the grids' next points), so the shell can requeue its pass at
  that instant instead of polling (time as a requeue).
- **Counts kept as statuses change.** The metric counts per (instance, dag, state) and the least slack of the open
  statuses are kept as statuses change (the slack through two heaps of ``Judgement.slack_terms``); an update reports
  only the counts that moved.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from coordinator.core.deadline.learning import Samples, learn_all, learned_task_durations, relearn, start_learners
from coordinator.core.deadline.records import DeadlineRecord, Transition
from coordinator.core.deadline.rules import ExpectedBy
from coordinator.core.deadline.start import START_GRACE, Timetable, start_offset
from coordinator.core.deadline.states import (
    DEFAULT_HORIZON,
    DEFAULT_LATENCY,
    DeadlineState,
    DeadlineStatus,
    Judgement,
    Judging,
    ancestors,
    fed_partitions,
    grid_partitions,
    judge,
    tainted_by,
    targets,
    task_targets,
    ungridded_scopes,
)
from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.model import PARTITION_FORMAT, NodeId, RunState, TriggerStatus, partition_datetime
from coordinator.core.view import RunFact, View

Key = tuple[NodeId, str]
#: (instance, dag, state) -> partitions: the ``coordinator_deadline_partitions`` gauge's labels and value.
Count = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class CacheUpdate:
    """What one :meth:`DeadlineCache.update` (or rebuild) did and what the metrics need."""

    full: bool
    #: Statuses judged from the view (**Rebuild and update** b-e) and statuses only the clock moved
    #: (**Rebuild and update** (a)).
    judged: int
    timed: int
    #: Statuses whose state changed, that entered or left the scope.
    changed: frozenset[Key]
    #: Full: every (instance, dag, state) count; otherwise only those that moved (0: none left).
    counts: tuple[Count, ...]
    #: The least slack (seconds) of the statuses not yet succeeded; None without any.
    min_slack: float | None


@dataclass(frozen=True, slots=True)
class _Target:
    rule: ExpectedBy
    grid: Grid | None
    warn: timedelta
    #: ``rule.deadlines(grid)``: the deadline by partition.
    deadlines: Mapping[str, datetime]


class DeadlineCache:
    """**Rebuild and update** to **Counts kept as statuses change** for one graph, latency, horizon and start sources (a
    change of any: a new cache)."""

    def __init__(
        self, graph: Graph, *, latency: timedelta = DEFAULT_LATENCY, horizon: timedelta = DEFAULT_HORIZON,
        majors: Mapping[str, int] | None = None, timetables: Mapping[NodeId, Timetable] | None = None,
        grace: timedelta = START_GRACE,
    ):  # fmt: skip
        self.graph = graph
        self.latency = latency
        self.horizon = horizon
        self.majors: Mapping[str, int] = dict(majors or {})
        self.timetables: Mapping[NodeId, Timetable] = dict(timetables or {})
        self.grace = grace
        self._targets: dict[NodeId, _Target] = {}
        self._by_grid: dict[Grid, list[NodeId]] = {}
        for node in targets(graph):
            spec = graph.dags[node]
            assert spec.expected_by is not None
            rule = spec.expected_by
            self._targets[node] = _Target(rule, spec.grid, timedelta(seconds=rule.warn), rule.deadlines(spec.grid))
            if spec.grid is not None:
                self._by_grid.setdefault(spec.grid, []).append(node)
        self._ungridded = frozenset(n for n, t in self._targets.items() if t.grid is None)
        # **Learned durations from facts**: only DAGs an ETA reads and whose duration is not fixed learn one.
        relevant = set(self._targets) | ancestors(graph, self._targets)
        self._learning = frozenset(n for n in relevant if _fixed(graph, n) is None)
        self._starting = start_learners(graph, relevant)
        #: Task deadlines (``states``' **Task deadlines**): the DAGs whose deadline task learns a duration from its own
        #: facts.
        on_task = task_targets(graph)
        self._tasks = {n: t for n, t in on_task.items() if _task_duration(graph, n) is None}
        #: Their judgements are the task's, while a dependent reads the DAG's cause and ETA: the walk of
        #: **Rebuild and update** (c) cannot stop at them on what their judgement shows.
        self._on_task = frozenset(on_task)
        self.built = False
        self.now: datetime | None = None
        self._reset(frozenset(), frozenset())

    def _reset(self, paused: frozenset[NodeId], unreachable: frozenset[str]) -> None:
        self._paused, self._unreachable = paused, unreachable
        self._entries: dict[Key, Judgement] = {}
        self._states: dict[Key, DeadlineState] = {}
        self._when: dict[Key, datetime] = {}
        # Heap items carry a unique sequence number after the time: many statuses share a deadline, and a tie must
        # never fall through to comparing the keys (NodeId's generated ordering: ~1 us per comparison).
        self._seq = itertools.count()
        self._heap: list[tuple[datetime, int, Key]] = []
        self._slack: dict[Key, tuple[datetime | None, timedelta | None]] = {}
        self._moving: list[tuple[datetime, int, Key]] = []  # slack = x - now
        self._fixed: list[tuple[timedelta, int, Key]] = []  # slack = c
        self._open: dict[NodeId, set[str]] = {}
        #: Every partition cached per DAG (open or final): escalation levels read their DAG's statuses from it.
        self._by_node: dict[NodeId, set[str]] = {}
        self._counts: dict[tuple[NodeId, DeadlineState], int] = {}
        self._moved_counts: set[tuple[NodeId, DeadlineState]] = set()
        self._changed: set[Key] = set()
        # state changed or new since the last transitions() (**Transitions from what changed**)
        self._pending: set[Key] = set()
        self._mismatch: set[Key] = set()
        self._points: dict[Grid, tuple[str, ...]] = {}
        self._ends: dict[Grid, str] = {}  # the end of the span the points were taken for (a minute)
        self._following: dict[Grid, datetime | None] = {}  # the first grid point after the last one cached
        self._scope: dict[NodeId, set[str]] = {}  # ungridded targets' partitions
        self._history: dict[NodeId, Samples] = {}
        self._durations: dict[NodeId, float] = {}
        self._start_history: dict[NodeId, Samples] = {}
        self._starts: dict[NodeId, float] = {}
        self._failing: dict[NodeId, set[str]] = {}
        self._tainted: frozenset[NodeId] = frozenset()
        self._task_durations: dict[NodeId, float] = {}

    # -- reading -------------------------------------------------------------------------------------------------

    def statuses(self) -> dict[Key, DeadlineStatus]:
        """Every status at the last update's ``now`` (reads them all: ``status``, tests)."""
        now = self.now
        assert now is not None
        return {at: judgement.status(now) for at, judgement in self._entries.items()}

    def statuses_of(self, nodes: Iterable[NodeId]) -> list[DeadlineStatus]:
        """The statuses of these DAGs' partitions at the last update's ``now`` (escalation levels read them every
        pass: a level's state moves with the clock at its own slack, which the heap of the DAG's ``warn`` does not
        track, and ``Judgement.status(now)`` is exact at any ``now`` while no input changes)."""
        now = self.now
        assert now is not None
        entries = self._entries
        return [entries[(node, p)].status(now) for node in nodes for p in sorted(self._by_node.get(node, ()))]

    @property
    def durations(self) -> Mapping[NodeId, float]:
        return self._durations

    def min_slack(self) -> float | None:
        """**Counts kept as statuses change**: ``min(x - now, c)`` over the open statuses, from the top of two lazily
        cleaned heaps."""
        now = self.now
        assert now is not None
        found: timedelta | None = None
        while self._moving and self._slack.get(self._moving[0][2], (None, None))[0] != self._moving[0][0]:
            heapq.heappop(self._moving)
        while self._fixed and self._slack.get(self._fixed[0][2], (None, None))[1] != self._fixed[0][0]:
            heapq.heappop(self._fixed)
        if self._moving:
            found = self._moving[0][0] - now
        if self._fixed and (found is None or self._fixed[0][0] < found):
            found = self._fixed[0][0]
        return found.total_seconds() if found is not None else None

    def transitions(
        self, recorded: Mapping[Key, DeadlineRecord], record_changes: Iterable[Key] = ()
    ) -> list[Transition]:
        """**Transitions from what changed**: ``deadlines.transitions(self.statuses(), recorded)``, reading only what
        moved."""
        now = self.now
        assert now is not None
        found: list[Transition] = []
        mismatch: set[Key] = set()
        for at in sorted(self._mismatch | self._pending | set(record_changes)):
            judgement = self._entries.get(at)
            if judgement is None:
                continue
            record = recorded.get(at)
            previous = record.state if record is not None else DeadlineState.ON_TIME
            if self._states[at] is not previous:
                mismatch.add(at)
                found.append(Transition(judgement.status(now), previous, (record.sequence + 1) if record else 1))
        self._mismatch = mismatch
        self._pending = set()
        return found

    def next_instant(self) -> datetime | None:
        """**The clock's next move**: the earliest instant after the last update at which the clock alone changes
        what a pass judges: a status's ``stays_until`` (its state changes right after it) or the next grid point that
        enters the horizon; None when nothing is left that the clock can move (a status that left the horizon is
        dropped at the next update, which changes no transition). Escalation levels move at their own slack, which this
        does not track."""
        heap, when = self._heap, self._when
        while heap and when.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # judged again since it was scheduled, or dropped
        found = [heap[0][0]] if heap else []
        found += [following for following in self._following.values() if following is not None]
        return min(found, default=None)

    # -- writing -------------------------------------------------------------------------------------------------

    def rebuild(
        self, view: View, now: datetime, *, paused: frozenset[NodeId] = frozenset(),
        unreachable: frozenset[str] = frozenset(),
    ) -> CacheUpdate:  # fmt: skip
        """Judge everything (**Rebuild and update** (e))."""
        self._reset(paused, unreachable)
        self.now = now
        for (node, partition), fact in view.runs.items():
            if fact.state is RunState.SUCCESS:
                if node in self._learning and fact.start_date is not None and fact.end_date is not None:
                    history = self._history.setdefault(node, Samples())
                    history.seconds[partition] = (fact.end_date - fact.start_date).total_seconds()
            elif fact.state is RunState.FAILED:
                self._failing.setdefault(node, set()).add(partition)
            if node in self._starting:
                offset = start_offset(fact, partition)
                if offset is not None:
                    self._start_history.setdefault(node, Samples()).seconds[partition] = offset
        learn_all(self._start_history, self._starts)
        for (node, partition), entry in view.ledger.items():
            if entry.status is TriggerStatus.ERROR:
                self._failing.setdefault(node, set()).add(partition)
        learn_all(self._history, self._durations)
        self._tainted = tainted_by(self.graph, self._roots())
        self._task_durations = learned_task_durations(view, self._tasks) if self._tasks else {}
        work: list[Key] = []
        for grid, nodes in self._by_grid.items():
            points = grid_partitions(grid, now, self.horizon)
            self._set_points(grid, points, _key(now.replace(second=0, microsecond=0)), None)
            work += [(n, p) for n in nodes for p in points if self._targets[n].rule.applies(p)]
        self._scope = ungridded_scopes(self.graph, view, self._ungridded)
        for node, scope in self._scope.items():
            work += [(node, p) for p in sorted(scope) if self._targets[node].rule.applies(p)]
        self._judge(self._judging(view, now), now, work)
        self.built = True
        counts = _labels((k, v) for k, v in self._counts.items() if v)
        return self._finish(True, len(work), 0, counts)

    def update(
        self, view: View, now: datetime, changed: Iterable[Key] | None, *,
        paused: frozenset[NodeId] = frozenset(), unreachable: frozenset[str] = frozenset(),
    ) -> CacheUpdate:  # fmt: skip
        """**Rebuild and update**: what ``changed`` (the (DAG, partition) keys whose facts changed since the last
        update; None: unknown) and the clock moved since the last update."""
        if not self.built or changed is None or self.now is None or now < self.now:
            return self.rebuild(view, now, paused=paused, unreachable=unreachable)
        keys = set(changed)
        roots_moved, slower = self._note_facts(view, keys)
        slower |= self._relearn_tasks(view, keys)
        # paused or unreachable moved: every open status below is judged again
        dirty_nodes = self._note_reachability(paused, unreachable)
        if roots_moved or dirty_nodes:
            self._tainted = tainted_by(self.graph, self._roots())
        work: set[Key] = set()
        self._roll(now, work)  # **Rebuild and update** (b)
        below = tainted_by(self.graph, dirty_nodes) if dirty_nodes else frozenset()
        for node in below:
            work.update((node, p) for p in self._open.get(node, ()))
        entries = self._entries
        for node in tainted_by(self.graph, slower).difference(below) if slower else ():
            # A blocked or missed status has no prediction: a duration cannot change it.
            work.update((node, p) for p in self._open.get(node, ()) if entries[(node, p)].eta is not None)
        if self._ungridded:  # **Rebuild and update** (c)' partitions ungridded DAGs gain: every key below, however far
            self._widen_ungridded(view, keys, work)
        self.now = now
        run = self._judging(view, now)
        # **Rebuild and update** (c): judges what it reaches and takes it out of work
        judged = self._spread(run, keys, work)
        self._judge(run, now, work)  # in any order: each judgement reads the view, never another's
        timed = self._admit_due(now)
        counts = _labels((k, self._counts.get(k, 0)) for k in self._moved_counts)
        return self._finish(False, judged + len(work), timed, counts)

    def _note_facts(self, view: View, keys: set[Key]) -> tuple[bool, set[NodeId]]:
        """The changed keys' facts: whether the set of failing roots moved, and the DAGs whose learned duration or
        start offset moved (**Rebuild and update** (d): only the statuses with a prediction below them move)."""
        roots_moved = False
        slower: set[NodeId] = set()
        for node, partition in keys:
            fact = view.runs.get((node, partition))
            entry = view.ledger.get((node, partition))
            failing = (fact is not None and fact.state is RunState.FAILED) or (
                entry is not None and entry.status is TriggerStatus.ERROR
            )
            failing_partitions = self._failing.get(node)
            if failing != (failing_partitions is not None and partition in failing_partitions):
                before = bool(failing_partitions)
                if failing:
                    self._failing.setdefault(node, set()).add(partition)
                else:
                    assert failing_partitions is not None
                    failing_partitions.discard(partition)
                roots_moved |= before != bool(self._failing.get(node))
            if node in self._learning and self._learn(node, partition, fact):
                slower.add(node)  # **Rebuild and update** (d)
            if node in self._starting:
                offset = start_offset(fact, partition) if fact is not None else None
                if relearn(self._start_history, self._starts, node, partition, offset):
                    # **Learned durations from facts**: a start offset moves the same predictions a duration does
                    slower.add(node)
        return roots_moved, slower

    def _relearn_tasks(self, view: View, keys: set[Key]) -> set[NodeId]:
        """**Learned durations from facts** for deadline tasks: few facts (only named tasks are recorded), learned
        again whole; the DAGs whose task duration moved."""
        touched = {node: self._tasks[node] for node, _ in keys if node in self._tasks}
        slower: set[NodeId] = set()
        if touched:
            learned = learned_task_durations(view, touched)
            for node in touched:
                value = learned.get(node)
                if value != self._task_durations.get(node):
                    if value is None:
                        self._task_durations.pop(node, None)
                    else:
                        self._task_durations[node] = value
                    slower.add(node)
        return slower

    def _note_reachability(self, paused: frozenset[NodeId], unreachable: frozenset[str]) -> set[NodeId]:
        """The DAGs whose paused or unreachable state moved since the last update (their roots move too)."""
        if paused == self._paused and unreachable == self._unreachable:
            return set()
        flipped = self._unreachable ^ unreachable
        moved = (paused ^ self._paused) | {n for n in self.graph.dags if n.instance in flipped}
        self._paused, self._unreachable = paused, unreachable
        return set(moved)

    def _widen_ungridded(self, view: View, keys: set[Key], work: set[Key]) -> None:
        """**Rebuild and update** (c): the partitions ungridded DAGs gain, every key below the changed ones, however
        far, added to ``work``."""
        entries = self._entries
        present = [at for at in keys if at[0] in view.partitions.get(at[1], ())]
        for at in _below(self.graph, present):
            node, partition = at
            if node in self._ungridded and at not in entries:
                scope = self._scope.setdefault(node, set())
                if partition not in scope:
                    scope.add(partition)
                    if self._targets[node].rule.applies(partition):
                        work.add(at)

    def _admit_due(self, now: datetime) -> int:
        """**Rebuild and update** (a): the statuses whose scheduled instant has passed, admitted; how many."""
        timed = 0
        heap, when = self._heap, self._when
        while heap and heap[0][0] < now:
            instant, _, at = heapq.heappop(heap)
            if when.get(at) != instant:
                continue  # judged again since it was scheduled, or dropped
            timed += 1
            self._admit(at, self._entries[at], now)
        return timed

    # -- internals -----------------------------------------------------------------------------------------------

    def _finish(self, full: bool, judged: int, timed: int, counts: tuple[Count, ...]) -> CacheUpdate:
        changed = frozenset(self._changed)
        self._changed = set()
        self._moved_counts = set()
        self._compact()
        return CacheUpdate(full, judged, timed, changed, counts, self.min_slack())

    def _roots(self) -> set[NodeId]:
        roots = {node for node, partitions in self._failing.items() if partitions}
        return roots | self._paused | {n for n in self.graph.dags if n.instance in self._unreachable}

    def _learn(self, node: NodeId, partition: str, fact: RunFact | None) -> bool:
        """**Learned durations from facts**: keep ``node``'s history current; True when its learned duration changed."""
        seconds: float | None = None
        if fact is not None and fact.state is RunState.SUCCESS and fact.start_date and fact.end_date:
            seconds = (fact.end_date - fact.start_date).total_seconds()
        return relearn(self._history, self._durations, node, partition, seconds)

    def _roll(self, now: datetime, work: set[Key]) -> None:
        """**Rebuild and update** (b): the grid points that entered the horizon are judged, those that left it dropped.
        The same points as ``grid_partitions`` (``[start, end]``, bounds rounded inwards to minutes), found by walking
        forward from the last point cached, so a pass that crosses no grid point reads no cron expression."""
        end = now.replace(second=0, microsecond=0)
        start = now - self.horizon
        floor = start.replace(second=0, microsecond=0)
        start_key = _key(floor if floor == start else floor + timedelta(minutes=1))
        end_key = _key(end)
        for grid, nodes in self._by_grid.items():
            old = self._points.get(grid, ())
            following = self._following.get(grid)
            if not old or following is None or start_key > self._ends[grid]:
                points = grid_partitions(grid, now, self.horizon)  # nothing to walk from, or a jump past it all
                following = None
            else:
                entered_points: list[str] = []
                while following <= end:
                    entered_points.append(_key(following))
                    following = grid.next(following)
                cut = bisect_left(old, start_key)
                if not entered_points and not cut:
                    self._ends[grid] = end_key
                    continue
                points = old[cut:] + tuple(entered_points)
            self._set_points(grid, points, end_key, following)
            if points == old:
                continue
            kept = set(points)
            left = [p for p in old if p not in kept]
            entered = kept.difference(old)
            for node in nodes:
                for partition in left:
                    self._drop((node, partition))
                rule = self._targets[node].rule
                work.update((node, p) for p in entered if rule.applies(p))

    def _set_points(self, grid: Grid, points: tuple[str, ...], end_key: str, following: datetime | None) -> None:
        self._points[grid] = points
        self._ends[grid] = end_key
        if following is None and points:
            following = grid.next(partition_datetime(points[-1]))
        self._following[grid] = following

    def _judging(self, view: View, now: datetime) -> Judging:
        run = Judging(self.graph, view, now, self._paused, self._unreachable, self.latency, self._durations)
        run.tainted = self._tainted
        run.starts, run.timetables, run.majors, run.grace = self._starts, self.timetables, self.majors, self.grace
        run.task_durations = self._task_durations
        return run

    def _judge(self, run: Judging, now: datetime, work: Iterable[Key]) -> None:
        entries = self._entries
        for at in work:
            self._judge_one(run, now, at, entries.get(at))

    def _judge_one(self, run: Judging, now: datetime, at: Key, cached: Judgement | None) -> Judgement:
        node, partition = at
        target = self._targets[node]
        # A deadline never changes for a (DAG, partition) (the graph is fixed for the cache): read it back, else
        # from the rule's table (``ExpectedBy.deadlines``: no hash of the rule and the grid per call).
        deadline = cached.deadline if cached is not None else target.deadlines[partition]
        judgement = judge(run, node, partition, deadline, target.warn)
        self._admit(at, judgement, now)
        return judgement

    def _spread(self, run: Judging, origins: set[Key], work: set[Key]) -> int:
        """**Rebuild and update** (c): from the keys whose facts changed, down the success edges in topological order,
        judging each status reached (and taking it out of ``work``). What a dependent reads of a (DAG, partition) is its
        cause and its ETA (``Judging``); each key reached carries which of the two may have changed above it, and the
        walk stops where neither did, at a success (it reads nothing above), and at a running or queued attempt when
        only ETAs changed above (its own ETA comes from its start). Returns how many statuses it judged."""
        graph, entries, runs, now, on_task = self.graph, self._entries, run.view.runs, run.now, self._on_task
        rank, order = graph.topo_index, graph.topo_order
        downstreams, mapped_targets = graph.downstreams, graph.mapped_targets
        # Walk items are (topological position, partition): ordered, and hashed without hashing a NodeId.
        heap = [(rank[node], partition) for node, partition in origins if node in rank]
        moved = dict.fromkeys(heap, _BOTH)  # item -> what may have changed above it (an origin: anything)
        starts = set(heap)
        heapq.heapify(heap)
        judged = 0
        while heap:
            item = heapq.heappop(heap)
            position, partition = item
            node = order[position]
            at = (node, partition)
            if item not in starts and at not in work:
                fact = runs.get(at)
                if fact is not None and (
                    fact.state is RunState.SUCCESS
                    or (fact.state.active and moved[item] == _ETA and node not in graph.scheduled)
                ):
                    # Nothing it reads moved: its status and what it gives below stay as they are (a scheduled
                    # dependent's running run may only wait for its permit: its ETA reads its upstreams').
                    continue
            before = entries.get(at)
            if before is not None or at in work:
                after = self._judge_one(run, now, at, before)
                work.discard(at)
                judged += 1
                gives = _moved(before, after) if node not in on_task else _BOTH
                if not gives:
                    continue
            else:
                gives = _BOTH
            mapped = mapped_targets.get(node, ())
            for child in downstreams.get(node, ()):
                targets_ = graph.target_partitions(child, node, partition) if child in mapped else (partition,)
                for target in targets_:
                    below = (rank[child], target)
                    below_moved = moved.get(below)
                    if below_moved is None:
                        moved[below] = gives
                        heapq.heappush(heap, below)
                    else:
                        moved[below] = below_moved | gives
        return judged

    def _admit(self, at: Key, judgement: Judgement, now: datetime) -> None:
        """Hold ``judgement`` for ``at``: its state, schedule, slack terms and counts."""
        node, partition = at
        self._entries[at] = judgement
        self._by_node.setdefault(node, set()).add(partition)
        states = self._states
        final = judgement.final
        if final is not None and at not in states:  # a new success (most of a rebuild): nothing to schedule
            states[at] = final.state
            self._count(node, final.state, 1)
            self._changed.add(at)
            self._pending.add(at)
            return
        state, until, terms = judgement.timing(now)
        old = states.get(at)
        if state is not old:
            states[at] = state
            if old is not None:
                self._count(node, old, -1)
            self._count(node, state, 1)
            self._changed.add(at)
            self._pending.add(at)
        when = self._when
        if until is None:
            when.pop(at, None)
        elif when.get(at) != until:
            when[at] = until
            heapq.heappush(self._heap, (until, next(self._seq), at))
        slack = self._slack
        moving, fixed = terms
        if moving is None and fixed is None:
            slack.pop(at, None)
        elif slack.get(at) != terms:
            slack[at] = terms
            if moving is not None:
                heapq.heappush(self._moving, (moving, next(self._seq), at))
            if fixed is not None:
                heapq.heappush(self._fixed, (fixed, next(self._seq), at))
        if final is None:
            self._open.setdefault(node, set()).add(partition)
        else:
            open_parts = self._open.get(node)
            if open_parts is not None:
                open_parts.discard(partition)

    def _drop(self, at: Key) -> None:
        judgement = self._entries.pop(at, None)
        if judgement is None:
            return
        self._count(at[0], self._states.pop(at), -1)
        self._changed.add(at)
        self._pending.discard(at)
        self._mismatch.discard(at)
        self._when.pop(at, None)
        self._slack.pop(at, None)
        open_parts = self._open.get(at[0])
        if open_parts is not None:
            open_parts.discard(at[1])
        kept = self._by_node.get(at[0])
        if kept is not None:
            kept.discard(at[1])

    def _count(self, node: NodeId, state: DeadlineState | None, delta: int) -> None:
        if state is None:
            return
        label = (node, state)
        self._counts[label] = self._counts.get(label, 0) + delta
        self._moved_counts.add(label)

    def _compact(self) -> None:
        """Lazily deleted heap entries are dropped once they outnumber the live ones (bounded memory)."""
        live = len(self._entries) + 1024
        if len(self._heap) > 2 * live:
            self._heap = [(t, next(self._seq), at) for at, t in self._when.items()]
            heapq.heapify(self._heap)
        if len(self._moving) + len(self._fixed) > 4 * live:
            self._moving = [(x, next(self._seq), at) for at, (x, _) in self._slack.items() if x is not None]
            self._fixed = [(c, next(self._seq), at) for at, (_, c) in self._slack.items() if c is not None]
            heapq.heapify(self._moving)
            heapq.heapify(self._fixed)


def _labels(counts: Iterable[tuple[tuple[NodeId, DeadlineState], int]]) -> tuple[Count, ...]:
    """The gauge's (instance, dag, state, partitions), sorted: labels are built only for what is reported."""
    return tuple(sorted((node.instance, node.dag_id, str(state), n) for (node, state), n in counts))


#: What may have changed of a (DAG, partition) for its dependents (**Rebuild and update** (c)): its cause, its ETA.
_CAUSE, _ETA = 1, 2
_BOTH = _CAUSE | _ETA


def _moved(before: Judgement | None, after: Judgement) -> int:
    """Which of what a dependent reads of a (DAG, partition) differ between its two judgements (``_CAUSE``,
    ``_ETA``), as far as they show: a judgement without an ETA (missed, or new) shows too little and counts as moved.
    A success has no cause and its end as its ETA; nobody reads the ETA of a key with a cause (its dependents are
    blocked by it too)."""
    if before is None:
        return _BOTH
    cause = after.cause if after.final is None else None
    moved = _CAUSE if (before.cause if before.final is None else None) != cause else 0
    if cause is not None:
        return moved
    if _shown_eta(before) != _shown_eta(after) or _shown_eta(after) is None:
        moved |= _ETA
    return moved


def _shown_eta(judgement: Judgement) -> tuple[bool, object] | None:
    if judgement.final is not None:
        return True, judgement.final.eta
    if judgement.cause is None and judgement.eta is not None:
        return False, judgement.eta
    return None


def _key(at: datetime) -> str:
    return at.strftime(PARTITION_FORMAT)


def _task_duration(graph: Graph, node: NodeId) -> int | None:
    rule = graph.dags[node].expected_by
    return rule.duration if rule is not None else None


def _fixed(graph: Graph, node: NodeId) -> int | None:
    spec = graph.dags.get(node)
    rule = spec.expected_by if spec is not None else None
    # A task deadline's duration is its task's (``states``' **Task deadlines**): the DAG's own is learned.
    return rule.duration if rule is not None and rule.task is None else None


def _below(graph: Graph, origins: Iterable[Key]) -> set[Key]:
    """``origins`` and every (DAG, partition) that needs one of them, transitively (**Rebuild and update** (c))."""
    seen = set(origins)
    stack = list(seen)
    while stack:
        for at in fed_partitions(graph, *stack.pop()):
            if at not in seen:
                seen.add(at)
                stack.append(at)
    return seen
