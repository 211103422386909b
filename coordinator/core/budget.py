"""The trigger budget (semantics rule 15): at most ``limit`` new runs per reconcile pass and per Airflow instance.

A forged or mistaken flood of successes (N partitions written at once) would otherwise become N runs in Airflow at
the speed of the actuator. Beyond the budget the leader holds that instance until an operator releases it
(``coordinator release INSTANCE``) or the limit is raised. Rules, numbered as in ``docs/semantics.md`` rule 15:

a. Only new triggers count: a :class:`Resume` completes an intent already recorded (holding it would leave the
   ledger pending forever), so it always passes.
b. A trigger whose cause (``cause_rev``, its newest input) is at or before the instance's ``released_through`` was
   released by an operator: it passes whatever the count.
c. While an instance is held at a limit at least the current one, every other new trigger of it is held.
d. Otherwise the first ``limit`` new triggers of the instance in the plan's order pass; when there are more, the rest
   are held and the instance becomes held (the leader records :class:`BudgetState` with ``held`` in
   ``{prefix}/config/budget/{instance}``, fenced).
e. A held trigger writes nothing: no intent, no Airflow call. It stays due (the planner is level-triggered), so a
   release or a raised limit re-plans it and the ledger's compare-and-swap admits it exactly once, like any trigger.
f. ``limit`` 0 disables the budget. Pure: the same actions, limit and states give the same outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.core.actions import Action, Trigger
from coordinator.core.budget_state import BudgetState

#: 100 new runs per pass and per instance. A real cascade triggers the direct dependents of what just succeeded, per
#: partition: the example's widest fan-out is 4, a wide estate's a few dozen; a catch-up after a day of downtime of an
#: hourly root with a fan-out of 4 is 96. More than 100 at once is what a flood of forged or mistaken successes
#: looks like (and is the first-start limit's number, for the same reason: Airflow queues them all at once).
DEFAULT_TRIGGER_BUDGET = 100


@dataclass(frozen=True)
class Budgeted:
    """What passes the budget, what it holds (per instance), and the instances that became held in this pass."""

    actions: tuple[Action, ...]
    held: Mapping[str, tuple[Trigger, ...]] = field(default_factory=dict)
    newly_held: frozenset[str] = frozenset()


def apply_budget(actions: Iterable[Action], limit: int, states: Mapping[str, BudgetState]) -> Budgeted:
    """Rules a-f over one pass's actions."""
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
        elif counted.get(instance, 0) < limit:  # rule d
            counted[instance] = counted.get(instance, 0) + 1
            passed.append(action)
        else:
            held.setdefault(instance, []).append(action)
            newly.add(instance)
    return Budgeted(tuple(passed), {i: tuple(t) for i, t in held.items()}, frozenset(newly))
