"""The trigger budget (semantics rule 15): at most ``limit`` new runs per Airflow instance over a sliding window.

A forged or mistaken flood of successes (N partitions written at once, or one put each as fast as a writer can) would
otherwise become N runs in Airflow at the speed of the actuator. The count lives in etcd with the hold
(``{prefix}/config/budget/{instance}``, written by the leader, fenced), so a flood spread over many reconcile passes,
or over a failover, is counted as one. Beyond the budget the leader holds that instance until an operator releases it
(``coordinator release INSTANCE``) or the limit is raised. Rules, numbered as in ``docs/semantics.md`` rule 15:

a. Only new triggers count: a :class:`Resume` completes an intent already recorded (holding it would leave the
   ledger pending forever), so it always passes.
b. A trigger whose cause (``cause_rev``, its newest input) is at or before the instance's ``released_through`` was
   released by an operator: it passes whatever the count, and is not counted.
c. While an instance is held at a limit at least the current one, every other new trigger of it is held.
d. Otherwise new triggers pass, in the plan's order, while the instance's count over the window (the new runs let
   through in the last ``window.seconds``, :meth:`Window.count`) stays within ``limit``; the rest are held and the
   instance becomes held. The leader records what passed (:meth:`Window.add`) and any new hold in one fenced
   compare-and-swap of the budget key before it submits anything of that instance.
e. A held trigger writes nothing: no intent, no Airflow call. It stays due (the planner is level-triggered), so a
   release or a raised limit re-plans it and the ledger's compare-and-swap admits it exactly once, like any trigger.
f. ``limit`` 0 disables the budget. Pure: the same actions, limit, states and window give the same outcome.
g. The window is kept as ``WINDOW_BUCKETS`` buckets of counts (``BudgetState.started``): a run is counted until its
   whole bucket has left the window, so the count errs on the side of holding by at most one bucket's length. A
   release empties it: counting starts again from the operator's confirmation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.actions import Action, Trigger
from coordinator.core.budget_state import BudgetState

#: 100 new runs per instance in the window. A real cascade triggers the direct dependents of what just succeeded, per
#: partition: the example's widest fan-out is 4, a wide estate's a few dozen; a catch-up after a day of downtime of an
#: hourly root with a fan-out of 4 is 96, all due at once. More than 100 in a few minutes is what a flood of forged or
#: mistaken successes looks like (and is the first-start limit's number, for the same reason: Airflow queues them).
DEFAULT_TRIGGER_BUDGET = 100
#: 10 minutes: long enough that a flood written one success at a time, as fast or as slowly as a writer likes over a
#: few minutes, is counted as one burst; short enough that a day's scheduled cascades, spread over the day, are not.
DEFAULT_TRIGGER_BUDGET_WINDOW_S = 600.0
#: Rule g: the window's resolution (a tenth of it: 60 s buckets for the default 10 minutes).
WINDOW_BUCKETS = 10


@dataclass(frozen=True)
class Window:
    """The sliding window the budget counts over: its length, and the time (epoch seconds) the pass is judged at."""

    seconds: float
    now: float

    @property
    def bucket_s(self) -> int:
        return max(1, int(self.seconds // WINDOW_BUCKETS))

    def _live(self, started: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Rule g: the buckets any part of which is still inside the window."""
        return [(start, n) for start, n in started if start + self.bucket_s > self.now - self.seconds]

    def count(self, state: BudgetState | None) -> int:
        """New runs let through in the window, as ``state`` records them."""
        return 0 if state is None else sum(n for _, n in self._live(state.started))

    def add(self, state: BudgetState, passed: int) -> BudgetState:
        """``state`` with ``passed`` more runs counted now, and the buckets that left the window dropped."""
        bucket = int(self.now // self.bucket_s) * self.bucket_s
        counts = dict(self._live(state.started))
        counts[bucket] = counts.get(bucket, 0) + passed
        return state.model_copy(update={"started": tuple(sorted(counts.items()))})


@dataclass(frozen=True)
class Budgeted:
    """What passes the budget, what it holds (per instance), the instances that became held in this pass, and how
    many new triggers of each instance passed by rule d (counted: the leader records them before submitting)."""

    actions: tuple[Action, ...]
    held: Mapping[str, tuple[Trigger, ...]] = field(default_factory=dict)
    newly_held: frozenset[str] = frozenset()
    counted: Mapping[str, int] = field(default_factory=dict)


def apply_budget(actions: Iterable[Action], limit: int, states: Mapping[str, BudgetState], window: Window) -> Budgeted:
    """Rules a-g over one pass's actions."""
    passed: list[Action] = []
    held: dict[str, list[Trigger]] = {}
    counted: dict[str, int] = {}
    newly: set[str] = set()
    for action in actions:
        if not isinstance(action, Trigger) or limit <= 0:  # rules a, f
            passed.append(action)
            continue
        instance = action.node.instance
        state = states.get(instance)
        if state is not None and action.cause_rev <= state.released_through:  # rule b
            passed.append(action)
        elif state is not None and state.holds(limit):  # rule c
            held.setdefault(instance, []).append(action)
        elif window.count(state) + counted.get(instance, 0) < limit:  # rule d
            counted[instance] = counted.get(instance, 0) + 1
            passed.append(action)
        else:
            held.setdefault(instance, []).append(action)
            newly.add(instance)
    return Budgeted(tuple(passed), {i: tuple(t) for i, t in held.items()}, frozenset(newly), counted)


def budget_record(
    state: BudgetState, budgeted: Budgeted, instance: str, limit: int, window: Window, *, at: datetime, by: str
) -> BudgetState | None:
    """Rule d's write for ``instance``: what passed counted in the window and, when it became held, the hold; None
    when this pass changes nothing of it. ``at`` is the hold's time, passed in to keep this pure."""
    passed = budgeted.counted.get(instance, 0)
    if not passed and instance not in budgeted.newly_held:
        return None
    record = window.add(state, passed) if passed else state
    if instance in budgeted.newly_held:
        held = len(budgeted.held[instance])
        record = record.model_copy(update={"held": True, "limit": limit, "held_count": held, "held_at": at, "by": by})
    return record
