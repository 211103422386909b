"""Planner example tables for the extended edges (semantics rule 12): shift, member, task-level upstreams, the
"finished" condition and self-dependency gates, driven through the real intent protocol (tests/support/world.py)."""

from __future__ import annotations

import json

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, RunState
from coordinator.core.planner import plan_changes
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from tests.support.world import World, n

D1, D2, D3 = "2024-03-10T01:00:00Z", "2024-03-11T01:00:00Z", "2024-03-12T01:00:00Z"
F1, F2, F3 = "2024-03-10T05:00:00Z", "2024-03-11T05:00:00Z", "2024-03-12T05:00:00Z"


def world_of(dags: dict[str, object]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def shifted() -> World:
    return world_of(
        {
            "u": {"partitions": {"cron": "0 1 * * *"}},
            "d": {"partitions": {"cron": "0 5 * * *"}, "upstreams": [{"dag": "u", "shift": "-4h"}]},
        }
    )


def test_a_shift_triggers_exactly_one_run_per_upstream_day() -> None:
    """A 01:00 upstream and a 05:00 dependent with shift -4h: each upstream day triggers the same day's run once."""
    world = shifted()
    rev = world.state("u", D1, RunState.SUCCESS)
    world.settle()
    assert world.effects == [(n("d"), F1, "create", {f"default/u@{D1}": rev})]
    world.state("u", D2, RunState.SUCCESS)
    world.settle()
    assert [(e[1], e[2]) for e in world.effects] == [(F1, "create"), (F2, "create")]
    assert world.violations == []


def test_a_rerun_of_day_n_reruns_only_the_dependent_of_day_n() -> None:
    """Clearing the upstream's day N reruns the dependent's day N once and leaves day N+1 alone."""
    world = shifted()
    for day in (D1, D2):
        world.state("u", day, RunState.SUCCESS, f"scheduled__{day}")
    world.settle()
    world.state("u", D1, RunState.RUNNING, f"scheduled__{D1}", clear_number=1)
    world.state("u", D1, RunState.SUCCESS, f"scheduled__{D1}", clear_number=1)
    world.settle()
    assert world.count("d", F1) == 2 and world.count("d", F2) == 1
    assert world.count("d", F1, "clear") == 1


def test_a_weekly_member_waits_for_the_last_day_only() -> None:
    """A weekly DAG with member "last" runs once its week's Sunday succeeded, not before, and once."""
    world = world_of(
        {
            "day": {"partitions": {"cron": "@daily"}},
            "week": {"partitions": {"cron": "0 0 * * 1"}, "upstreams": [{"dag": "day", "member": "last"}]},
        }
    )
    world.state("day", "2024-03-11T00:00:00Z", RunState.SUCCESS)  # Monday of the week
    assert world.act() == 0
    world.state("day", "2024-03-17T00:00:00Z", RunState.SUCCESS)  # its Sunday
    world.settle()
    assert [(e[1], e[2]) for e in world.effects] == [("2024-03-11T00:00:00Z", "create")]


def task_graph() -> World:
    return world_of(
        {
            "u": {},
            "d": {"upstreams": [{"dag": "u", "task": "load"}]},
            "fan": {"upstreams": [{"dag": "u", "task": "a"}, {"dag": "u", "task": "b"}]},
        }
    )


P = "2024-03-10T00:00:00Z"


def test_a_task_level_upstream_starts_the_dependent_while_the_run_is_still_running() -> None:
    """d waits for u's task "load" only: its success triggers d although u's run is still running."""
    world = task_graph()
    world.state("u", P, RunState.RUNNING)
    assert world.act() == 0
    rev = world.task_state("u", "load", P, RunState.SUCCESS)
    world.act()
    assert world.effects == [(n("d"), P, "create", {"default/u:load": rev})]
    assert world.view.runs[(n("u"), P)].state is RunState.RUNNING and world.violations == []


def test_a_cleared_task_cascades_once_and_fan_ins_wait_for_every_rerun() -> None:
    """A cleared and rerun task reruns its dependent once; a DAG on two tasks reruns once, after both reran."""
    world = task_graph()
    for task in ("load", "a", "b"):
        world.task_state("u", task, P, RunState.SUCCESS)
    world.state("u", P, RunState.SUCCESS)
    world.settle()
    assert world.count("d", P) == 1 and world.count("fan", P) == 1
    world.task_state("u", "load", P, RunState.RUNNING, clear_number=1)
    world.task_state("u", "a", P, RunState.RUNNING, clear_number=1)
    world.task_state("u", "b", P, RunState.RUNNING, clear_number=1)
    world.task_state("u", "load", P, RunState.SUCCESS, clear_number=1)
    world.task_state("u", "a", P, RunState.SUCCESS, clear_number=1)
    world.settle()
    assert world.count("d", P) == 2 and world.count("fan", P) == 1  # fan still waits for task b
    verdict = world.plan([P]).verdicts[(n("fan"), P)]
    assert "needs u task b: is running" in verdict.summary
    world.task_state("u", "b", P, RunState.SUCCESS, clear_number=1)
    world.settle()
    assert world.count("d", P) == 2 and world.count("fan", P) == 2 and world.violations == []


def test_finished_is_satisfied_by_a_failure_and_reruns_once_per_terminal_write() -> None:
    """condition "finished": a failed upstream triggers the dependent; its successful rerun triggers it once more."""
    world = world_of({"u": {}, "lock": {"upstreams": [{"dag": "u", "condition": "finished"}]}, "x": {"upstreams": "u"}})
    world.state("u", P, RunState.FAILED)
    world.settle()
    assert world.count("lock", P) == 1 and world.count("x", P) == 0
    world.state("u", P, RunState.RUNNING, clear_number=1)
    assert world.act() == 0
    world.state("u", P, RunState.SUCCESS, clear_number=1)
    world.settle()
    assert world.count("lock", P) == 2 and world.count("x", P) == 1


def gated() -> World:
    return world_of(
        {
            "u": {"partitions": {"cron": "@daily"}},
            "d": {"partitions": {"cron": "@daily"}, "upstreams": ["u", {"dag": "d", "offset": -1}]},
        }
    )


DAYS = ("2024-03-10T00:00:00Z", "2024-03-11T00:00:00Z", "2024-03-12T00:00:00Z")


def test_a_self_dependency_runs_a_three_day_chain_in_order_once_each() -> None:
    """Three upstream days at once: d runs day 1 (no predecessor), then day 2, then day 3, each exactly once."""
    world = gated()
    for day in DAYS:
        world.state("u", day, RunState.SUCCESS)
    world.act()
    assert [e[1] for e in world.effects] == [DAYS[0]]
    verdict = world.plan([DAYS[1]]).verdicts[(n("d"), DAYS[1])]
    assert f"its own previous partition {DAYS[0]} must finish first" in verdict.summary
    world.settle()
    assert [(e[1], e[2]) for e in world.effects] == [(day, "create") for day in DAYS]
    assert [s[1] for s in world.starts] == list(DAYS)


def test_a_rerun_of_an_earlier_partition_does_not_rerun_the_later_ones() -> None:
    """Clearing d's day 1 reruns nothing of days 2-3: the gate is no input (rule 12c)."""
    world = gated()
    for day in DAYS:
        world.state("u", day, RunState.SUCCESS)
    world.settle()
    world.user_clears(n("d"), DAYS[0])
    world.finish("d", DAYS[0])
    world.settle()
    assert [world.count("d", day) for day in DAYS] == [1, 1, 1]


def test_a_failed_predecessor_holds_the_next_partition() -> None:
    """d's day 1 failed: day 2 waits (success is the gate's default condition) until day 1 succeeds."""
    world = gated()
    for day in DAYS[:2]:
        world.state("u", day, RunState.SUCCESS)
    world.settle(fail=["d"])
    assert world.count("d", DAYS[0]) == 1 and world.count("d", DAYS[1]) == 0
    world.user_clears(n("d"), DAYS[0])
    world.finish("d", DAYS[0])
    world.settle()
    assert world.count("d", DAYS[1]) == 1


def test_a_change_of_the_predecessor_replans_the_gated_partition_one_step() -> None:
    """plan_changes after d's day 1 succeeds looks at d's day 2 (not only day 1), and no further back or ahead."""
    world = gated()
    for day in DAYS:
        world.state("u", day, RunState.SUCCESS)
    world.act()
    world.start("d", DAYS[0])
    world.finish("d", DAYS[0])
    actions = plan_changes(world.graph, world.view, {DAYS[0]: [n("d")]}).actions
    assert [(a.node, a.partition) for a in actions] == [(n("d"), DAYS[1])]


def test_adoption_records_the_upstream_tasks_for_the_plugin() -> None:
    """The activation names every task the graph waits for, per DAG, sorted; a graph without tasks writes none."""
    graph = task_graph().graph
    activation = adopt(graph.shapes, graph.digest, None, 1, sources=graph.dags)
    assert activation is not None and activation.upstream_tasks == {"default/u": ("a", "b", "load")}
    plain = world_of({"u": {}, "d": {"upstreams": "u"}}).graph
    value = adopt(plain.shapes, plain.digest, None, 1, sources=plain.dags)
    assert value is not None and b"upstream_tasks" not in dump_activation(value)


def test_the_view_loads_task_keys_and_reports_malformed_ones() -> None:
    """Task states are facts of their DAG in their partition; a key with a missing part is a problem, not a fact."""
    view = View(KeyLayout())
    good = b'{"state": "success", "run_id": "r"}'
    assert view.apply(f"/coordinator/tasks/default/u/grp.load/{P}", good, 5) == {P}
    assert view.tasks[(n("u"), "grp.load", P)].rev == 5 and n("u") in view.partitions[P]
    assert view.node_of(f"/coordinator/tasks/default/u/grp.load/{P}") == (n("u"), P)
    view.apply(f"/coordinator/tasks/default/u/{P}", good, 6)
    view.apply(f"/coordinator/tasks/default/u/t/{P}", b"not json", 7)
    assert set(view.problems) == {f"/coordinator/tasks/default/u/{P}", f"/coordinator/tasks/default/u/t/{P}"}
    assert f"/coordinator/tasks/default/u/grp.load/{P}" in view.known()


def test_retention_retires_a_shifted_read_below_the_floor_but_never_a_gate() -> None:
    """A decision reading a retired partition through a shift is retired; one whose gate reads it is not."""
    from coordinator.core.retention import RetentionFloor, Retirement

    world = world_of(
        {
            "u": {"partitions": {"cron": "@daily"}},
            "shifted": {"partitions": {"cron": "@daily"}, "upstreams": [{"dag": "u", "shift": "-1d"}]},
            "gated": {"partitions": {"cron": "@daily"}, "upstreams": ["u", {"dag": "gated", "offset": -1}]},
        }
    )
    retirement = Retirement(world.graph, RetentionFloor(before=DAYS[1], by="test"))
    assert retirement.why_retired(n("shifted"), DAYS[1]) is not None
    assert retirement.why_retired(n("gated"), DAYS[1]) is None
    assert retirement.why_retired(n("shifted"), DAYS[2]) is None


def test_first_adoption_processes_history_through_a_shift_and_a_task() -> None:
    """Facts written before the first adoption trigger shifted and task-level dependents once adopted (rule 9)."""
    world = World(
        parse_spec(
            json.dumps(
                {
                    "version": 1,
                    "dags": {
                        "u": {"partitions": {"cron": "0 1 * * *"}},
                        "d": {"partitions": {"cron": "0 5 * * *"}, "upstreams": [{"dag": "u", "shift": "-4h"}]},
                        "t": {"upstreams": [{"dag": "u", "task": "load"}]},
                    },
                }
            )
        )
    )
    world.state("u", D1, RunState.SUCCESS)
    world.task_state("u", "load", D1, RunState.SUCCESS)
    graph = world.graph
    activation = adopt(graph.shapes, graph.digest, None, world.rev, history_from="", sources=graph.dags)
    assert activation is not None
    world.write(world.view.graph_key, dump_activation(activation))
    world.settle()
    assert sorted((e[0].dag_id, e[1]) for e in world.effects) == [("d", F1), ("t", D1)]


def test_a_task_of_a_stale_upstream_does_not_count_until_it_reran() -> None:
    """(u, t) is judged like u: when u's own upstream reruns, u's old task success no longer satisfies d."""
    world = world_of({"root": {}, "u": {"upstreams": "root"}, "d": {"upstreams": [{"dag": "u", "task": "t"}]}})
    world.state("root", P, RunState.SUCCESS)
    world.act()  # u is created
    world.start("u", P)
    world.task_state("u", "t", P, RunState.SUCCESS)
    world.finish("u", P)
    world.act()
    assert world.count("d", P) == 1
    world.start("d", P)
    world.finish("d", P)
    world.state("root", P, RunState.SUCCESS, clear_number=1)  # root reruns: u is stale, its task too
    world.act()  # u is cleared
    assert world.count("u", P) == 2 and world.count("d", P) == 1
    verdict = world.plan([P]).verdicts[(n("d"), P)]
    assert "needs u task t: succeeded but is stale" in verdict.summary
    world.start("u", P)
    world.task_state("u", "t", P, RunState.SUCCESS, clear_number=1)
    world.act()
    assert world.count("d", P) == 2 and world.violations == []
