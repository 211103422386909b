"""The graph in force against the Airflows this watcher has: every instance the graph uses needs one
(``core.instance_coverage``), or the watcher is not ready (``runtime/health.py``'s **Ready**).

Rules:
- **Judged whenever the graph changes.** At start and on every graph taken into force (``watcher/graph_reload.py``),
  the same verdict: a reload that names an unconfigured instance makes the watcher not ready, a reload that stops
  naming it (or drops the DAGs) makes it ready again. The Airflows are the ones read at start (the instances file is
  not reloaded): fixing that side is a restart.
- **One line per change.** One ERROR line ``config.instances_missing`` when the verdict becomes (or changes to) a
  mismatch, with both sides and the fix; one INFO line ``config.instances_configured`` when it ends. Nothing while it
  stays the same: an alert on ERROR lines fires once. The gauge ``coordinator_instance_missing{instance}`` follows the
  verdict for a rule to alert on.
- **It still works.** The watcher keeps running, leading and triggering in the instances that have an Airflow: one
  team's missing entry must not stop the others' cascades. Not ready is what tells Kubernetes (a rollout with this
  mistake stops at its first new pod; the old pods go on).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from coordinator.core.graph import Graph
from coordinator.core.instance_coverage import unconfigured
from coordinator.runtime.health import Health
from coordinator.runtime.metrics import Metrics

log = logging.getLogger(__name__)


class Coverage:
    """**Judged whenever the graph changes** into ``health``, with the instances configured at start."""

    def __init__(
        self, health: Health, configured: Collection[str], instances_file: Path | None, metrics: Metrics | None = None
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._configured = tuple(configured)
        self._instances_file = None if instances_file is None else str(instances_file)

    def observe(self, graph: Graph) -> None:
        """Judge ``graph`` (**One line per change**)."""
        found = unconfigured(graph, self._configured, self._instances_file)
        before = self._health.unconfigured
        self._health.unconfigured = found
        if self._metrics is not None:
            self._metrics.instances_missing(found.missing if found else (), before.missing if before else ())
        if found is not None and found != before:
            log.error("config.instances_missing instances=%s configured=%s digest=%s detail=%r fix=%r",
                      ",".join(found.missing), ",".join(found.configured) or "none", graph.digest, found.detail,
                      found.fix)  # fmt: skip
        elif found is None and before is not None:
            log.info("config.instances_configured instances=%s digest=%s", ",".join(before.missing), graph.digest)
