"""Warnings about a VALID dependencies file: things that load and run, but probably not as the author meant.

Rules:
1. A warning never stops anything: ``coordinator validate`` prints one line per warning on stderr,
   ``<file>: <JSON path>: warning: <what> — <hint>``, and still exits 0. Problems that make a file unusable are
   the loader's errors (:mod:`coordinator.core.spec`), never warnings.
2. :data:`RULES` is a list of independent rule functions, each taking the validated graph and the decoded document
   (for JSON paths) and returning :class:`SpecWarning` values; adding a rule is adding a function to the list.
3. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from coordinator.core.graph import EdgeSpec, Graph
from coordinator.core.model import DEFAULT_INSTANCE, NODE_SEP, NodeId
from coordinator.core.spec_json import JsonPath, format_path


@dataclass(frozen=True, slots=True)
class SpecWarning:
    """One warning: the JSON path it is about (formatted, ``$.dags.d.upstreams[0]``), what and how to fix it."""

    path: str
    message: str
    hint: str

    def format(self, source: str) -> str:
        return f"{source}: {self.path}: warning: {self.message} — {self.hint}"


Rule = Callable[[Graph, Any], list[SpecWarning]]


def _declared(doc: Any) -> Iterator[tuple[NodeId, str, dict[str, Any]]]:
    """(node, key, body) of every DAG declared in the extended form (the shorthand has no grids or edge objects)."""
    dags = doc.get("dags") if isinstance(doc, dict) else None
    if not isinstance(dags, dict):
        return
    for key, body in dags.items():
        if not isinstance(body, dict):
            continue
        instance, sep, dag_id = key.rpartition(NODE_SEP)
        if not sep:
            field = body.get("instance")
            instance = field if isinstance(field, str) else DEFAULT_INSTANCE
        yield NodeId(instance, dag_id), key, body


def _edge_path(graph: Graph, key: str, body: dict[str, Any], edge: EdgeSpec) -> JsonPath:
    """Where ``edge`` is written under the DAG ``key`` (the list item whose reference resolves to its source)."""
    name = "on_failure_of" if edge.failure else "upstreams"
    value = body.get(name)
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        ref = item.get("dag") if isinstance(item, dict) else item
        task = item.get("task") if isinstance(item, dict) else None
        if isinstance(ref, str) and graph.resolve(ref) == edge.source and task == edge.task:
            return ("dags", key, name, index) if isinstance(value, list) else ("dags", key, name)
    return ("dags", key, name)


def exact_dates_across_grids(graph: Graph, doc: Any) -> list[SpecWarning]:
    """An exact-date edge with a grid on one side only: the dependent is triggered at the upstream's logical dates,
    which its own grid never has unless the two schedules happen to line up (a sensor without ``execution_delta``
    between DAGs on different cron times, the most common cross-DAG bug)."""
    found: list[SpecWarning] = []
    for node, key, body in _declared(doc):
        spec = graph.dags.get(node)
        if spec is None:
            continue
        for edge in spec.all_edges():
            if edge.source == node or not edge.mapping.plain or edge.mapping.offset:
                continue
            up = graph.dags[edge.source].grid
            if (spec.grid is None) == (up is None):
                continue
            gridded, plain = (node, edge.source) if up is None else (edge.source, node)  # exactly one has a grid
            grid = spec.grid if up is None else up
            found.append(
                SpecWarning(
                    format_path(_edge_path(graph, key, body, edge)),
                    f"{node} waits for {edge.source} on the exact same logical date, but only {gridded} has "
                    f"partitions ({grid}): {node} is triggered at {edge.source}'s logical dates, which {node}'s own "
                    "schedule has only if the two schedules line up",
                    f'declare "partitions" on {plain} too (its cron), so whole periods are matched, or add '
                    f'"shift" to say which upstream date each run waits for (check with `coordinator inputs {node} '
                    "-p DATE`)",
                )
            )
    return found


#: Every rule, in the order their warnings are printed (rule 2).
RULES: list[Rule] = [exact_dates_across_grids]


def spec_warnings(graph: Graph, doc: Any) -> list[SpecWarning]:
    """The warnings of every rule about a file that loaded (``doc``: its decoded JSON)."""
    return [warning for rule in RULES for warning in rule(graph, doc)]
