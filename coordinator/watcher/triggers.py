"""The trigger reconciler: what the watch marked as changed, planned by the one decision and, while leading, adopted,
counted and handed to the actions' controller (semantics `joins-per-partition` to `partition-grids` and
`trigger-budget`). The batch reconciler of the triggers' controller: its one worker takes every ready key as one pass
(planning costs per pass, not per key); the informer's changes add its keys (``setup``).

Rules (``watcher/service.py``'s **Only the leader acts** and **Nothing blocks the loop**, for the triggers):
- **Keys.** A pass takes keys: ``DagKey`` (a DAG's run state or ledger entry changed: only it and what depends on it are
  re-planned, ``planner.plan_changes``), ``PartitionKey`` (a backfill: the whole partition), ``AllPartitions`` (start,
  graph, activation, resync, leadership, a failed pass). The actions a pass decides are keys of the actions' controller
  (``watcher/actuator.py``); a pass as a whole that fails (etcd trouble while adopting) is retried as ``AllPartitions``
  after a backoff, and a pass that planned every partition queues the next resync.
- **Leading and warm work.** Leading: adopt the graph first (``ensure_adopted``: the executor's fenced write, seen back
  through the informer's watch before the pass plans with it, or the first adoption held, semantics `first-adoption`),
  plan, count the new triggers in the budget (``watcher/budget.py``: a
  trigger whose count could not be recorded comes back through the queue), submit to the actuator. A standby plans
  without acting and keeps the keys its passes found due (warm work): on taking the lead it plans those first
  (``take_warm_work``), on its own view, and every partition ``WARM_FULL_PASS_DELAY_S`` later, so a takeover costs one
  lease expiry, not a whole plan, before the next trigger.
- **Sweep.** Every partition, in the watcher's loop, is a sweep: ``AllPartitions`` starts one (and starts over one under
  way), and each turn of the queue plans its next slice of about ``SWEEP_SLICE_FACTS`` facts, newest partitions first,
  submits what that slice found, and queues ``NextSlice`` behind whatever the watch brought meanwhile. So an event waits
  for one slice, never for the whole plan of a big store, and the newest partitions' triggers go out first. The result
  is the full pass's: a slice plans its partitions whole at the view's current revision, and a change to a partition
  already planned reaches the queue as its own key (level-triggered). A sweep ends with the full pass's line
  (``dirty=all``); it counts as the term's full pass (**Start and settle**) only when every slice was planned leading in
  this term. A one-shot pass (``reconcile``) plans every partition at once. Within a pass, planning yields to the event
  loop every ``PLAN_SLICE_FACTS`` facts, with the view held still (``view_lock``) so the pass sees one revision.
- **One line per pass.** One structured log line per pass: revision, dirty partitions, actions, errors (a sweep's slice
  that found nothing to do at DEBUG, ``sweep_left=`` partitions still to plan), and one per sweep that ends
  (``dirty=all``, ``slices=``, ``sweep_ms=``).
- **Holds.** While leading, an action whose DAG and partition an operator's standing hold covers (``core/holds.py``)
  is neither counted nor submitted; it is logged once per key and hold (``hold.held``), counted in
  ``coordinator_held_actions``, and its key planned again when a hold changes or expires (``_hold_back``).
- **Start and settle.** A start plans first what changed after the plan checkpoint (semantics `checkpoint-first`,
  ``core/first_work.py``), then every partition ``WARM_FULL_PASS_DELAY_S`` later (``start_work``; the same for a new
  leader without warm work). The leader's work is settled through the revision of its last pass (``settled_through``,
  which the checkpoint job records) when, in this term, a full pass has run, no sweep is under way and nothing waits or
  runs for a DAG, a partition or a failed pass: no key dirty, no action in flight or waiting out an error delay, no
  withheld trigger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coordinator.core.actions import Action, Plan, Resume, Trigger
from coordinator.core.activation import dump_activation
from coordinator.core.adoption import FirstAdoption, HistoryChoice, is_first_adoption
from coordinator.core.decide import Adoption, Decision, adoption_for, decide
from coordinator.core.first_work import first_work
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.planner import next_cutoff, partitions_to_plan
from coordinator.core.view import ALL, View
from coordinator.errors import CoordinatorError, LeadershipLost, StoreError, WritesRefused
from coordinator.informer import Changes
from coordinator.informer.holds import HoldIndex
from coordinator.informer.retention import RetentionTracker
from coordinator.manager import Controller, Manager, Result, Watch
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.budget import TriggerBudget
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor
from coordinator.watcher.handles import ACTUATOR, TRIGGERS
from coordinator.watcher.keys import AllPartitions, DagKey, NextSlice, PartitionKey, TriggerKey

log = logging.getLogger(__name__)

#: **Sweep**: a full pass plans this many facts (about 30-60 ms) between two yields to the event loop: on a big store a
#: pass takes seconds, and the lease keepalive (leader TTL 10 s), the watch and the probes must not wait for it.
PLAN_SLICE_FACTS = 5000
#: **Leading and warm work**: a new leader's full pass waits this long after its warm work (and whatever events arrive
#: meanwhile), so that a big store's whole plan (seconds) does not stand between a takeover and the triggers already
#: known due.
WARM_FULL_PASS_DELAY_S = 5.0

#: **Sweep**: a sweep plans about this many facts in one turn of the queue (tens of milliseconds), then lets the view
#: go: an event waits for at most one slice, and the newest partitions' triggers go out after the first slice, not
#: after the whole estate's plan (seconds at a million facts).
SWEEP_SLICE_FACTS = 20000
#: How long a pass waits for its own adoption to come back through the informer's watch (milliseconds when the watch
#: follows the store); longer means the watch is stuck, and the pass fails and is retried whole.
ADOPTION_SEEN_S = 10.0


@dataclass
class _Sweep:
    """**Sweep**: a plan of every partition under way in the watcher's loop, a slice per turn of the queue."""

    #: The partitions not planned yet, oldest first: slices are taken from the end, so the newest (where a start's or
    #: a resync's due work almost always is) go first.
    todo: list[str]
    started: float
    partitions: int = 0
    slices: int = 0
    actions: int = 0
    triggers: int = 0
    resumes: int = 0
    submitted: int = 0
    plan_s: float = 0.0
    #: Every slice so far planned while leading in this term (the sweep is then this term's full pass,
    #: **Start and settle**), or none (its due keys are then the standby's warm work, **Leading and warm work**).
    led: bool = True
    standby: bool = True
    #: A standby's due keys since the sweep began: its slices' and the passes' between them (**Leading and warm work**).
    due: set[DagKey] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.partitions = len(self.todo)

    def take(self, facts: Mapping[str, Collection[NodeId]]) -> list[str]:
        """The next slice: the newest partitions left, about ``SWEEP_SLICE_FACTS`` facts (``facts``: the view's
        nodes per partition); empty once every partition is taken."""
        taken: list[str] = []
        size = 0
        while self.todo and size < SWEEP_SLICE_FACTS:
            partition = self.todo.pop()
            taken.append(partition)
            size += len(facts.get(partition, ())) or 1
        return taken

    def add(self, result: Plan, triggers: int, resumes: int, submitted: int, plan_s: float, *, leading: bool) -> None:
        """A pass that planned one of its slices did ``result``."""
        self.slices += 1
        self.actions += len(result.actions)
        self.triggers += triggers
        self.resumes += resumes
        self.submitted += submitted
        self.plan_s += plan_s
        self.led = self.led and leading
        self.standby = self.standby and not leading


