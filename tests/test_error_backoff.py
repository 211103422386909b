"""A refused trigger's backoff (semantics `trigger-errors`): the pure policy (``core/error_backoff.py``) and the
actuator's gate on the ledger entry's ``retry_at`` (``watcher/actuator.py``'s *errors back off per key* and *a fix
retries at once*), and the planner's ``Resume.redefined``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.actions import Resume
from coordinator.core.error_backoff import FIRST_S, FLOOR_S, error_count, error_delay, retry_stamp
from coordinator.core.facts import LedgerFact
from coordinator.core.graph import Graph
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    run_id_for,
)
from coordinator.watcher.actuator import Actuator, Offer
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import DagKey
from tests.support.world import P1, World, make_graph, n

NOW = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
NODE = NodeId("default", "daily_rollup")
PARTITION = "2026-01-05T00:00:00Z"
KEY = DagKey(NODE, PARTITION)

# -- the policy ----------------------------------------------------------------------------------------------------


def test_the_steps_double_from_the_first_up_to_the_cap() -> None:
    """Without jitter the n-th error in a row waits 1, 2, 4, 8, 16 s, then the cap (30 s) for ever."""
    assert [error_delay(n, 30.0) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


@given(
    errors=st.integers(min_value=-3, max_value=10_000),
    cap=st.floats(min_value=-1.0, max_value=86_400.0, allow_nan=False),
    draw=st.floats(min_value=0.0, max_value=0.999999),
)
def test_a_delay_never_exceeds_the_cap_nor_falls_below_half_its_step_or_the_floor(
    errors: int, cap: float, draw: float
) -> None:
    """Whatever the count, cap and jitter: at most the cap (the cap is a promise), at least half the un-jittered step,
    and never below the floor (no busy loop, even with a cap of 0)."""
    step = error_delay(errors, cap)
    delay = error_delay(errors, cap, draw)
    assert delay <= max(cap, FLOOR_S)
    assert step / 2 <= delay <= step
    assert delay >= FLOOR_S


def test_the_count_grows_by_one_and_a_fresh_attempt_starts_over() -> None:
    """One more error in a row counts one more; a fresh attempt (a fix may have happened) counts its error as the
    first again."""
    assert [error_count(n, fresh=False) for n in (0, 1, 7)] == [1, 2, 8]
    assert error_count(7, fresh=True) == 1
    assert error_delay(error_count(7, fresh=True), 30.0) == FIRST_S


def test_the_next_try_is_said_in_utc_to_the_second() -> None:
    """status, why and doctor write the time as 2026-01-05T10:00:05Z."""
    assert retry_stamp(NOW + timedelta(seconds=5.75)) == "2026-01-05T10:00:05Z"


# -- the actuator's gate -------------------------------------------------------------------------------------------


def refused(retry_at: datetime | None, *, redefined: bool = False) -> Resume:
    record = TriggerRecord(
        status=TriggerStatus.ERROR, action=TriggerAction.CREATE, run_id=run_id_for(PARTITION), intent_rev=10,
        attempts=3, errors=3, retry_at=retry_at, last_error="AirflowError: 400",
    )  # fmt: skip
    fact = LedgerFact.of(record, 12, {})
    return Resume(NODE, PARTITION, fact, "retry a trigger Airflow refused", redefined=redefined)


def actuator() -> Actuator:
    executor = Executor(cast(Any, None), {}, fence=lambda: None)
    return Actuator(executor, KeyLayout("/t"), watcher_id="w", replan=lambda key: None, paused={}, now=lambda: NOW)


@pytest.mark.parametrize(
    ("retry_at", "offer"),
    [
        pytest.param(NOW + timedelta(seconds=8), Offer.WAITING, id="before-retry-at-waits"),
        pytest.param(NOW, Offer.READY, id="at-retry-at-starts"),
        pytest.param(None, Offer.READY, id="an-entry-without-retry-at-starts"),
    ],
)
def test_a_refused_intent_is_not_resumed_before_its_entrys_retry_at(retry_at: datetime | None, offer: Offer) -> None:
    """The entry's retry_at holds the resume back, whoever leads and however the key was planned; the key is then
    requeued for that time (its turn plans it again)."""
    act = actuator()
    assert act.offer(refused(retry_at)) is offer
    assert act.controller.queue.waiting(KEY) is (offer is Offer.WAITING)


def test_a_definition_adopted_after_the_error_or_a_released_hold_retries_at_once_with_a_fresh_backoff() -> None:
    """Redefined (the planner saw the DAG's definition adopted after the error) or released (an operator released a
    hold that kept it back): started before retry_at, and its attempt counts its error as the first again."""
    later = NOW + timedelta(seconds=30)
    act = actuator()
    assert act.offer(refused(later)) is Offer.WAITING  # the key waits in the queue too
    assert act.offer(refused(later, redefined=True)) is Offer.READY
    act.start(refused(later, redefined=True))
    assert KEY in act._fresh

    other = actuator()
    other.retry_now(KEY)
    assert other.offer(refused(later)) is Offer.READY
    other.start(refused(later))
    assert KEY in other._fresh and KEY not in other._released


# -- the planner: a changed definition is a fix ----------------------------------------------------------------------


def refused_world(retry_at: datetime) -> World:
    """a -> b, b's trigger for P1 refused (its entry at the newest revision), c on its own."""
    world = World(make_graph({"b": ["a"], "c": []}))
    world.adopt()
    world.state("a", P1, "success")
    record = TriggerRecord(
        status=TriggerStatus.ERROR, action=TriggerAction.CREATE, run_id=run_id_for(P1), intent_rev=3, attempts=4,
        errors=4, retry_at=retry_at, last_error="AirflowError: 400: not a partitioned Dag",
    )  # fmt: skip
    world.write(world.keys.trigger_key(n("b"), P1), dump_record(record))
    return world


