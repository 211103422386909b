"""The trigger reconciler: what the watch marked as changed, planned by the one decision and, while leading, adopted,
held back, counted and handed to the actions' controller (semantics `joins-per-partition` to `partition-grids` and
`trigger-budget`). The batch reconciler of the triggers' controller: its one worker takes every ready key as one pass
(planning costs per pass, not per key); the informer's changes add its keys (``setup``).

A pass is one sequence, each step an object of its own that returns what it asks for (no step reaches into the queue):
plan the keys (a slice of the sweep, ``watcher/sweep.py``), and while leading adopt the graph first
(``watcher/adoption.py``), keep back what a flapping run state would rerun (``watcher/flap_gate.py``, semantics
`flap-held`) and what the operators' holds cover (``watcher/hold_gate.py``), ask the actuator which
actions it would start (``watcher/actuator.py``'s ``offer``), count those in the trigger budget (``watcher/budget.py``),
start what the budget let through; a standby keeps what it found due instead (``watcher/warm.py``); then one log line.
What the steps ask for other keys (a hold's expiry, a withheld trigger, the sweep's next slice) is returned with the
pass's plan and settled with its keys.

Rules (``watcher/service.py``'s **Only the leader acts** and **Nothing blocks the loop**, for the triggers):
- **Keys.** A pass takes keys: ``DagKey`` (a DAG's run state or ledger entry changed: only it and what depends on it are
  re-planned, ``planner.plan_changes``; a DAG whose attempt is under way is left to that attempt's end, which plans
  it again: ``watcher/actuator.py``'s **The end plans the key again**), ``PartitionKey`` (a backfill: the whole
  partition), ``AllPartitions`` (start, graph, activation, resync, leadership, a failed pass). The actions a pass
  decides are keys of the actions' controller; a pass as a whole that fails (etcd trouble while adopting) is retried as
  ``AllPartitions`` after a backoff, and a pass that planned every partition queues the next resync. Every step judges
  at the pass's ``now`` (the controller's clock, ``manager/periodic.py``'s **Clock**).
- **One line per pass.** One structured log line per pass at DEBUG: revision, dirty partitions, actions, errors
  (``sweep_left=`` partitions still to plan), and one per sweep that ends (``watcher/sweep.py``'s **Sweep**); each pass
  is counted in the summary said at INFO once a minute (``watcher/pass_summary.py``): what the watcher did is said by
  the lines of its decisions and effects, not by its passes.
- **Start and settle.** A start plans first what changed after the plan checkpoint, then every partition a few seconds
  later (``watcher/warm.py``'s **Start**). The leader's work is settled through the revision of its last pass
  (``settled_through``, which the checkpoint job records) when, in this term, a full pass has run, no sweep is under
  way and nothing waits or runs for a DAG, a partition or a failed pass: no key dirty, no action in flight or waiting
  out an error delay, no withheld trigger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timedelta

from coordinator.core.actions import Plan, Resume, Trigger
from coordinator.core.adoption import HistoryChoice
from coordinator.core.decide import Adoption, Decision, decide
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.planner import next_cutoff, partitions_to_plan
from coordinator.core.view import ALL, View
from coordinator.errors import CoordinatorError, WritesRefused
from coordinator.informer import Changes
from coordinator.informer.holds import HOLD_INDEX, HoldIndex
from coordinator.informer.retention import RETENTION_TRACKER, RetentionTracker
from coordinator.manager import Controller, Handle, Manager, Result, Watch, wall_clock
from coordinator.watcher.actuator import ACTUATOR, Actuator, Offer
from coordinator.watcher.adoption import GraphAdoption
from coordinator.watcher.budget import BudgetStep, TriggerBudget
from coordinator.watcher.deps import Deps
from coordinator.watcher.executor import Executor
from coordinator.watcher.flap_gate import FlapGate
from coordinator.watcher.hold_gate import HoldGate
from coordinator.watcher.keys import PLANNER, AllPartitions, DagKey, NextSlice, PartitionKey, Requeues, TriggerKey
from coordinator.watcher.sweep import PassCounts, PassSummary, Sweeper, plan_in_slices
from coordinator.watcher.warm import WarmWork

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a pass's keys ask to plan (**Keys**)."""

    everything: bool
    next_slice: bool
    #: Partitions to plan whole, and the DAGs whose facts changed per partition.
    dirty: set[str]
    changed: dict[str, set[NodeId]]

    @staticmethod
    def of(keys: Iterable[TriggerKey], under_way: Callable[[DagKey], bool]) -> _Asked:
        everything = next_slice = False
        dirty: set[str] = set()
        changed: dict[str, set[NodeId]] = {}
        for key in keys:
            if isinstance(key, DagKey):
                if not under_way(key):  # its attempt's end plans it again (**Keys**)
                    changed.setdefault(key.partition, set()).add(key.node)
            elif isinstance(key, PartitionKey):
                dirty.add(key.partition)
            elif key is AllPartitions:
                everything = True
            elif key is NextSlice:
                next_slice = True
        return _Asked(everything, next_slice, dirty, changed)


