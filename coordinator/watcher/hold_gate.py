"""The operators' holds gate of a leading trigger pass (``core/holds.py``): what a standing hold covers is neither
counted nor submitted.

Rules:
- **Holds.** While leading, an action whose DAG and partition an operator's standing hold covers is neither counted in
  the budget nor submitted; it is logged once per key and hold (``hold.held``), counted in
  ``coordinator_held_actions``, and its key planned again when a hold changes (``held_again``, the watcher's interest)
  or expires (a requeue at the hold's ``until``), so a release starts each held run once: the planner decides it again
  then, on the facts of that moment. A resume that only confirms a run already seen (``observed``) calls nobody and is
  never held, nor is a permit's withdrawal or its giving back (semantics `permit-retracted`: one ledger write, nobody
  called; a retraction's hold covers the very DAGs whose permits it takes back). The gate judges at the pass's ``now``.
- **A release is a fix.** A refused intent's retry that a hold kept back and lets through now (released, expired) is
  told to ``on_released``: the actuator tries it at once with a fresh backoff (``watcher/actuator.py``'s *a fix
  retries at once*): an operator who held a refused DAG, fixed it and released the hold expects the next try now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.actions import Action, Plan, Resume
from coordinator.core.graph import Graph
from coordinator.core.model import TriggerStatus
from coordinator.informer.holds import HoldIndex
from coordinator.manager import Result
from coordinator.watcher.keys import DagKey, Requeues

log = logging.getLogger("coordinator.watcher.triggers")  # ``hold.held`` is the trigger reconciler's line


@dataclass
class HoldGate:
    """**Holds** for one watcher."""

    #: The operators' holds (none: the gate lets everything through).
    holds: HoldIndex | None = None
    #: Told how many keys holds keep back after each leading pass (the metric ``coordinator_held_actions``).
    on_held: Callable[[int], None] = lambda count: None
    #: Each (DAG, partition) whose action a hold kept back, and the hold's id (logged once per key and hold).
    held_keys: dict[DagKey, str] = field(default_factory=dict)
    #: **A release is a fix**: told each refused intent's key a hold kept back and lets through now.
    on_released: Callable[[DagKey], None] = lambda key: None

    def admit(self, graph: Graph, plan: Plan, now: datetime) -> tuple[Plan, Requeues]:
        """``plan``'s actions no standing hold covers at ``now``, and the held keys to plan again when their hold
        expires."""
        if self.holds is None:
            return plan, {}
        holds = self.holds.hold_set(graph, now)
        kept: list[Action] = []
        expiries: Requeues = {}
        for action in plan.actions:
            key = DagKey(action.node, action.partition)
            hold = None
            if holds and not (isinstance(action, Resume) and (action.observed or action.withdraw is not None)):
                hold = holds.held_by(action.node, action.partition)
            if hold is None:
                kept.append(action)
                released = self.held_keys.pop(key, None) is not None
                if released and isinstance(action, Resume) and action.ledger.status is TriggerStatus.ERROR:
                    self.on_released(key)  # **A release is a fix**
                continue
            if self.held_keys.get(key) != hold.id:
                log.info("hold.held dag=%s partition=%s hold=%s by=%s reason=%r", action.node.qualified,
                         action.partition, hold.id, hold.by, hold.reason)  # fmt: skip
                self.held_keys[key] = hold.id
            if hold.until is not None:  # time as a requeue: the key is planned again when the hold expires
                expiries[key] = Result(requeue_after=max(0.0, (hold.until - now).total_seconds()))
        self.on_held(len(self.held_keys))
        if len(kept) == len(plan.actions):
            return plan, expiries
        return Plan(plan.revision, tuple(kept)), expiries

    def held_again(self) -> list[DagKey]:
        """The keys a hold kept back, to plan again now that a hold changed (each is held again, or starts)."""
        return sorted(self.held_keys, key=lambda k: (k.partition, k.node.qualified))
