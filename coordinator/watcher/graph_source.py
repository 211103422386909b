"""The graph in force: the last valid dependencies.json, reloaded when the file changes (the watcher's rule 3).

Shared by the watcher and the OpenLineage receiver (its mapping of jobs to nodes follows the same file).
"""

from __future__ import annotations

import logging
from pathlib import Path

from coordinator.errors import SpecError
from coordinator.spec_file import load_spec

log = logging.getLogger(__name__)


class GraphSource:
    """Holds the last valid graph and reloads dependencies.json when it changes (rule 3)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.graph = load_spec(path)  # the first load must succeed: there is nothing to fall back to
        self._stamp = self._read_stamp()
        self.error: str | None = None

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
            if graph != self.graph:  # deadlines or late handlers changed: nothing to re-plan (semantics rule 13)
                log.info("graph.reloaded path=%s digest=%s detail=%r", self.path, graph.digest,
                         "expected_by or on_late_of changed")  # fmt: skip
                self.graph = graph
            return False
        log.info("graph.reloaded path=%s old=%s new=%s dags=%d", self.path, self.graph.digest, graph.digest,
                 len(graph.dags))  # fmt: skip
        self.graph = graph
        return True
