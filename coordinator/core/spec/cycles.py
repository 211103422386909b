"""Cycles in a dependencies graph, for the spec's error messages: one shortest cycle per strongly connected component.

Rules: pure; iterative (a long chain of DAGs cannot hit the recursion limit); deterministic (components ordered by
their smallest node, each cycle starting there), so the same file always gets the same message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.core.model import NodeId
from coordinator.core.spec.source import JsonPath


@dataclass(frozen=True, slots=True)
class Edge:
    """``target`` runs after ``source`` succeeds (or fails, for a failure edge); declared at ``path``."""

    source: NodeId
    target: NodeId
    failure: bool
    path: JsonPath


def acyclic(nodes: Iterable[NodeId], edges: Iterable[Edge]) -> bool:
    """Whether the edges among ``nodes`` make no cycle (Kahn's algorithm: every node can be taken once its sources
    are); linear and unordered, where :func:`shortest_cycles` orders everything for its message."""
    waiting: dict[NodeId, int] = dict.fromkeys(nodes, 0)
    out: dict[NodeId, list[NodeId]] = {}
    for edge in edges:
        waiting[edge.target] += 1
        out.setdefault(edge.source, []).append(edge.target)
    ready = [node for node, count in waiting.items() if count == 0]
    taken = 0
    while ready:
        taken += 1
        for target in out.get(ready.pop(), ()):
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    return taken == len(waiting)


def shortest_cycles(out: Mapping[NodeId, Sequence[Edge]]) -> list[list[Edge]]:
    """One shortest cycle per strongly connected component of two or more nodes, from its smallest node."""
    return [shortest_cycle(min(c), out, c) for c in strongly_connected(out) if len(c) > 1]


def strongly_connected(out: Mapping[NodeId, Sequence[Edge]]) -> list[set[NodeId]]:
    """Kosaraju's algorithm, iterative so that a long chain of DAGs cannot hit the recursion limit."""
    finished: list[NodeId] = []
    seen: set[NodeId] = set()
    for root in out:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(out[root]))]
        while stack:
            node, pending = stack[-1]
            child = next((e.target for e in pending if e.target not in seen), None)
            if child is None:
                stack.pop()
                finished.append(node)
            else:
                seen.add(child)
                stack.append((child, iter(out[child])))
    into: dict[NodeId, list[NodeId]] = {node: [] for node in out}
    for edges in out.values():
        for edge in edges:
            into[edge.target].append(edge.source)
    components: list[set[NodeId]] = []
    assigned: set[NodeId] = set()
    for root in reversed(finished):
        if root in assigned:
            continue
        component, todo = {root}, [root]
        while todo:
            for parent in into[todo.pop()]:
                if parent not in assigned and parent not in component:
                    component.add(parent)
                    todo.append(parent)
        assigned |= component
        components.append(component)
    return sorted(components, key=min)


def shortest_cycle(start: NodeId, out: Mapping[NodeId, Sequence[Edge]], component: set[NodeId]) -> list[Edge]:
    """Breadth-first from ``start`` back to itself inside its component; the edges in flow order."""
    parent: dict[NodeId, Edge] = {}
    queue = deque([start])
    while queue:
        for edge in out[queue.popleft()]:
            if edge.target == start:
                cycle = [edge]
                while cycle[0].source != start:
                    cycle.insert(0, parent[cycle[0].source])
                return cycle
            if edge.target in component and edge.target not in parent:
                parent[edge.target] = edge
                queue.append(edge.target)
    raise AssertionError("a strongly connected component of two or more nodes always has a cycle")


def cycle_text(cycle: Sequence[Edge]) -> str:
    """``a -> b -(on failure)-> c -> a``: the order in which the DAGs would wait for each other."""
    parts = [str(cycle[0].source)]
    for edge in cycle:
        parts.append(f" -(on failure)-> {edge.target}" if edge.failure else f" -> {edge.target}")
    return "".join(parts)