@dataclass(frozen=True, slots=True)
class _Planned:
    """The planning step's plan, and what the pass's line says of it (**One line per pass**)."""

    plan: Plan
    #: How many partitions it planned; None: every one (a one-shot full pass).
    touched: int | None
    #: Whether it planned a slice of the sweep under way.
    sliced: bool
    plan_s: float


@dataclass
class TriggerReconciler:
    """The module's pass and rules, given only what they need (never the watcher): its steps are built from the
    ``InitVar`` arguments."""

    view: View
    #: ``watcher/sweep.py``'s **Sweep**: held while a pass plans; the informer applies watch batches under it.
    view_lock: asyncio.Lock
    #: The graph in force (reloaded while the watcher runs).
    graph: Callable[[], Graph]
    #: Semantics `retention-retires`: the floor's retirement of old partitions, kept in event order with the view.
    retention: RetentionTracker
    #: The adoption's fenced write (``watcher/adoption.py``), and its attempts in flight (the pass's line).
    executor: Executor
    actuator: Actuator
    budget: InitVar[TriggerBudget]
    #: Whether this watcher leads now (the election's local view of its lease).
    leading: Callable[[], bool]
    #: The configured Airflow instances (the budget's metric reports each).
    instances: InitVar[Collection[str]]
    watcher_id: InitVar[str]
    #: Semantics `first-adoption`: how a first adoption treats the history already in etcd, and its flood guard.
    history: InitVar[HistoryChoice]
    first_start_limit: InitVar[int]
    #: A withheld trigger (its count could not be recorded) comes back after at most this long.
    error_retry_s: InitVar[float]
    #: **Keys**: every partition is planned again this long after a pass that planned them all.
    resync_s: float = 300.0
    #: Told the seconds each pass of the controller took (the metric ``coordinator_reconcile_seconds``).
    on_pass: Callable[[float], None] = lambda seconds: None
    #: ``watcher/hold_gate.py``: the operators' holds, and told how many keys they keep back after each leading pass
    #: (the metric ``coordinator_held_actions``).
    holds: InitVar[HoldIndex | None] = None
    on_held: InitVar[Callable[[int], None]] = lambda count: None
    #: The time a one-shot pass is judged at, and the controller's (``manager/periodic.py``'s **Clock**).
    clock: Callable[[], datetime] = wall_clock
    #: ``watcher/flap_gate.py``: how long a run-state key's successes are remembered (semantics `flap-held`).
    flap_window_s: InitVar[float] = 3600.0
    passes: int = 0
    #: **Start and settle**: a full pass has run in this term, and the revision of the last pass as leader.
    led_full_pass: bool = False
    planned_revision: int = 0
    #: The steps of a pass (the module's docstring).
    adoption: GraphAdoption = field(init=False)
    hold_gate: HoldGate = field(init=False)
    flap_gate: FlapGate = field(init=False)
    budget_step: BudgetStep = field(init=False)
    warm: WarmWork = field(init=False)
    sweeper: Sweeper = field(default_factory=Sweeper, init=False)
    #: **One line per pass**: the passes since the last summary line.
    summary: PassSummary = field(default_factory=PassSummary, init=False)
    #: The triggers' controller (its queue holds the keys of **Keys**).
    controller: Controller[TriggerKey] = field(init=False, repr=False)
    #: How many partitions the view knew at the last look for a cutoff (``_next_cutoff``).
    _cutoff_partitions: int = field(default=-1, init=False, repr=False)

    def __post_init__(
        self,
        budget: TriggerBudget,
        instances: Collection[str],
        watcher_id: str,
        history: HistoryChoice,
        first_start_limit: int,
        error_retry_s: float,
        holds: HoldIndex | None,
        on_held: Callable[[int], None],
        flap_window_s: float,
    ) -> None:
        self.controller = Controller("triggers", self, idle_s=2.0, now=self.clock)
        self.adoption = GraphAdoption(self.view, self.executor, watcher_id, history, first_start_limit)
        self.hold_gate = HoldGate(holds, on_held, on_released=self.actuator.retry_now)
        self.flap_gate = FlapGate(self.view, self.executor, self.view.keys, watcher_id,
                                  timedelta(seconds=flap_window_s))  # fmt: skip
        self.budget_step = BudgetStep(budget, self.view, instances, error_retry_s)
        self.warm = WarmWork(self.controller, self.view, lambda: self.graph().digest)

    async def reconcile_batch(self, keys: list[TriggerKey], now: datetime) -> dict[TriggerKey, Result]:
        """The controller's pass (the module's rules): a sweep; a failed pass is retried whole after a backoff; a pass
        that planned every partition queues the next resync, and one before the next cutoff."""
        started = time.perf_counter()
        try:
            _, results = await self.plan_keys(keys, now, act=True, sweep=True)
        except CoordinatorError as exc:
            # etcd trouble while adopting the graph: the view stays; everything is re-planned after a backoff.
            level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING  # see the campaign
            log.log(level, "reconcile.failed error=%s retry_in_s=%.1f", exc,
                    self.controller.queue.backoff(AllPartitions))  # fmt: skip
            return {AllPartitions: Result(retry=True)}
        finally:
            self.on_pass(time.perf_counter() - started)
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

    async def reconcile(
        self, keys: list[TriggerKey], *, act: bool = True, sweep: bool = False, now: datetime | None = None
    ) -> Plan:
        """A pass outside the controller's worker (a one-shot ``reconcile``, a test), at ``now`` (else the clock's):
        ``keys`` taken from the controller's queue are settled as its worker would settle them."""
        try:
            plan, requeues = await self.plan_keys(keys, self.clock() if now is None else now, act=act, sweep=sweep)
        except BaseException:
            self.controller.settle(keys, {})
            raise
        self.controller.settle(keys, requeues)
        return plan

    async def plan_keys(
        self, keys: list[TriggerKey], now: datetime, *, act: bool = True, sweep: bool = False
    ) -> tuple[Plan, Requeues]:
        """The pass over ``keys`` at ``now`` (the module's sequence): its plan, and what its steps ask for other keys.
        Without ``act`` it only plans; ``sweep`` (the watcher's loop): ``AllPartitions`` starts a sweep, planned a
        slice per turn of the queue; without it (a one-shot pass) every partition is planned in this pass."""
        asked = _Asked.of(keys, self.actuator.under_way)
        if keys == [NextSlice] and self.sweeper.current is None:
            return Plan(self.view.revision, ()), {}  # the sweep it belonged to was started over or dropped
        leading = act and self.leading()
        try:
            graph = self.graph()
            if leading:
                await self.adoption.ensure(graph, full=asked.everything)
            planned = await self._plan(graph, asked, now, sweep=sweep)
        except BaseException:
            self.sweeper.drop()  # a failed pass is retried as a whole (``AllPartitions``): a new sweep
            raise
        plan, submitted = planned.plan, 0
        requeues: Requeues = {}
        if leading:
            self.flap_gate.observe(graph, asked.changed, now)
            plan, requeues, submitted = await self._act(graph, plan, now)
            self.planned_revision = plan.revision  # **Start and settle**
            self.led_full_pass = self.led_full_pass or planned.touched is None
        elif act:
            sweeping = self.sweeper.current
            self.warm.remember(plan, full=planned.touched is None, sweep_due=None if sweeping is None else sweeping.due)
        self.passes += 1
        counts = PassCounts(
            len(plan.actions), sum(isinstance(a, Trigger) for a in plan.actions),
            sum(isinstance(a, Resume) for a in plan.actions), submitted, planned.plan_s,
        )  # fmt: skip
        self._log(planned, counts, leading=leading)
        self.summary.add(plan.revision, counts, leading=leading)
        if planned.touched is None:
            self.summary.planned_everything()  # a one-shot pass of every partition
        if planned.sliced and self.sweeper.current is not None:
            requeues |= self._swept(counts, plan.revision, leading=leading)
        return plan, requeues

    async def _plan(self, graph: Graph, asked: _Asked, now: datetime, *, sweep: bool) -> _Planned:
        """The planning step: ``asked`` (with the sweep's next slice, ``watcher/sweep.py``) planned on the view held
        still."""
        view = self.view
        async with self.view_lock:  # the view holds still while planning yields (**Sweep**)
            started = time.perf_counter()
            if asked.everything and sweep:  # a new sweep replaces one under way: it plans everything again
                self.sweeper.begin(partitions_to_plan(graph, view))
            sweeping, sliced = self.sweeper.current, None
            if sweeping is not None and sweep and (asked.everything or asked.next_slice):
                sliced = sweeping.take(view.partitions)
            whole_parts = asked.dirty.union(sliced or ())
            every = asked.everything and not sweep  # a one-shot pass plans every partition at once

            def decide_slice(chunk: list[str]) -> Plan:
                return self._decide(graph, now, chunk).plan

            whole = None
            if every or whole_parts:
                parts = partitions_to_plan(graph, view) if every else sorted(whole_parts)
                whole = await plan_in_slices(view, parts, decide_slice)
            changed = asked.changed
            rest = {} if every else {p: nodes for p, nodes in changed.items() if p not in whole_parts}
            # A change in a partition planned whole can still map to OTHER partitions (partition grids):
            # plan_changes follows it there and skips the partitions `whole` already covered.
            mapped = {p: changed[p] for p in changed.keys() & whole_parts} if graph.mapped_edges and not every else {}
            parts_plan = (
                self._decide(graph, now, changed=rest | mapped, skip=whole_parts).plan if rest or mapped else None
            )
            actions = (whole.actions if whole else ()) + (parts_plan.actions if parts_plan else ())
            return _Planned(
                Plan(view.revision, actions), None if every else len(whole_parts | rest.keys()), sliced is not None,
                time.perf_counter() - started,
            )  # fmt: skip

    async def _act(self, graph: Graph, plan: Plan, now: datetime) -> tuple[Plan, Requeues, int]:
        """The leading steps: the flap gate, the holds gate, the actuator's offers, the budget, the start. The plan as
        it went out (in order; what the actuator would not start stays in it: it is planned again when that attempt
        ends, or its own write comes back), what the steps ask for other keys, and how many actions started."""
        plan = await self.flap_gate.admit(graph, plan, now)
        plan, held = self.hold_gate.admit(graph, plan, now)
        offers = [self.actuator.offer(action, view_revision=plan.revision) for action in plan.actions]
        ready = Plan(
            plan.revision, tuple(a for a, offer in zip(plan.actions, offers, strict=True) if offer is Offer.READY)
        )
        admitted, withheld = await self.budget_step.admit(ready, graph, now)
        for action in admitted.actions:
            self.actuator.start(action)
        if len(admitted.actions) != len(ready.actions):
            kept = {id(a) for a in admitted.actions}
            went = (
                a for a, offer in zip(plan.actions, offers, strict=True) if offer is not Offer.READY or id(a) in kept
            )
            plan = Plan(plan.revision, tuple(went))
        return plan, held | withheld, len(admitted.actions)

    def _log(self, planned: _Planned, counts: PassCounts, *, leading: bool) -> None:
        """**One line per pass**."""
        sweeping = self.sweeper.current
        touched = len(self.view.partitions) if planned.touched is None else planned.touched
        log.debug(
            "reconcile revision=%d dirty=%s partitions=%d actions=%d triggers=%d resumes=%d submitted=%d "
            "in_flight=%d errors=%d leader=%s plan_ms=%.1f%s",
            planned.plan.revision, "all" if planned.touched is None else planned.touched, touched, counts.actions,
            counts.triggers, counts.resumes, counts.submitted, self.executor.busy, self.actuator.outcome.errors,
            leading, counts.plan_s * 1000,
            "" if not planned.sliced or sweeping is None else f" sweep_left={len(sweeping.todo)}",
        )  # fmt: skip

    def _swept(self, counts: PassCounts, revision: int, *, leading: bool) -> Requeues:
        """``watcher/sweep.py``'s **Sweep**: one more slice planned; the next one queued behind whatever the watch
        brought meanwhile, or the sweep's end told to **Start and settle** and the warm work."""
        ended = self.sweeper.swept(counts, leading=leading, revision=revision, busy=self.executor.busy,
                                   errors=self.actuator.outcome.errors)  # fmt: skip
        if ended is None:
            return {NextSlice: Result(requeue_after=0.0)}
        self.summary.planned_everything()
        if ended.led:
            self.led_full_pass = True  # **Start and settle**: every slice planned while leading in this term
        if ended.standby:
            self.warm.swept(ended.due)  # every partition planned as a standby
        return {}

    def _decide(
        self,
        graph: Graph,
        now: datetime,
        partitions: Iterable[str] | None = None,
        *,
        changed: dict[str, set[NodeId]] | None = None,
        skip: Iterable[str] = (),
    ) -> Decision:
        """The one decision (``core/decide.py``) at ``now`` against what the adoption left in the view (the
        activation it wrote, or none while a first adoption is paused), retention from the view's floor: actions
        only. No verdicts: nothing here reads them; building them for every DAG made a pass cost the whole graph."""
        adopted, memo = Adoption(self.view.activation), self.retention.retirement(graph)
        return decide(graph, self.view, partitions, now=now, adoption=adopted, explain=False,
                      changed=changed, skip=skip, retirement=memo)  # fmt: skip

    def take_warm_work(self) -> int:
        """On taking the lead: a new term (**Start and settle**: it has not planned everything yet; a sweep under way
        is not its full pass), and the warm work queued first (``watcher/warm.py``). How many keys are planned
        first."""
        self.led_full_pass = False
        self.sweeper.new_term()
        self.flap_gate.new_term()
        return self.warm.take()

    def settled_through(self) -> int | None:
        """**Start and settle**: the revision this leader has planned through with nothing left waiting or running; None
        while it does not lead, has not run a full pass in this term, or has work queued, in flight or delayed."""
        if not self.leading() or not self.led_full_pass or self.sweeper.current is not None:
            return None  # (a sweep under way: the partitions it has not reached yet are not planned in this term)
        queue = self.controller.queue
        if queue.holds(lambda key: isinstance(key, DagKey | PartitionKey)) or self.actuator.holds():
            return None  # a change not planned yet, an action in flight or waiting out its delay, a withheld trigger
        if queue.num_requeues(AllPartitions) or queue.holds(lambda key: key is AllPartitions, delayed=False):
            return None  # a failed pass waits for its retry, or a full pass is due or running
        return self.planned_revision


