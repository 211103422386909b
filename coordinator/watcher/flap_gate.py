"""The flap gate of a leading trigger pass (semantics `flap-held`, ``core/flaps.py``): it sees each success of a
run-state key the pass brings, recognises a run state that flaps, records it, and keeps back what it would trigger.

Rules:
- **Seen where the pass sees it.** The successes are the run facts of the (DAG, partition) keys a leading pass plans
  because they changed (``DagKey``), judged before anything is started in that pass; only DAGs with dependents are
  followed. The history is the leader's memory (a new leader, or a restart, starts with none: a flap that goes on is
  held after its next A, B, A), bounded by the window: a key whose newest success is older than the window is
  forgotten.
- **Held before it is recorded.** A flap found in a pass holds at once: from then until the view shows its record,
  the pass's new triggers and clears of DAGs that read the flapping DAG in that partition are kept back (an intent
  already recorded is completed: ``Resume``). After that the planner itself waits on the record
  (``core/planner.py``'s **A flap holds as an upstream**), so ``status``, ``why`` and ``doctor`` read the same hold.
- **Recorded by the leader, fenced.** The record (``{prefix}/config/flaps/...``, docs/keys.md) is written through the
  executor (fenced by the leader's term): create-only, or over a released record at the revision the view holds. A
  write that fails or finds the key changed is tried again at the next pass, and the hold stands in memory meanwhile.
  A record that stands is never rewritten: only ``coordinator release-flap`` releases it.
- **One line each.** ``flap.held`` (WARNING) when a flap is found, with the runs and generations and the release
  command; ``flap.recorded`` when its record is written.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from coordinator.core.actions import Plan, Trigger
from coordinator.core.flaps import FlapRecord, Seen, flap_record, observe, release_command
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunState, dump_record
from coordinator.core.view import View
from coordinator.errors import CoordinatorError
from coordinator.etcd import Writes

log = logging.getLogger("coordinator.watcher.triggers")  # the trigger reconciler's lines

_At = tuple[NodeId, str]


@dataclass
class FlapGate:
    """The module's rules for one watcher."""

    view: View
    #: The leader's fenced writer (the executor).
    writes: Writes
    keys: KeyLayout
    watcher_id: str
    #: ``core/flaps.py``'s **The window**.
    window: timedelta = timedelta(hours=1)
    #: Each followed key's successes within the window, the key last seen last (**Seen where the pass sees it**).
    history: OrderedDict[_At, tuple[Seen, ...]] = field(default_factory=OrderedDict)
    #: Flaps found whose record the view does not show standing yet (**Held before it is recorded**), and whether
    #: this term wrote it.
    pending: dict[_At, FlapRecord] = field(default_factory=dict)
    written: set[_At] = field(default_factory=set)

    def observe(self, graph: Graph, changed: Mapping[str, Iterable[NodeId]], now: datetime) -> None:
        """**Seen where the pass sees it**: each changed key's success added to its history; a flap becomes
        pending."""
        view, below = self.view, graph.downstreams
        for partition, nodes in changed.items():
            for node in nodes:
                if not below.get(node):
                    continue
                fact = view.runs.get((node, partition))
                if fact is None or fact.state is not RunState.SUCCESS:
                    continue
                at = (node, partition)
                flap = view.flaps.get(at)
                if at in self.pending or (flap is not None and flap.record.standing):
                    continue
                since = flap.rev if flap is not None else 0  # ``core/flaps.py``'s **From the release**
                seen = Seen(fact.run_id, fact.clear_number, fact.rev, now)
                kept, found = observe(self.history.pop(at, ()), seen, now, self.window, since)
                self.history[at] = kept
                if found is not None:
                    record = flap_record(found, now, self.watcher_id, self.window)
                    self.pending[at] = record
                    self.history.pop(at, None)
                    log.warning("flap.held dag=%s partition=%s runs=%s generations=%s release=%r", node.qualified,
                                partition, ",".join(record.run_ids), ",".join(map(str, record.generations)),
                                release_command(node, partition))  # fmt: skip
        while self.history:
            at, kept = next(iter(self.history.items()))
            if now - kept[-1].at <= self.window:
                break
            del self.history[at]

    async def admit(self, graph: Graph, plan: Plan, now: datetime) -> Plan:
        """**Held before it is recorded** and **Recorded by the leader, fenced**: the records written, and ``plan``
        without the triggers a pending flap keeps back."""
        for at in list(self.pending):
            flap = self.view.flaps.get(at)
            if flap is not None and flap.record.standing:
                del self.pending[at]  # the planner holds on the record now
                self.written.discard(at)
        for at, record in self.pending.items():
            if at not in self.written:
                await self._record(at, record)
        if not self.pending:
            return plan
        kept = [a for a in plan.actions if not (isinstance(a, Trigger) and self.reads_pending(graph, a.node,
                                                                                             a.partition))]  # fmt: skip
        if len(kept) == len(plan.actions):
            return plan
        return Plan(plan.revision, tuple(kept))

    def reads_pending(self, graph: Graph, node: NodeId, partition: str) -> bool:
        """Whether ``node`` reads, for ``partition``, a DAG whose flap is pending."""
        spec = graph.dags.get(node)
        if spec is None:
            return False
        mapped = graph.mapped_edges.get(node, ())
        for up in spec.upstreams:
            sources = graph.source_partitions(node, up, partition) if up in mapped else (partition,)
            if any((up, q) in self.pending for q in sources):
                return True
        return False

    async def _record(self, at: _At, record: FlapRecord) -> None:
        node, partition = at
        key = self.keys.flap_key(node, partition)
        flap = self.view.flaps.get(at)
        try:
            result = await self.writes.cas(key, dump_record(record), flap.rev if flap is not None else 0)
        except CoordinatorError as exc:  # held in memory meanwhile; the next pass writes again
            log.warning("flap.record_failed dag=%s partition=%s error=%s", node.qualified, partition, exc)
            return
        if result.succeeded:
            self.written.add(at)
            log.info("flap.recorded dag=%s partition=%s key=%s revision=%d", node.qualified, partition, key,
                     result.revision)  # fmt: skip

    def new_term(self) -> None:
        """A new term: nothing of the last one is known to be written (a pending flap is written again, fenced by
        this term)."""
        self.written.clear()
