"""The full pass's settled check in C (``core/_settled.c``'s ``SettledWalk``) makes exactly the calls the Python loop
makes (``core.settled_pass._walk``): the same DAGs passed over, the others handed to ``act`` in the same order, the
same actions, over dicts and ``Slots``, one walk reused across partitions; a fact it cannot read in place goes to
``act``; a malformed order is an error, not a crash."""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core import settled_pass
from coordinator.core.actions import Action
from coordinator.core.fact_index import PartitionMaps
from coordinator.core.facts import LedgerFact, RunFact
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, RunState, TriggerAction, TriggerStatus
from coordinator.core.planner import plan
from coordinator.core.settled_pass import FullPass
from tests.support.examples import examples
from tests.support.world import P1, World, make_graph

STATES = (RunState.SUCCESS, RunState.SUCCESS, RunState.SUCCESS, RunState.FAILED, RunState.RUNNING)
STATUSES = (TriggerStatus.DONE, TriggerStatus.DONE, TriggerStatus.DONE, TriggerStatus.PENDING)
#: Revisions from a small range, so that a ledger's recorded generation often equals an upstream's and often not.
REVS = st.integers(1, 6)


def compiled(order: Any) -> FullPass:
    """The compiled walk of ``order`` (a ``Graph``, or anything with its ``pass_order``)."""
    assert settled_pass._COMPILED is not None
    walk: FullPass = settled_pass._COMPILED(order.pass_order, RunState.SUCCESS, TriggerStatus.DONE).walk
    return walk


def python(order: Any) -> FullPass:
    """The Python loop over ``order``, the definition."""
    return partial(settled_pass._walk, cast(Graph, order))


def test_the_test_environment_walks_in_c() -> None:
    """Where the package is compiled (the test venv), a full pass walks in C."""
    graph = make_graph({"b": ["a"]})
    assert settled_pass._COMPILED is not None
    assert not isinstance(settled_pass.full_pass(graph), partial)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Any, dict[NodeId, Any], dict[NodeId, Any], set[NodeId], set[NodeId]]:
    """A random acyclic graph's pass order (some DAGs outside the per-DAG path: upstreams None), each DAG's run and
    ledger facts (or none), which DAGs ``act`` finds fresh and which it acts on."""
    size = draw(st.integers(2, 9))
    names = [f"d{i}" for i in range(size)]
    edges = {names[i]: draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) for i in range(1, size)}
    graph = make_graph(edges | {names[0]: []})
    outside = set(draw(st.lists(st.sampled_from(graph.topo_order), unique=True, max_size=2)))
    order = SimpleNamespace(
        topo_order=graph.topo_order,
        pass_order=tuple((node, None if node in outside else ups) for node, ups in graph.pass_order),
    )
    runs: dict[NodeId, Any] = {}
    ledgers: dict[NodeId, Any] = {}
    for node in graph.topo_order:
        if draw(st.integers(0, 5)):
            runs[node] = RunFact(state=draw(st.sampled_from(STATES)), run_id="r", clear_number=0, rev=draw(REVS))
        if draw(st.integers(0, 3)):
            keys = [up.qualified for up in graph.dags[node].upstreams] + ["default/elsewhere"]
            recorded = draw(st.lists(st.sampled_from(keys), unique=True))
            ledgers[node] = LedgerFact(
                status=draw(st.sampled_from(STATUSES)),
                action=TriggerAction.CREATE,
                run_id="r",
                input_names=tuple(recorded),
                input_revs=tuple(draw(REVS) for _ in recorded),
                mod_rev=draw(REVS),
                recorded_intent_rev=draw(st.sampled_from([0, 0, *range(1, 7)])),
            )
    fresh = set(draw(st.lists(st.sampled_from(graph.topo_order), unique=True)))
    acting = set(draw(st.lists(st.sampled_from(graph.topo_order), unique=True)))
    return order, runs, ledgers, fresh, acting


def run_walk(
    walk: FullPass, runs: Any, ledgers: Any, fresh: set[NodeId], acting: set[NodeId]
) -> tuple[list[NodeId], list[Action]]:
    """One partition's walk with an ``act`` that records its calls, memoizes the given freshness and acts on
    ``acting``: the calls and the actions."""
    calls: list[NodeId] = []
    known: dict[NodeId, bool] = {}

    def act(node: NodeId) -> Action | None:
        calls.append(node)
        known[node] = node in fresh
        return cast(Action, ("act", node)) if node in acting else None

    actions: list[Action] = []
    walk(runs, ledgers, known, act, actions)
    return calls, actions


def slots_of(facts: dict[NodeId, Any], maps: PartitionMaps) -> MutableMapping[NodeId, Any]:
    """The same facts in a ``Slots`` of ``maps`` (dense once it holds enough of the index's nodes)."""
    held = maps.fresh()
    for node, fact in facts.items():
        held[node] = fact
    return held


