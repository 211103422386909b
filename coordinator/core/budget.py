"""The trigger budget (semantics `trigger-budget`): each DAG's new runs against what its partition grids explain, and an
instance-wide ceiling, over a sliding window.

A forged or mistaken flood of successes (N partitions written at once, or one put each as fast as a writer can) would
otherwise become N runs in Airflow at the speed of the actuator. The counts live in etcd with the stops
(``{prefix}/config/budget/{instance}``, written by the leader, fenced), so a flood spread over many reconcile passes,
or over a failover, is counted as one. Rules, named as in ``docs/semantics.md`` (semantics `trigger-budget`):

- semantics `budget-resumes-pass`: Only new triggers count: a :class:`Resume` completes an intent already recorded
  (holding it would leave the ledger pending forever), so it always passes.
- semantics `budget-explained-pass`: A trigger whose cause (``cause_rev``, its newest input) is at or before the
  instance's ``released_through``, or its DAG's, was released by an operator; one whose partition a declared backfill or
  a DAG's release explains (``coordinator.core.budget_allowance``'s **Backfills explain themselves**) was asked for.
  Either passes whatever the counts, uncounted.
- semantics `budget-rerun-pass`: A rerun is explained by the run it repeats: a clear of a partition the coordinator
  triggered before (a ledger entry: the run was counted when it was new) passes uncounted against its DAG's allowance
  while the DAG's reruns passed this way in the window stay below its new runs counted in the window (so a fan-out
  rerun after a catch-up runs, and a flood of reruns is bounded by what was counted). It still counts against the
  instance's ceiling, the backstop. A forged flood of NEW partitions has no ledger entries: it is judged as before.
- semantics `budget-holds-stay`: While an instance is held at a ceiling at least the current one, every other new
  trigger of it is held; while a DAG is held at an allowance at least its current one, every other new trigger of that
  DAG is held.
- semantics `budget-order`: Otherwise new triggers pass, in the plan's order, while the instance's count over the window
  (the new runs let through in the last ``window.seconds``, :meth:`Window.count`) stays within ``limit`` (the ceiling)
  and the DAG's count stays within its allowance; the first trigger beyond the ceiling holds the instance, the first
  beyond a DAG's allowance holds that DAG only. The leader records what passed (:meth:`Window.add`, per instance and per
  DAG) and any new hold in one fenced compare-and-swap of the budget key before it submits anything of that instance.
- semantics `budget-held-waits`: A held trigger writes nothing: no intent, no Airflow call. It stays due (the planner is
  level-triggered), so a release or a raised limit re-plans it and the ledger's compare-and-swap admits it exactly once,
  like any trigger.
- semantics `budget-off`: ``limit`` 0 disables the whole budget (ceiling and allowances); an allowance of 0 (a floor of
  0) disables the per-DAG brake. Pure: the same actions, limit, allowances, states and window give the same outcome.
- semantics `budget-window`: The window is kept as ``WINDOW_BUCKETS`` buckets of counts (``started``): a run is counted
  until its whole bucket has left the window, so the count errs on the side of holding by at most one bucket's length. A
  release empties what it releases: counting starts again from the operator's confirmation.
- semantics `budget-per-dag`: Why per DAG, not per family: a DAG's count is what its grids predict directly, and a held
  DAG does not run, so its own dependents get nothing new from the flood; the family below an anomalous upstream is held
  by construction, without a rule that would also hold siblings fed by healthy upstreams. Unrelated DAGs of the instance
  are never judged on another DAG's count. The price: each direct dependent of a flooded root starts up to its own
  allowance (40 by default) before it is held; the ceiling bounds the sum.

The rules above and the public names (the record's ``held*`` fields, the ``budget.held`` log line, the
``coordinator_triggers_held`` metric, ``status``'s words) say a trigger is "held" by the budget; the code says
"stopped", so that a hold is an operator's hold (``core/holds.py``) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.actions import Action, Trigger
from coordinator.core.budget_allowance import Allowances, Declared
from coordinator.core.budget_state import BudgetState, DagBudget
from coordinator.core.model import NodeId, TriggerAction

#: The instance-wide ceiling: 1,000 new runs per instance in the window, whatever the DAGs' allowances. Each DAG is
#: judged against its own allowance (semantics `budget-order`); the ceiling is the backstop for a flood spread over many
#: DAGs, each within its allowance. A wide estate's midnight cascade starts a few hundred runs in one instance (300 DAGs
#: fed by one root) and passes; a thousand in ten minutes is more than one Airflow's scheduler starts in that time
#: anyway. A configured COORDINATOR_TRIGGER_BUDGET sets this instance-wide ceiling, never a DAG's allowance.
DEFAULT_TRIGGER_BUDGET = 1000
#: 10 minutes: long enough that a flood written one success at a time, as fast or as slowly as a writer likes over a
#: few minutes, is counted as one burst; short enough that a day's scheduled cascades, spread over the day, are not.
DEFAULT_TRIGGER_BUDGET_WINDOW_S = 600.0
#: Semantics `budget-window`: the window's resolution (a tenth of it: 60 s buckets for the default 10 minutes).
WINDOW_BUCKETS = 10


@dataclass(frozen=True)
class Window:
    """The sliding window the budget counts over: its length, and the time (epoch seconds) the pass is judged at."""

    seconds: float
    now: float

    @property
    def bucket_s(self) -> int:
        return max(1, int(self.seconds // WINDOW_BUCKETS))

    def live(self, started: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        """Semantics `budget-window`: the buckets any part of which is still inside the window."""
        return tuple((start, n) for start, n in started if start + self.bucket_s > self.now - self.seconds)

    def tally(self, started: Iterable[tuple[int, int]]) -> int:
        """New runs in the window, as buckets ``started`` record them."""
        return sum(n for _, n in self.live(started))

    def count(self, state: BudgetState | DagBudget | None) -> int:
        """New runs let through in the window, as ``state`` records them."""
        return 0 if state is None else self.tally(state.started)

    def added(self, started: Iterable[tuple[int, int]], passed: int) -> tuple[tuple[int, int], ...]:
        """``started`` with ``passed`` more runs counted now, and the buckets that left the window dropped."""
        bucket = int(self.now // self.bucket_s) * self.bucket_s
        counts = dict(self.live(started))
        counts[bucket] = counts.get(bucket, 0) + passed
        return tuple(sorted(counts.items()))

    def add(self, state: BudgetState, passed: int) -> BudgetState:
        """``state`` with ``passed`` more runs counted now, and the buckets that left the window dropped."""
        return state.model_copy(update={"started": self.added(state.started, passed)})


@dataclass(frozen=True)
class Budgeted:
    """What passes the budget, what it stops (per instance: every stopped trigger, by either rule), the instances and
    DAGs it newly stopped in this pass, and how many new triggers passed by semantics `budget-order` per instance and
    per DAG (counted: the leader records them before submitting)."""

    actions: tuple[Action, ...]
    stopped: Mapping[str, tuple[Trigger, ...]] = field(default_factory=dict)
    newly_stopped: frozenset[str] = frozenset()
    counted: Mapping[str, int] = field(default_factory=dict)
    #: Semantics `budget-order` per DAG: the DAGs newly stopped beyond their allowance, how many of each were stopped,
    #: how many passed.
    newly_stopped_dags: frozenset[NodeId] = frozenset()
    stopped_dags: Mapping[NodeId, int] = field(default_factory=dict)
    counted_dags: Mapping[NodeId, int] = field(default_factory=dict)
    #: The first and last partition stopped per DAG by its allowance (semantics `budget-holds-stay`,
    #: `budget-resumes-pass`, `budget-order`), for the stop's range.
    stopped_spans: Mapping[NodeId, tuple[str, str]] = field(default_factory=dict)
    #: Semantics `budget-rerun-pass`: per DAG, the reruns that passed uncounted against its allowance (recorded in the
    #: DAG's ``reran`` buckets, counted on the instance).
    reran_dags: Mapping[NodeId, int] = field(default_factory=dict)


def apply_budget(
    actions: Iterable[Action],
    limit: int,
    states: Mapping[str, BudgetState],
    window: Window,
    allowances: Allowances | None = None,
    declared: Declared | None = None,
) -> Budgeted:
    """Every rule of the module over one pass's actions."""
    allow = allowances if allowances is not None else Allowances()
    passed: list[Action] = []
    stopped: dict[str, list[Trigger]] = {}
    counted: dict[str, int] = {}
    counted_dags: dict[NodeId, int] = {}
    stopped_dags: dict[NodeId, int] = {}
    newly: set[str] = set()
    newly_dags: set[NodeId] = set()
    spans: dict[NodeId, tuple[str, str]] = {}
    reran: dict[NodeId, int] = {}

    def stopped_by_dag(node: NodeId, partition: str) -> None:
        stopped_dags[node] = stopped_dags.get(node, 0) + 1
        lo, hi = spans.get(node, (partition, partition))
        spans[node] = (min(lo, partition), max(hi, partition))

    for action in actions:
        if not isinstance(action, Trigger) or limit <= 0:  # semantics `budget-resumes-pass`, `budget-off`
            passed.append(action)
            continue
        node = action.node
        instance, allowance = node.instance, allow.of(node)
        state = states.get(instance)
        dag = state.dags.get(node.dag_id) if state is not None else None
        released = state is not None and action.cause_rev <= state.released_through
        released = released or (dag is not None and action.cause_rev <= dag.released_through)
        # semantics `budget-explained-pass`
        if released or (declared is not None and declared.covers(node, action.partition)):
            passed.append(action)
        # semantics `budget-holds-stay`
        elif (state is not None and state.stops(limit)) or (dag is not None and dag.stops(allowance)):
            stopped.setdefault(instance, []).append(action)
            if not (state is not None and state.stops(limit)):
                stopped_by_dag(node, action.partition)
        elif window.count(state) + counted.get(instance, 0) >= limit:  # semantics `budget-order`: the ceiling
            stopped.setdefault(instance, []).append(action)
            newly.add(instance)
        # semantics `budget-rerun-pass`: the ceiling was checked above; the DAG's allowance is not asked
        elif _reruns(action) and dag is not None and window.tally(dag.reran) + reran.get(node, 0) < window.count(dag):
            counted[instance] = counted.get(instance, 0) + 1
            reran[node] = reran.get(node, 0) + 1
            passed.append(action)
        # semantics `budget-order`: the allowance
        elif allowance > 0 and window.count(dag) + counted_dags.get(node, 0) >= allowance:
            stopped.setdefault(instance, []).append(action)
            stopped_by_dag(node, action.partition)
            newly_dags.add(node)
        else:
            counted[instance] = counted.get(instance, 0) + 1
            counted_dags[node] = counted_dags.get(node, 0) + 1
            passed.append(action)
    return Budgeted(
        tuple(passed), {i: tuple(t) for i, t in stopped.items()}, frozenset(newly), counted,
        frozenset(newly_dags), stopped_dags, counted_dags, spans, reran,
    )  # fmt: skip