def resume_of_b(world: World) -> tuple[Resume, str]:
    current = world.plan([P1])
    (action,) = [a for a in current.actions if a.node == n("b")]
    assert isinstance(action, Resume)
    return action, current.verdicts[(n("b"), P1)].summary


def test_the_planner_resumes_a_refused_trigger_at_its_retry_at_and_at_once_after_its_dag_is_redefined() -> None:
    """why says the next try; a graph adopted after the error that changes b (its key_format) marks the resume
    redefined (tried at once, the backoff started over); a change of another DAG does not."""
    world = refused_world(NOW + timedelta(seconds=16))
    action, summary = resume_of_b(world)
    assert not action.redefined
    assert summary.endswith("not a partitioned Dag; next try at 2026-01-05T10:00:16Z"), summary

    other = refused_world(NOW + timedelta(seconds=16))
    other.adopt(make_graph({"b": ["a"], "c": ["a"]}))  # only c changed
    assert not resume_of_b(other)[0].redefined

    # Adopted at the revision of the error itself (the watcher's adoption decides at the revision its view holds).
    graph = make_graph({"b": ["a"], "c": []})
    keyed = Graph(
        dags={**graph.dags, n("b"): replace(graph.dags[n("b")], key_format="%Y-%m-%d")}, instances=graph.instances
    )
    world.adopt(keyed)  # b's definition changed after its error (how it is triggered)
    action, summary = resume_of_b(world)
    assert action.redefined
    assert summary.endswith("retrying now: its definition changed after the error"), summary


def _keyed_b() -> Graph:
    """b triggered with a key_format: a change of b's definition."""
    graph = make_graph({"b": ["a"], "c": []})
    return Graph(
        dags={**graph.dags, n("b"): replace(graph.dags[n("b")], key_format="%Y-%m-%d")}, instances=graph.instances
    )


def _refused_under(world: World, tried_under: int | None) -> None:
    """b's trigger refused again now (at a revision after every adoption), by an attempt of ``tried_under``."""
    record = TriggerRecord(
        status=TriggerStatus.ERROR, action=TriggerAction.CREATE, run_id=run_id_for(P1), intent_rev=3, attempts=5,
        errors=5, retry_at=NOW + timedelta(seconds=16), last_error="AirflowError: 400", tried_under=tried_under,
    )  # fmt: skip
    world.write(world.keys.trigger_key(n("b"), P1), dump_record(record))


def test_an_error_of_the_old_definition_recorded_after_the_adoption_still_retries_at_once() -> None:
    """An attempt planned under b's old definition whose refusal is recorded after the new one was adopted (the POST
    was in flight) is redefined: its error names the old definition (tried_under); one made under the new definition
    is not, and an error recorded without tried_under after the adoption is not either."""
    world = refused_world(NOW + timedelta(seconds=16))
    assert world.view.activation is not None
    old = world.view.activation.nodes[n("b").qualified].since
    world.adopt(_keyed_b())
    assert world.view.activation is not None
    new = world.view.activation.nodes[n("b").qualified].since
    assert new > old

    _refused_under(world, old)  # written after the adoption, made under the old definition
    action, summary = resume_of_b(world)
    assert action.redefined and action.definition == new
    assert summary.endswith("retrying now: its definition changed after the error"), summary

    _refused_under(world, new)  # the new definition refused too: its backoff holds
    action, summary = resume_of_b(world)
    assert not action.redefined
    assert "next try at" in summary, summary

    _refused_under(world, None)  # an entry written before tried_under existed: compared by revision
    assert not resume_of_b(world)[0].redefined
