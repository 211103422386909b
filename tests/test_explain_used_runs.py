"""``why`` during a run in flight says which run (run id, attempt) of each upstream its trigger used
(``explain.used_runs``): from the ledger's recorded generations, named by the view, and never a run it did not use."""

from __future__ import annotations

import json
from typing import Any

from coordinator.core.model import RunState
from coordinator.core.spec.loader import parse_spec
from coordinator.explain.report import why
from tests.support.world import P1, P2, SEVEN, World, n


def why_of(world: World, dag: str, partition: str = P1) -> list[str]:
    return why(world.graph, world.plan([partition]), n(dag), partition, world.view)


def rerun_of_the_root() -> tuple[World, int]:
    """The seven-DAG cascade done, then 01 cleared and succeeded again (attempt 1): 02..05 are cleared, not started."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}")
    world.settle()
    gen = world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    world.act()
    return world, gen


def test_a_rerun_asked_for_names_the_upstream_run_it_uses() -> None:
    """02 cleared on 01's success again, not started yet: why 02 says its trigger used 01's run, attempt 1, at the
    revision of that success."""
    world, gen = rerun_of_the_root()
    intent = world.view.ledger[(n("02_pipeline"), P1)].intent_rev
    lines = why_of(world, "02_pipeline")
    used = f"used 01_pipeline run scheduled__{P1}, attempt 1 (success at revision {gen})"
    assert f"  its trigger at revision {intent} {used}" in lines, lines


def test_a_running_rerun_names_it_and_so_does_a_dependent_waiting_for_it() -> None:
    """02 running: the same line under 02, and under 02 again when why 06 walks to it (06 waits for 02..05)."""
    world, gen = rerun_of_the_root()
    world.start("02_pipeline", P1)
    line = f"used 01_pipeline run scheduled__{P1}, attempt 1 (success at revision {gen})"
    assert any(line in x for x in why_of(world, "02_pipeline")), why_of(world, "02_pipeline")
    assert any(x.startswith("    its trigger at revision") and line in x for x in why_of(world, "06_pipeline"))


def test_an_upstream_that_moved_on_is_named_by_the_revision_used_and_what_it_holds_now() -> None:
    """01 cleared once more while 02 runs on its attempt 1: why 02 names the revision its trigger used and that 01 now
    holds attempt 2, running, never attempt 2 as the one used."""
    world, gen = rerun_of_the_root()
    world.start("02_pipeline", P1)
    now = world.state("01_pipeline", P1, RunState.RUNNING, f"scheduled__{P1}", clear_number=2)
    lines = why_of(world, "02_pipeline")
    assert (
        f"01_pipeline at revision {gen} (a result it no longer holds: now run scheduled__{P1}, attempt 2, running at "
        f"revision {now})"
    ) in "\n".join(lines), lines


def test_an_unconfirmed_trigger_names_its_inputs_and_a_finished_run_has_no_such_line() -> None:
    """A trigger recorded but not confirmed (the watcher crashed after the intent) says what it used; once the run
    finished, the line is gone (the planner's reason tells the story then)."""
    world = World(SEVEN)
    world.adopt()
    gen = world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}")
    world.act(crash_after_intent=True)
    lines = why_of(world, "02_pipeline")
    assert any(f"used 01_pipeline run scheduled__{P1}, attempt 0 (success at revision {gen})" in x for x in lines)
    world.settle()
    assert not any("its trigger at revision" in x for x in why_of(world, "02_pipeline"))


def world_of(dags: dict[str, Any]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def test_a_mapped_and_a_task_input_are_named_with_their_partition_and_task() -> None:
    """d of day 2 reads up of day 1 and task load of u: the line names 'up 2026-01-01...' and 'u task load'."""
    daily = {"cron": "@daily"}
    world = world_of({
        "up": {"partitions": daily}, "u": {"partitions": daily},
        "d": {"partitions": daily, "upstreams": [{"dag": "up", "offset": -1}, {"dag": "u", "task": "load"}]},
    })  # fmt: skip
    up = world.state("up", P1, RunState.SUCCESS, "scheduled__up")
    task = world.task_state("u", "load", P2, RunState.SUCCESS)
    world.act([P2])
    lines = "\n".join(why_of(world, "d", P2))
    assert f"up {P1} run scheduled__up, attempt 0 (success at revision {up})" in lines, lines
    assert f"u task load run manual__{P2}, attempt 0 (success at revision {task})" in lines, lines


def test_a_run_the_coordinator_did_not_trigger_says_what_it_reads_is_not_recorded() -> None:
    """02 running on its own schedule (no trigger of the coordinator's): why says which upstream runs it reads is not
    recorded, and a root's run says nothing of the kind."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.RUNNING, f"scheduled__{P1}")
    world.state("02_pipeline", P1, RunState.RUNNING, f"scheduled__{P1}")
    assert "  a run the coordinator did not trigger: which upstream runs it reads is not recorded" in why_of(
        world, "02_pipeline"
    )
    assert not any("not recorded" in line for line in why_of(world, "01_pipeline"))
