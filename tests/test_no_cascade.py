"""Semantics `no-cascade-once`: the next success of a run cleared by ``rerun --no-cascade`` is consumed by every
dependent that had consumed the success it replaces, once; on the seven-DAG example and on the planner's general
(edge by edge) and mapped paths, through the real intent protocol (tests/support/world.py)."""

from __future__ import annotations

import json

import pytest

from coordinator.core.model import RunState
from coordinator.core.no_cascade import NoCascadeRecord, dump_no_cascade
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from tests.support.world import P1, SEVEN, World, n

PIPES = [f"0{i}_pipeline" for i in range(2, 8)]
ROOT_RUN = f"scheduled__{P1}"


def cascaded() -> World:
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, ROOT_RUN)
    world.settle()
    return world


def record(world: World, dag: str, run_id: str, clear_number: int, partition: str = P1) -> int:
    """What ``rerun --no-cascade`` writes before its clear: the attempt it clears and that attempt's success."""
    fact = world.view.runs.get((n(dag), partition))
    replaces = fact.rev if fact is not None and fact.state is RunState.SUCCESS else None
    value = NoCascadeRecord(run_id=run_id, clear_number=clear_number, replaces=replaces, by="test")
    return world.write(world.keys.no_cascade_key(n(dag), partition), dump_no_cascade(value))


def rerun(world: World, dag: str, run_id: str, clear_number: int, partition: str = P1) -> int:
    """The cleared attempt runs and succeeds (the next clear_number), as Airflow and the plugin report it."""
    world.state(dag, partition, RunState.QUEUED, run_id, clear_number)
    world.state(dag, partition, RunState.RUNNING, run_id, clear_number)
    return world.state(dag, partition, RunState.SUCCESS, run_id, clear_number)


def test_a_no_cascade_rerun_of_the_root_reruns_nothing_downstream() -> None:
    """With the record written before the clear, 01's new success leaves 02..07 fresh: no trigger at all."""
    world = cascaded()
    record(world, "01_pipeline", ROOT_RUN, 0)
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 1)}
    verdict = world.plan().verdicts[(n("06_pipeline"), P1)]
    assert "up to date" in verdict.summary


def test_only_that_one_generation_is_waived_a_later_rerun_cascades_once() -> None:
    """The attempt after the waived one (another clear) is a generation like any other: 02..07 rerun once each."""
    world = cascaded()
    record(world, "01_pipeline", ROOT_RUN, 0)
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    rerun(world, "01_pipeline", ROOT_RUN, 2)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_without_the_record_the_same_rerun_cascades_once() -> None:
    """The control: the same attempt's success without a record reruns 02..07 once each."""
    world = cascaded()
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_a_dependent_that_had_not_consumed_the_replaced_success_still_runs() -> None:
    """01 re-succeeded (not yet cascaded), then a no-cascade rerun: the dependents had consumed neither, so they run."""
    world = cascaded()
    rerun(world, "01_pipeline", ROOT_RUN, 1)  # a cascade is now due, not acted on yet
    record(world, "01_pipeline", ROOT_RUN, 1)
    rerun(world, "01_pipeline", ROOT_RUN, 2)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_a_middle_dag_rerun_without_cascade_leaves_its_dependents_alone() -> None:
    """A no-cascade rerun of 03 (a run the coordinator created) leaves 06 and 07 as they are."""
    world = cascaded()
    run = world.airflow[(n("03_pipeline"), P1)]
    record(world, "03_pipeline", run.run_id, run.clear_number)
    run.clear_number += 1
    rerun(world, "03_pipeline", run.run_id, run.clear_number)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 1)}


@pytest.mark.parametrize(
    ("run_id", "clear_number"),
    [pytest.param("manual__other", 0, id="another-run"), pytest.param(ROOT_RUN, 1, id="a-later-attempt-recorded")],
)
def test_a_record_of_another_attempt_waives_nothing(run_id: str, clear_number: int) -> None:
    """A record naming another run, or an attempt other than the one before the success, waives nothing."""
    world = cascaded()
    record(world, "01_pipeline", run_id, clear_number)
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_a_success_written_before_the_record_is_not_waived() -> None:
    """The waived success is written after the record: one already there when the record lands cascades."""
    world = cascaded()
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.write(
        world.keys.no_cascade_key(n("01_pipeline"), P1),
        dump_no_cascade(NoCascadeRecord(run_id=ROOT_RUN, clear_number=0, replaces=1)),
    )
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_an_unparsable_record_is_a_problem_and_the_rerun_cascades() -> None:
    """A garbage value under the family is reported by the view and ignored: the rerun cascades as usual."""
    world = cascaded()
    key = world.keys.no_cascade_key(n("01_pipeline"), P1)
    world.write(key, b"{not json")
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    assert "unparsable no-cascade record" in world.view.problems[key]
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_deleting_the_record_makes_the_waived_success_cascade() -> None:
    """The record is a fact like any other: deleted, the success it waived cascades on the next pass."""
    world = cascaded()
    record(world, "01_pipeline", ROOT_RUN, 0)
    rerun(world, "01_pipeline", ROOT_RUN, 1)
    world.settle()
    world.write(world.keys.no_cascade_key(n("01_pipeline"), P1), None)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}


def test_a_snapshot_holds_the_same_record_as_the_events() -> None:
    """View rule **Snapshot equals events**: a view loaded from a snapshot has the record the live view applied."""
    world = cascaded()
    record(world, "01_pipeline", ROOT_RUN, 0)
    key = world.keys.no_cascade_key(n("01_pipeline"), P1)
    held = world.view.known()
    assert key in held
    fresh = View(world.keys)
    value = dump_no_cascade(world.view.no_cascade[(n("01_pipeline"), P1)].record)
    fresh.load(world.rev, [(key, value, held[key])])
    assert fresh.no_cascade == world.view.no_cascade


def edged(dags: dict[str, object]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def test_the_edge_by_edge_path_waives_a_whole_run_success() -> None:
    """A DAG with a "finished" edge (the general path) stays as it is after a no-cascade rerun of its upstream."""
    world = edged({"u": {}, "d": {"upstreams": [{"dag": "u", "condition": "finished"}]}})
    world.state("u", P1, RunState.SUCCESS, ROOT_RUN)
    world.settle()
    assert world.count("d") == 1
    record(world, "u", ROOT_RUN, 0)
    rerun(world, "u", ROOT_RUN, 1)
    world.settle()
    assert world.count("d") == 1
    rerun(world, "u", ROOT_RUN, 2)
    world.settle()
    assert world.count("d") == 2


def test_a_mapped_edge_waives_the_rerun_of_one_upstream_partition() -> None:
    """A daily rollup of an hourly upstream: a no-cascade rerun of one hour leaves the day's rollup as it is."""
    hours = [f"2026-01-01T{h:02d}:00:00Z" for h in range(24)]
    world = edged(
        {
            "h": {"partitions": {"cron": "0 * * * *"}},
            "d": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "h"},
        }
    )
    for hour in hours:
        world.state("h", hour, RunState.SUCCESS, f"scheduled__{hour}")
    world.settle()
    assert world.count("d", P1) == 1
    record(world, "h", f"scheduled__{hours[5]}", 0, hours[5])
    rerun(world, "h", f"scheduled__{hours[5]}", 1, hours[5])
    world.settle()
    assert world.count("d", P1) == 1
    rerun(world, "h", f"scheduled__{hours[5]}", 2, hours[5])
    world.settle()
    assert world.count("d", P1) == 2