@dataclass
class TriggerReconciler:
    """**Keys**, **Leading and warm work**, **Sweep** and **One line per pass**, given only what they need (never the
    watcher)."""

    view: View
    #: **Sweep**: held while a pass plans; the informer applies watch batches under it.
    view_lock: asyncio.Lock
    #: The graph in force (reloaded while the watcher runs).
    graph: Callable[[], Graph]
    #: Semantics `retention-retires`: the floor's retirement of old partitions, kept in event order with the view.
    retention: RetentionTracker
    #: The adoption's fenced write (**Leading and warm work**).
    executor: Executor
    actuator: Actuator
    budget: TriggerBudget
    #: Whether this watcher leads now (the election's local view of its lease).
    leading: Callable[[], bool]
    #: The configured Airflow instances (the budget's metric reports each).
    instances: Collection[str]
    watcher_id: str
    #: Semantics `first-adoption`: how a first adoption treats the history already in etcd, and its flood guard.
    history: HistoryChoice
    first_start_limit: int
    #: A withheld trigger (its count could not be recorded) comes back after at most this long.
    error_retry_s: float
    passes: int = 0
    #: The last first-adoption decision of this process (reported by reconcile), and the digest of the graph
    #: whose first adoption is held (semantics `adoption-flood-guard`), so that incremental passes do not re-count the
    #: whole history.
    first: FirstAdoption | None = None
    held: str | None = None
    #: The warm work (**Leading and warm work**): the (DAG, partition) keys this process's standby passes found
    #: something to do for since its last full pass. A new leader plans these first, then everything.
    standby_due: set[DagKey] = field(default_factory=set)
    #: Whether this process has planned every partition as a standby: only then is its warm work complete.
    standby_warm: bool = False
    #: **Start and settle**: a full pass has run in this term, and the revision of the last pass as leader.
    led_full_pass: bool = False
    planned_revision: int = 0
    #: **Sweep**: the sweep over every partition under way in the watcher's loop, if any.
    sweep: _Sweep | None = None
    #: **Keys**: every partition is planned again this long after a pass that planned them all.
    resync_s: float = 300.0
    #: Told the seconds each pass of the controller took (the metric ``coordinator_reconcile_seconds``).
    on_pass: Callable[[float], None] = lambda seconds: None
    #: **Holds** (``core/holds.py``): the operators' holds, and told how many keys they keep back after each leading
    #: pass (the metric ``coordinator_held_actions``).
    holds: HoldIndex | None = None
    on_held: Callable[[int], None] = lambda count: None
    #: **Holds**: each (DAG, partition) whose action a hold kept back, and the hold's id (logged once per key and hold).
    held_keys: dict[DagKey, str] = field(default_factory=dict)
    #: The triggers' controller (its queue holds the keys of **Keys**).
    controller: Controller[TriggerKey] = field(init=False, repr=False)
    #: How many partitions the view knew at the last look for a cutoff (``_next_cutoff``).
    _cutoff_partitions: int = field(default=-1, init=False, repr=False)
    #: What this pass asks for keys besides its own (the next slice, a withheld trigger): settled with the pass.
    _then: dict[TriggerKey, Result] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.controller = Controller("triggers", self, idle_s=2.0)

    async def reconcile_batch(self, keys: list[TriggerKey], now: datetime) -> dict[TriggerKey, Result]:
        """The controller's pass (**Keys**, **Leading and warm work**, **Sweep** and **One line per pass**): a sweep; a
        failed pass is retried whole after a backoff; a pass that planned every partition queues the next resync."""
        started = time.perf_counter()
        try:
            await self.plan_keys(keys, act=True, sweep=True)
        except CoordinatorError as exc:
            # etcd trouble while adopting the graph: the view stays; everything is re-planned after a backoff.
            self._then.clear()
            level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING  # see the campaign
            log.log(level, "reconcile.failed error=%s retry_in_s=%.1f", exc,
                    self.controller.queue.backoff(AllPartitions))  # fmt: skip
            return {AllPartitions: Result(retry=True)}
        finally:
            self.on_pass(time.perf_counter() - started)
        results = self._take_then()
        if AllPartitions in keys:
            results[AllPartitions] = Result(requeue_after=self.resync_s)  # counted from this full pass
        cutoff = self._next_cutoff(now, full=AllPartitions in keys)
        if cutoff is not None:
            # Time as a requeue (semantics `group-cutoff`): past a cutoff the plan changes with nothing written, so
            # every partition is planned again then (the earliest delay of a key wins).
            later = results.get(AllPartitions)
            delay = cutoff if later is None or later.requeue_after is None else min(cutoff, later.requeue_after)
            results[AllPartitions] = Result(requeue_after=delay)
        return results

    def _next_cutoff(self, now: datetime, *, full: bool) -> float | None:
        """Seconds to the next condition-group cutoff of a known partition, looked up when the graph has cutoffs and
        a pass planned everything or the view gained partitions since the last look (not at every pass: the watch
        brings hundreds of passes a second)."""
        graph = self.graph()
        if not graph.cutoff_groups:
            return None
        known = len(self.view.partitions)
        if not full and known == self._cutoff_partitions:
            return None
        self._cutoff_partitions = known
        at = next_cutoff(graph, self.view, now)
        return None if at is None else max(0.0, (at - now).total_seconds())

    async def reconcile(self, keys: list[TriggerKey], *, act: bool = True, sweep: bool = False) -> Plan:
        """A pass outside the controller's worker (a one-shot ``reconcile``, a test): ``keys`` taken from the
        controller's queue are settled as its worker would settle them."""
        try:
            plan = await self.plan_keys(keys, act=act, sweep=sweep)
        except BaseException:
            self._then.clear()
            self.controller.settle(keys, {})
            raise
        self.controller.settle(keys, self._take_then())
        return plan

    def _take_then(self) -> dict[TriggerKey, Result]:
        then, self._then = self._then, {}
        return then

    async def plan_keys(self, keys: list[TriggerKey], *, act: bool = True, sweep: bool = False) -> Plan:
        """**Keys**, **Leading and warm work**, **Sweep** and **One line per pass**: plan ``keys`` and, when leading
        (and ``act``), adopt, count and submit; one log line.

        ``sweep`` (the watcher's loop): ``AllPartitions`` starts a sweep, planned a slice per turn of the queue
        (**Sweep**); without it (a one-shot pass) every partition is planned in this pass."""
        everything = next_slice = False
        dirty: set[str] = set()
        changed: dict[str, set[NodeId]] = {}
        for key in keys:
            if isinstance(key, DagKey):
                changed.setdefault(key.partition, set()).add(key.node)
            elif isinstance(key, PartitionKey):
                dirty.add(key.partition)
            elif key is AllPartitions:
                everything = True
            elif key is NextSlice:
                next_slice = True
        if keys == [NextSlice] and self.sweep is None:
            return Plan(self.view.revision, ())  # the sweep it belonged to was started over or dropped
        leading = act and self.leading()
        sliced: list[str] | None = None  # the sweep's slice this pass plans (**Sweep**)
        try:
            graph = self.graph()
            if leading:
                await self.ensure_adopted(graph, full=everything)
            async with self.view_lock:  # the view holds still while planning yields (**Sweep**)
                started = time.perf_counter()
                if everything and sweep:  # a new sweep replaces one under way: it plans everything again
                    self.sweep = _Sweep(partitions_to_plan(graph, self.view), started)
                if self.sweep is not None and sweep and (everything or next_slice):
                    sliced = self.sweep.take(self.view.partitions)
                whole_parts = dirty.union(sliced or ())
                partitions: Iterable[str] | None = None if everything and not sweep else whole_parts
                # No verdicts: nothing here reads them; building them for every DAG made a pass cost the whole graph.
                whole = await self._plan_whole(graph, partitions) if partitions is None or whole_parts else None
                rest = {} if partitions is None else {p: nodes for p, nodes in changed.items() if p not in whole_parts}
                # A change in a partition planned whole can still map to OTHER partitions (partition grids):
                # plan_changes follows it there and skips the partitions `whole` already covered.
                mapped = (
                    {p: changed[p] for p in changed.keys() & whole_parts} if graph.mapped_edges and partitions else {}
                )
                parts = self._decide(graph, changed=rest | mapped, skip=whole_parts).plan if rest or mapped else None
                actions = (whole.actions if whole else ()) + (parts.actions if parts else ())
                result = Plan(self.view.revision, actions)
                plan_s = time.perf_counter() - started
        except BaseException:
            self.sweep = None  # a failed pass is retried as a whole (``AllPartitions``): a new sweep
            raise
        submitted = 0
        if not leading and act:
            self._remember_due(result, full=partitions is None)
        if leading:
            result = self._hold_back(graph, result)
            result = await self._within_budget(result)
            # An action the actuator does not start (one for that DAG and partition is in flight, or waits out an
            # error delay) is planned again once that is over (``watcher/actuator.py``'s **One action per key**).
            revision = result.revision
            submitted = sum(self.actuator.submit(action, view_revision=revision) for action in result.actions)
            self.planned_revision = revision  # **Start and settle**
            self.led_full_pass = self.led_full_pass or partitions is None
        self.passes += 1
        triggers = sum(isinstance(a, Trigger) for a in result.actions)
        resumes = sum(isinstance(a, Resume) for a in result.actions)
        log.log(
            logging.DEBUG if sliced is not None and not result.actions else logging.INFO,
            "reconcile revision=%d dirty=%s partitions=%d actions=%d triggers=%d resumes=%d submitted=%d "
            "in_flight=%d errors=%d leader=%s plan_ms=%.1f%s",
            result.revision, "all" if partitions is None else len(whole_parts | rest.keys()),
            len(self.view.partitions) if partitions is None else len(whole_parts | rest.keys()), len(result.actions),
            triggers, resumes, submitted, self.executor.busy, self.actuator.outcome.errors, leading, plan_s * 1000,
            "" if sliced is None or self.sweep is None else f" sweep_left={len(self.sweep.todo)}",
        )  # fmt: skip
        if sliced is not None and self.sweep is not None:
            self._swept(self.sweep, result, triggers, resumes, submitted, plan_s, leading=leading)
        return result

    def _swept(
        self, sweep: _Sweep, result: Plan, triggers: int, resumes: int, submitted: int, plan_s: float, *, leading: bool
    ) -> None:
        """**Sweep**: one more slice of ``sweep`` planned in a pass that did ``result``; the next one queued behind
        whatever the watch brought meanwhile, or the sweep ended with the full pass's line."""
        sweep.add(result, triggers, resumes, submitted, plan_s, leading=leading)
        if sweep.todo:
            self._then[NextSlice] = Result(requeue_after=0.0)
            return
        self.sweep = None
        if sweep.led:
            self.led_full_pass = True  # **Start and settle**: every slice planned while leading in this term
        if sweep.standby:
            # **Leading and warm work**: every partition planned as a standby
            self.standby_due, self.standby_warm = sweep.due, True
        log.info(
            "reconcile revision=%d dirty=all partitions=%d actions=%d triggers=%d resumes=%d submitted=%d "
            "in_flight=%d errors=%d leader=%s plan_ms=%.1f slices=%d sweep_ms=%.1f",
            result.revision, sweep.partitions, sweep.actions, sweep.triggers, sweep.resumes, sweep.submitted,
            self.executor.busy, self.actuator.outcome.errors, sweep.led, sweep.plan_s * 1000, sweep.slices,
            (time.perf_counter() - sweep.started) * 1000,
        )  # fmt: skip

    def _hold_back(self, graph: Graph, result: Plan) -> Plan:
        """**Holds** (``core/holds.py``): the pass's actions whose DAG and partition no standing hold covers.
        A held action is not submitted (nor counted in the budget); its key is remembered, logged once per hold, and
        planned again when a hold changes (``setup``'s interest) or at the hold's expiry, so a release
        starts each held run once: the planner decides it again then, on the facts of that moment. A resume that only
        confirms a run already seen (``observed``) calls nobody and is never held."""
        if self.holds is None:
            return result
        now = datetime.now(UTC)
        holds = self.holds.hold_set(graph, now)
        kept: list[Action] = []
        for action in result.actions:
            key = DagKey(action.node, action.partition)
            hold = None
            if holds and not (isinstance(action, Resume) and action.observed):
                hold = holds.held_by(action.node, action.partition)
            if hold is None:
                kept.append(action)
                self.held_keys.pop(key, None)
                continue
            if self.held_keys.get(key) != hold.id:
                log.info("hold.held dag=%s partition=%s hold=%s by=%s reason=%r", action.node.qualified,
                         action.partition, hold.id, hold.by, hold.reason)  # fmt: skip
                self.held_keys[key] = hold.id
            if hold.until is not None:  # time as a requeue: the key is planned again when the hold expires
                self._then[key] = Result(requeue_after=max(0.0, (hold.until - now).total_seconds()))
        self.on_held(len(self.held_keys))
        if len(kept) == len(result.actions):
            return result
        return Plan(result.revision, tuple(kept))

    def held_again(self) -> list[DagKey]:
        """**Holds**: the keys a hold kept back, to plan again now that a hold changed (each is held again, or
        starts)."""
        return sorted(self.held_keys, key=lambda k: (k.partition, k.node.qualified))

    async def _within_budget(self, result: Plan) -> Plan:
        """Semantics `trigger-budget` (``watcher/budget.py``): the pass's actions the trigger budget lets through, each
        instance's count and any hold recorded in etcd first. A trigger whose count could not be recorded is not
        submitted; its DAG and partition come back through the queue to be judged again."""
        # Only what the actuator would start counts: a trigger planned again while its attempt is in flight goes
        # to submit as before (refused there, and re-planned when the attempt ends).
        repeats = {id(a) for a in result.actions if not self.actuator.can_start(a, view_revision=result.revision)}
        startable = Plan(result.revision, tuple(a for a in result.actions if id(a) not in repeats))
        admitted = await self.budget.admit(
            startable,
            self.view.budgets,
            self.instances,
            self.graph(),
            self.view.backfills.keys(),
            self.view.run_backfills.keys(),
        )
        for trigger in admitted.withheld:
            self._then[DagKey(trigger.node, trigger.partition)] = Result(retry=True, retry_max_s=self.error_retry_s)
        passed = {id(a) for a in admitted.plan.actions} | repeats
        return Plan(result.revision, tuple(a for a in result.actions if id(a) in passed))

    async def _plan_whole(self, graph: Graph, partitions: Iterable[str] | None) -> Plan:
        """``plan`` of ``partitions`` (all when None) in slices of about PLAN_SLICE_FACTS facts, yielding to the event
        loop between them (**Sweep**). Same actions in the same order: partitions are planned independently, and through
        partition grids a slice only re-judges what another slice judged too."""
        parts = sorted(set(partitions)) if partitions is not None else partitions_to_plan(graph, self.view)
        actions: list[Action] = []
        chunk: list[str] = []
        size = 0
        for index, partition in enumerate(parts):
            chunk.append(partition)
            size += len(self.view.partitions.get(partition, ())) or 1
            if size >= PLAN_SLICE_FACTS or index == len(parts) - 1:
                actions += self._decide(graph, chunk).plan.actions
                chunk, size = [], 0
                await asyncio.sleep(0)
        return Plan(self.view.revision, tuple(actions))

    def _decide(
        self,
        graph: Graph,
        partitions: Iterable[str] | None = None,
        *,
        changed: dict[str, set[NodeId]] | None = None,
        skip: Iterable[str] = (),
    ) -> Decision:
        """The one decision (``core/decide.py``) against what ``ensure_adopted`` left in the view (the activation it
        wrote, or none while a first adoption is held), retention from the view's floor: actions only."""
        adopted, memo = Adoption(self.view.activation), self.retention.retirement(graph)
        return decide(graph, self.view, partitions, now=datetime.now(UTC), adoption=adopted, explain=False,
                      changed=changed, skip=skip, retirement=memo)  # fmt: skip

    async def ensure_adopted(self, graph: Graph, *, full: bool = True) -> None:
        """Record when each DAG's current definition took effect (the leader does this; see activation.adopt).

        The first adoption under a prefix also processes the history already in etcd, unless it is too long
        (semantics `first-adoption`, coordinator.core.adoption); a held first adoption is re-decided on full passes only
        (start, leadership, resync, graph change): counting plans every partition.
        """
        if is_first_adoption(self.view) and not full and self.held == graph.digest:
            return
        # ``core/decide.py``'s **Activation first**: the first adoption decided, or the change to adopt.
        adoption = adoption_for(graph, self.view, self.history, self.first_start_limit, by=self.watcher_id)
        first = adoption.first
        if first is not None:
            self.first = first
            if first.activation is None:
                self.held = graph.digest
                log.warning("graph.adoption_held triggers=%d partitions=%d limit=%d detail=%r next=%r",
                            len(first.triggers), len(first.partitions), first.limit, first.summary(),
                            " | ".join(first.how_to_proceed()))  # fmt: skip
                return
        new = adoption.activation if adoption.activation is not self.view.activation else None
        if new is None:
            return
        key = self.view.graph_key
        try:
            result = await self.executor.cas(key, dump_activation(new), self.view.activation_rev)
        except LeadershipLost:  # the executor told the campaign
            return
        if result.succeeded:
            # ``core/decide.py``'s **Activation first**: this pass plans with the activation it wrote, which only the
            # informer puts into the view (``informer/expectations.py``): wait for the watch to bring it back.
            if not await self.executor.expectations.seen(key, ADOPTION_SEEN_S):
                raise StoreError(f"the graph's adoption at revision {result.revision} did not come back through the "
                                 f"watch within {ADOPTION_SEEN_S:.0f} s")  # fmt: skip
            self.held = None
            log.info("graph.adopted digest=%s revision=%d dags=%d first=%s history=%r", graph.digest,
                     result.revision, len(graph.dags), first is not None,
                     first.summary() if first is not None else "-")  # fmt: skip

    def _remember_due(self, result: Plan, *, full: bool) -> None:
        """A standby pass's actions, kept as keys (**Leading and warm work**): a full pass replaces them (so they cover
        at most one resync interval), an incremental one adds to them, and to the sweep under way (whose end replaces
        them). Only keys: the leader plans them again on its own view."""
        keys = {DagKey(action.node, action.partition) for action in result.actions}
        if full:
            self.standby_due, self.standby_warm = keys, True
            return
        self.standby_due |= keys
        if self.sweep is not None:
            self.sweep.due |= keys

    def take_warm_work(self) -> int:
        """On taking the lead (**Leading and warm work**): plan first what this process, as a standby, found due (what
        changed since its view was loaded, and the intents the old leader left in the ledger, which plan as resumes),
        then every partition ``WARM_FULL_PASS_DELAY_S`` later as before. A process that has not planned every partition
        as a standby, or a first adoption, plans everything at once. Returns how many keys were planned first (0 with
        nothing due: the events that arrive make the first pass, and the full pass still follows)."""
        due, self.standby_due = self.standby_due, set()
        warm, self.standby_warm = self.standby_warm, False
        self.led_full_pass = False  # **Start and settle**: this term has not planned everything yet
        if self.sweep is not None:
            self.sweep.led = False  # it began before this term (it goes on, and now acts on what it finds)
        if not warm or is_first_adoption(self.view):
            return self.start_work()
        self._queue_first(due)
        return len(due)

    def start_work(self) -> int:
        """**Start and settle**: queue what changed after the plan checkpoint, and every partition
        ``WARM_FULL_PASS_DELAY_S`` later; or every partition now when the checkpoint cannot say what changed
        (``core/first_work.py``'s **Everything when unsure**). Returns how many keys are planned first (0: everything at
        once)."""
        work = first_work(self.view, self.graph().digest, first_adoption=is_first_adoption(self.view))
        log.info("reconcile.first_work keys=%d everything=%s reason=%r", len(work.keys), work.everything,
                 work.reason)  # fmt: skip
        if work.everything:
            self.controller.add(AllPartitions)
            return 0
        self._queue_first(DagKey(node, partition) for node, partition in work.keys)
        return len(work.keys)

    def _queue_first(self, keys: Iterable[DagKey]) -> None:
        """``keys`` now, in partition order, and the full pass after them (**Leading and warm work** and
        **Start and settle**)."""
        for key in sorted(keys, key=lambda k: (k.partition, k.node.qualified)):
            self.controller.add(key)
        self.controller.add_after(AllPartitions, WARM_FULL_PASS_DELAY_S)

    def settled_through(self) -> int | None:
        """**Start and settle**: the revision this leader has planned through with nothing left waiting or running; None
        while it does not lead, has not run a full pass in this term, or has work queued, in flight or delayed."""
        if not self.leading() or not self.led_full_pass or self.sweep is not None:
            return None  # (a sweep under way: the partitions it has not reached yet are not planned in this term)
        queue = self.controller.queue
        if queue.holds(lambda key: isinstance(key, DagKey | PartitionKey)) or self.actuator.holds():
            return None  # a change not planned yet, an action in flight or waiting out its delay, a withheld trigger
        if queue.num_requeues(AllPartitions) or queue.holds(lambda key: key is AllPartitions, delayed=False):
            return None  # a failed pass waits for its retry, or a full pass is due or running
        return self.planned_revision


