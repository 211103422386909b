"""The graph file's reload as a timed concern: every ``interval_s`` the watcher looks whether ``dependencies.json``
changed (``runtime/graph_source.py`` reads and validates it; an invalid file is reported and the last valid graph
stays in force), and a new graph re-plans every partition. Every watcher runs it, leading or not: a standby plans too,
and a takeover must not start with an old graph."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from coordinator.manager.periodic import RequeueAfter
from coordinator.runtime.graph_source import GraphSource

#: How soon a changed file is noticed.
GRAPH_RELOAD_S = 2.0


class GraphReload:
    """One look at the file per round; ``changed`` is told when a new graph is in force."""

    name = "graph"
    interval_s = GRAPH_RELOAD_S

    def __init__(self, graphs: GraphSource, changed: Callable[[], None]) -> None:
        self._graphs = graphs
        self._changed = changed

    async def run_once(self, now: datetime) -> RequeueAfter:
        if self._graphs.refresh():
            self._changed()
        return None
