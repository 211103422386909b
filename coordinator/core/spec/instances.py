"""An instance's ``"kind"`` in ``dependencies.json``: an Airflow (the default) or ``"external"``, an instance with no
Airflow whose DAGs' run states are written by someone else: the OpenLineage receiver (``coordinator lineage serve``)
or an outside writer (``coordinator mark``).

```json
"instances": {"analytics": {"kind": "external", "description": "the jaffle dbt project, via OpenLineage"}}
```

Rules:
- **Pure and exhaustive**, like the loader: every problem goes to ``report(path, what, hint)``; the file does not load.
- **Airflow by default.** Absent ``kind`` is ``"airflow"``: every file written before kinds existed means what it meant.
- **Never asked.** Nothing asks an external instance anything: ``validate --airflow``, ``doctor`` and the watcher skip
  it (no REST call, no error about its missing URL).
- **Never triggered.** The coordinator never triggers a DAG of an external instance (there is no Airflow to trigger it
  in), so such a DAG may have no ``upstreams`` (a self-dependency included), no ``on_failure_of``, no ``on_late_of``,
  and no deadline level may name it as a handler: each is refused here, where the user can fix it, rather than by the
  watcher failing the trigger for ever.
- **No task states.** Nothing records an external DAG's tasks (task states come from the Airflow plugin only): an edge
  or a deadline naming one of its tasks would wait for ever, and is refused. Assets live in Airflows: a route from or to
  an external instance is refused.
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
from coordinator.core.spec.triggered import level_handlers, trigger_reasons


class InstanceKind(StrEnum):
    """What an instance is (**Airflow by default**: ``airflow`` when the file does not say)."""

    AIRFLOW = "airflow"
    #: No Airflow: its DAGs are OpenLineage jobs or written by ``coordinator mark`` (**Never asked**,
    #: **Never triggered** and **No task states**).
    EXTERNAL = "external"


KIND_HINT = (
    'write "airflow" (the default: an Airflow the watcher triggers in) or "external" (no Airflow: the OpenLineage '
    "receiver or `coordinator mark` writes its DAGs' run states)"
)


def read_kind(body: Mapping[str, Any], path: JsonPath, report: Report) -> InstanceKind:
    """The instance's ``kind`` (**Airflow by default**); ``airflow`` after reporting an invalid one."""
    value = body.get("kind", InstanceKind.AIRFLOW.value)
    if isinstance(value, str) and value in tuple(InstanceKind):
        return InstanceKind(value)
    choices = " or ".join(json.dumps(str(k)) for k in InstanceKind)
    report((*path, "kind"), f"expected {choices}, got {describe(value)}", KIND_HINT)
    return InstanceKind.AIRFLOW


def check_external(
    external: frozenset[str],
    dags: Mapping[NodeId, DagSpec],
    declared_at: Mapping[NodeId, JsonPath],
    edge_paths: Mapping[tuple[NodeId, NodeId], JsonPath],
    doc: Mapping[str, Any],
    report: Report,
) -> None:
    """**Never triggered** and **No task states** for every DAG of an external instance, and the asset routes naming
    one."""
    if not external:
        return
    handlers = level_handlers(dags.values())
    for node, spec in sorted(dags.items()):
        where = declared_at.get(node, ("dags", node.qualified))
        if node.instance in external:
            _check_untriggered(node, spec, handlers, where, report)
        for edge in spec.edges:
            if edge.task is not None and edge.source.instance in external and edge.source != node:
                report(
                    edge_paths.get((edge.source, node), (*where, "on_failure_of" if edge.failure else "upstreams")),
                    f"edge to task {edge.task!r} of {edge.source}, whose instance {edge.source.instance!r} is "
                    '"kind": "external": no Airflow records its tasks, so this edge would wait for ever',
                    f'wait for the whole DAG: write "{edge.source.qualified}" without "task"',
                )
        rule = spec.expected_by
        if node.instance in external and rule is not None and rule.task is not None:
            report(
                (*where, "expected_by", "task"),
                f'a task deadline on {node}, whose instance {node.instance!r} is "kind": "external": no Airflow '
                "records its tasks",
                'remove "task": the deadline then applies to the whole run',
            )
    _check_routes(external, doc, report)


def _check_untriggered(node: NodeId, spec: DagSpec, handlers: frozenset[str], where: JsonPath, report: Report) -> None:
    why = trigger_reasons(spec, handlers)
    if not why:
        return
    report(
        where,
        f"{node} would be triggered by the coordinator ({', '.join(why)}), but its instance {node.instance!r} is "
        '"kind": "external": there is no Airflow to trigger it in',
        "a DAG of an external instance runs when its producer runs it: remove those fields (a DAG that waits for it "
        f'lists it in its own upstreams), or, if {node.instance!r} is an Airflow, remove "kind": "external" and add '
        "it to the instances file (COORDINATOR_INSTANCES_FILE)",
    )


def _check_routes(external: frozenset[str], doc: Mapping[str, Any], report: Report) -> None:
    routes = doc.get("assets")
    if not isinstance(routes, list):
        return
    for index, body in enumerate(routes):
        if not isinstance(body, dict):
            continue
        for field in ("from", "to"):
            value = body.get(field)
            names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            named = sorted({name for name in names if isinstance(name, str) and name in external})
            if named:
                report(
                    ("assets", index, field),
                    f'asset route {field} {", ".join(map(repr, named))}, which is "kind": "external": assets live in '
                    "an Airflow, and this instance has none",
                    "route assets between Airflow instances only; a DAG waits for an external DAG through upstreams",
                )
