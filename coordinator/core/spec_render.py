"""Render a validated :class:`Graph` as text, Mermaid or Graphviz dot, for ``coordinator graph``.

Rules:
1. Pure and deterministic: DAGs in topological order (ties by name), so the output diffs cleanly in reviews.
2. Failure edges look different from success edges in every format (``on failure``, dashed), because they mean the
   opposite outcome.
3. Instances become subgraphs only when DAGs live in more than one; a single instance would be a useless box.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId

INDENT = "    "


class GraphFormat(StrEnum):
    TEXT = "text"
    MERMAID = "mermaid"
    DOT = "dot"


def render(graph: Graph, fmt: GraphFormat) -> str:
    """The graph in ``fmt``, ending with a newline."""
    renderer = {GraphFormat.TEXT: render_text, GraphFormat.MERMAID: render_mermaid, GraphFormat.DOT: render_dot}
    return renderer[fmt](graph)


def render_text(graph: Graph) -> str:
    """One line per DAG: ``06_pipeline <- 02_pipeline, 03_pipeline``; roots and failure handlers say so."""
    lines = []
    for node in graph.topo_order:
        spec = graph.dags[node]
        if spec.upstreams:
            line = f"{node} <- {', '.join(map(str, spec.upstreams))}"
        elif spec.on_failure_of:
            line = f"{node} <- on failure of {', '.join(map(str, spec.on_failure_of))}"
        else:
            line = f"{node} (root)"
        lines.append(f"{line}  # {spec.description}" if spec.description else line)
    return "".join(f"{line}\n" for line in lines)


def _edges(graph: Graph) -> Iterator[tuple[NodeId, NodeId, bool]]:
    """(source, target, is_failure_edge) in topological order of the target."""
    for node in graph.topo_order:
        spec = graph.dags[node]
        for source in spec.upstreams:
            yield source, node, False
        for source in spec.on_failure_of:
            yield source, node, True


def _by_instance(graph: Graph) -> dict[str, list[NodeId]]:
    groups: dict[str, list[NodeId]] = {}
    for node in graph.topo_order:
        groups.setdefault(node.instance, []).append(node)
    return dict(sorted(groups.items()))


def render_mermaid(graph: Graph) -> str:
    """A ``flowchart LR``; node ids are generated (``n0``...) because ``.`` and ``-`` are Mermaid syntax."""
    ids = {node: f"n{index}" for index, node in enumerate(graph.topo_order)}
    groups = _by_instance(graph)
    lines = ["flowchart LR"]
    if len(groups) > 1:
        for index, (instance, nodes) in enumerate(groups.items()):
            lines.append(f"{INDENT}subgraph i{index} [{instance}]")
            lines += [f'{INDENT * 2}{ids[node]}["{node.dag_id}"]' for node in nodes]
            lines.append(f"{INDENT}end")
    else:
        lines += [f'{INDENT}{ids[node]}["{node}"]' for node in graph.topo_order]
    for source, target, failure in _edges(graph):
        arrow = "-. on failure .->" if failure else "-->"
        lines.append(f"{INDENT}{ids[source]} {arrow} {ids[target]}")
    return "".join(f"{line}\n" for line in lines)


def render_dot(graph: Graph) -> str:
    """A Graphviz ``digraph``; node ids are the qualified names, quoted."""
    quoted = {node: json.dumps(node.qualified) for node in graph.topo_order}
    groups = _by_instance(graph)
    lines = ["digraph dependencies {", f"{INDENT}rankdir=LR;", f"{INDENT}node [shape=box];"]
    if len(groups) > 1:
        for index, (instance, nodes) in enumerate(groups.items()):
            lines.append(f"{INDENT}subgraph cluster_{index} {{")
            lines.append(f"{INDENT * 2}label={json.dumps(instance)};")
            lines += [f"{INDENT * 2}{quoted[node]} [label={json.dumps(node.dag_id)}];" for node in nodes]
            lines.append(f"{INDENT}}}")
    else:
        lines += [f"{INDENT}{quoted[node]} [label={json.dumps(str(node))}];" for node in graph.topo_order]
    for source, target, failure in _edges(graph):
        style = ' [style=dashed, label="on failure"]' if failure else ""
        lines.append(f"{INDENT}{quoted[source]} -> {quoted[target]}{style};")
    lines.append("}")
    return "".join(f"{line}\n" for line in lines)
