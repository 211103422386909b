"""The stale reason the planner gives (and a clear records, and ``why`` prints) when an upstream has a result newer
than what its dependent last ran with (``core.newer_input``): "again" only for a success again, a first success reads
otherwise, and the upstream's run is named; on every path the planner judges freshness by."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.core.facts import RunFact
from coordinator.core.model import NodeId, RunState
from coordinator.core.newer_input import newer_input
from coordinator.core.spec.loader import parse_spec
from tests.support.world import P1, P2, World, n

D = NodeId.parse("b/g_daily")


def fact(state: RunState, rev: int, run_id: str = "scheduled__2026-01-01T00:00:00+00:00", attempt: int = 0) -> RunFact:
    return RunFact(state, run_id, attempt, rev)


@pytest.mark.parametrize(
    ("result", "recorded", "triggered", "words"),
    [
        pytest.param(
            fact(RunState.SUCCESS, 14, attempt=1), 9, True,
            "a/up succeeded again at revision 14 (run scheduled__2026-01-01T00:00:00+00:00, attempt 1) after "
            "b/g_daily last ran (which used revision 9)",
            id="success-again",
        ),
        pytest.param(
            fact(RunState.SUCCESS, 14), None, True,
            "a/up succeeded at revision 14 (run scheduled__2026-01-01T00:00:00+00:00, attempt 0), after b/g_daily "
            "last ran without it (revision 10)",
            id="first-success-after-a-trigger-without-it",
        ),
        pytest.param(
            fact(RunState.SUCCESS, 14), None, False,
            "a/up succeeded at revision 14 (run scheduled__2026-01-01T00:00:00+00:00, attempt 0), after b/g_daily "
            "last succeeded (revision 10) in a run the coordinator did not trigger",
            id="first-success-after-a-run-of-its-own",
        ),
        pytest.param(
            fact(RunState.FAILED, 14, attempt=2), 9, True,
            "a/up finished again (failed) at revision 14 (run scheduled__2026-01-01T00:00:00+00:00, attempt 2) after "
            "b/g_daily last ran (which used revision 9)",
            id="finished-again-failed",
        ),
        pytest.param(
            fact(RunState.FAILED, 14), None, False,
            "a/up failed at revision 14 (run scheduled__2026-01-01T00:00:00+00:00, attempt 0), after b/g_daily last "
            "succeeded (revision 10) in a run the coordinator did not trigger",
            id="first-failure-of-a-finished-edge",
        ),
        pytest.param(
            None, 9, True,
            "a/up succeeded again at revision 14 after b/g_daily last ran (which used revision 9)",
            id="no-fact-no-run-named",
        ),
    ],
)  # fmt: skip
def test_the_words_of_a_newer_input(result: RunFact | None, recorded: int | None, triggered: bool, words: str) -> None:
    """Each case of **Again only when it is** and **Which run**, word for word."""
    assert newer_input("a/up", result, 14, D, 10, recorded, triggered) == words


def world_of(dags: dict[str, Any]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": dags})))
    world.adopt()
    return world


def reason(world: World, dag: str = "d", partition: str = P1) -> str:
    verdict = world.plan([partition]).verdicts[(n(dag), partition)]
    return "; ".join((verdict.summary, *verdict.reasons))


def test_a_success_again_of_a_plain_upstream_says_again_and_names_its_run() -> None:
    """d ran on up's success; up is cleared and succeeds again: 'up succeeded again at revision G (run R, attempt 1)
    after d last ran (which used revision F)' (the planner's fast path)."""
    world = world_of({"d": {"upstreams": ["up"]}})
    first = world.state("up", P1, RunState.SUCCESS, "scheduled__x")
    world.settle()
    gen = world.state("up", P1, RunState.SUCCESS, "scheduled__x", clear_number=1)
    assert (
        f"d is due: up succeeded again at revision {gen} (run scheduled__x, attempt 1) after d last ran "
        f"(which used revision {first})"
    ) in reason(world)


def test_a_dependent_that_ran_before_its_upstream_ever_succeeded_reads_no_again() -> None:
    """d succeeded on its own (no trigger of the coordinator's) before up's first success: the reason says up
    succeeded after d's own run, never 'again'."""
    world = world_of({"d": {"upstreams": ["up"]}})
    own = world.state("d", P1, RunState.SUCCESS, "scheduled__d")
    gen = world.state("up", P1, RunState.SUCCESS, "scheduled__up")
    text = reason(world)
    assert (
        f"up succeeded at revision {gen} (run scheduled__up, attempt 0), after d last succeeded (revision {own}) in "
        "a run the coordinator did not trigger"
    ) in text
    assert "again" not in text


def test_an_upstream_added_after_the_trigger_is_a_success_it_ran_without() -> None:
    """d ran on a; the graph then adds b, which succeeds: 'b succeeded at revision G (run ...), after d last ran
    without it (revision F)'."""
    world = world_of({"d": {"upstreams": ["a"]}})
    world.state("a", P1, RunState.SUCCESS, "scheduled__a")
    world.settle()
    own = world.view.runs[(n("d"), P1)].rev
    world.adopt(parse_spec(json.dumps({"version": 1, "dags": {"d": {"upstreams": ["a", "b"]}}})))
    gen = world.state("b", P1, RunState.SUCCESS, "scheduled__b")
    text = reason(world)
    assert (
        f"b succeeded at revision {gen} (run scheduled__b, attempt 0), after d last ran without it (revision {own})"
        in (text)
    )
    assert "again" not in text


def test_a_mapped_upstream_names_its_partition_and_run() -> None:
    """d of day 2 reads up of day 1 (offset -1): a success again of day 1 names the partition and its run."""
    daily = {"cron": "@daily"}
    world = world_of(
        {"up": {"partitions": daily}, "d": {"partitions": daily, "upstreams": [{"dag": "up", "offset": -1}]}}
    )
    first = world.state("up", P1, RunState.SUCCESS, "scheduled__1")
    world.settle()
    assert world.count("d", P2) == 1
    gen = world.state("up", P1, RunState.SUCCESS, "scheduled__1", clear_number=1)
    assert (
        f"up {P1} succeeded again at revision {gen} (run scheduled__1, attempt 1) after d last ran (which used "
        f"revision {first})"
    ) in reason(world, partition=P2)


def test_a_finished_edge_that_fails_again_says_finished_again_failed() -> None:
    """d waits for up to finish: up fails, d runs; up is cleared and fails again: 'finished again (failed)'."""
    world = world_of({"d": {"upstreams": [{"dag": "up", "condition": "finished"}]}})
    first = world.state("up", P1, RunState.FAILED, "scheduled__x")
    world.settle()
    gen = world.state("up", P1, RunState.FAILED, "scheduled__x", clear_number=1)
    assert (
        f"up finished again (failed) at revision {gen} (run scheduled__x, attempt 1) after d last ran (which used "
        f"revision {first})"
    ) in reason(world)


def test_a_group_member_again_names_its_run() -> None:
    """any(a, b): d ran on a; a succeeds again: 'a succeeded again ... (run R, attempt 1)' (the grouped fast path)."""
    world = world_of({"d": {"upstreams": [{"any": ["a", "b"]}]}})
    first = world.state("a", P1, RunState.SUCCESS, "scheduled__a")
    world.settle()
    gen = world.state("a", P1, RunState.SUCCESS, "scheduled__a", clear_number=1)
    assert (
        f"a succeeded again at revision {gen} (run scheduled__a, attempt 1) after d last ran (which used revision "
        f"{first})"
    ) in reason(world)


def test_a_task_member_again_names_its_run() -> None:
    """any(u task load, v): d ran on the task; the task succeeds again: 'u task load succeeded again ...' naming the
    task instance's run and attempt (a group judged edge by edge)."""
    world = world_of({"d": {"upstreams": [{"any": [{"dag": "u", "task": "load"}, "v"]}]}})
    first = world.task_state("u", "load", P1, RunState.SUCCESS)
    world.settle()
    gen = world.task_state("u", "load", P1, RunState.SUCCESS, clear_number=1)
    assert (
        f"u task load succeeded again at revision {gen} (run manual__{P1}, attempt 1) after d last ran (which used "
        f"revision {first})"
    ) in reason(world)


def test_a_task_edge_again_names_its_run() -> None:
    """A required task edge (u task load): its success again names the task instance's run (the edge-by-edge path)."""
    world = world_of({"d": {"upstreams": [{"dag": "u", "task": "load"}]}})
    first = world.task_state("u", "load", P1, RunState.SUCCESS)
    world.settle()
    gen = world.task_state("u", "load", P1, RunState.SUCCESS, clear_number=1)
    assert (
        f"u task load succeeded again at revision {gen} (run manual__{P1}, attempt 1) after d last ran (which used "
        f"revision {first})"
    ) in reason(world)
