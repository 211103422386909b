"""A DAG's ``"runs"`` in ``dependencies.json``: ``"triggered"`` (the default: the watcher creates its runs) or
``"scheduled"``: Airflow creates its runs on the DAG's own timetable, and the watcher grants each partition's permit
instead of creating a run (semantics `scheduled-permit`).

```json
"team_b/g_daily": {"upstreams": ["team_a/up"], "runs": "scheduled"}
```

Rules:
- **Pure and exhaustive**, like the loader: every problem goes to ``report(path, what, hint)``; the file does not load.
- **Triggered by default.** Absent ``runs`` is ``"triggered"``: every file written before it existed means what it
  meant, and its graph keeps its digest.
- **A dependent of successes only.** A scheduled DAG waits for its upstreams for each partition of its schedule, so it
  needs ``upstreams`` (a self-dependency counts); a failure handler, a late handler and a deadline level's handler run
  once per event, which no timetable creates: each is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from coordinator.core.graph import DagSpec
from coordinator.core.model import NodeId
from coordinator.core.spec.grid import describe
from coordinator.core.spec.routes import Report
from coordinator.core.spec.source import JsonPath
from coordinator.core.spec.triggered import level_handlers


class Runs(StrEnum):
    """Who creates a DAG's runs (**Triggered by default**)."""

    TRIGGERED = "triggered"
    SCHEDULED = "scheduled"


RUNS_HINT = (
    'write "triggered" (the default: the coordinator creates its runs) or "scheduled" (Airflow creates them on the '
    "DAG's own timetable and its first task waits for the coordinator's permit)"
)


def read_runs(body: Mapping[str, Any], path: JsonPath, report: Report) -> bool:
    """Whether the DAG is scheduled (**Triggered by default**); False after reporting an invalid value."""
    value = body.get("runs", Runs.TRIGGERED.value)
    if isinstance(value, str) and value in tuple(Runs):
        return Runs(value) is Runs.SCHEDULED
    choices = " or ".join(json.dumps(str(r)) for r in Runs)
    report((*path, "runs"), f"expected {choices}, got {describe(value)}", RUNS_HINT)
    return False


def check_scheduled(dags: Mapping[NodeId, DagSpec], declared_at: Mapping[NodeId, JsonPath], report: Report) -> None:
    """**A dependent of successes only**: every scheduled DAG waits for upstreams and is no handler."""
    handlers = level_handlers(dags.values())
    for node, spec in sorted(dags.items()):
        if not spec.scheduled:
            continue
        where = (*declared_at.get(node, ("dags", node.qualified)), "runs")
        if spec.on_failure_of or spec.on_late_of or node.qualified in handlers:
            kind = "on_failure_of" if spec.on_failure_of else "on_late_of" if spec.on_late_of else "a deadline level"
            report(
                where,
                f'{node} is "runs": "scheduled" but runs once per event ({kind}): no timetable makes those runs',
                'remove "runs" (the coordinator triggers a handler), or make it a dependent with "upstreams"',
            )
        elif not (spec.upstreams or spec.gates):
            report(
                where,
                f'{node} is "runs": "scheduled" but has no upstreams: there is nothing for its runs to wait for',
                'add "upstreams" (the DAGs its runs wait for), or remove "runs" (a root runs on its own schedule '
                "anyway)",
            )
