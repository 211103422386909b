"""Render a validated :class:`Graph` as text, Mermaid or Graphviz dot, for ``coordinator graph``.

Rules:
- **Deterministic.** Pure and deterministic: DAGs in topological order (ties by name), so the output diffs cleanly in
  reviews.
- **Failure edges look different** from success edges in every format (``on failure``, dashed), because they mean the
  opposite outcome.
- **Instances as subgraphs.** Instances become subgraphs only when DAGs live in more than one; a single instance would
  be a useless box.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum

from coordinator.core.duration import format_shift
from coordinator.core.graph import DagSpec, Graph
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
    """One line per DAG: ``06_pipeline <- 02_pipeline, 03_pipeline``; roots, failure and late handlers say so; a grid is
    shown in brackets after the DAG and an offset after its source (``daily [0 0 * * *] <- fx [offset -1]``)."""
    lines = []
    for node in graph.topo_order:
        spec = graph.dags[node]
        name = f"{node} [{spec.grid}]" if spec.grid is not None else str(node)
        if spec.upstreams:
            line = f"{name} <- {', '.join(_source(spec, up) for up in (*spec.upstreams, *_gate(spec)))}"
        elif spec.on_failure_of:
            line = f"{name} <- on failure of {', '.join(_source(spec, src) for src in spec.on_failure_of)}"
        elif spec.on_late_of:
            line = f"{name} <- on deadline changes of {', '.join(str(src) for src in spec.on_late_of)}"
        else:
            line = f"{name} (root)"
        lines.append(f"{line}  # {spec.description}" if spec.description else line)
    return "".join(f"{line}\n" for line in lines)


def _gate(spec: DagSpec) -> tuple[NodeId, ...]:
    return (spec.node,) if spec.gates else ()


def _source(spec: DagSpec, source: NodeId) -> str:
    """``fx [offset -1]``; an extended edge lists what it says: ``u [task load, shift -4h, finished]``."""
    edges = [edge for edge in spec.edges if edge.source == source]
    if not edges:
        offset = spec.offset(source)
        return f"{source} [offset {offset:+d}]" if offset else str(source)
    texts = []
    for edge in edges:
        m = edge.mapping
        parts = [f"task {edge.task}"] if edge.task is not None else []
        parts += [f"offset {m.offset:+d}"] if m.offset else []
        parts += [f"shift {format_shift(m.shift)}"] if m.shift is not None else []
        parts += [f"member {m.member}"] if m.member is not None else []
        parts += [str(edge.condition)] if edge.condition != "success" else []
        parts += ["gate: its own earlier partition"] if source == spec.node else []
        texts.append(f"{source} [{', '.join(parts)}]" if parts else str(source))
    return ", ".join(texts)


def _label(graph: Graph, node: NodeId, text: str) -> str:
    grid = graph.dags[node].grid
    return f"{text} [{grid}]" if grid is not None else text


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
            lines += [f'{INDENT * 2}{ids[node]}["{_label(graph, node, node.dag_id)}"]' for node in nodes]
            lines.append(f"{INDENT}end")
    else:
        lines += [f'{INDENT}{ids[node]}["{_label(graph, node, str(node))}"]' for node in graph.topo_order]
    for source, target, failure in _edges(graph):
        offset = graph.dags[target].offset(source)
        arrow = "-. on failure .->" if failure else (f"-- offset {offset:+d} -->" if offset else "-->")
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
            lines += [
                f"{INDENT * 2}{quoted[node]} [label={json.dumps(_label(graph, node, node.dag_id))}];" for node in nodes
            ]
            lines.append(f"{INDENT}}}")
    else:
        lines += [
            f"{INDENT}{quoted[node]} [label={json.dumps(_label(graph, node, str(node)))}];" for node in graph.topo_order
        ]
    for source, target, failure in _edges(graph):
        offset = graph.dags[target].offset(source)
        label = f"on failure, offset {offset:+d}" if failure and offset else "on failure"
        style = f" [style=dashed, label={json.dumps(label)}]" if failure else ""
        style = style or (f' [label="offset {offset:+d}"]' if offset else "")
        lines.append(f"{INDENT}{quoted[source]} -> {quoted[target]}{style};")
    lines.append("}")
    return "".join(f"{line}\n" for line in lines)
