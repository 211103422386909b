"""How the planner judges a DAG edge by edge: task-level and "finished" edges, edges across partition grids, and
condition groups (semantics `extended-edges`, `edge-task`, `edge-finished`, `condition-groups`; a whole run's success
waived by a rerun counts as consumed, semantics `no-cascade-once`). A DAG whose upstreams are all plain same-date
whole-run successes is judged by the fast path of freshness instead (``core/freshness.py``); this is the general path,
and the words of why an edge or a group blocks a DAG.

:class:`EdgeJudgement` is a part of the planner of one partition (``freshness.PartitionFreshness`` inherits it, and
``planner._PartitionPlanner`` that): it holds no state of its own and reads the partition's facts, memos and clock
through them, whose members it names below so that ``mypy --strict`` checks both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from coordinator.core.conditions import GroupSpec, Late, Member, groups_met
from coordinator.core.graph import Condition, DagSpec, EdgeSpec, Graph
from coordinator.core.model import NodeId, RunState, task_input_key
from coordinator.core.newer_input import newer_input
from coordinator.core.view import LedgerFact, RunFact, View

if TYPE_CHECKING:
    from typing import Self


class EdgeJudgement:
    """The general path of freshness and of the reasons (the module's docstring)."""

    # What the partition's freshness provides (``freshness.PartitionFreshness``; ``at``: ``planner._PartitionPlanner``).
    graph: Graph
    view: View
    partition: str
    now: datetime | None
    _runs: Mapping[NodeId, RunFact]
    _fresh: dict[NodeId, bool]
    _stale_reason: dict[NodeId, str]
    _task_fresh: dict[tuple[NodeId, str], bool]

    def at(self, partition: str) -> Self:
        raise NotImplementedError

    def run(self, node: NodeId) -> RunFact | None:
        raise NotImplementedError

    def ledger(self, node: NodeId) -> LedgerFact | None:
        raise NotImplementedError

    def fresh(self, node: NodeId) -> bool:
        raise NotImplementedError

    def sources(self, node: NodeId, source: NodeId) -> tuple[str, ...]:
        raise NotImplementedError

    def _compute_fresh(self, node: NodeId, spec: DagSpec, fact: RunFact | None, ledger: LedgerFact | None) -> bool:
        raise NotImplementedError

    def _not_since_trigger(self, node: NodeId, ledger: LedgerFact) -> bool:
        raise NotImplementedError

    def consumed_waived(self, up: NodeId, recorded: int | None, from_last_trigger: bool, rev: int) -> bool:
        raise NotImplementedError

    def edge_fact(self, edge: EdgeSpec) -> RunFact | None:
        """The latest state the edge reads here: the upstream's run, or its task's instance (semantics `edge-task`)."""
        if edge.task is None:
            return self.run(edge.source)
        return self.view.tasks.get((edge.source, edge.task, self.partition))

    def edge_generation(self, edge: EdgeSpec) -> int | None:
        """The generation that satisfies ``edge`` in this partition (semantics `edge-task`, `edge-finished`); None when
        it is not satisfied."""
        fact = self.edge_fact(edge)
        if fact is None:
            return None
        if fact.state is RunState.FAILED and edge.condition is Condition.FINISHED:
            return fact.rev
        if fact.state is not RunState.SUCCESS:
            return None
        fresh = self.fresh(edge.source) if edge.task is None else self.task_fresh(edge.source, edge.task, fact)
        return fact.rev if fresh else None

    def task_fresh(self, node: NodeId, task: str, fact: RunFact) -> bool:
        """Semantics `edge-task`: (node, task) judged like ``node`` with the task's success in place of the run's."""
        key = (node, task)
        cached = self._task_fresh.get(key)
        if cached is None:
            reason = self._stale_reason.get(node)  # the DAG's own reason stays its own
            cached = self._task_fresh[key] = self._compute_fresh(node, self.graph.dags[node], fact, self.ledger(node))
            if reason is None:
                self._stale_reason.pop(node, None)
            else:
                self._stale_reason[node] = reason
        return cached

    def edge_fresh(self, node: NodeId, edge: EdgeSpec) -> bool:
        """Whether ``edge`` of ``node`` is satisfied in every partition it maps to here (none: not satisfied), or,
        for an edge that counts its partitions, in as many as it needs now (semantics `partition-count`)."""
        needed = self.sources(node, edge.source)
        if edge.count is not None:
            have = sum(self.at(q).edge_generation(edge) is not None for q in needed)
            return bool(needed) and have >= edge.count.need(self.partition, len(needed), self.now)
        return bool(needed) and all(self.at(q).edge_generation(edge) is not None for q in reversed(needed))

    def _fresh_by_edges(
        self, node: NodeId, edges: tuple[EdgeSpec, ...], fact: RunFact, ledger: LedgerFact | None
    ) -> bool:
        """Semantics `fresh-consumed` for a DAG with task-level or "finished" edges or condition groups: every
        required edge satisfied and consumed, every group holding and its consumed members current (semantics
        `group-fresh`)."""
        if node in self.graph.plain_grouped:
            return self._fresh_by_groups_here(node, fact, ledger)
        grouped = self.graph.grouped.get(node)
        satisfied: set[Member] = set()
        for edge in edges:
            ok = self.edge_fresh(node, edge)
            if grouped is not None and (edge.source, edge.task) in grouped:
                if ok:
                    satisfied.add((edge.source, edge.task))
            elif not ok:
                self._stale_reason[node] = f"its upstream {_edge_name(edge)} is not satisfied"
                return False
        if grouped is not None:
            groups = self.graph.dags[node].groups
            if not groups_met(groups, satisfied, self.partition, self.now):
                failing = next(g for g in groups if not groups_met((g,), satisfied, self.partition, self.now))
                self._stale_reason[node] = f"its condition {failing.describe()} does not hold"
                return False
        if ledger is not None and fact.rev <= ledger.intent_rev:
            return self._not_since_trigger(node, ledger)
        from_last_trigger = ledger is not None  # a success after the last trigger's intent is that attempt's
        for edge in edges:
            if grouped is not None and (edge.source, edge.task) in grouped:
                if (edge.source, edge.task) in satisfied and not self._member_consumed(node, edge, fact, ledger):
                    return False
                continue
            for q in self.sources(node, edge.source):
                gen = self.at(q).edge_generation(edge)
                if gen is None:
                    assert edge.count is not None  # semantics `partition-count`: enough, not all, are satisfied
                    continue
                recorded = ledger.input(task_input_key(edge.source, edge.task, q, self.partition)) if ledger else None
                if edge.count is not None and recorded is None and from_last_trigger:
                    continue  # semantics `count-unconsumed`: it arrived after D's run was decided
                consumed = recorded == gen if recorded is not None and from_last_trigger else fact.rev > gen
                if not consumed and edge.task is None and self.view.no_cascade:
                    consumed = self.at(q).consumed_waived(edge.source, recorded, from_last_trigger, fact.rev)
                if not consumed:
                    which = _edge_name(edge) if q == self.partition else f"{_edge_name(edge)} {q}"
                    self._stale_reason[node] = newer_input(
                        which, self.at(q).edge_fact(edge), gen, node, fact.rev, recorded, from_last_trigger
                    )
                    return False
        if ledger is not None and not self._late_counted(node, edges, ledger):
            return False
        if grouped is not None and ledger is not None:
            return self._late_consumed(node, edges, satisfied, ledger)
        return True

    def _late_counted(self, node: NodeId, edges: tuple[EdgeSpec, ...], ledger: LedgerFact) -> bool:
        """Semantics `count-late`: an edge that counts its partitions, whose run (the last trigger's) consumed fewer
        than it needs before its cutoff, and which now has them, is stale once when ``late`` is ``rerun``."""
        for edge in edges:
            count = edge.count
            if count is None or not count.has_cutoff or count.late is Late.IGNORE:
                continue
            needed = self.sources(node, edge.source)
            want = count.need(self.partition, len(needed), None)  # before any cutoff
            have = sum(self.at(q).edge_generation(edge) is not None for q in needed)
            if have < want:
                continue
            keys = (task_input_key(edge.source, edge.task, q, self.partition) for q in needed)
            consumed = sum(ledger.input(key) is not None for key in keys)
            if consumed < want:
                self._stale_reason[node] = (
                    f"{node} ran at its cutoff with {consumed} of {len(needed)} partitions of {_edge_name(edge)}; "
                    f"the late ones are in: it reruns once"
                )
                return False
        return True

    def _fresh_by_groups_here(self, node: NodeId, fact: RunFact, ledger: LedgerFact | None) -> bool:
        """:meth:`_fresh_by_edges` for a DAG of ``Graph.plain_grouped`` (every edge a whole run's success in this
        partition), with the lookups inlined as :meth:`_consumed_here` does: a member is satisfied when it is fresh, its
        generation is its run's revision and its ledger key its qualified name. Same answers, a fraction of the cost
        (a full pass judges every DAG of every partition)."""
        spec = self.graph.dags[node]
        grouped = self.graph.grouped[node]
        known = self._fresh
        satisfied: set[Member] = set()
        for up in spec.upstreams:
            ok = known.get(up)
            if ok is None:
                ok = self.fresh(up)
            if (up, None) in grouped:
                if ok:
                    satisfied.add((up, None))
            elif not ok:
                self._stale_reason[node] = f"its upstream {up} is not satisfied"
                return False
        groups = spec.groups
        if not groups_met(groups, satisfied, self.partition, self.now):
            failing = next(g for g in groups if not groups_met((g,), satisfied, self.partition, self.now))
            self._stale_reason[node] = f"its condition {failing.describe()} does not hold"
            return False
        if ledger is not None and fact.rev <= ledger.intent_rev:
            return self._not_since_trigger(node, ledger)
        runs = self._runs
        names = ledger.input_names if ledger is not None else ()
        revs = ledger.input_revs if ledger is not None else ()
        for up in spec.upstreams:
            member = (up, None) in grouped
            if member and (up, None) not in satisfied:
                continue
            gen = runs[up].rev  # a satisfied member and a fresh required upstream have a success here
            key = up.qualified
            recorded = revs[names.index(key)] if key in names else None  # LedgerFact.input
            if member and ledger is not None and recorded is None:
                continue  # semantics `group-unconsumed`
            consumed = recorded == gen if recorded is not None and ledger is not None else fact.rev > gen
            if not consumed and self.view.no_cascade:
                consumed = self.consumed_waived(up, recorded, ledger is not None, fact.rev)
            if not consumed:
                self._stale_reason[node] = newer_input(
                    str(up), runs[up], gen, node, fact.rev, recorded, ledger is not None
                )
                return False
        if ledger is not None and any(g.has_cutoff for g in groups):
            return self._late_consumed(node, self.graph.edge_inputs[node], satisfied, ledger)
        return True

    def _late_consumed(
        self, node: NodeId, edges: tuple[EdgeSpec, ...], satisfied: set[Member], ledger: LedgerFact
    ) -> bool:
        """Semantics `group-late`: a group whose run (the last trigger's) consumed fewer members than it needs, at its
        cutoff, and which now has them all is stale once when ``late`` is ``rerun``."""
        for group in self.graph.dags[node].groups:
            if not group.has_cutoff or group.late is Late.IGNORE:
                continue
            if sum(m in satisfied for m in group.members) < group.need:
                continue
            consumed = sum(
                any(
                    ledger.input(task_input_key(e.source, e.task, q, self.partition)) is not None
                    for q in self.sources(node, e.source)
                )
                for e in edges
                if (e.source, e.task) in group.members
            )
            if consumed < group.need:
                self._stale_reason[node] = (
                    f"{node} ran at its cutoff with {consumed} of {group.describe()}; "
                    f"the late members are in: it reruns once"
                )
                return False
        return True

    def _member_consumed(self, node: NodeId, edge: EdgeSpec, fact: RunFact, ledger: LedgerFact | None) -> bool:
        """Semantics `group-fresh` for one satisfied member: with a ledger, a member it does not record was not
        consumed (semantics `group-unconsumed`) and one it records must still have the recorded generations; without
        one, every generation must be older than D's success (semantics `consumed-by-order`)."""
        keys = [
            (q, task_input_key(edge.source, edge.task, q, self.partition), self.at(q).edge_generation(edge))
            for q in self.sources(node, edge.source)
        ]
        recorded = [ledger.input(key) for _, key, _ in keys] if ledger is not None else []
        if ledger is not None and all(rev is None for rev in recorded):
            return True  # semantics `group-unconsumed`: it arrived after D's run was decided
        for i, (q, _, gen) in enumerate(keys):
            assert gen is not None  # a satisfied member has a generation in every partition it maps to
            used = recorded[i] if ledger is not None else None
            if (used == gen) if ledger is not None else (fact.rev > gen):
                continue
            waivers = edge.task is None and self.view.no_cascade
            if waivers and self.at(q).consumed_waived(edge.source, used, ledger is not None, fact.rev):
                continue
            which = _edge_name(edge) if q == self.partition else f"{_edge_name(edge)} {q}"
            self._stale_reason[node] = newer_input(
                which, self.at(q).edge_fact(edge), gen, node, fact.rev, used, ledger is not None
            )
            return False
        return True

    def _unmet(
        self, spec: DagSpec, unsatisfied: list[EdgeSpec]
    ) -> tuple[list[EdgeSpec], list[tuple[GroupSpec, list[EdgeSpec]]]]:
        """Semantics `group-holds`: the unsatisfied required edges, and each group that is not met with its
        unsatisfied members (a member of a group that is met blocks nothing)."""
        grouped = self.graph.grouped[spec.node]
        missing: set[Member] = {(e.source, e.task) for e in unsatisfied}
        satisfied = grouped - missing
        required = [e for e in unsatisfied if (e.source, e.task) not in grouped]
        failing = [
            (group, [e for e in unsatisfied if (e.source, e.task) in group.members])
            for group in spec.groups
            if not groups_met((group,), satisfied, self.partition, self.now)
        ]
        return required, failing

    def _group_reason(self, node: NodeId, group: GroupSpec, members: list[EdgeSpec]) -> str:
        """Why a group blocks ``node``: its rule, how many more members it needs (of how many, after a cutoff the
        minimum), and each missing one."""
        have = len(group.members) - len(members)
        need = group.need_at(self.partition, self.now)
        missing = "; ".join(self._edge_reason(node, e) for e in members)
        count = "none yet" if need == 1 else f"{need - have} more of {need} needed"  # "1 more of 1" is no English
        return f"runs when {group.describe()}: {count} ({missing})"

    def _edge_reason(self, node: NodeId, edge: EdgeSpec) -> str:
        """Why ``edge`` blocks ``node`` here, naming the first partition it maps to that is not satisfied."""
        needed = self.sources(node, edge.source)
        if not needed:
            return f"{_edge_name(edge)}: nothing maps to {self.partition}"
        missing = [q for q in needed if self.at(q).edge_generation(edge) is None]
        q = missing[0]
        if edge.count is not None:
            need = edge.count.need(self.partition, len(needed), self.now)
            have = len(needed) - len(missing)
            return (
                f"needs {need} of {len(needed)} partitions of {_edge_name(edge)} ({edge.count.describe(len(needed))}): "
                f"{have} satisfied, {need - have} more needed; missing {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        fact = self.at(q).edge_fact(edge)
        where = "" if q == self.partition else f" for {q}"
        if fact is None:
            state = "has not run"
        elif fact.state is RunState.SUCCESS:
            state = "succeeded but is stale (its own upstreams reran)"
        else:
            state = f"is {fact.state} (run {fact.run_id}, revision {fact.rev})"
        more = f" ({len(missing)} of {len(needed)} partitions missing)" if len(needed) > 1 else ""
        return f"needs {_edge_name(edge)}{where}: {state}{more}"


def _edge_name(edge: EdgeSpec) -> str:
    return f"{edge.source} task {edge.task}" if edge.task is not None else str(edge.source)
