"""The trigger reconciler: what the watch marked as changed, planned by the one decision and, while leading, adopted,
counted and handed to the actuator (semantics rules 1-10 and 15). One reconciler of the watcher's work queue: the
watcher (``watcher/service.py``) hands it the keys of a pass; the leader's periodic jobs are the other reconcilers
(``watcher/jobs.py``).

Rules (the watcher's rules 2, 4 and 6, for the triggers):
1. A pass takes keys: ``DagKey`` (a DAG's run state or ledger entry changed: only it and what depends on it are
   re-planned, ``planner.plan_changes``), ``PartitionKey`` (a backfill: the whole partition), ``AllPartitions``
   (start, graph, activation, resync, leadership, a failed pass). Their planning ends before any action starts
   (``done_all``), so an action planned for a key may take it into processing.
2. Leading: adopt the graph first (``ensure_adopted``: the executor's fenced write, or the first adoption held,
   semantics rule 9), plan, count the new triggers in the budget (``watcher/budget.py``: a trigger whose count could
   not be recorded comes back through the queue), submit to the actuator. A standby plans without acting and keeps
   the keys its passes found due (warm work): on taking the lead it plans those first (``take_warm_work``), on its
   own view, and every partition ``WARM_FULL_PASS_DELAY_S`` later, so a takeover costs one lease expiry, not a
   whole plan, before the next trigger.
3. A full pass over a big store plans in slices of about ``PLAN_SLICE_FACTS`` facts and yields to the event loop
   between them, with the view held still (``view_lock``) so the pass sees one revision.
4. One structured log line per pass: revision, dirty partitions, actions, errors.
5. A start plans first what changed after the plan checkpoint (semantics rule 19, ``core/first_work.py``), then
   every partition ``WARM_FULL_PASS_DELAY_S`` later (``start_work``; the same for a new leader without warm work).
   The leader's work is settled through the revision of its last pass (``settled_through``, which the checkpoint
   job records) when, in this term, a full pass has run and nothing waits or runs for a DAG, a partition or a
   failed pass: no key dirty, no action in flight or waiting out an error delay, no withheld trigger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from coordinator.core.actions import Action, Plan, Resume, Trigger
from coordinator.core.activation import dump_activation
from coordinator.core.adoption import FirstAdoption, HistoryChoice, is_first_adoption
from coordinator.core.decide import Adoption, Decision, adoption_for, decide
from coordinator.core.first_work import first_work
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.planner import partitions_to_plan
from coordinator.core.view import View
from coordinator.errors import LeadershipLost
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.budget import TriggerBudget
from coordinator.watcher.executor import Executor
from coordinator.watcher.queue import AllPartitions, DagKey, PartitionKey, WorkKey, WorkQueue
from coordinator.watcher.retention import RetentionTracker

log = logging.getLogger(__name__)

#: Rule 3: a full pass plans this many facts (about 30-60 ms) between two yields to the event loop: on a big store a
#: pass takes seconds, and the lease keepalive (leader TTL 10 s), the watch and the probes must not wait for it.
PLAN_SLICE_FACTS = 5000
#: Rule 2: a new leader's full pass waits this long after its warm work (and whatever events arrive meanwhile), so
#: that a big store's whole plan (seconds) does not stand between a takeover and the triggers already known due.
WARM_FULL_PASS_DELAY_S = 5.0


@dataclass
class TriggerReconciler:
    """Rules 1-4, given only what they need (never the watcher)."""

    view: View
    #: Rule 3: held while a pass plans; the reflector applies watch batches under it.
    view_lock: asyncio.Lock
    #: The graph in force (reloaded while the watcher runs).
    graph: Callable[[], Graph]
    #: Semantics rule 11: the floor's retirement of old partitions, kept in event order with the view.
    retention: RetentionTracker
    queue: WorkQueue[WorkKey]
    #: The adoption's fenced write (rule 2).
    executor: Executor
    actuator: Actuator
    budget: TriggerBudget
    #: Whether this watcher leads now (the election's local view of its lease).
    leading: Callable[[], bool]
    #: The configured Airflow instances (the budget's metric reports each).
    instances: Collection[str]
    watcher_id: str
    #: Semantics rule 9: how a first adoption treats the history already in etcd, and its flood guard.
    history: HistoryChoice
    first_start_limit: int
    #: A withheld trigger (its count could not be recorded) comes back after at most this long.
    error_retry_s: float
    passes: int = 0
    #: The last first-adoption decision of this process (reported by reconcile --once), and the digest of the graph
    #: whose first adoption is held (semantics rule 9d), so that incremental passes do not re-count the whole history.
    first: FirstAdoption | None = None
    held: str | None = None
    #: Rule 2's warm work: the (DAG, partition) keys this process's standby passes found something to do for since its
    #: last full pass. A new leader plans these first, then everything.
    standby_due: set[DagKey] = field(default_factory=set)
    #: Whether this process has planned every partition as a standby: only then is its warm work complete.
    standby_warm: bool = False
    #: Rule 5: a full pass has run in this term, and the revision of the last pass as leader.
    led_full_pass: bool = False
    planned_revision: int = 0

    async def reconcile(self, keys: list[WorkKey], *, act: bool = True) -> Plan:
        """Rules 1-4: plan ``keys`` and, when leading (and ``act``), adopt, count and submit; one log line."""
        everything = False
        dirty: set[str] = set()
        changed: dict[str, set[NodeId]] = {}
        for key in keys:
            if isinstance(key, DagKey):
                changed.setdefault(key.partition, set()).add(key.node)
            elif isinstance(key, PartitionKey):
                dirty.add(key.partition)
            elif key is AllPartitions:
                everything = True
        partitions: Iterable[str] | None = None if everything else dirty
        leading = act and self.leading()
        try:
            graph = self.graph()
            if leading:
                await self.ensure_adopted(graph, full=partitions is None)
            async with self.view_lock:  # the view holds still while planning yields (rule 3)
                started = time.perf_counter()
                # No verdicts: nothing here reads them; building them for every DAG made a pass cost the whole graph.
                whole = await self._plan_whole(graph, partitions) if partitions is None or dirty else None
                rest = {} if partitions is None else {p: nodes for p, nodes in changed.items() if p not in dirty}
                # A change in a partition planned whole can still map to OTHER partitions (partition grids):
                # plan_changes follows it there and skips the partitions `whole` already covered.
                mapped = {p: changed[p] for p in changed.keys() & dirty} if graph.mapped_edges and partitions else {}
                parts = self._decide(graph, changed=rest | mapped, skip=dirty).plan if rest or mapped else None
                actions = (whole.actions if whole else ()) + (parts.actions if parts else ())
                result = Plan(self.view.revision, actions)
        finally:
            # Planning is over: an action planned for one of these keys may now take it into processing.
            self.queue.done_all(keys)
        submitted = 0
        if not leading and act:
            self._remember_due(result, full=partitions is None)
        if leading:
            result = await self._within_budget(result)
            # An action the actuator does not start (one for that DAG and partition is in flight, or waits out an
            # error delay) comes back through the queue, so it is re-planned once that is over.
            revision = result.revision
            submitted = sum(self.actuator.submit(action, view_revision=revision) for action in result.actions)
            self.planned_revision = revision  # rule 5
            self.led_full_pass = self.led_full_pass or partitions is None
        self.passes += 1
        log.info(
            "reconcile revision=%d dirty=%s partitions=%d actions=%d triggers=%d resumes=%d submitted=%d "
            "in_flight=%d errors=%d leader=%s plan_ms=%.1f",
            result.revision, "all" if partitions is None else len(dirty | rest.keys()),
            len(self.view.partitions) if partitions is None else len(dirty | rest.keys()), len(result.actions),
            sum(isinstance(a, Trigger) for a in result.actions), sum(isinstance(a, Resume) for a in result.actions),
            submitted, self.executor.busy, self.actuator.outcome.errors, leading,
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        return result

    async def _within_budget(self, result: Plan) -> Plan:
        """Semantics rule 15 (``watcher/budget.py``): the pass's actions the trigger budget lets through, each
        instance's count and any hold recorded in etcd first. A trigger whose count could not be recorded is not
        submitted; its DAG and partition come back through the queue to be judged again."""
        # Only what the actuator would start counts: a trigger planned again while its attempt is in flight goes
        # to submit as before (refused there, and re-planned when the attempt ends).
        repeats = {id(a) for a in result.actions if not self.actuator.can_start(a, view_revision=result.revision)}
        startable = Plan(result.revision, tuple(a for a in result.actions if id(a) not in repeats))
        admitted = await self.budget.admit(startable, self.view.budgets, self.instances)
        for trigger in admitted.withheld:
            self.queue.add_rate_limited(DagKey(trigger.node, trigger.partition), max_s=self.error_retry_s)
        passed = {id(a) for a in admitted.plan.actions} | repeats
        return Plan(result.revision, tuple(a for a in result.actions if id(a) in passed))

    async def _plan_whole(self, graph: Graph, partitions: Iterable[str] | None) -> Plan:
        """``plan`` of ``partitions`` (all when None) in slices of about PLAN_SLICE_FACTS facts, yielding to the event
        loop between them (rule 3). Same actions in the same order: partitions are planned independently, and
        through partition grids a slice only re-judges what another slice judged too."""
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
        (semantics rule 9, coordinator.core.adoption); a held first adoption is re-decided on full passes only
        (start, leadership, resync, graph change): counting plans every partition.
        """
        if is_first_adoption(self.view) and not full and self.held == graph.digest:
            return
        # The one decision's rule a (core/decide.py): the first adoption decided, or the change to adopt.
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
            # Apply our own write now rather than waiting for the watch: this pass must plan with it.
            self.view.apply(key, dump_activation(new), result.revision)
            self.held = None
            log.info("graph.adopted digest=%s revision=%d dags=%d first=%s history=%r", graph.digest,
                     result.revision, len(graph.dags), first is not None,
                     first.summary() if first is not None else "-")  # fmt: skip

    def _remember_due(self, result: Plan, *, full: bool) -> None:
        """A standby pass's actions, kept as keys (rule 2): a full pass replaces them (so they cover at most one
        resync interval), an incremental one adds to them. Only keys: the leader plans them again on its own view."""
        keys = {DagKey(action.node, action.partition) for action in result.actions}
        if full:
            self.standby_due, self.standby_warm = keys, True
        else:
            self.standby_due |= keys

    def take_warm_work(self) -> int:
        """On taking the lead (rule 2): plan first what this process, as a standby, found due (what changed since
        its view was loaded, and the intents the old leader left in the ledger, which plan as resumes), then every
        partition ``WARM_FULL_PASS_DELAY_S`` later as before. A process that has not planned every partition as a
        standby, or a first adoption, plans everything at once. Returns how many keys were planned first (0 with
        nothing due: the events that arrive make the first pass, and the full pass still follows)."""
        due, self.standby_due = self.standby_due, set()
        warm, self.standby_warm = self.standby_warm, False
        self.led_full_pass = False  # rule 5: this term has not planned everything yet
        if not warm or is_first_adoption(self.view):
            return self.start_work()
        self._queue_first(due)
        return len(due)

    def start_work(self) -> int:
        """Rule 5: queue what changed after the plan checkpoint, and every partition ``WARM_FULL_PASS_DELAY_S``
        later; or every partition now when the checkpoint cannot say what changed (``core/first_work.py`` rule 2).
        Returns how many keys are planned first (0: everything at once)."""
        work = first_work(self.view, self.graph().digest, first_adoption=is_first_adoption(self.view))
        log.info("reconcile.first_work keys=%d everything=%s reason=%r", len(work.keys), work.everything,
                 work.reason)  # fmt: skip
        if work.everything:
            self.queue.add(AllPartitions)
            return 0
        self._queue_first(DagKey(node, partition) for node, partition in work.keys)
        return len(work.keys)

    def _queue_first(self, keys: Iterable[DagKey]) -> None:
        """``keys`` now, in partition order, and the full pass after them (rules 2 and 5)."""
        for key in sorted(keys, key=lambda k: (k.partition, k.node.qualified)):
            self.queue.add(key)
        self.queue.add_after(AllPartitions, WARM_FULL_PASS_DELAY_S)

    def settled_through(self) -> int | None:
        """Rule 5: the revision this leader has planned through with nothing left waiting or running; None while
        it does not lead, has not run a full pass in this term, or has work queued, in flight or delayed."""
        if not self.leading() or not self.led_full_pass:
            return None
        queue = self.queue
        if queue.holds(lambda key: type(key) is DagKey or type(key) is PartitionKey):
            return None  # a change not planned yet, an action in flight or waiting out its delay, a withheld trigger
        if queue.num_requeues(AllPartitions) or queue.holds(lambda key: key is AllPartitions, delayed=False):
            return None  # a failed pass waits for its retry, or a full pass is due or running
        return self.planned_revision
