"""The graph's topological order (``Graph.topo_order``): every DAG after its sources, ties broken by name."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import NodeId


def _least_ready_first(graph: Graph) -> list[NodeId]:
    """The order by its definition: among the DAGs whose sources are all placed, the least by name, each time."""
    placed: list[NodeId] = []
    left = set(graph.dags)
    while left:
        ready = [n for n in left if all(s in placed for s in (*graph.dags[n].upstreams, *graph.dags[n].on_failure_of))]
        node = min(ready)
        placed.append(node)
        left.remove(node)
    return placed


@st.composite
def _graphs(draw: st.DrawFn) -> Graph:
    """A random acyclic graph: names drawn in any order, edges only from an earlier-drawn DAG to a later one."""
    names = draw(st.lists(st.text(alphabet="abc_01", min_size=1, max_size=4), min_size=1, max_size=25, unique=True))
    nodes = [NodeId(draw(st.sampled_from(("default", "eu"))), name) for name in names]
    dags = {}
    for i, node in enumerate(nodes):
        earlier = nodes[:i]
        ups = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4)) if earlier else []
        fails = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        fails = [f for f in fails if f not in ups]
        dags[node] = DagSpec(node, upstreams=tuple(ups), on_failure_of=tuple(fails))
    return Graph(dags, frozenset({"default", "eu"}))


@given(graph=_graphs())
def test_each_dag_comes_after_its_sources_and_the_least_ready_name_first(graph: Graph) -> None:
    """topo_order places the least-named DAG among those whose upstreams and failure sources are placed, each time."""
    assert list(graph.topo_order) == _least_ready_first(graph)
    assert graph.topo_index == {node: i for i, node in enumerate(graph.topo_order)}
