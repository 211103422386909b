"""Planner example tables: every consequence listed in docs/semantics.md, on the seven-DAG example."""

from __future__ import annotations

import pytest

from coordinator.core.actions import Resume, Trigger
from coordinator.core.model import KeyLayout, RunState, TriggerAction, TriggerStatus
from coordinator.core.planner import plan
from coordinator.core.view import View
from tests.support.world import P1, P2, SEVEN, World, make_graph, n

PIPES = [f"0{i}_pipeline" for i in range(2, 8)]


def cascaded(partitions: tuple[str, ...] = (P1,)) -> World:
    world = World(SEVEN)
    world.adopt()
    for p in partitions:
        world.state("01_pipeline", p, RunState.SUCCESS, f"scheduled__{p}")
    world.settle()
    return world


def test_first_cascade_runs_each_dependent_once() -> None:
    """A root success runs 02..07 exactly once each, and 06 only after all of 02..05 succeeded."""
    world = cascaded()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 1)}
    assert all(e[2] == "create" for e in world.effects)
    start_06 = next(rev for node, _, rev in world.starts if node == n("06_pipeline"))
    for dag in ("02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"):
        assert world.view.runs[(n(dag), P1)].rev < start_06
    assert world.violations == []


def test_root_is_never_triggered_and_unknown_dags_are_ignored() -> None:
    """Roots are started by their own schedule; a DAG missing from the graph never causes an action."""
    world = World(SEVEN)
    world.adopt()
    world.state("not_in_graph", P1, RunState.SUCCESS)
    world.state("01_pipeline", P1, RunState.FAILED)
    assert world.plan().actions == ()


def test_partitions_never_combine() -> None:
    """Upstream successes for different logical dates never satisfy one join."""
    world = World(SEVEN)
    world.adopt()
    for dag in ("01_pipeline", "02_pipeline", "03_pipeline", "04_pipeline"):
        world.state(dag, P1, RunState.SUCCESS)
    world.state("05_pipeline", P2, RunState.SUCCESS)
    world.state("01_pipeline", P2, RunState.SUCCESS)
    verdict = world.plan().verdicts[(n("06_pipeline"), P1)]
    assert not verdict.due
    assert "05_pipeline has not run for this partition" in verdict.summary


def test_clearing_the_root_reruns_every_descendant_exactly_once() -> None:
    """Clearing 01 for P reruns 02..07 once each; 06 reruns only after all four re-succeeded."""
    world = cascaded()
    world.state("01_pipeline", P1, RunState.RUNNING, f"scheduled__{P1}", clear_number=1)
    assert world.act() == 0, "a cleared upstream that has not succeeded again blocks everything"
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    world.act()
    assert [e[0].dag_id for e in world.effects[6:]] == ["02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"]
    # Three of four siblings rerun; the fourth's OLD success must not release the join (prior-art defect 3).
    for dag in ("02_pipeline", "04_pipeline", "05_pipeline"):
        world.start(dag, P1)
        world.finish(dag, P1)
    assert world.act() == 0
    verdict = world.plan().verdicts[(n("06_pipeline"), P1)]
    assert "03_pipeline is" in verdict.summary
    world.start("03_pipeline", P1)
    world.finish("03_pipeline", P1)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}
    assert [e[2] for e in world.effects[6:]] == ["clear"] * 6


def test_clearing_a_middle_dag_reruns_only_its_descendants() -> None:
    """Clearing 03 for P reruns 06 and 07 once each and nothing else."""
    world = cascaded()
    world.state("03_pipeline", P1, RunState.RUNNING, f"coordinator__{P1}", clear_number=1)
    world.state("03_pipeline", P1, RunState.SUCCESS, f"coordinator__{P1}", clear_number=1)
    world.settle()
    assert world.counts() == {
        "01_pipeline": 0,
        "02_pipeline": 1,
        "03_pipeline": 1,
        "04_pipeline": 1,
        "05_pipeline": 1,
        "06_pipeline": 2,
        "07_pipeline": 2,
    }


def test_stale_reason_names_the_newer_upstream_generation() -> None:
    """`why` wording: a stale upstream is explained by the upstream generation that superseded it."""
    world = cascaded()
    gen = world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    verdict = world.plan().verdicts[(n("06_pipeline"), P1)]
    assert (
        f"03_pipeline is stale (01_pipeline succeeded again at revision {gen} (run scheduled__{P1}, attempt 1) after "
        "03_pipeline last ran"
    ) in verdict.summary


def test_user_clear_of_a_coordinator_run_is_a_new_generation() -> None:
    """Clearing 06 (same run id, higher clear_number) in Airflow reruns 07 once."""
    world = cascaded()
    world.airflow[(n("06_pipeline"), P1)].clear_number += 1
    world.state("06_pipeline", P1, RunState.RUNNING, f"coordinator__{P1}", clear_number=1)
    world.state("06_pipeline", P1, RunState.SUCCESS, f"coordinator__{P1}", clear_number=1)
    world.settle()
    assert world.count("07_pipeline") == 2
    assert world.count("06_pipeline") == 1


