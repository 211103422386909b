"""The graph file's reload as a timed concern: every ``interval_s`` the watcher looks whether ``dependencies.json``
changed (``runtime/graph_source.py`` reads and validates it; an invalid file is reported and the last valid graph
stays in force), and a new graph re-plans every partition. Every watcher runs it, leading or not: a standby plans too,
and a takeover must not start with an old graph. Whatever is judged on the graph in force (``watcher/coverage.py``)
is told of every graph taken, also of one whose digest did not change (asset routes, kinds)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from coordinator.core.graph import Graph
from coordinator.manager import Controller, Handle, Manager, Periodic
from coordinator.manager.periodic import RequeueAfter
from coordinator.runtime.graph_source import GraphSource
from coordinator.watcher.deps import Deps
from coordinator.watcher.keys import PLANNER, AllPartitions, Tick

#: How soon a changed file is noticed.
GRAPH_RELOAD_S = 2.0


class GraphReload:
    """One look at the file per round; ``changed`` is told when a new graph is in force, ``taken`` of every graph
    taken into force (a new object), with it."""

    name = "graph"
    interval_s = GRAPH_RELOAD_S

    def __init__(
        self, graphs: GraphSource, changed: Callable[[], None], taken: Callable[[Graph], None] = lambda _: None
    ) -> None:
        self._graphs = graphs
        self._changed = changed
        self._taken = taken

    async def run_once(self, now: datetime) -> RequeueAfter:
        before = self._graphs.graph
        if self._graphs.refresh():
            self._changed()
        if self._graphs.graph is not before:
            self._taken(self._graphs.graph)
        return None


#: What this concern provides (``manager/manager.py``'s **Handles**): the graph file's reload.
GRAPH_RELOAD: Handle[GraphReload] = Handle("graph reload")


def setup(manager: Manager, deps: Deps) -> GraphReload:
    """A changed dependencies.json read within 2 s by every watcher (a standby plans too): the planner plans every
    partition, the instance coverage is judged again."""
    reload = GraphReload(deps.graphs, lambda: manager.get(PLANNER).add(AllPartitions),
                         taken=deps.coverage.observe)  # fmt: skip
    manager.register(Controller(reload.name, Periodic(reload), period_s=reload.interval_s, now=deps.clock),
                     start_after=(Tick(reload.name), reload.interval_s))  # fmt: skip
    return manager.provide(GRAPH_RELOAD, reload)
