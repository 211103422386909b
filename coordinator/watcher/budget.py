"""The trigger budget's shell (semantics `trigger-budget`): what a leading watcher's pass may submit, and the fenced
write that counts it in etcd before anything of it is submitted.

The rules are ``coordinator.core.budget``'s; this module writes the budget key and tells, at the pass's ``now``.

- **Count before acting.** For each instance with new triggers, the runs let through and any new hold are written in one
  compare-and-swap of ``{prefix}/config/budget/{instance}`` against the revision last seen, fenced by the leader key;
  only then are that instance's triggers submitted. A crash after the write counts runs that never started (the budget
  errs on the side of holding); a crash before it started none.
- **A conflict is not a failure.** The key moved since the view read it (this leader's own previous count, not yet back
  through the watch, or an operator's release): the pass judges that instance again against the value the conflict
  returned, up to ``RECORD_ATTEMPTS`` times.
- **What cannot be counted is not submitted.** An etcd error, or conflicts past the attempts, withhold the instance's
  counted triggers for this pass; they are handed back for a retry (``Admitted.withheld``), never started uncounted.
- **The budget step.** A leading trigger pass asks the budget about the actions the actuator would start now
  (``BudgetStep``: a repeat of an attempt queued, running or waiting is no new run, its intent's compare-and-swap sees
  to that); a trigger withheld because its count could not be recorded comes back through the triggers' queue after
  at most ``error_retry_s`` to be judged again.
- **Allowances per graph.** Each DAG's allowance (semantics `budget-per-dag`, ``core/budget_allowance.py``) is measured
  once per graph, when a pass first triggers that DAG; what the backfill requests, the DAG releases and the runs
  Airflow ran as backfills declare is rebuilt when they change (read from the view: a release that lands during a
  conflict's retry is seen on the next pass, erring on the side of holding). A held DAG logs ``budget.dag_held`` once,
  when its hold is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from coordinator.core.actions import Plan, Trigger
from coordinator.core.budget import Budgeted, Window, apply_budget, budget_record
from coordinator.core.budget_allowance import (
    DEFAULT_DAG_ALLOWANCE_FLOOR,
    Allowances,
    Declared,
    declared_backfills,
    graph_allowances,
)
from coordinator.core.budget_state import BudgetState, dump_budget, parse_budget
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import View
from coordinator.errors import CoordinatorError, LeadershipLost, WritesRefused
from coordinator.etcd import Writes
from coordinator.manager import Result
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.keys import DagKey, Requeues

log = logging.getLogger(__name__)

#: **A conflict is not a failure**: a leader's own count racing the watch conflicts once; more means someone else keeps
#: writing the key.
RECORD_ATTEMPTS = 3


@dataclass(frozen=True)
class Admitted:
    """A pass's plan after the budget, and the triggers withheld because their count could not be recorded."""

    plan: Plan
    withheld: tuple[Trigger, ...] = ()


