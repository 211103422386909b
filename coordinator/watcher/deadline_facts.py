"""The paused DAGs the deadline pass must know about: what ``core.deadline.states``'s **Causes** calls "paused", from
Airflow.

The view holds what the plugin and the watcher recorded; whether a DAG is paused lives only in Airflow. The deadline
pass (``watcher/deadlines.py``) asks this module once per pass, before it takes the view lock.

Rules:
- **Only DAGs that can be a cause.** Only the DAGs that can be a cause matter: every DAG with an ``expected_by`` and its
  ancestors through success edges. Only their instances are asked, and none when no DAG declares a deadline.
- **One list per instance per pass.** One ``GET /dags?paused=true`` per instance per pass at most, through the
  instance's shared :class:`PausedDags` (the actuator's cache: a list fetched for a trigger a moment ago is reused, and
  the other way round). The instances are asked concurrently, so a hung one delays the pass by one client timeout, not
  one per instance.
- **A failed list proves nothing.** A list that failed leaves that instance's last known answer (none before the first
  success): a failed request proves nothing about pausing, and an instance that stops answering is the reachability
  tracker's business (``watcher/reachability.py``: the failed list counts there). Nothing here raises for what Airflow
  answers.
- **One line per change.** One log line when an instance's paused DAGs that matter change (``deadline.paused``), never
  per pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.watcher.paused import PausedDags

log = logging.getLogger(__name__)


def deadline_scope(graph: Graph) -> frozenset[NodeId]:
    """**Only DAGs that can be a cause**: the DAGs with an ``expected_by`` and every DAG they wait for, transitively."""
    found: set[NodeId] = set()
    stack = [node for node, spec in graph.dags.items() if spec.expected_by is not None]
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        spec = graph.dags.get(node)
        if spec is not None:
            stack.extend(spec.upstreams)
    return frozenset(found)


@dataclass
class PausedForDeadlines:
    """``DeadlineJob.paused``: call it with the graph, get the paused DAGs that matter (every rule of the module)."""

    lists: Mapping[str, PausedDags]
    #: The last successful answer per instance (**A failed list proves nothing**).
    known: dict[str, frozenset[str]] = field(default_factory=dict)
    #: What was logged last per instance (**One line per change**).
    _logged: dict[str, frozenset[NodeId]] = field(default_factory=dict)
    #: The scope of the last graph asked about: the graph changes rarely, a pass comes every 15 s.
    _scope: tuple[Graph, frozenset[NodeId]] | None = None

    async def __call__(self, graph: Graph) -> frozenset[NodeId]:
        if self._scope is None or self._scope[0] is not graph:
            self._scope = (graph, deadline_scope(graph))
        scope = self._scope[1]
        # An external instance ("kind": "external") has no Airflow to ask, even if a client was configured for it.
        names = sorted({node.instance for node in scope if graph.has_airflow(node.instance)} & set(self.lists))
        answers = await asyncio.gather(*(self.lists[name].listed() for name in names), return_exceptions=True)
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, frozenset):
                self.known[name] = answer
            elif isinstance(answer, BaseException):  # PausedDags maps Airflow's errors; anything else is a bug
                log.warning("deadline.paused_failed instance=%s error=%r", name, answer)
        paused = frozenset(node for node in scope if node.dag_id in self.known.get(node.instance, ()))
        for name in names:
            mine = frozenset(node for node in paused if node.instance == name)
            if mine != self._logged.get(name, frozenset()):
                log.info("deadline.paused instance=%s dags=%s", name,
                         ",".join(sorted(node.dag_id for node in mine)) or "-")  # fmt: skip
                self._logged[name] = mine
        return paused
