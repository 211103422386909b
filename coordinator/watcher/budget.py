"""The trigger budget's shell (semantics rule 15): what a leading watcher's pass may submit, and the fenced write
that counts it in etcd before anything of it is submitted.

The rules are ``coordinator.core.budget``'s; this module reads the clock, writes the budget key and tells.

1. Count before acting. For each instance with new triggers, the runs let through and any new hold are written in
   one compare-and-swap of ``{prefix}/config/budget/{instance}`` against the revision last seen, fenced by the
   leader key; only then are that instance's triggers submitted. A crash after the write counts runs that never
   started (the budget errs on the side of holding); a crash before it started none.
2. A conflict is not a failure. The key moved since the view read it (this leader's own previous count, not yet
   back through the watch, or an operator's release): the pass judges that instance again against the value the
   conflict returned, up to ``RECORD_ATTEMPTS`` times.
3. What cannot be counted is not submitted. An etcd error, or conflicts past the attempts, withhold the instance's
   counted triggers for this pass; they are handed back for a retry (``Admitted.withheld``), never started uncounted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator.core.actions import Action, Plan, Trigger
from coordinator.core.budget import Budgeted, Window, apply_budget, budget_record
from coordinator.core.budget_state import BudgetState, dump_budget, parse_budget
from coordinator.core.model import KeyLayout
from coordinator.errors import CoordinatorError, LeadershipLost
from coordinator.etcd import EtcdStore
from coordinator.etcd.types import Fence
from coordinator.metrics import Metrics

log = logging.getLogger(__name__)

#: Rule 2: a leader's own count racing the watch conflicts once; more means someone else keeps writing the key.
RECORD_ATTEMPTS = 3


@dataclass(frozen=True)
class Admitted:
    """A pass's plan after the budget, and the triggers withheld because their count could not be recorded."""

    plan: Plan
    withheld: tuple[Trigger, ...] = ()


@dataclass
class TriggerBudget:
    """The leader's budget keeper: one per watcher, asked once per leading pass."""

    store: EtcdStore
    keys: KeyLayout
    limit: int
    window_s: float
    watcher_id: str
    metrics: Metrics
    fence: Callable[[], Fence]
    clock: Callable[[], float] = time.time

    async def admit(
        self, plan: Plan, budgets: Mapping[str, tuple[BudgetState, int]], instances: Iterable[str]
    ) -> Admitted:
        """The plan's actions the budget lets through, each instance's count recorded first (rules 1-3).
        ``budgets`` is the view's state and revision per instance; ``instances`` those the metric reports."""
        window = Window(self.window_s, self.clock())
        states = {instance: state for instance, (state, _) in budgets.items()}
        budgeted = apply_budget(plan.actions, self.limit, states, window)
        verdicts: dict[str, Budgeted] = {}
        withheld: list[Trigger] = []
        for instance in sorted(budgeted.counted.keys() | budgeted.newly_held):
            recorded = await self._record(instance, plan.actions, budgets.get(instance, (BudgetState(), 0)), window)
            if recorded is None:
                withheld.extend(_triggers_of(plan.actions, instance))
            else:
                verdicts[instance], states[instance] = recorded
        passed = _merge(plan.actions, budgeted, verdicts, {id(t) for t in withheld})
        self._report(instances, states, budgeted, verdicts, window)
        return Admitted(Plan(plan.revision, passed), tuple(withheld))

    async def _record(
        self, instance: str, actions: tuple[Action, ...], seen: tuple[BudgetState, int], window: Window
    ) -> tuple[Budgeted, BudgetState] | None:
        """Rules 1-3 for one instance: its verdict and its state once its count is in etcd, or None when it could
        not be."""
        key = self.keys.budget_key(instance)
        mine = _triggers_of(actions, instance)
        state, rev = seen
        for _ in range(RECORD_ATTEMPTS):
            verdict = apply_budget(mine, self.limit, {instance: state}, window)
            record = budget_record(state, verdict, instance, self.limit, window, at=datetime.now(UTC),
                                   by=self.watcher_id)  # fmt: skip
            if record is None:  # the fresh state (a hold, a release) passes nothing new and holds nothing new
                return verdict, state
            try:
                done = await self.store.cas(key, dump_budget(record), rev, fence=self.fence())
            except LeadershipLost:
                raise
            except CoordinatorError as exc:
                log.warning("budget.record_failed instance=%s error=%s", instance, exc)
                return None
            if done.succeeded:
                if instance in verdict.newly_held:
                    log.warning(
                        "budget.held instance=%s held=%d limit=%d window_s=%g revision=%d fix=%s", instance,
                        len(verdict.held[instance]), self.limit, window.seconds, done.revision,
                        f"`coordinator release {instance}` after checking the runs it would start",
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
        self, instances: Iterable[str], states: Mapping[str, BudgetState], budgeted: Budgeted,
        verdicts: Mapping[str, Budgeted], window: Window,
    ) -> None:  # fmt: skip
        """``coordinator_triggers_held{instance}``: the hold's size as recorded (a pass re-plans only what changed,
        so its own count would flicker); ``coordinator_trigger_budget_used{instance}``: the window's count."""
        for instance in sorted({*instances, *states, *budgeted.newly_held}):
            verdict = verdicts.get(instance)
            state = states.get(instance)
            recorded = state.held_count if state is not None and state.holds(self.limit) else 0
            newly = verdict is not None and instance in verdict.newly_held
            self.metrics.triggers_held.labels(instance=instance).set(
                len(verdict.held[instance]) if verdict is not None and newly else recorded
            )
            self.metrics.trigger_budget_used.labels(instance=instance).set(window.count(state))


def _triggers_of(actions: Iterable[Action], instance: str) -> list[Trigger]:
    """The new triggers of ``instance`` among ``actions``, in order: what its budget judges."""
    return [a for a in actions if isinstance(a, Trigger) and a.node.instance == instance]


def _merge(
    actions: tuple[Action, ...], first: Budgeted, verdicts: Mapping[str, Budgeted], withheld: set[int]
) -> tuple[Action, ...]:
    """The plan's order kept: an instance whose count was recorded by its recorded verdict (rule 2 may have judged
    it again), every other action by the pass's first verdict, withheld triggers left out (rule 3)."""
    recorded = {instance: {id(a) for a in verdict.actions} for instance, verdict in verdicts.items()}
    first_passed = {id(a) for a in first.actions}
    out: list[Action] = []
    for action in actions:
        if id(action) in withheld:
            continue
        if isinstance(action, Trigger) and action.node.instance in recorded:
            keep = id(action) in recorded[action.node.instance]
        else:
            keep = id(action) in first_passed
        if keep:
            out.append(action)
    return tuple(out)
