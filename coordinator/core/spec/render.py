"""Render a validated :class:`Graph` as text, Mermaid or Graphviz dot, for ``coordinator graph``.

Rules:
- **Deterministic.** Pure and deterministic: DAGs in topological order (ties by name), so the output diffs cleanly in
  reviews.
- **Failure edges look different** from success edges in every format (``on failure``, dashed), because they mean the
  opposite outcome.
- **Instances as subgraphs.** Instances become subgraphs only when DAGs live in more than one; a single instance would
  be a useless box.
- **A group is drawn as a group.** A condition group (``any``, ``at_least``, a cutoff: semantics `condition-groups`)
  is never a list of plain edges, which would read as "all of": the text writes it ``any of (a, b)`` /
  ``2 of 3 (a, b, c)`` / ``3 of 3, 2 after cutoff 6h (a, b, c)``, and Mermaid and dot draw one joint node (a
  hexagon: not a DAG) labelled with the rule (``GroupSpec.label``), as the page draws a joint: its members' edges end
  there without an arrow, one arrow goes on to the dependent. The edges in no group are the required ones, drawn as
  before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum

from coordinator.core.conditions import GroupSpec, grouped
from coordinator.core.duration import format_shift
from coordinator.core.graph import DagSpec, EdgeSpec, Graph
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
            members = grouped(spec.groups)
            sources = [_source(spec, up, members) for up in (*spec.upstreams, *_gate(spec))]
            sources += [_group_text(spec, group) for group in spec.groups]
            line = f"{name} <- {', '.join(text for text in sources if text)}"
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


def _source(spec: DagSpec, source: NodeId, members: frozenset[tuple[NodeId, str | None]] = frozenset()) -> str:
    """``fx [offset -1]``; an extended edge lists what it says: ``u [task load, shift -4h, finished]``. The edges that
    are ``members`` of a group are left out (``_group_text`` writes them): "" when every edge to ``source`` is."""
    edges = [edge for edge in spec.edges if edge.source == source]
    if not edges:
        return "" if (source, None) in members else _plain(spec, source)
    return ", ".join(_edge_text(spec, edge) for edge in edges if (edge.source, edge.task) not in members)


def _plain(spec: DagSpec, source: NodeId) -> str:
    offset = spec.offset(source)
    return f"{source} [offset {offset:+d}]" if offset else str(source)


def _edge_text(spec: DagSpec, edge: EdgeSpec) -> str:
    m = edge.mapping
    parts = [f"task {edge.task}"] if edge.task is not None else []
    parts += [f"offset {m.offset:+d}"] if m.offset else []
    parts += [f"shift {format_shift(m.shift)}"] if m.shift is not None else []
    parts += [f"member {m.member}"] if m.member is not None else []
    parts += [str(edge.condition)] if edge.condition != "success" else []
    parts += ["gate: its own earlier partition"] if edge.source == spec.node else []
    return f"{edge.source} [{', '.join(parts)}]" if parts else str(edge.source)


def _group_text(spec: DagSpec, group: GroupSpec) -> str:
    """**A group is drawn as a group**: ``any of (a, b)``, ``2 of 3 (a, b [task load], c)``."""
    texts = []
    for source, task in group.members:
        edge = next((e for e in spec.edges if e.source == source and e.task == task), None)
        texts.append(_edge_text(spec, edge) if edge is not None else _plain(spec, source))
    rule = f"{group.label()} of" if group.label() == "any" else group.label()
    return f"{rule} ({', '.join(texts)})"


def _label(graph: Graph, node: NodeId, text: str) -> str:
    grid = graph.dags[node].grid
    return f"{text} [{grid}]" if grid is not None else text


def _edges(graph: Graph) -> Iterator[tuple[NodeId, NodeId, bool]]:
    """(source, target, is_failure_edge) in topological order of the target; a source whose every edge is a group's
    member is left out (``_joints`` draws it)."""
    for node in graph.topo_order:
        spec = graph.dags[node]
        members = grouped(spec.groups)
        required = {e.source for e in spec.all_edges() if not e.failure and (e.source, e.task) not in members}
        for source in spec.upstreams:
            if source in required:
                yield source, node, False
        for source in spec.on_failure_of:
            yield source, node, True


def _joints(graph: Graph) -> Iterator[tuple[NodeId, int, GroupSpec, tuple[NodeId, ...]]]:
    """**A group is drawn as a group**: (target, index of the group, the group, its member DAGs), in topological
    order of the target."""
    for node in graph.topo_order:
        for index, group in enumerate(graph.dags[node].groups):
            yield node, index, group, tuple(sorted({source for source, _ in group.members}))


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
    for target, index, group, members in _joints(graph):
        joint = f"{ids[target]}g{index}"
        lines.append(f'{INDENT}{joint}{{{{"{group.label()}"}}}}')  # a hexagon: not a DAG
        for source in members:
            offset = graph.dags[target].offset(source)
            lines.append(f"{INDENT}{ids[source]} {f'-- offset {offset:+d} ---' if offset else '---'} {joint}")
        lines.append(f"{INDENT}{joint} --> {ids[target]}")
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
    for target, index, group, members in _joints(graph):
        joint = json.dumps(f"{target.qualified}#group{index}")
        lines.append(f"{INDENT}{joint} [shape=hexagon, label={json.dumps(group.label())}];")
        for source in members:
            offset = graph.dags[target].offset(source)
            label = f', label="offset {offset:+d}"' if offset else ""
            lines.append(f"{INDENT}{quoted[source]} -> {joint} [arrowhead=none{label}];")
        lines.append(f"{INDENT}{joint} -> {quoted[target]};")
    lines.append("}")
    return "".join(f"{line}\n" for line in lines)