@settings(max_examples=examples(400), deadline=None)
@given(world=worlds(), dense=st.booleans())
def test_the_compiled_walk_makes_the_python_loops_calls(world: Any, dense: bool) -> None:
    """Over random graphs, facts and memos, one compiled walk hands ``act`` the same DAGs in the same order and
    appends the same actions as the Python loop, partition after partition: over dicts, then ``Slots`` (sparse or
    dense), then ``Slots`` of another view's index."""
    order, runs, ledgers, fresh, acting = world
    expected = run_walk(python(order), runs, ledgers, fresh, acting)
    walk = compiled(order)
    assert run_walk(walk, runs, ledgers, fresh, acting) == expected
    others = [NodeId("default", f"x{i}") for i in range(300)]
    for known in (list(order.topo_order), [*others, *order.topo_order]) if dense else ([*order.topo_order, *others],):
        maps = PartitionMaps()
        maps.know(known)
        assert run_walk(walk, slots_of(runs, maps), slots_of(ledgers, maps), fresh, acting) == expected


def test_a_dag_given_its_slot_after_the_walk_read_the_index_is_found() -> None:
    """DAGs that had no slot when the walk read the view's index, and have facts in a dense ``Slots`` now, are judged
    by them: the same calls as the Python loop (here: every settled dependent passed over)."""
    graph = make_graph({f"d{i:02d}": ["a"] for i in range(80)})
    root, *dependents = graph.topo_order
    maps = PartitionMaps()
    walk = compiled(graph)
    nothing = run_walk(walk, maps.fresh(), maps.fresh(), set(), set())  # the walk reads the index, still empty
    assert nothing == run_walk(python(graph), {}, {}, set(), set())
    done = LedgerFact(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r",
                      input_names=(root.qualified,), input_revs=(3,), mod_rev=4)  # fmt: skip
    runs = slots_of({node: RunFact(state=RunState.SUCCESS, run_id="r", clear_number=0, rev=3 + 2 * bool(i))
                     for i, node in enumerate(graph.topo_order)}, maps)  # fmt: skip
    ledgers = slots_of(dict.fromkeys(dependents, done), maps)
    assert runs.__sizeof__() < 2_000  # dense: an array, not a dict
    assert run_walk(python(graph), runs, ledgers, set(), set()) == ([], [])
    assert run_walk(walk, runs, ledgers, set(), set()) == ([], [])


def test_a_fact_it_cannot_read_in_place_goes_to_act() -> None:
    """A settled root whose revision does not fit the compact layout (held as given) is handed to ``act`` where the
    Python loop passes it over, and its dependent is then judged by ``act``'s memo: the same actions."""
    graph = make_graph({"b": ["a"]})
    a, b = graph.topo_order
    odd = 2**70
    runs = {a: RunFact(state=RunState.SUCCESS, run_id="r", clear_number=0, rev=odd),
            b: RunFact(state=RunState.SUCCESS, run_id="r", clear_number=0, rev=odd + 1)}  # fmt: skip
    ledgers = {b: LedgerFact(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r",
                             input_names=(a.qualified,), input_revs=(odd,), mod_rev=5)}  # fmt: skip
    assert run_walk(python(graph), runs, ledgers, {a, b}, set()) == ([], [])
    assert run_walk(compiled(graph), runs, ledgers, {a, b}, set()) == ([a, b], [])


A, B = NodeId("default", "a"), NodeId("default", "b")


@pytest.mark.parametrize(
    "order",
    [[(A, ())], ((A,),), ((A, [(0, B, "k")]),), ((A, ((5, B, "k"),)),), ((A, ()), (B, ((1, A, "k"),)))],
    ids=["a list", "an entry without upstreams", "upstreams in a list", "a position outside", "a position not before"],
)
def test_a_malformed_order_is_an_error_not_a_crash(order: Any) -> None:
    """An order not of ``Graph.pass_order``'s shape is refused (TypeError or ValueError) when the walk is made."""
    assert settled_pass._COMPILED is not None
    with pytest.raises((TypeError, ValueError)):
        settled_pass._COMPILED(order, RunState.SUCCESS, TriggerStatus.DONE)


def test_without_the_module_the_planner_walks_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the module is not built (the release's pure wheel), ``full_pass`` is the Python loop, and a full pass of
    the planner gives the actions it gives with the compiled walk: here the trigger of the dependent whose upstream
    succeeded, nothing for the one whose upstream has not."""
    graph = make_graph({"b": ["a"], "c": ["b"], "y": ["x"]})
    world = World(graph)
    world.adopt()
    for dag in ("a", "x", "c"):
        world.state(dag, P1, RunState.SUCCESS)
    assert 2 * len(world.view.partitions[P1]) >= len(graph.topo_order)  # most DAGs have facts: the full walk
    compiled_actions = plan(graph, world.view, explain=False).actions
    assert [(action.node.dag_id, action.partition) for action in compiled_actions] == [("b", P1), ("y", P1)]
    monkeypatch.setattr(settled_pass, "_COMPILED", None)
    assert isinstance(settled_pass.full_pass(graph), partial)
    assert plan(graph, world.view, explain=False).actions == compiled_actions