#: What the planner's concern provides (``manager/manager.py``'s **Handles**; its queue alone is ``keys.PLANNER``): the
#: checkpoint reads how far it settled, the pass summary its passes.
TRIGGERS: Handle[TriggerReconciler] = Handle("triggers")


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
        view=deps.view, view_lock=deps.view_lock, graph=deps.graph, retention=deps.index(RETENTION_TRACKER),
        executor=deps.executor, actuator=actuator, budget=budget, leading=deps.leading,
        instances=deps.clients.keys(), watcher_id=deps.watcher_id, history=settings.history_choice,
        first_start_limit=settings.first_start_limit, error_retry_s=settings.error_retry_s,
        resync_s=settings.resync_interval_s, on_pass=metrics.reconcile_seconds.observe,
        holds=deps.index(HOLD_INDEX), on_held=metrics.held_actions.set, clock=deps.clock,
        flap_window_s=settings.flap_window_s,
    )  # fmt: skip
    triggers.controller.on_turn = deps.health.beat  # liveness: the planner's worker turns every 2 s

    def interest(changes: Changes) -> list[TriggerKey]:
        """What a watch batch brings the planner: the DAGs whose facts changed (not one whose attempt is under way: its
        end plans it, ``watcher/actuator.py``'s **The end plans the key again**), the partitions to plan whole, and,
        when a hold was put, released or deleted, what holds kept back."""
        under_way = actuator.under_way
        nodes = (DagKey(n, p) for n, p in changes.of(View.NODES))
        keys: list[TriggerKey] = [key for key in nodes if not under_way(key)]
        keys += [AllPartitions if p == ALL else PartitionKey(p) for p in changes.of(View.PARTITIONS)]
        if changes.of(HoldIndex.HOLDS):
            keys += triggers.hold_gate.held_again()
        return keys

    manager.register(triggers.controller, Watch(interest), start_after=(AllPartitions, settings.resync_interval_s))
    manager.provide(PLANNER, triggers.controller)
    return manager.provide(TRIGGERS, triggers)
