"""The trigger reconciler's first work: what a standby found due (warm work), what a start plans first, and the full
pass after it (``watcher/triggers.py`` plans what this queues).

Rules:
- **Leading and warm work.** A standby plans without acting and keeps the keys its passes found due (warm work): on
  taking the lead it plans those first (``take``), on its own view, and every partition ``WARM_FULL_PASS_DELAY_S``
  later, so a takeover costs one lease expiry, not a whole plan, before the next trigger. A process that has not
  planned every partition as a standby, or a first adoption, plans everything at once.
- **Start.** A start plans first what changed after the plan checkpoint (semantics
  `checkpoint-first`, ``core/first_work.py``), then every partition ``WARM_FULL_PASS_DELAY_S`` later (``start``; the
  same for a new leader without warm work).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coordinator.core.actions import Plan
from coordinator.core.adoption import is_first_adoption
from coordinator.core.first_work import first_work
from coordinator.core.view import View
from coordinator.manager import Controller
from coordinator.watcher.keys import AllPartitions, DagKey, TriggerKey

log = logging.getLogger("coordinator.watcher.triggers")  # ``reconcile.first_work`` is the trigger reconciler's line

#: **Leading and warm work**: a new leader's full pass waits this long after its warm work (and whatever events arrive
#: meanwhile), so that a big store's whole plan (seconds) does not stand between a takeover and the triggers already
#: known due.
WARM_FULL_PASS_DELAY_S = 5.0


@dataclass
class WarmWork:
    """The module's rules for one watcher's triggers' controller."""

    controller: Controller[TriggerKey]
    view: View
    #: The digest of the graph in force (the plan checkpoint names one).
    digest: Callable[[], str]
    #: The (DAG, partition) keys this process's standby passes found something to do for since its last full pass.
    due: set[DagKey] = field(default_factory=set)
    #: Whether this process has planned every partition as a standby: only then is its warm work complete.
    complete: bool = False

    def remember(self, plan: Plan, *, full: bool, sweep_due: set[DagKey] | None) -> None:
        """A standby pass's actions, kept as keys: a full pass replaces them (so they cover at most one resync
        interval), an incremental one adds to them, and to the due keys of the sweep under way (``sweep_due``, whose
        end replaces them: ``swept``). Only keys: the leader plans them again on its own view."""
        keys = {DagKey(action.node, action.partition) for action in plan.actions}
        if full:
            self.due, self.complete = keys, True
            return
        self.due |= keys
        if sweep_due is not None:
            sweep_due |= keys

    def swept(self, due: set[DagKey]) -> None:
        """A sweep planned every partition as a standby, and found ``due``."""
        self.due, self.complete = due, True

    def take(self) -> int:
        """On taking the lead: queue first what this process, as a standby, found due (what changed since its view was
        loaded, and the intents the old leader left in the ledger, which plan as resumes), then every partition
        ``WARM_FULL_PASS_DELAY_S`` later; or ``start``'s work. Returns how many keys are planned first (0 with nothing
        due: the events that arrive make the first pass, and the full pass still follows)."""
        due, self.due = self.due, set()
        complete, self.complete = self.complete, False
        if not complete or is_first_adoption(self.view):
            return self.start()
        self._queue_first(due)
        return len(due)

    def start(self) -> int:
        """**Start**: queue what changed after the plan checkpoint, and every partition
        ``WARM_FULL_PASS_DELAY_S`` later; or every partition now when the checkpoint cannot say what changed
        (``core/first_work.py``'s **Everything when unsure**). Returns how many keys are planned first (0: everything at
        once)."""
        work = first_work(self.view, self.digest(), first_adoption=is_first_adoption(self.view))
        log.info("reconcile.first_work keys=%d everything=%s reason=%r", len(work.keys), work.everything,
                 work.reason)  # fmt: skip
        if work.everything:
            self.controller.add(AllPartitions)
            return 0
        self._queue_first(DagKey(node, partition) for node, partition in work.keys)
        return len(work.keys)

    def _queue_first(self, keys: Iterable[DagKey]) -> None:
        """``keys`` now, in partition order, and the full pass after them."""
        for key in sorted(keys, key=lambda k: (k.partition, k.node.qualified)):
            self.controller.add(key)
        self.controller.add_after(AllPartitions, WARM_FULL_PASS_DELAY_S)