def test_fan_in_after_downtime_triggers_once() -> None:
    """All upstream successes arriving at once (replayed after downtime) trigger the join target once."""
    world = World(SEVEN)
    world.adopt()
    for dag in ("01_pipeline", "02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"):
        world.state(dag, P1, RunState.SUCCESS)
    first = world.plan()
    assert [a.node.dag_id for a in first.actions if isinstance(a, Trigger)] == ["06_pipeline"]
    world.settle()
    assert world.count("06_pipeline") == 1
    assert world.count("07_pipeline") == 1


def test_existing_run_under_another_id_is_cleared_not_duplicated() -> None:
    """A dependent that already ran for P (e.g. scheduled) is rerun by clearing that run id."""
    world = World(SEVEN)
    world.adopt()
    world.state("06_pipeline", P1, RunState.SUCCESS, run_id="scheduled__x")
    for dag in ("01_pipeline", "02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"):
        world.state(dag, P1, RunState.SUCCESS)
    (action,) = world.plan().actions
    assert isinstance(action, Trigger)
    assert (action.action, action.run_id) == (TriggerAction.CLEAR, "scheduled__x")


def test_a_failed_attempt_is_not_retried_by_the_coordinator() -> None:
    """06 failing for its current inputs is left to Airflow retries and the user; clearing it resumes the chain."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    world.settle(fail={"06_pipeline"})
    assert world.count("06_pipeline") == 1
    assert world.count("07_pipeline") == 0
    assert "does not retry failures" in world.plan().verdicts[(n("06_pipeline"), P1)].summary
    world.state("06_pipeline", P1, RunState.RUNNING, f"coordinator__{P1}", clear_number=1)
    world.state("06_pipeline", P1, RunState.SUCCESS, f"coordinator__{P1}", clear_number=1)
    world.settle()
    assert world.count("06_pipeline") == 1
    assert world.count("07_pipeline") == 1


def test_failure_routing_runs_handler_once_per_failed_generation() -> None:
    """A handler runs once per failure of its source; the source's normal dependents do not run."""
    graph = make_graph({"b": ["a"]}, failures={"on_a_failed": ["a"]})
    world = World(graph)
    world.adopt()
    world.state("a", P1, RunState.FAILED)
    world.settle()
    assert world.count("on_a_failed") == 1
    assert world.count("b") == 0
    world.settle()
    assert world.count("on_a_failed") == 1, "the same failure is handled once"
    world.state("a", P1, RunState.RUNNING, clear_number=1)
    world.state("a", P1, RunState.FAILED, clear_number=1)
    world.settle()
    assert world.count("on_a_failed") == 2
    assert world.count("b") == 0


def test_a_crash_after_the_intent_is_completed_exactly_once() -> None:
    """Intents recorded but not confirmed are resumed on the next pass, never re-decided or duplicated."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    world.act(crash_after_intent=True)
    pending = world.plan().actions
    assert len(pending) == 4
    assert all(isinstance(a, Resume) for a in pending)
    assert all(f.record.status is TriggerStatus.PENDING for f in world.view.ledger.values())
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 1)}


def test_plan_is_the_same_from_events_or_from_a_snapshot() -> None:
    """A view rebuilt from a snapshot (restart, relist) plans exactly what the live view plans."""
    world = cascaded()
    world.state("01_pipeline", P1, RunState.SUCCESS, f"scheduled__{P1}", clear_number=1)
    world.act()
    world.start("02_pipeline", P1)
    world.state("01_pipeline", P2, RunState.SUCCESS)
    snapshot = [
        *(
            (world.keys.run_key(node, p), fact.record.model_dump_json().encode(), fact.rev)
            for (node, p), fact in world.view.runs.items()
        ),
        *(
            (world.keys.trigger_key(node, p), fact.record.model_dump_json().encode(), fact.mod_rev)
            for (node, p), fact in world.view.ledger.items()
        ),
    ]
    assert world.view.activation is not None
    rebuilt = View(KeyLayout())
    rebuilt.load(world.rev, snapshot)
    rebuilt.apply(world.view.graph_key, world.view.activation.model_dump_json().encode(), world.view.activation_rev)
    assert plan(SEVEN, rebuilt).actions == plan(SEVEN, world.view).actions


def test_graph_change_applies_to_new_successes_only_and_backfill_processes_history() -> None:
    """A new DAG does not storm through history; it runs on the next upstream success or on explicit backfill."""
    world = cascaded((P1, P2))
    bigger = make_graph(
        {
            **{node.dag_id: [u.dag_id for u in spec.upstreams] for node, spec in SEVEN.dags.items()},
            "08_new": ["01_pipeline"],
        }
    )
    world.adopt(bigger)
    assert world.act() == 0
    verdict = world.plan().verdicts[(n("08_new"), P1)]
    assert "backfill" in verdict.summary
    world.state("01_pipeline", P2, RunState.SUCCESS, f"scheduled__{P2}", clear_number=1)
    world.settle()
    assert world.count("08_new", P2) == 1
    assert world.count("08_new", P1) == 0
    world.backfill("08_new", P1)
    world.settle()
    assert world.count("08_new", P1) == 1
    world.settle()
    assert world.count("08_new", P1) == 1, "a backfill request is consumed once"


def test_nothing_runs_before_the_graph_is_adopted() -> None:
    """Without an adopted graph the planner explains itself and acts on nothing."""
    world = World(SEVEN)
    world.state("01_pipeline", P1, RunState.SUCCESS)
    assert world.plan().actions == ()
    assert "not adopted" in world.plan().verdicts[(n("02_pipeline"), P1)].summary


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(b"not json", "unparsable run state", id="not-json"),
        pytest.param(b"", "unparsable run state", id="empty"),
        pytest.param(b'{"state": "done", "run_id": "x"}', "state", id="unknown-state"),
        pytest.param(b'{"state": "success"}', "run_id", id="missing-run-id"),
        pytest.param(b'{"state": "success", "run_id": "x", "clear_number": -1}', "clear_number", id="negative"),
    ],
)
def test_garbage_values_are_reported_and_skipped(value: bytes, problem: str) -> None:
    """An unparsable run-state value is a reported problem, treated as absent, never an exception."""
    world = World(SEVEN)
    world.adopt()
    key = world.keys.run_key(n("01_pipeline"), P1)
    world.write(key, value)
    assert problem in world.view.problems[key]
    assert world.plan().actions == ()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    assert key not in world.view.problems
    assert len(world.plan().actions) == 4


def test_deleted_and_malformed_keys_do_not_break_planning() -> None:
    """Deleting an upstream key withdraws its success; malformed keys are reported, not fatal."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    world.write(world.keys.run_key(n("01_pipeline"), P1), None)
    world.write(world.keys.runs + "default/only-two-parts", b"{}")
    world.write(world.keys.runs + "default/x/2026-13-45", b"{}")
    assert world.plan().actions == ()
    assert len(world.view.problems) == 2


