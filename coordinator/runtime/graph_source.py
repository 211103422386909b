"""The graph in force: the last valid dependencies.json, reloaded when the file changes (``watcher/service.py``'s
**Bad input never stops it**).

Shared by the watcher and the OpenLineage receiver (its mapping of jobs to nodes follows the same file).

A graph taken into force (the first load, each reload with a new digest) whose upstreams include a DAG declared
nowhere with a name close to a declared one's (``spec.near_misses``' **Near misses**: a typo makes a root that never
runs) is logged as ONE WARNING line with each "did you mean"; the same lines go into the watcher's presence value, so
``status`` and ``doctor`` show them (:attr:`GraphSource.warnings`). The graph is still taken as written, as
``validate`` does: a warning never makes a file invalid.
"""

from __future__ import annotations

import logging
from pathlib import Path

from coordinator.core.graph import Graph
from coordinator.core.spec.near_misses import near_miss_references
from coordinator.errors import SpecError
from coordinator.runtime.spec_file import load_spec

log = logging.getLogger(__name__)


class GraphSource:
    """Holds the last valid graph and reloads dependencies.json when it changes (``watcher/service.py``'s
    **Bad input never stops it**)."""

    def __init__(self, path: Path, graph: Graph | None = None) -> None:
        """``graph``: the file as the caller already loaded it (the CLI checks it before starting), not read twice."""
        self.path = path
        self._stamp = self._read_stamp()
        # The first load must succeed: there is nothing to fall back to.
        self.graph = graph if graph is not None else load_spec(path)
        self.error: str | None = None
        self.warnings = unknown_upstreams(self.graph)
        _warn(self.graph, self.warnings)

    def _read_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def refresh(self) -> bool:
        """Reload if the file changed; True when a new valid graph is now in force."""
        stamp = self._read_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            graph = load_spec(self.path)
        except (SpecError, OSError) as exc:
            self.error = str(exc)
            log.error("graph.invalid path=%s kept_digest=%s problems=%r", self.path, self.graph.digest, self.error)
            return False
        self.error = None
        if graph.digest == self.graph.digest:
            # deadlines, late handlers or data intervals changed: nothing to re-plan (semantics `deadlines-judged`,
            # `triggered-data-interval`), but the graph in force must say them
            if graph != self.graph:
                log.info("graph.reloaded path=%s digest=%s detail=%r", self.path, graph.digest,
                         "expected_by, on_late_of or data_interval changed")  # fmt: skip
                self.graph = graph
                self.warnings = unknown_upstreams(graph)  # where the file writes each reference may have moved
            return False
        log.info("graph.reloaded path=%s old=%s new=%s dags=%d", self.path, self.graph.digest, graph.digest,
                 len(graph.dags))  # fmt: skip
        self.graph = graph
        self.warnings = unknown_upstreams(graph)
        _warn(graph, self.warnings)
        return True


def unknown_upstreams(graph: Graph) -> tuple[str, ...]:
    """Each reference to a DAG declared nowhere whose name is close to a declared DAG's, as ``validate`` prints it
    (``file: $.path: warning: what — did you mean 'X'?``)."""
    return tuple(warning.format(graph.source) for warning in near_miss_references(graph))


def _warn(graph: Graph, warnings: tuple[str, ...]) -> None:
    if warnings:
        log.warning("graph.unknown_upstream digest=%s count=%d warnings=%r", graph.digest, len(warnings),
                    " | ".join(warnings))  # fmt: skip
