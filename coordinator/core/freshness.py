"""Freshness in one partition: whether a DAG has consumed the current generation of every upstream it reads there,
and which generations those are (semantics `root-fresh`, `fresh-consumed` with `consumed-by-ledger` and
`consumed-by-order`, `joins-per-partition`, `partition-grids`; a whole run's success waived by a rerun counts as
consumed, semantics `no-cascade-once`). A DAG whose upstreams are all plain whole-run successes is judged here, on the
fast path; a DAG with extended edges or condition groups by ``core/edge_judgement.py``, which this class inherits.

:class:`PartitionFreshness` is a part of the planner of one partition (``planner._PartitionPlanner`` inherits it and
decides on it): it holds the partition's facts and the freshness memo, and reads another partition through the
planner's ``at``. Fresh is a fact about the store, not a decision: what to do about a stale DAG (due, held, in flight,
the trigger and its words) is the planner's.

Rules:
- **Pure.** No I/O, no clock, no randomness, no logging: same graph + same view = same answer.
- **Mapped partitions.** Across an edge between two gridded DAGs, "upstream U for P" is U for EVERY partition
  ``graph.source_partitions(D, U, P)``; ledger inputs from another partition are keyed ``dag@partition``
  (``model.input_key``), so a ledger written before grids existed reads exactly as before. A shift or a member is
  such a mapping too (nothing new here).
- **Task-level upstreams.** (U, t) is fresh for Q exactly as U would be, with the task's state in place of U's run
  state (U's own upstreams and U's ledger as they are); its generation is the revision of the task's success write,
  its ledger input key ``instance/dag_id:task_id`` (``@Q`` when mapped).
- **Finished edges.** A failed state of the upstream (or task) satisfies the edge, with the revision of that failed
  write as generation; a success must be fresh. A new terminal write reruns D once.
"""

from __future__ import annotations

from datetime import datetime

from coordinator.core.edge_judgement import EdgeJudgement
from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import NodeId, RunState, input_key, task_input_key
from coordinator.core.newer_input import newer_input
from coordinator.core.view import LedgerFact, RunFact, View

#: ``RunState.SUCCESS`` as a module constant: an enum member read is a descriptor call in Python 3.11 (~45 ns), made
#: for every DAG of every partition.
_SUCCESS = RunState.SUCCESS


