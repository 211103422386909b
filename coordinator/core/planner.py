"""The planner: (graph, view) -> actions with reasons, and a verdict for every (DAG, partition) it looked at.

This module is the product's correctness; ``docs/semantics.md`` is its specification. It enforces
semantics `joins-per-partition`, `success-is-generation`, `root-fresh`, `fresh-consumed` (`consumed-by-ledger`,
`consumed-by-order`), `dag-due`, `failure-handler`, `planner-pure`, `run-confirms-intent`, `first-adoption`,
`partition-grids`, `extended-edges`, `condition-groups`, `no-cascade-once` and `flap-held`: it decides, on the
freshness of each DAG that ``coordinator.core.freshness`` judges (with its rules **Mapped partitions**, **Task-level
upstreams** and **Finished edges**: how an upstream is read, its generation and its ledger input key);
``coordinator.core.retention`` drops the triggers of the decisions the floor retires from its plans (semantics
`retired-inert`, ``Retirement.apply``, which the watcher and the commands apply).

What the semantics leave to this module:
- **Pure.** No I/O, no clock, no randomness, no logging. Same graph + same view = same plan, whatever order the
  view's facts arrived in.
- **Resume without a call.** An unconfirmed intent whose run already reported a state after it is a Resume with
  ``observed`` (no Airflow call), whatever D's freshness says: where the call may have happened (a create, or a clear
  whose queued_at was recorded), and where D is already fresh from it. The intent protocol (``core/intent.py``,
  semantics `trigger-confirm`) then only writes the confirmation.
- **History by activation.** A DAG whose activation entry ``covers_history(P)`` (``coordinator.core.adoption``)
  counts inputs older than its ``since`` for P as well.
- **Gates.** A self-dependency is no input: D for P is not due while, for some partition Q it maps to, D's latest
  state for Q (or its task's) does not meet the gate's condition, unless Q is ABSENT: Q is retired, or D has no fact
  in Q (run state, ledger entry, backfill request, a named task's state) and no upstream of D has one in a partition
  D would read for Q, other than a state that predates D's definition there (no history, no backfill): nothing will
  ever run D for Q (the first partition, also the first after D's activation or at the retention floor, has no
  predecessor; a gap is skipped). A rerun of Q never reruns P; a change of D in Q re-plans D in the partitions gated
  by Q, one step (``plan_scope``).
- **Condition groups.** A DAG with groups is judged edge by edge: its required edges as above, each group by how many
  members are satisfied (semantics `group-holds`). Its trigger records the generations of the required edges and of
  the members satisfied then, no others (semantics `group-consumed`); a member the ledger does not record was not
  consumed and never makes D stale (semantics `group-unconsumed`), a recorded one does when it has a new generation.
- **A flap holds as an upstream.** A DAG whose upstream, in a partition it reads here, has a standing flap record
  (semantics `flap-held`, ``core/flaps.py``) waits with the record's reason once nothing else decides it (up to date,
  blocked, an attempt or an intent under way: those are said as before, and an intent already recorded is completed):
  nothing new is triggered or cleared for the flapping generations.
- **Scheduled dependents.** A DAG with ``"runs": "scheduled"`` is decided as any other (semantics
  `scheduled-permit`); only its action differs: a create where no finished run of P exists (the intent protocol grants
  the permit and calls nothing), a clear of Airflow's own run of P where one finished, and a run that is running before
  any permit is waiting for one, not in flight (semantics `permit-waiting-run`). A granted permit whose run has not
  started is withdrawn once an input it was granted on is no longer that success (semantics `permit-retracted`).
- **A settled DAG is passed over.** A pass without verdicts (the watcher's) goes through ``core.settled_pass``: a
  settled DAG gets the answer ``act`` would give (no action) without the call; every other DAG is ``act``'s.
- **Time only as an input.** A group's cutoff (semantics `group-cutoff`) compares the instant it passes (the
  partition's start plus a duration, or a time of day after the partition's end: ``GroupSpec.cutoff_at``) with
  ``now``, an argument (None: no cutoff has passed, so nothing runs early); :func:`next_cutoff` says when
  the next one passes, so the caller can plan again then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from coordinator.core.actions import Action, Plan, Resume, Trigger, Verdict
from coordinator.core.activation import Activation, NodeActivation
from coordinator.core.conditions import GroupSpec
from coordinator.core.error_backoff import retry_stamp
from coordinator.core.freshness import PartitionFreshness
from coordinator.core.graph import Condition, DagSpec, EdgeSpec, Graph
from coordinator.core.model import (
    NodeId,
    RunState,
    TriggerAction,
    TriggerStatus,
    input_key,
    run_id_for,
)
from coordinator.core.partition import has_segment
from coordinator.core.permit import lost_input
from coordinator.core.plan_scope import affected, candidates, mapped_candidates, mapped_partitions, span
from coordinator.core.settled_pass import full_pass
from coordinator.core.view import LedgerFact, RunFact, View

#: An enum member read on the hot paths of a pass, as a module constant: ``TriggerStatus.DONE`` is a descriptor call in
#: Python 3.11 (~45 ns), made for every DAG of every partition.
_DONE = TriggerStatus.DONE


def plan(
    graph: Graph,
    view: View,
    partitions: Iterable[str] | None = None,
    activation: Activation | None = None,
    *,
    explain: bool = True,
    now: datetime | None = None,
) -> Plan:
    """Plan the given partitions (all known ones when None) against ``activation`` (the view's when None), at ``now``
    (**Time only as an input**: only a group's cutoff reads it).

    ``explain=False`` (the watcher's reconcile passes) returns the same actions, in the same order, without verdicts,
    and skips the DAGs that cannot act: in partition P a DAG can only act when it or one of its sources has a fact
    in P (a root never acts; a DAG none of whose upstreams succeeded is blocked; a failure handler none of whose
    sources failed waits). A pass then costs what the partition holds, not the size of the whole graph.
    """
    active = activation if activation is not None else view.activation
    parts = sorted(set(partitions)) if partitions is not None else partitions_to_plan(graph, view)
    order = None if explain else graph.topo_index
    actions: list[Action] = []
    verdicts: dict[tuple[NodeId, str], Verdict] = {}
    # Planners stay alive across partitions only when an edge maps partitions; otherwise each is freed after its turn.
    shared: dict[str, _PartitionPlanner] | None = {} if graph.mapped_edges else None
    for partition in parts:
        evaluator = _PartitionPlanner(graph, view, active, partition, explain=explain, shared=shared, now=now)
        present = view.partitions.get(partition, ())
        # Looking for candidates costs more than it saves when most DAGs have facts (a full pass after a restart).
        if order is None or 2 * len(present) >= len(order):
            nodes: Sequence[NodeId] = graph.topo_order
        else:
            nodes = candidates(graph, present, order)
            if graph.mapped_edges:
                extra = mapped_candidates(graph, view, partition).difference(nodes)
                nodes = sorted((*nodes, *extra), key=order.__getitem__)
        if not explain:
            if nodes is graph.topo_order:
                # **A settled DAG is passed over** (``core.settled_pass``): the planner's facts and memo, read there.
                full_pass(graph)(evaluator._runs, evaluator._ledger, evaluator._fresh, evaluator.act, actions)
                continue
            for node in nodes:
                action = evaluator.act(node)
                if action is not None:
                    actions.append(action)
            continue
        for node in nodes:
            verdict, action = evaluator.decide(node)
            if verdict is not None:
                verdicts[(node, partition)] = verdict
            if action is not None:
                actions.append(action)
    return Plan(view.revision, tuple(actions), verdicts)


def partitions_to_plan(graph: Graph, view: View) -> list[str]:
    """The partitions a pass over everything plans, in order (``plan`` with ``partitions`` None)."""
    # semantics `partition-grids`: a fan-out's partitions of D exist nowhere in the store before D runs
    if graph.mapped_edges:
        return sorted(set(view.partitions) | mapped_partitions(graph, view))
    return view.all_partitions()


def plan_changes(
    graph: Graph,
    view: View,
    changed: Mapping[str, Iterable[NodeId]],
    activation: Activation | None = None,
    *,
    skip: Iterable[str] = (),
    now: datetime | None = None,
) -> Plan:
    """Actions (no verdicts) for what changed: in each partition P of ``changed``, the DAGs whose facts in P changed,
    everything downstream of them and their failure handlers; no other DAG is looked at. Through a mapped edge
    (semantics `partition-grids`) "downstream" lives in the partitions the change maps to, which may differ from P.
    Partitions in ``skip`` (planned whole by the caller in the same pass) yield no actions here.

    Whatever else the partition holds decides exactly as before the change, so an incremental caller that planned
    everything once (``plan``) and then plans each change this way has every action a full pass would have: a
    decision reads only the DAG's own facts, the freshness of its upstreams (which reads theirs, recursively) and the
    states of its failure sources (semantics `root-fresh`, `fresh-consumed`, `dag-due`, `failure-handler`). Changes to
    the activation or to backfills are not DAG facts: callers re-plan whole partitions for those.
    """
    active = activation if activation is not None else view.activation
    skipped = set(skip)
    actions: list[Action] = []
    shared: dict[str, _PartitionPlanner] | None = {} if graph.mapped_edges else None
    for partition, nodes in sorted(affected(graph, changed).items()):
        if partition in skipped:
            continue
        evaluator = _PartitionPlanner(graph, view, active, partition, explain=False, shared=shared, now=now)
        for node in nodes:
            _, action = evaluator.decide(node)
            if action is not None:
                actions.append(action)
    return Plan(view.revision, tuple(actions))


class _PartitionPlanner(PartitionFreshness):
    """Decides one partition on its freshness (``PartitionFreshness``, memoised so each node is judged once)."""

    def __init__(
        self,
        graph: Graph,
        view: View,
        activation: Activation | None,
        partition: str,
        *,
        explain: bool = True,
        shared: dict[str, _PartitionPlanner] | None = None,
        now: datetime | None = None,
    ) -> None:
        super().__init__(graph, view, partition, now=now)
        self.activation = activation
        #: False: verdicts (and the wording they need) are not built; decide returns (None, action).
        self.explain = explain
        #: partition -> its planner, for freshness across mapped edges (semantics `partition-grids`); each partition is
        #: judged once.
        self._shared = shared if shared is not None else {}
        self._shared.setdefault(partition, self)

    def at(self, partition: str) -> _PartitionPlanner:
        """The planner of another partition (the same one for this partition), created on first use."""
        found = self._shared.get(partition)
        if found is None:
            found = _PartitionPlanner(
                self.graph,
                self.view,
                self.activation,
                partition,
                explain=self.explain,
                shared=self._shared,
                now=self.now,
            )
        return found

    def since(self, node: NodeId, spec: DagSpec) -> int | None:
        """Revision since which this DAG's current definition is active; None if not adopted yet."""
        entry = self._entry(node)
        return None if entry is None else entry.since

    def _definition(self, node: NodeId) -> int:
        """:meth:`since` as an action's ``definition``: 0 if not adopted yet."""
        return self.since(node, self.graph.dags[node]) or 0

    def _redefined(self, node: NodeId, ledger: LedgerFact) -> bool:
        """Semantics `trigger-errors`: the DAG's definition in force was adopted after the one the refused attempt was
        planned under (the error's ``tried_under``). An error recorded without it is compared by revision: the
        adoption's ``since`` (the revision it was decided at) at or after the error's write."""
        entry = self._entry(node)
        if entry is None:
            return False
        tried_under = ledger.record.tried_under
        # An error written between the adoption's decision and its write, by an attempt of the old definition, is
        # later than ``since``: only the recorded definition tells it from an error of the new one.
        return entry.since > tried_under if tried_under is not None else entry.since >= ledger.mod_rev

    def _entry(self, node: NodeId) -> NodeActivation | None:
        """This DAG's activation entry if it matches its current definition; None if not adopted yet."""
        if self.activation is None:
            return None
        entry = self.activation.nodes.get(node.qualified)
        if entry is None or entry.shape != self.graph.shapes[node]:
            return None
        return entry

    # -- holds (semantics `edge-gate`, **A flap holds as an upstream**) ------------------------------------------------

    def gate_wait(self, node: NodeId) -> str | None:
        """Semantics `edge-gate`: why ``node``'s own earlier partitions hold it back here, or None."""
        floor = self.view.floor
        for edge in self.graph.gated.get(node, ()):
            for q in self.graph.gate_partitions(node, edge, self.partition):
                if floor is not None and floor.retires(q):
                    # Absent: nothing is ever run in a retired partition (semantics `retention-retires`). Said here, not
                    # left to the watcher's view forgetting retired keys, so a snapshot that still holds them (status,
                    # the page) decides alike.
                    continue
                fact = self.at(q).edge_fact(EdgeSpec(node, edge.task))
                if fact is not None and (
                    fact.state is RunState.SUCCESS
                    or (fact.state is RunState.FAILED and edge.condition is Condition.FINISHED)
                ):
                    continue
                if fact is None and self._absent(node, q):
                    continue  # the first partition: nothing before it ever comes
                state = "has not run" if fact is None else f"is {fact.state} (run {fact.run_id})"
                what = f"{node} task {edge.task}" if edge.task is not None else str(node)
                return f"its own previous partition {q} must finish first ({what} for {q} {state})"
        return None

    def flap_wait(self, node: NodeId, spec: DagSpec) -> str | None:
        """**A flap holds as an upstream**: the reason ``node`` waits here for a flapping upstream, or None."""
        flaps = self.view.flaps
        for up in spec.upstreams:
            for q in self.sources(node, up):
                flap = flaps.get((up, q))
                if flap is not None and flap.record.standing:
                    return flap.record.wait(up, q)
        return None

    def _absent(self, node: NodeId, partition: str) -> bool:
        """Semantics `edge-gate`: nothing will ever run ``node`` for ``partition``: no fact of it there, and no fact of
        its upstreams in the partitions it would read there."""
        if self._has_fact(node, partition):
            return False
        there = self.at(partition)
        spec = self.graph.dags[node]
        return not any(
            self._has_fact(up, q) and not self._predates(node, up, q, partition)
            for up in spec.upstreams
            for q in there.sources(node, up)
        )

    def _has_fact(self, node: NodeId, partition: str) -> bool:
        """A fact that can run or has run ``node`` for ``partition``: its run state, ledger entry or backfill
        request, or the state of a task an edge names. Other task states (written before an edge changed, or by
        hand) run nothing, and the page does not read them."""
        at = (node, partition)
        if at in self.view.runs or at in self.view.ledger or at in self.view.backfills:
            return True
        tasks = self.graph.upstream_tasks.get(node.qualified, ())
        return any((node, task, partition) in self.view.tasks for task in tasks)

    def _predates(self, node: NodeId, up: NodeId, q: str, partition: str) -> bool:
        """Semantics `edge-gate`: ``up``'s state in ``q`` predates ``node``'s definition and never runs ``node`` for
        ``partition`` by itself (semantics `first-adoption`: no history processed there, no backfill asked), so the
        first partition after ``node``'s activation is not held by a predecessor that will never run."""
        fact = self.view.runs.get((up, q))
        entry = self._entry(node)
        if fact is None or entry is None or fact.rev > entry.since or entry.covers_history(partition):
            return False
        return (node, partition) not in self.view.backfills

    # -- decisions (semantics `dag-due`, `failure-handler`) ------------------------------------------------------------

    def act(self, node: NodeId) -> Action | None:
        """``decide``'s action without a verdict, the common outcomes of a full pass answered first: a root never
        acts, nor does a fresh DAG (no failure handler), unless an unconfirmed intent may need a resume
        (semantics `run-confirms-intent`). A root's freshness is left to the first DAG below it that asks (``fresh``
        computes it then)."""
        ledger = self._ledger.get(node)
        if ledger is None or ledger.status is _DONE:
            spec = self.graph.dags[node]
            if not spec.on_failure_of:
                if not spec.upstreams:
                    return None
                fresh = self._fresh.get(node)
                if fresh is None:
                    fresh = self._fresh[node] = self._compute_fresh(node, spec, self._runs.get(node), ledger)
                if fresh:
                    return None
        return self.decide(node)[1]

    def decide(self, node: NodeId) -> tuple[Verdict | None, Action | None]:
        """The verdict (None when not explaining) and the action, if any, for one DAG in this partition."""
        # Both facts looked up once for the two steps (a pass does this for every DAG of every partition).
        fact, ledger = self._runs.get(node), self._ledger.get(node)
        verdict, action = self._decide(node, fact, ledger)
        if ledger is not None and ledger.status is not _DONE:
            # Semantics `run-confirms-intent`. An unconfirmed intent whose run already reported a state after it: the
            # Airflow call happened (crash between the call and the confirmation). Confirm it, whatever D's freshness
            # says, so the ledger never stays pending. Only where the call may have happened: a create, or a clear after
            # its queued_at was recorded (a state write before that may come from an attempt older than the intent).
            called = ledger.action is TriggerAction.CREATE or ledger.record.prior_queued_at is not None
            # Semantics `permit-waiting-run`: a scheduled DAG's run that started after the intent withdrew the permit
            # waits for it: the grant alone completes the intent.
            waiting = fact is not None and fact.state.active and node in self.graph.scheduled
            # Also when D is already fresh from it: the intent's purpose is met, whoever restarted the run.
            if fact is not None and fact.rev > ledger.intent_rev and (called or waiting or self.fresh(node)):
                action = Resume(node, self.partition, ledger, "confirm: the triggered run already started", True)
        return verdict, action

    def _decide(
        self, node: NodeId, fact: RunFact | None, ledger: LedgerFact | None
    ) -> tuple[Verdict | None, Action | None]:
        spec = self.graph.dags[node]
        state = fact.state if fact is not None else None
        fresh = self._fresh.get(node)
        if fresh is None:  # self.fresh(node) without looking the facts up again
            fresh = self._fresh[node] = self._compute_fresh(node, spec, fact, ledger)
        explain = self.explain
        # Without verdicts the common outcomes end here: a root never acts, and a fresh DAG's upstreams are all
        # fresh, so nothing below would act for it (failure handlers decide on their sources' failures instead).
        if not explain and not spec.on_failure_of and (fresh or not spec.upstreams):  # a root, or fresh (no handler)
            return None, None

        def verdict(summary: str, *reasons: str, blocked: tuple[NodeId, ...] = (), due: bool = False) -> Verdict | None:
            if not explain:
                return None
            return Verdict(node, self.partition, state, fresh, due, summary, reasons, blocked, ledger)

        # The three common outcomes without an action skip their wording entirely when not explaining.
        if spec.is_root:
            return (verdict(_root_summary(node, spec, fact)) if explain else None), None
        if spec.is_failure_handler:
            summary, action = self._decide_handler(node, spec, fact, ledger)
            return verdict(summary, due=action is not None and isinstance(action, Trigger)), action

        edges = self.graph.edge_inputs.get(node)
        blocked, unsatisfied, failing = self._blocked(node, spec, edges)
        if ledger is not None and node in self.graph.scheduled and (change := self._permit_change(node, fact, ledger)):
            return verdict(change[0]), change[1]  # even while blocked: what it was granted on is gone
        if blocked:
            if not explain:
                return None, None
            if edges is not None:
                reasons = tuple(self._edge_reason(node, edge) for edge in unsatisfied)
                reasons += tuple(self._group_reason(node, group, members) for group, members in failing)
            else:
                reasons = tuple(self._blocked_reason(node, up) for up in blocked)
            return verdict(self._waits(node, fact, ledger) + "; ".join(reasons), *reasons, blocked=blocked), None
        if fresh:
            if not explain:
                return None, None
            return verdict(f"{node} is up to date (succeeded at revision {fact.rev if fact else 0})"), None
        stale = self._stale_reason.get(node)
        gate = self._in_flight(node, fact, ledger)
        if gate is not None:
            return verdict(gate[0], *((stale,) if stale else ())), gate[1]
        if node in self.graph.gated:
            waiting = self.gate_wait(node)
            if waiting is not None:
                return verdict(f"{node} waits: {waiting}", waiting), None
        if self.view.flaps:
            held = self.flap_wait(node, spec)
            if held is not None:
                return verdict(f"{node} waits: {held}", held, *((stale,) if stale else ())), None
        return self._decide_inputs(node, spec, fact, ledger, edges is not None, stale, verdict)

    def _waits(self, node: NodeId, fact: RunFact | None, ledger: LedgerFact | None) -> str:
        """How a blocked verdict begins: a scheduled DAG's run that waits for its permit says so (semantics
        `permit-waiting-run`), with its run and since when."""
        if fact is None or not fact.state.active or ledger is not None or node not in self.graph.scheduled:
            return f"{node} waits: "
        since = f" since {fact.start_date.isoformat()}" if fact.start_date is not None else ""
        return f"{node} waits in Airflow for its permit (run {fact.run_id}{since}): "

    def _blocked(
        self, node: NodeId, spec: DagSpec, edges: Sequence[EdgeSpec] | None
    ) -> tuple[tuple[NodeId, ...], list[EdgeSpec], list[tuple[GroupSpec, list[EdgeSpec]]]]:
        """The upstreams that keep ``node`` waiting, and with edges the unsatisfied required edges and each group
        that is not met with its unsatisfied members (semantics `group-holds`)."""
        unsatisfied: list[EdgeSpec] = []
        failing: list[tuple[GroupSpec, list[EdgeSpec]]] = []
        if edges is not None:
            unsatisfied = [edge for edge in edges if not self.edge_fresh(node, edge)]
            if spec.groups:  # semantics `group-holds`
                unsatisfied, failing = self._unmet(spec, unsatisfied)
            blocked = tuple(sorted({edge.source for edge in unsatisfied} | {e.source for _, es in failing for e in es}))
        elif node in self.graph.mapped_edges:
            blocked = tuple(up for up in spec.upstreams if not self.source_fresh(node, up))
        else:
            blocked = tuple(up for up in spec.upstreams if not self.fresh(up))
        return blocked, unsatisfied, failing

    def _decide_inputs(
        self,
        node: NodeId,
        spec: DagSpec,
        fact: RunFact | None,
        ledger: LedgerFact | None,
        has_edges: bool,
        stale: str | None,
        verdict: Callable[..., Verdict | None],
    ) -> tuple[Verdict | None, Action | None]:
        """A stale DAG whose upstreams are all fresh: already triggered for these inputs, not adopted for them, or
        due."""
        state = fact.state if fact is not None else None
        inputs = self.inputs(spec)
        if ledger is not None and ledger.inputs == inputs:
            if state is RunState.FAILED:
                return verdict(
                    f"{node} failed for these inputs; the coordinator does not retry failures "
                    "(clear the run in Airflow to retry)"
                ), None
            return verdict(f"{node} was already triggered for these inputs (revision {ledger.intent_rev})"), None
        cause = max(inputs.values())
        if not self._activated(node, spec, cause, ledger):
            since = self.since(node, spec)
            why = (
                "its definition is not adopted yet"
                if since is None
                else f"its inputs predate its definition (active since revision {since})"
            )
            return verdict(
                f"{node} is not triggered: {why}; run `coordinator backfill {node} --from {self.partition} --to "
                f"{self.partition}` to process it",
                *((stale,) if stale else ()),
            ), None
        if has_edges:
            texts = [f"{name} at revision {rev}" for name, rev in sorted(inputs.items())]
        else:
            texts = [self._input_text(node, up, inputs) for up in spec.upstreams]
        met = "its conditions hold: " if spec.groups else "all upstreams succeeded: "
        reason = stale or (met + ", ".join(texts))
        action = self._trigger(node, fact, ledger, inputs, reason, cause)
        return verdict(f"{node} is due: {reason}", reason, due=True), action

    def _decide_handler(
        self, node: NodeId, spec: DagSpec, fact: RunFact | None, ledger: LedgerFact | None
    ) -> tuple[str, Action | None]:
        failures: dict[str, int] = {}
        named: dict[str, str] = {}
        for src in spec.on_failure_of:
            for q in self.sources(node, src):
                src_fact = self.at(q).run(src)
                if src_fact is not None and src_fact.state is RunState.FAILED:
                    key = input_key(src, q, self.partition)
                    failures[key] = src_fact.rev
                    named[key] = str(src) if q == self.partition else f"{src} {q}"
        handled = ledger.inputs if ledger is not None else {}
        new = {src: rev for src, rev in failures.items() if handled.get(src) != rev}
        if not new:
            if failures:
                return f"{node} already ran for the current failures", None
            return f"{node} waits for a failure of " + ", ".join(map(str, spec.on_failure_of)), None
        gate = self._in_flight(node, fact, ledger)
        if gate is not None:
            return gate
        cause = max(new.values())
        if not self._activated(node, spec, cause, ledger):
            return f"{node} is not triggered: the failure predates its definition", None
        reason = ", ".join(f"{named[src]} failed at revision {rev}" for src, rev in sorted(new.items()))
        action = self._trigger(node, fact, ledger, handled | failures, reason, cause)
        return f"{node} is due: {reason}", action

    def _in_flight(
        self, node: NodeId, fact: RunFact | None, ledger: LedgerFact | None
    ) -> tuple[str, Action | None] | None:
        """A reason not to decide anything new while an attempt or an intent is unfinished."""
        # Semantics `permit-waiting-run`: a scheduled DAG's run without a granted permit is waiting for one (none yet,
        # or an intent to complete below).
        waiting = node in self.graph.scheduled and (ledger is None or not ledger.permit_granted)
        if fact is not None and fact.state.active and not waiting:
            return f"{node} is {fact.state} (run {fact.run_id})", None
        if ledger is None or (ledger.withdrawn is not None and node in self.graph.scheduled):  # `permit-retracted`
            return None
        status = ledger.status
        if status is TriggerStatus.PENDING:
            return (
                f"{node} has an unconfirmed trigger (revision {ledger.intent_rev}); completing it",
                Resume(
                    node, self.partition, ledger, "complete an unconfirmed intent", definition=self._definition(node)
                ),
            )
        if status is TriggerStatus.ERROR:
            # Semantics `trigger-errors`: retried at the entry's retry_at, or at once when the DAG's definition was
            # adopted after the refused try's (a changed graph may be the fix: a key_format removed, an upstream
            # changed).
            redefined = self._redefined(node, ledger)
            retry_at = ledger.record.retry_at
            when = (
                "retrying now: its definition changed after the error"
                if redefined
                else f"next try at {retry_stamp(retry_at)}"
                if retry_at is not None
                else "retrying"
            )
            return (
                f"{node} trigger failed: {ledger.last_error or 'unknown error'}; {when}",
                Resume(
                    node,
                    self.partition,
                    ledger,
                    "retry a trigger Airflow refused",
                    redefined=redefined,
                    definition=self._definition(node),
                ),
            )
        if node in self.graph.scheduled and (fact is None or fact.rev < ledger.intent_rev):
            at = ledger.record.done_at
            when = f" at {at.isoformat()}" if at is not None else ""
            run = "has not started yet" if fact is None else f"{fact.run_id} is {fact.state}"
            return (
                f"{node}'s permit is granted (generation {ledger.trigger_count}, revision {ledger.intent_rev}{when}); "
                f"its run {run}",
                None,
            )
        if fact is None or fact.rev < ledger.intent_rev:
            return (
                f"{node} was triggered at revision {ledger.intent_rev} (run {ledger.run_id}) and has not started yet",
                None,
            )
        return None

    def _permit_change(self, node: NodeId, fact: RunFact | None, ledger: LedgerFact) -> tuple[str, Resume] | None:
        """Semantics `permit-retracted`: withdraw a granted permit whose run has not started once an input it was
        granted on is gone; give one back whose run was recorded before the withdrawal landed."""
        if ledger.withdrawn is not None and fact is not None and fact.rev < ledger.mod_rev:
            back = Resume(node, self.partition, ledger, "give back a permit its run may have used", withdraw="")
            return f"{node}'s run {fact.run_id} started before its permit was withdrawn: giving it back", back
        here = self.partition  # each upstream partition's (ledger input key, name, generation now)
        now = ((input_key(up, q, here), str(up) if q == here else f"{up} {q}", self.at(q).generation(up))
               for up in self.graph.dags[node].upstreams for q in self.sources(node, up))  # fmt: skip
        if fact is None and ledger.permit_granted and (lost := lost_input(ledger, now)):
            off = Resume(node, self.partition, ledger, "withdraw a permit its run has not used", withdraw=lost)
            return f"{node}'s permit (generation {ledger.trigger_count}) is withdrawn: {lost}", off
        return None

    def _activated(self, node: NodeId, spec: DagSpec, cause: int, ledger: LedgerFact | None) -> bool:
        entry = self._entry(node)
        # Semantics `first-adoption`: a first adoption also processes the history it found (for the partitions it was
        # told to).
        if entry is not None and (cause > entry.since or entry.covers_history(self.partition)):
            return True
        backfill = self.view.backfills.get((node, self.partition))
        return backfill is not None and (ledger is None or backfill > ledger.intent_rev)

    def _trigger(
        self,
        node: NodeId,
        fact: RunFact | None,
        ledger: LedgerFact | None,
        inputs: dict[str, int],
        reason: str,
        cause: int,
    ) -> Trigger:
        known_run = ledger is not None or fact is not None
        if node in self.graph.scheduled:
            # Semantics `permit-not-run` and `permit-cascade`: a run of P that finished is rerun for the new permit;
            # otherwise (none yet, or one waiting) the permit alone is granted.
            known_run = fact is not None and not fact.state.active
        # The run we manage if we ever created or cleared one, else the run Airflow already has for P (a scheduled
        # or manual run: Airflow allows one run per logical date, so it is cleared rather than duplicated). A run of
        # P that an Airflow writer recorded after our last intent stands over ours (semantics `newest-run-stands`: a
        # key triggered again, a newer asset-triggered run): clearing ours would make an attempt that is never
        # recorded, so that newer run is the one cleared.
        if fact is not None and node in self.graph.scheduled:
            run_id = fact.run_id  # Airflow's own run of P: the plugin's record names it
        elif ledger is not None and not _newer_airflow_run(fact, ledger):
            run_id = ledger.run_id
        elif fact is not None:
            run_id = fact.run_id
        else:
            run_id = run_id_for(self.partition)
        return Trigger(
            node=node,
            partition=self.partition,
            inputs=inputs,
            action=TriggerAction.CLEAR if known_run else TriggerAction.CREATE,
            run_id=run_id,
            reason=reason,
            cause_rev=cause,
            ledger_rev=ledger.mod_rev if ledger is not None else 0,
            trigger_count=(ledger.trigger_count + 1) if ledger is not None else 1,
            cause_at=self._cause_at(node) if node in self.graph.scheduled else None,
            definition=self._definition(node),
        )

    def _cause_at(self, node: NodeId) -> datetime | None:
        """When the newest upstream run ``node`` waits for here ended (its permit's delay starts there)."""
        ends = [
            fact.end_date
            for up in self.graph.dags[node].upstreams
            for q in self.sources(node, up)
            if (fact := self.at(q).run(up)) is not None and fact.end_date is not None
        ]
        return max(ends, default=None)

    def _input_text(self, node: NodeId, up: NodeId, inputs: Mapping[str, int]) -> str:
        needed = self.sources(node, up)
        if needed == (self.partition,):
            return f"{up} at revision {inputs[up.qualified]}"
        revs = [inputs[input_key(up, q, self.partition)] for q in needed]
        if len(needed) == 1:
            return f"{up} {needed[0]} at revision {revs[0]}"
        return f"{up} {len(needed)} partitions {needed[0]}..{needed[-1]} (newest at revision {max(revs)})"

    def _blocked_reason(self, node: NodeId, up: NodeId) -> str:
        """Why ``up`` blocks ``node`` here: its state (same partition), or how much of the mapped window is done."""
        needed = self.sources(node, up)
        if needed == (self.partition,):
            return self._upstream_reason(up)
        if not needed:
            spec = self.graph.dags[node]
            if spec.segments is not None or has_segment(self.partition):
                declared = f" (its segments: {spec.segments})" if spec.segments is not None else ""
                return f"nothing of {up} maps to {self.partition} for {node}{declared}"
            return f"{self.partition} is not a point of {node}'s grid ({spec.grid}); nothing maps to it"
        if len(needed) == 1:
            return f"needs {up} for {needed[0]}: " + self.at(needed[0])._upstream_reason(up)
        missing = [q for q in needed if not self.at(q).fresh(up)]
        done = len(needed) - len(missing)
        window = self.partition[:10] if self.partition.endswith("T00:00:00Z") else self.partition
        return f"{up}: {done} of {len(needed)} partitions of {window} succeeded; missing {span(needed, missing)}"

    def _upstream_reason(self, up: NodeId) -> str:
        fact = self.run(up)
        if fact is None:
            return f"{up} has not run for this partition"
        state = fact.state
        if state is RunState.SUCCESS:
            return f"{up} is stale ({self._stale_reason.get(up) or 'its own upstreams are not fresh'})"
        if state is RunState.FAILED:
            return f"{up} failed (run {fact.run_id}, revision {fact.rev})"
        return f"{up} is {state} (run {fact.run_id}, attempt {fact.clear_number})"


def next_cutoff(graph: Graph, view: View, now: datetime) -> datetime | None:
    """The first cutoff after ``now`` of a partition the view knows (semantics `group-cutoff`), for the DAGs with a
    cutoff: when the plan may change with nothing written. None when no cutoff is ahead. The caller plans again then
    (``plan(..., now=that time)``); a cutoff of a partition with nothing in the store yet changes nothing, so the
    partitions a pass plans are the ones that count."""
    cutoffs = graph.cutoff_groups
    if not cutoffs:
        return None
    found: datetime | None = None
    for partition in partitions_to_plan(graph, view):
        for group in cutoffs:
            at = group.cutoff_at(partition)
            if at is not None and at > now and (found is None or at < found):
                found = at
    return found


def _root_summary(node: NodeId, spec: DagSpec, fact: RunFact | None) -> str:
    if spec.is_late_handler:
        # Its runs are dated when a deadline state changed, not by the partitions it is about
        # (semantics `deadlines-judged`).
        sources = ", ".join(str(src) for src in spec.on_late_of)
        return f"{node} (late handler of {sources}) runs when their deadline state changes, never on a schedule"
    if fact is None:
        return f"{node} (root) has not run for this partition"
    return f"{node} (root) is {fact.state} (run {fact.run_id}, revision {fact.rev})"


#: The sources of run states that Airflow's own runs write (the plugin, the REST audit): a run id such a writer
#: recorded is a run Airflow holds.
AIRFLOW_SOURCES = ("airflow-plugin", "audit")


def _newer_airflow_run(fact: RunFact | None, ledger: LedgerFact) -> bool:
    """Whether ``fact`` is another Airflow run of the partition than the ledger's, recorded after the ledger's last
    intent: under semantics `newest-run-stands` it stands over the run the ledger names."""
    return (
        fact is not None
        and fact.run_id != ledger.run_id
        and fact.rev > ledger.intent_rev
        and fact.source.startswith(AIRFLOW_SOURCES)
    )
