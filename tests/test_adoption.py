"""First adoption of a graph (semantics rule 9, coordinator.core.adoption): the three cases and the flood guard."""

from __future__ import annotations

import pytest

from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.adoption import HistoryChoice, HistoryMode, first_adoption, is_first_adoption
from coordinator.core.model import RunState
from coordinator.core.planner import plan
from tests.support.world import P1, P2, SEVEN, World, make_graph, n

FAN_IN = ("02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline")


def history_world(*partitions: str) -> World:
    """Roots succeeded for ``partitions`` before any watcher ever ran (nothing adopted)."""
    world = World(SEVEN)
    for p in partitions:
        world.state("01_pipeline", p, RunState.SUCCESS, f"scheduled__{p}")
    return world


def due(world: World) -> set[tuple[str, str]]:
    return {(a.node.dag_id, a.partition) for a in world.plan().actions if isinstance(a, Trigger)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("auto", HistoryChoice(HistoryMode.AUTO), id="auto"),
        pytest.param("ALL", HistoryChoice(HistoryMode.ALL), id="all-any-case"),
        pytest.param(" none ", HistoryChoice(HistoryMode.NONE), id="none-padded"),
        pytest.param("2026-01-02", HistoryChoice(HistoryMode.SINCE, P2), id="bare-date"),
        pytest.param("2026-01-02T01:00:00+01:00", HistoryChoice(HistoryMode.SINCE, P2), id="offset-normalised"),
    ],
)
def test_history_choice_parses_modes_and_dates(text: str, expected: HistoryChoice) -> None:
    """auto/all/none (any case) and logical dates (normalised to the canonical UTC partition) are accepted."""
    assert HistoryChoice.parse(text) == expected


@pytest.mark.parametrize("text", ["everything", "2026-13-01", "2026-01-01T00:00:00", ""], ids=str)
def test_history_choice_rejects_anything_else_with_a_message(text: str) -> None:
    """A bad choice raises ValueError naming the accepted values."""
    with pytest.raises(ValueError, match="expected auto, all, none or a logical date"):
        HistoryChoice.parse(text)


def test_first_adoption_processes_history_below_the_limit() -> None:
    """With nothing ever adopted, a root success already in etcd makes its dependents due once adopted (8a)."""
    world = history_world(P1)
    assert is_first_adoption(world.view)
    decision = first_adoption(SEVEN, world.view, HistoryChoice(), limit=100)
    assert not decision.paused
    assert {(t.node.dag_id, t.partition) for t in decision.triggers} == {(d, P1) for d in FAN_IN}
    assert decision.activation is not None
    world.write(world.view.graph_key, dump_activation(decision.activation))
    assert not is_first_adoption(world.view)
    assert due(world) == {(d, P1) for d in FAN_IN}
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **{f"0{i}_pipeline": 1 for i in range(2, 8)}}


def test_first_adoption_above_the_limit_is_held_and_triggers_nothing() -> None:
    """More first-wave triggers than the limit in auto mode: no activation, no action, a summary saying why (8d)."""
    world = history_world(P1, P2)
    decision = first_adoption(SEVEN, world.view, HistoryChoice(), limit=7)
    assert decision.paused and decision.activation is None
    assert len(decision.triggers) == 8
    assert decision.partitions == [P1, P2]
    assert "over the first-start limit of 7" in decision.summary()
    assert any("--adopt-since 2026-01-02" in hint for hint in decision.how_to_proceed())
    assert plan(SEVEN, world.view, activation=decision.activation).actions == ()


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        pytest.param(HistoryChoice(HistoryMode.ALL), {P1, P2}, id="all-ignores-limit"),
        pytest.param(HistoryChoice(HistoryMode.SINCE, P2), {P2}, id="since-bounds-partitions"),
        pytest.param(HistoryChoice(HistoryMode.NONE), set(), id="none-is-the-activation-rule"),
    ],
)
def test_explicit_choices_are_not_limited(choice: HistoryChoice, expected: set[str]) -> None:
    """all / since / none are the operator's explicit choice: never held, history processed as chosen (8e)."""
    world = history_world(P1, P2)
    decision = first_adoption(SEVEN, world.view, choice, limit=0)
    assert decision.activation is not None
    world.write(world.view.graph_key, dump_activation(decision.activation))
    assert {p for _, p in due(world)} == expected


def test_later_change_keeps_the_activation_rule_and_first_entries_survive() -> None:
    """A DAG added after the first adoption ignores history (8b); unchanged DAGs keep their history window."""
    world = history_world(P1)
    decision = first_adoption(SEVEN, world.view, HistoryChoice(HistoryMode.ALL), limit=0)
    assert decision.activation is not None
    world.write(world.view.graph_key, dump_activation(decision.activation))
    world.settle()
    bigger = make_graph({**{f"0{i}_pipeline": ["01_pipeline"] for i in range(2, 6)},
                         "06_pipeline": list(FAN_IN), "07_pipeline": ["06_pipeline"],
                         "08_new": ["01_pipeline"]})  # fmt: skip
    world.adopt(bigger)
    assert world.view.activation is not None
    assert world.view.activation.nodes["default/08_new"].history_from is None
    assert world.view.activation.nodes["default/02_pipeline"].history_from == ""
    assert due(world) == set(), "history of 01 must not trigger the new DAG without a backfill"
    world.state("01_pipeline", P2, RunState.SUCCESS, f"scheduled__{P2}")
    assert ("08_new", P2) in due(world)


def test_an_unreadable_graph_key_is_not_a_first_adoption() -> None:
    """A graph key that exists but cannot be parsed means something was adopted: no history (8c)."""
    world = history_world(P1)
    world.write(world.view.graph_key, b"{not json")
    assert world.view.activation is None
    assert not is_first_adoption(world.view)


def test_adopt_sets_history_only_on_a_first_adoption() -> None:
    """adopt() writes history_from for a first adoption only; a changed DAG later starts with none."""
    first = adopt(SEVEN.shapes, SEVEN.digest, None, 10, history_from="")
    assert first is not None
    assert {e.history_from for e in first.nodes.values()} == {""}
    changed = make_graph({"02_pipeline": ["01_pipeline", "03_pipeline"], "03_pipeline": ["01_pipeline"]})
    later = adopt(changed.shapes, changed.digest, first, 20, history_from="")
    assert later is not None
    assert later.nodes[n("02_pipeline").qualified].history_from is None
    assert later.nodes[n("02_pipeline").qualified].since == 20
    assert later.nodes[n("03_pipeline").qualified] == first.nodes[n("03_pipeline").qualified]