class PartitionFreshness(EdgeJudgement):
    """The facts of one partition and the freshness of its DAGs, memoised (the module's docstring)."""

    def __init__(self, graph: Graph, view: View, partition: str, *, now: datetime | None = None) -> None:
        self.graph = graph
        self.now = now
        self.view = view
        #: This partition's facts by DAG (``FactIndex.in_partition``), read once per DAG in a pass: no tuple key.
        self._runs, self._ledger = view.runs.in_partition(partition), view.ledger.in_partition(partition)
        self.partition = partition
        self._fresh: dict[NodeId, bool] = {}
        self._stale_reason: dict[NodeId, str] = {}
        self._task_fresh: dict[tuple[NodeId, str], bool] = {}

    def sources(self, node: NodeId, source: NodeId) -> tuple[str, ...]:
        """The partitions of ``source`` that ``node`` needs for this partition (semantics `partition-grids`;
        semantics `joins-per-partition` without grids)."""
        mapped = self.graph.mapped_edges.get(node)
        if mapped is None or source not in mapped:
            return (self.partition,)
        return self.graph.source_partitions(node, source, self.partition)

    def source_fresh(self, node: NodeId, source: NodeId) -> bool:
        """Whether ``source`` is fresh in every partition ``node`` needs it for here (none needed: not fresh)."""
        needed = self.sources(node, source)
        # Newest first: partitions mostly arrive in time order, so an incomplete window fails on its first check and
        # a rollup's pass costs what changed, not the window's size (the result does not depend on the order).
        return bool(needed) and all(self.at(q).fresh(source) for q in reversed(needed))

    # -- facts -------------------------------------------------------------------------------------------------

    def run(self, node: NodeId) -> RunFact | None:
        return self._runs.get(node)

    def ledger(self, node: NodeId) -> LedgerFact | None:
        return self._ledger.get(node)

    def generation(self, node: NodeId) -> int | None:
        fact = self.run(node)
        return fact.rev if fact is not None and fact.state is _SUCCESS else None

    def inputs(self, spec: DagSpec) -> dict[str, int]:
        result: dict[str, int] = {}
        edges = self.graph.edge_inputs.get(spec.node)
        if edges is not None:  # semantics `extended-edges`: edge by edge
            grouped = self.graph.grouped.get(spec.node)
            for edge in edges:
                if grouped is not None and (edge.source, edge.task) in grouped and not self.edge_fresh(spec.node, edge):
                    continue  # semantics `group-consumed`: a run's inputs are the members satisfied when it is decided
                for q in self.sources(spec.node, edge.source):
                    gen = self.at(q).edge_generation(edge)
                    if gen is not None:
                        result[task_input_key(edge.source, edge.task, q, self.partition)] = gen
            return result
        # semantics `joins-per-partition`: the hot path of every graph without grids
        if spec.node not in self.graph.mapped_edges:
            for up in spec.upstreams:
                gen = self.generation(up)
                if gen is not None:
                    result[up.qualified] = gen
            return result
        for up in spec.upstreams:
            for q in self.sources(spec.node, up):
                gen = self.at(q).generation(up)
                if gen is not None:
                    result[input_key(up, q, self.partition)] = gen
        return result

    # -- freshness (semantics `root-fresh`, `fresh-consumed`) ----------------------------------------------------------

    def fresh(self, node: NodeId) -> bool:
        cached = self._fresh.get(node)
        if cached is None:
            cached = self._compute_fresh(node, self.graph.dags[node], self.run(node), self.ledger(node))
            self._fresh[node] = cached
        return cached

    def _compute_fresh(self, node: NodeId, spec: DagSpec, fact: RunFact | None, ledger: LedgerFact | None) -> bool:
        if fact is None or fact.state is not _SUCCESS:
            return False
        # The fields, not the ``is_failure_handler`` / ``is_root`` properties: this runs for every DAG of every
        # partition in a full pass (a million calls each at start-up on a big store).
        if spec.on_failure_of:
            return ledger is None or fact.rev > ledger.intent_rev
        if not spec.upstreams:  # a root
            return True
        edges = self.graph.edge_inputs.get(node)
        if edges is not None:
            return self._fresh_by_edges(node, edges, fact, ledger)
        mapped = node in self.graph.mapped_edges
        known = self._fresh
        for up in spec.upstreams:
            # self.fresh(up) inlined when not mapped: this runs for every DAG of every partition in a full pass.
            up_fresh = self.source_fresh(node, up) if mapped else known.get(up)
            if up_fresh is None:
                up_fresh = self.fresh(up)
            if not up_fresh:
                self._stale_reason[node] = f"its upstream {up} is not fresh"
                return False
        if ledger is not None and fact.rev <= ledger.intent_rev:
            return self._not_since_trigger(node, ledger)
        from_last_trigger = ledger is not None  # a success after the last trigger's intent is that attempt's
        # every upstream read in this partition (semantics `joins-per-partition`): the hot path of a pass
        if not mapped:
            return self._consumed_here(node, spec, fact, ledger, from_last_trigger)
        for up in spec.upstreams:
            for q in self.sources(node, up):
                gen = self.at(q).generation(up)  # a fresh upstream has a success there
                assert gen is not None
                key = input_key(up, q, self.partition)
                recorded = ledger.input(key) if ledger is not None else None
                consumed = recorded == gen if recorded is not None and from_last_trigger else fact.rev > gen
                if not consumed and self.view.no_cascade:
                    consumed = self.at(q).consumed_waived(up, recorded, from_last_trigger, fact.rev)
                if not consumed:
                    which = str(up) if q == self.partition else f"{up} {q}"
                    self._stale_reason[node] = newer_input(
                        which, self.at(q).run(up), gen, node, fact.rev, recorded, from_last_trigger
                    )
                    return False
        return True

    def _not_since_trigger(self, node: NodeId, ledger: LedgerFact) -> bool:
        """False, with the stale reason, for a DAG whose success predates its last trigger's intent: the triggered
        attempt has not succeeded yet (semantics `consumed-by-ledger`)."""
        self._stale_reason[node] = f"{node} was triggered at revision {ledger.intent_rev} and has not succeeded since"
        return False

    def consumed_waived(self, up: NodeId, recorded: int | None, from_last_trigger: bool, rev: int) -> bool:
        """Semantics `no-cascade-once`: whether ``up``'s current success here is the one a ``rerun --no-cascade``
        waived, and the dependent (its ledger's ``recorded`` input, or its success at ``rev``) had consumed the
        generation it replaces: the dependent stays as it is. Called only when the plain check said not consumed."""
        record = self.view.no_cascade.get((up, self.partition))
        if record is None:
            return False
        old = record.waived(self.run(up))
        if old is None:
            return False
        return recorded == old if recorded is not None and from_last_trigger else rev > old

    def _consumed_here(
        self, node: NodeId, spec: DagSpec, fact: RunFact, ledger: LedgerFact | None, from_last_trigger: bool
    ) -> bool:
        """Semantics `fresh-consumed`'s consumption check (the loop above) for a DAG without mapped edges, every
        upstream read in this partition, with the lookups inlined: a full pass does this once per DAG and partition."""
        runs = self._runs
        names = ledger.input_names if ledger is not None else ()
        revs = ledger.input_revs if ledger is not None else ()
        for up in spec.upstreams:
            gen = runs[up].rev  # a fresh upstream has a success here
            key = up.qualified
            recorded = revs[names.index(key)] if key in names else None  # LedgerFact.input
            consumed = recorded == gen if recorded is not None and from_last_trigger else fact.rev > gen
            if not consumed and self.view.no_cascade:
                consumed = self.consumed_waived(up, recorded, from_last_trigger, fact.rev)
            if not consumed:
                self._stale_reason[node] = newer_input(
                    str(up), runs[up], gen, node, fact.rev, recorded, from_last_trigger
                )
                return False
        return True