def test_names_are_matched_exactly_not_by_substring() -> None:
    """`01_pipeline_init` succeeding never satisfies `01_pipeline` (prior-art defect 4)."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline_init", P1, RunState.SUCCESS)
    world.state("01_pipeline", P1, RunState.RUNNING)
    assert world.plan().actions == ()


def test_running_or_queued_upstream_never_satisfies() -> None:
    """Only a terminal success satisfies an upstream; running, queued and failed never do."""
    for state in (RunState.QUEUED, RunState.RUNNING, RunState.FAILED):
        world = World(SEVEN)
        world.adopt()
        world.state("01_pipeline", P1, state)
        assert world.plan().actions == (), state


def test_an_applied_but_unconfirmed_intent_is_confirmed_once_its_run_reports() -> None:
    """A crash after the Airflow call leaves a pending intent; once its run reports, it is confirmed, not redone."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS)
    first = world.plan().actions[0]
    assert isinstance(first, Trigger)
    world.apply_action(first, crash_after_effect=True)
    world.start("02_pipeline", P1)
    world.finish("02_pipeline", P1)
    resume = next(a for a in world.plan().actions if a.node == n("02_pipeline"))
    assert isinstance(resume, Resume)
    assert resume.observed
    # The watcher's passes plan without verdicts (``act``): a fresh DAG with an unconfirmed intent still resumes.
    assert plan(world.graph, world.view, explain=False).actions == world.plan().actions
    world.settle()
    assert world.count("02_pipeline") == 1
    assert world.view.ledger[(n("02_pipeline"), P1)].record.status is TriggerStatus.DONE


def test_a_pass_without_verdicts_passes_over_settled_dags_with_the_explained_actions() -> None:
    """A watcher's pass (no verdicts) acts as the explained pass across settled, re-run, stale and unrun DAGs."""
    world = World(SEVEN)
    world.adopt()
    for partition in (P1, P2):
        world.state("01_pipeline", partition, RunState.SUCCESS)
    world.settle()
    # Settled everywhere: nothing to do, and the watcher's pass agrees.
    assert plan(world.graph, world.view, explain=False).actions == world.plan().actions == ()
    # A new generation of the root in P1 (every direct dependent stale there), a rerun of a middle DAG in P2 (its
    # ledger no longer records what it consumed: 06 is stale there), and a third partition where only the root ran.
    world.state("01_pipeline", P1, RunState.SUCCESS)
    world.state("03_pipeline", P2, RunState.SUCCESS)
    world.state("01_pipeline", "2026-01-03T00:00:00Z", RunState.SUCCESS)
    explained = world.plan().actions
    assert {(a.node.dag_id, a.partition) for a in explained} >= {("02_pipeline", P1), ("06_pipeline", P2)}
    assert plan(world.graph, world.view, explain=False).actions == explained