def _reruns(action: Trigger) -> bool:
    """Semantics `budget-rerun-pass`: a clear of a run the coordinator triggered (and so counted) before."""
    return action.action is TriggerAction.CLEAR and action.ledger_rev > 0


def budget_record(
    state: BudgetState,
    budgeted: Budgeted,
    instance: str,
    limit: int,
    window: Window,
    *,
    at: datetime,
    by: str,
    allowances: Allowances | None = None,
) -> BudgetState | None:
    """Semantics `budget-order`'s write for ``instance``: what passed counted in the window (the instance's and each
    DAG's), any new stop, and a stopped DAG's range widened by what it stopped now; None when this pass changes nothing
    of it. ``at`` is the stop's time, passed in to keep this pure."""
    allow = allowances if allowances is not None else Allowances()
    passed = budgeted.counted.get(instance, 0)
    newly_dags = {n for n in budgeted.newly_stopped_dags if n.instance == instance}
    spans = {n: span for n, span in budgeted.stopped_spans.items() if n.instance == instance}
    widened = {n for n, span in spans.items() if n not in newly_dags and _widens(state.dags.get(n.dag_id), span)}
    if not passed and instance not in budgeted.newly_stopped and not newly_dags and not widened:
        return None
    record = window.add(state, passed) if passed else state
    dags: dict[str, DagBudget] = {}
    for dag_id, dag in state.dags.items():  # semantics `budget-window`: a DAG with nothing left to remember is dropped
        kept = dag.model_copy(update={"started": window.live(dag.started), "reran": window.live(dag.reran)})
        if kept.stopped or kept.started or kept.reran or kept.released_through:
            dags[dag_id] = kept
    for node, n in budgeted.counted_dags.items():
        if node.instance == instance:
            dag = dags.get(node.dag_id, DagBudget())
            dags[node.dag_id] = dag.model_copy(update={"started": window.added(dag.started, n)})
    for node, n in budgeted.reran_dags.items():
        if node.instance == instance:
            dag = dags.get(node.dag_id, DagBudget())
            dags[node.dag_id] = dag.model_copy(update={"reran": window.added(dag.reran, n)})
    for node in newly_dags:
        dag = dags.get(node.dag_id, DagBudget())
        first, last = spans[node]
        dags[node.dag_id] = dag.model_copy(update={
            "stopped": True, "allowance": allow.of(node), "count": window.tally(dag.started),
            "stopped_count": budgeted.stopped_dags.get(node, 0), "stopped_at": at,
            "stopped_first": first, "stopped_last": last,
        })  # fmt: skip
    for node in widened:
        dag = dags[node.dag_id]
        first, last = spans[node]
        lo, hi = dag.stopped_first or first, dag.stopped_last or last
        dags[node.dag_id] = dag.model_copy(update={"stopped_first": min(lo, first), "stopped_last": max(hi, last)})
    record = record.model_copy(update={"dags": dict(sorted(dags.items()))})
    if instance in budgeted.newly_stopped:
        count = len(budgeted.stopped[instance])
        update = {"stopped": True, "limit": limit, "stopped_count": count, "stopped_at": at, "by": by}
        record = record.model_copy(update=update)
    return record


def _widens(dag: DagBudget | None, span: tuple[str, str]) -> bool:
    """Whether ``span`` reaches outside the stopped range ``dag`` records (a stopped DAG's range only grows)."""
    if dag is None or not dag.stopped:
        return False
    first, last = dag.stopped_first, dag.stopped_last
    return first is None or last is None or span[0] < first or span[1] > last