def setup(manager: Manager, deps: Deps) -> TriggerReconciler:
    """The planner's concern: its reconciler over DAG and partition keys (the actions it submits go to the actions'
    reconciler, set up before it), the keys a watch batch brings it, every partition one resync interval after the
    start, and the liveness beat of its worker."""
    settings, metrics = deps.settings, deps.metrics
    actuator = manager.get(ACTUATOR)
    budget = TriggerBudget(
        deps.executor, settings.keys, settings.trigger_budget, settings.trigger_budget_window_s,
        deps.watcher_id, metrics, dag_floor=settings.trigger_budget_dag_floor,
    )  # fmt: skip
    triggers = TriggerReconciler(
        view=deps.view, view_lock=deps.view_lock, graph=deps.graph, retention=deps.retention,
        executor=deps.executor, actuator=actuator, budget=budget, leading=deps.leading,
        instances=deps.clients.keys(), watcher_id=deps.watcher_id, history=settings.history_choice,
        first_start_limit=settings.first_start_limit, error_retry_s=settings.error_retry_s,
        resync_s=settings.resync_interval_s, on_pass=metrics.reconcile_seconds.observe,
        holds=deps.holds, on_held=metrics.held_actions.set,
    )  # fmt: skip
    triggers.controller.on_turn = deps.health.beat  # liveness: the planner's worker turns every 2 s

    def interest(changes: Changes) -> list[TriggerKey]:
        """What a watch batch brings the planner: the DAGs whose facts changed (a DAG whose attempt is under way is
        planned once when it ends: ``Actuator.defer``), the partitions to plan whole, and, when a hold was put,
        released or deleted, what holds kept back."""
        defer = actuator.defer
        keys: list[TriggerKey] = [key for key in (DagKey(n, p) for n, p in changes.of(View.NODES)) if not defer(key)]
        keys += [AllPartitions if p == ALL else PartitionKey(p) for p in changes.of(View.PARTITIONS)]
        if changes.of(HoldIndex.HOLDS):
            keys += triggers.held_again()
        return keys

    manager.register(triggers.controller, Watch(interest), start_after=(AllPartitions, settings.resync_interval_s))
    return manager.provide(TRIGGERS, triggers)
