"""The graph's adoption by the leader: when each DAG's current definition took effect, written before a leading pass
plans with it (``core/decide.py``'s **Activation first**), and the first adoption under a prefix, which also decides
what to do with the history already in etcd (semantics `first-adoption`, ``core/adoption.py``).

Rules:
- **Adopt, then plan.** A leading pass first adopts the graph: the executor's fenced write, seen back through the
  informer's watch (``informer/expectations.py``) before the pass plans with it; a write the watch does not bring back
  within ``ADOPTION_SEEN_S`` fails the pass, which is retried whole.
- **A paused first adoption.** A first adoption whose history is too long (semantics `adoption-flood-guard`) is not
  written: it is paused, logged (``graph.adoption_held``) with how to proceed, and decided again on full passes only
  (start, leadership, resync, graph change), since deciding it plans every partition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coordinator.core.activation import dump_activation
from coordinator.core.adoption import FirstAdoption, HistoryChoice, is_first_adoption
from coordinator.core.decide import adoption_for
from coordinator.core.graph import Graph
from coordinator.core.view import View
from coordinator.errors import LeadershipLost, StoreError
from coordinator.watcher.executor import Executor

log = logging.getLogger("coordinator.watcher.triggers")  # the adoption's lines are the trigger reconciler's

#: **Adopt, then plan**: how long a pass waits for its own adoption to come back through the informer's watch
#: (milliseconds when the watch follows the store); longer means the watch is stuck, and the pass fails and is retried
#: whole.
ADOPTION_SEEN_S = 10.0


@dataclass
class GraphAdoption:
    """The module's rules for one watcher."""

    view: View
    #: The adoption's fenced write (**Adopt, then plan**).
    executor: Executor
    watcher_id: str
    #: Semantics `first-adoption`: how a first adoption treats the history already in etcd, and its flood guard.
    history: HistoryChoice
    first_start_limit: int
    #: The last first-adoption decision of this process (``coordinator reconcile`` reports it).
    first: FirstAdoption | None = None
    #: **A paused first adoption**: the digest of the graph whose first adoption is paused, so that incremental passes
    #: do not re-count the whole history.
    paused: str | None = None

    async def ensure(self, graph: Graph, *, full: bool = True) -> None:
        """Record when each DAG's current definition took effect (**Adopt, then plan**; see activation.adopt), or
        pause a first adoption (**A paused first adoption**)."""
        if is_first_adoption(self.view) and not full and self.paused == graph.digest:
            return
        # ``core/decide.py``'s **Activation first**: the first adoption decided, or the change to adopt.
        adoption = adoption_for(graph, self.view, self.history, self.first_start_limit, by=self.watcher_id)
        first = adoption.first
        if first is not None:
            self.first = first
            if first.activation is None:
                self.paused = graph.digest
                log.warning("graph.adoption_held triggers=%d partitions=%d limit=%d detail=%r next=%r",
                            len(first.triggers), len(first.partitions), first.limit, first.summary(),
                            " | ".join(first.how_to_proceed()))  # fmt: skip
                return
        new = adoption.activation if adoption.activation is not self.view.activation else None
        if new is None:
            return
        key = self.view.graph_key
        try:
            result = await self.executor.cas(key, dump_activation(new), self.view.activation_rev)
        except LeadershipLost:  # the executor told the campaign
            return
        if result.succeeded:
            # ``core/decide.py``'s **Activation first**: this pass plans with the activation it wrote, which only the
            # informer puts into the view (``informer/expectations.py``): wait for the watch to bring it back.
            if not await self.executor.expectations.seen(key, ADOPTION_SEEN_S):
                raise StoreError(f"the graph's adoption at revision {result.revision} did not come back through the "
                                 f"watch within {ADOPTION_SEEN_S:.0f} s")  # fmt: skip
            self.paused = None
            log.info("graph.adopted digest=%s revision=%d dags=%d first=%s history=%r", graph.digest,
                     result.revision, len(graph.dags), first is not None,
                     first.summary() if first is not None else "-")  # fmt: skip
