"""Planner, rule 12c: a self-dependency (gate) runs a catch-up in order. Upstream successes for several partitions
(at once, or one pass after the other while the first run is still pending) must not make each of them look like a
first partition; a partition whose predecessor D will never run for (no upstream success there) still runs."""

from __future__ import annotations

import json

from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt
from coordinator.core.floor import RetentionFloor, dump_floor
from coordinator.core.model import KeyLayout, RunRecord, RunState, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from tests.support.world import World, n

DAYS = ["2025-03-10T00:00:00Z", "2025-03-11T00:00:00Z", "2025-03-12T00:00:00Z"]
GATED = {
    "root": {"partitions": {"cron": "@daily"}},
    "chain": {"partitions": {"cron": "@daily"}, "upstreams": ["root", {"dag": "chain", "shift": "-1d"}]},
}


def world() -> World:
    w = World(parse_spec(json.dumps({"version": 1, "dags": GATED})))
    w.adopt()
    return w


def triggered(w: World) -> list[str]:
    return [partition for node, partition, *_ in w.effects if node == n("chain")]


def test_successes_for_three_days_at_once_run_the_gated_dag_one_day_after_the_other() -> None:
    """root succeeded for three days before any pass: chain runs day 1 only, then day 2 after day 1, then day 3."""
    w = world()
    for day in DAYS:
        w.state("root", day, RunState.SUCCESS)
    w.act()
    assert triggered(w) == DAYS[:1]
    for done, following in ((0, DAYS[:2]), (1, DAYS)):
        w.start("chain", DAYS[done])
        assert w.act() == 0  # still running: the next day waits
        w.finish("chain", DAYS[done])
        w.act()
        assert triggered(w) == following
    w.settle()
    assert [w.count("chain", day) for day in DAYS] == [1, 1, 1] and w.violations == []


def test_a_second_days_success_while_the_first_trigger_is_pending_waits() -> None:
    """root day 1 succeeds and chain day 1 is triggered; root day 2's success then leaves chain day 2 waiting."""
    w = world()
    w.state("root", DAYS[0], RunState.SUCCESS)
    w.act()
    w.state("root", DAYS[1], RunState.SUCCESS)
    assert w.act() == 0
    assert triggered(w) == DAYS[:1]
    w.settle()
    assert triggered(w) == DAYS[:2]


def test_a_day_whose_predecessor_never_had_an_upstream_success_runs() -> None:
    """The first partition with an upstream success runs even though the day before it never will (no root run)."""
    w = world()
    w.state("root", DAYS[1], RunState.SUCCESS)
    w.act()
    assert triggered(w) == DAYS[1:2]


def test_the_first_day_after_the_gated_dag_is_added_runs_though_its_upstream_ran_the_day_before() -> None:
    """chain added to a graph in force after root ran for day 1 (a success that predates chain's definition and
    never runs it): root's day 2 success runs chain for day 2, the first partition after its activation."""
    w = World(parse_spec(json.dumps({"version": 1, "dags": {"root": GATED["root"]}})))
    w.adopt()
    w.state("root", DAYS[0], RunState.SUCCESS)
    w.adopt(parse_spec(json.dumps({"version": 1, "dags": GATED})))
    w.state("root", DAYS[1], RunState.SUCCESS)
    w.act()
    assert triggered(w) == DAYS[1:2]


def test_the_first_day_at_the_retention_floor_is_not_held_by_a_retired_failure() -> None:
    """A failed day 1 holds day 2 through the gate; once a floor retires day 1, day 2 is due for a reader that
    still holds day 1's keys (status, the page) exactly as for the watcher, whose view forgets them."""
    graph = parse_spec(json.dumps({"version": 1, "dags": GATED}))
    keys = KeyLayout("/gate-floor")
    items = [
        (keys.run_key(n("root"), DAYS[1]), dump_record(RunRecord(state=RunState.SUCCESS, run_id="r")), 3),
        (keys.run_key(n("chain"), DAYS[0]), dump_record(RunRecord(state=RunState.FAILED, run_id="c")), 4),
    ]
    activation = adopt(graph.shapes, graph.digest, None, 1, history_from="", sources=graph.dags)
    for floor, due in ((None, []), (RetentionFloor(before=DAYS[1]), [DAYS[1]])):
        view = View(keys)
        view.load(9, [*items, *([(keys.config_key("retention"), dump_floor(floor), 5)] if floor else [])])
        actions = plan(graph, view, activation=activation).actions
        assert [a.partition for a in actions if isinstance(a, Trigger) and a.node == n("chain")] == due