@dataclass
class TriggerBudget:
    """The leader's budget keeper: one per watcher, asked once per leading pass."""

    #: The count is the executor's fenced write (``watcher/executor.py``): refused once this watcher no longer leads.
    executor: Writes
    keys: KeyLayout
    limit: int
    window_s: float
    watcher_id: str
    metrics: Metrics
    #: **Allowances per graph**: the per-DAG allowance's floor (``COORDINATOR_TRIGGER_BUDGET_DAG_FLOOR``); 0 turns
    #: per-DAG holds off.
    dag_floor: int = DEFAULT_DAG_ALLOWANCE_FLOOR
    #: **Allowances per graph**: the allowances of the last graph seen, by its digest.
    _allowances: tuple[str, Allowances] | None = None
    #: **Allowances per graph**: what the last backfill requests and DAG releases explain, by the graph's digest and
    #: both.
    _declared: (
        tuple[
            str,
            frozenset[tuple[NodeId, str]],
            frozenset[tuple[NodeId, str, str]],
            frozenset[tuple[NodeId, str]],
            Declared,
        ]
        | None
    ) = None

    def allowances(self, graph: Graph | None) -> Allowances:
        """Each DAG's allowance under ``graph`` (the floor for every DAG without one)."""
        if graph is None:
            return Allowances(self.dag_floor)
        if self._allowances is None or self._allowances[0] != graph.digest:
            self._allowances = (graph.digest, graph_allowances(graph, self.window_s, self.dag_floor))
        return self._allowances[1]

    def declared(
        self,
        graph: Graph,
        backfills: Iterable[tuple[NodeId, str]],
        states: Iterable[tuple[str, BudgetState]],
        run_backfills: Iterable[tuple[NodeId, str]] = (),
    ) -> Declared:
        """What ``backfills``, the DAG releases recorded in ``states`` and the runs Airflow ran as backfills
        (``run_backfills``) explain under ``graph``: rebuilt only when one of them changed (they are few and rarely
        change; finding the DAGs below each one walks the graph)."""
        requests = frozenset(backfills)
        ran = frozenset(run_backfills)
        releases = frozenset(
            (NodeId(instance, dag_id), d.released_first, d.released_last)
            for instance, state in states
            for dag_id, d in state.dags.items()
            if d.released_first is not None and d.released_last is not None
        )
        if self._declared is None or self._declared[:4] != (graph.digest, requests, releases, ran):
            found = declared_backfills(graph, requests, releases, ran)
            self._declared = (graph.digest, requests, releases, ran, found)
        return self._declared[4]

    async def admit(
        self,
        plan: Plan,
        budgets: Mapping[str, tuple[BudgetState, int]],
        instances: Iterable[str],
        now: datetime,
        graph: Graph | None = None,
        backfills: Iterable[tuple[NodeId, str]] = (),
        run_backfills: Iterable[tuple[NodeId, str]] = (),
    ) -> Admitted:
        """The plan's actions the budget lets through, each instance's count recorded first (every rule of the module).
        ``budgets`` is the view's state and revision per instance; ``instances`` those the metric reports; ``now`` the
        pass's time (the window ends there, and the count is recorded at it);
        ``graph``, ``backfills`` (the view's requests) and ``run_backfills`` (the view's runs Airflow ran as backfills)
        give each DAG's allowance and what a backfill explains."""
        window = Window(self.window_s, now.timestamp())
        allowances = self.allowances(graph)
        has_triggers = any(isinstance(a, Trigger) for a in plan.actions)
        declared = Declared()
        if graph is not None and has_triggers:
            states_seen = ((i, state) for i, (state, _) in budgets.items())
            declared = self.declared(graph, backfills, states_seen, run_backfills)
        states = {instance: state for instance, (state, _) in budgets.items()}
        verdicts: dict[str, Budgeted] = {}
        withheld: list[Trigger] = []
        by_instance: dict[str, list[Trigger]] = {}  # each instance's new triggers, in the plan's order
        for action in plan.actions:
            if isinstance(action, Trigger):
                by_instance.setdefault(action.node.instance, []).append(action)
        for instance, mine in sorted(by_instance.items()):
            seen = budgets.get(instance, (BudgetState(), 0))
            recorded = await self._record(instance, mine, seen, window, allowances, declared, now)
            if recorded is None:
                withheld.extend(mine)
            else:
                verdicts[instance], states[instance] = recorded
        # Rule a: whatever is not a new trigger passes; a trigger passes when its instance's recorded verdict says.
        passed = {id(a) for verdict in verdicts.values() for a in verdict.actions}
        kept = tuple(a for a in plan.actions if not isinstance(a, Trigger) or id(a) in passed)
        self._report(instances, states, verdicts, window)
        return Admitted(Plan(plan.revision, kept), tuple(withheld))

    async def _record(
        self,
        instance: str,
        mine: list[Trigger],
        seen: tuple[BudgetState, int],
        window: Window,
        allowances: Allowances,
        declared: Declared,
        now: datetime,
    ) -> tuple[Budgeted, BudgetState] | None:
        """**Count before acting**, **A conflict is not a failure** and **What cannot be counted is not submitted** for
        one instance's new triggers: its verdict and its state once its count is in etcd (no write when the verdict
        counts nothing new: a held or released instance), or None when it could not be counted."""
        key = self.keys.budget_key(instance)
        state, rev = seen
        for _ in range(RECORD_ATTEMPTS):
            verdict = apply_budget(mine, self.limit, {instance: state}, window, allowances, declared)
            record = budget_record(state, verdict, instance, self.limit, window, at=now,
                                   by=self.watcher_id, allowances=allowances)  # fmt: skip
            if record is None:  # the fresh state (a hold, a release) passes nothing new and holds nothing new
                return verdict, state
            try:
                done = await self.executor.cas(key, dump_budget(record), rev)
            except LeadershipLost:
                raise
            except CoordinatorError as exc:
                # Under an etcd alarm every pass would repeat it: the probe logs the alarm once (etcd.alarm_raised).
                level = logging.DEBUG if isinstance(exc, WritesRefused) else logging.WARNING
                log.log(level, "budget.record_failed instance=%s error=%s", instance, exc)
                return None
            if done.succeeded:
                if instance in verdict.newly_stopped:
                    log.warning(
                        "budget.held instance=%s held=%d limit=%d window_s=%g revision=%d fix=%s", instance,
                        len(verdict.stopped[instance]), self.limit, window.seconds, done.revision,
                        f"`coordinator release {instance}` after checking the runs it would start",
                    )  # fmt: skip
                for node in sorted(verdict.newly_stopped_dags):
                    dag = record.dags[node.dag_id]
                    log.warning(
                        "budget.dag_held instance=%s dag=%s held=%d count=%d allowance=%d window_s=%g revision=%d "
                        "fix=%s", instance, node.dag_id, dag.stopped_count, dag.count, dag.allowance, window.seconds,
                        done.revision, f"`coordinator release {instance} --dag {node.dag_id}` after checking its "
                        "upstreams' successes",
                    )  # fmt: skip
                return verdict, record
            found = done.current
            parsed = parse_budget(found.value)[0] if found is not None else BudgetState()
            if parsed is None:  # an unreadable value: the view reports it; count from nothing, over its revision
                parsed = BudgetState()
            state, rev = parsed, found.mod_revision if found is not None else 0
        log.info("budget.record_conflict instance=%s attempts=%d", instance, RECORD_ATTEMPTS)
        return None

    def _report(
        self,
        instances: Iterable[str],
        states: Mapping[str, BudgetState],
        verdicts: Mapping[str, Budgeted],
        window: Window,
    ) -> None:
        """``coordinator_triggers_held{instance}``: the holds' sizes as recorded, the instance's and its DAGs' (a pass
        re-plans only what changed, so its own count would flicker); ``coordinator_trigger_budget_used{instance}``:
        the window's count."""
        for instance in sorted({*instances, *states}):
            verdict = verdicts.get(instance)
            state = states.get(instance)
            recorded = state.stopped_count if state is not None and state.stops(self.limit) else 0
            newly = verdict is not None and instance in verdict.newly_stopped
            dags = sum(d.stopped_count for d in state.stopped_dags().values()) if state is not None else 0
            self.metrics.triggers_held.labels(instance=instance).set(
                (len(verdict.stopped[instance]) if verdict is not None and newly else recorded) + dags
            )
            self.metrics.trigger_budget_used.labels(instance=instance).set(window.count(state))


@dataclass
class BudgetStep:
    """**The budget step** of a leading trigger pass: the budget keeper asked with what the view says."""

    budget: TriggerBudget
    view: View
    #: The configured Airflow instances (the budget's metric reports each).
    instances: Iterable[str]
    #: A withheld trigger comes back after at most this long.
    error_retry_s: float

    async def admit(self, plan: Plan, graph: Graph, now: datetime) -> tuple[Plan, Requeues]:
        """``plan`` (actions the actuator would start now) as the budget lets it through at ``now``, and the withheld
        triggers' keys to judge again."""
        view = self.view
        admitted = await self.budget.admit(
            plan, view.budgets, self.instances, now, graph, view.backfills.keys(), view.run_backfills.keys()
        )
        retry = Result(retry=True, retry_max_s=self.error_retry_s)
        return admitted.plan, {DagKey(t.node, t.partition): retry for t in admitted.withheld}
