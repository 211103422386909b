"""The clock's next move (``core.deadline.cache``'s **The clock's next move**): ``DeadlineCache.next_instant`` says
when the clock alone next changes a deadline state or brings a grid point in, so the leader's pass can sleep until
then (time as a requeue) and never past a change; and ``alerts.next_alert_after`` says when a waiting alert becomes
due."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.core.deadline.alerts import next_alert_after
from coordinator.core.deadline.cache import DeadlineCache
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.states import DeadlineState, deadline_states
from coordinator.core.model import NodeId, RunState
from coordinator.core.view import View
from tests.support.examples import examples
from tests.test_deadline_cache import KEYS, P0, graphs, writes
from tests.test_deadlines import DEADLINE, P, chain_graph, fact, node, view_of

EXPECTED = {"after_end": "6h", "warn": "30m", "duration": "1h"}


def states_at(cache: DeadlineCache, view: View, now: datetime) -> dict[tuple[NodeId, str], DeadlineState]:
    full = deadline_states(cache.graph, view, now, majors=cache.majors)
    return {at: status.state for at, status in full.items()}


@settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_nothing_the_clock_moves_comes_before_the_next_instant(data: st.DataObject) -> None:
    """Over random graphs and facts, a full pass at any moment before ``next_instant`` shows the states of the last
    update (a status may only leave the horizon), and the cache, updated a moment after it, equals a full pass."""
    graph = data.draw(graphs())
    now = P0 + timedelta(hours=data.draw(st.integers(0, 40)))
    view = View(KEYS)
    written: list[tuple[NodeId, datetime]] = []
    for rev in range(2, data.draw(st.integers(0, 40)) + 2):
        key, value = data.draw(writes(graph, now, written))
        view.apply(key, value, rev)
    cache = DeadlineCache(graph)
    cache.rebuild(view, now)
    for _ in range(data.draw(st.integers(1, 6))):
        instant = cache.next_instant()
        if instant is None:
            return
        assert instant >= now
        held = states_at(cache, view, now)
        fraction = data.draw(st.sampled_from([0.0, 0.5, 0.999]))
        probe = now + (instant - now) * fraction
        seen = states_at(cache, view, probe)
        assert seen.keys() <= held.keys()  # no grid point entered
        assert {at: seen[at] for at in seen} == {at: held[at] for at in seen}  # no state changed
        now = instant + timedelta(milliseconds=50)
        cache.update(view, now, ())
        assert cache.statuses() == deadline_states(graph, view, now, majors=cache.majors)


def test_next_instant_by_example() -> None:
    """Blocked: the deadline (it turns missed right after); on time with nothing run: the warn point less the expected
    duration's lead; with nothing in the horizon's future but the next grid point: that point."""
    graph = chain_graph(EXPECTED)
    blocked = view_of({("a", P): fact(RunState.FAILED)})
    now = P0 + timedelta(hours=25)
    cache = DeadlineCache(graph)
    cache.rebuild(blocked, now)
    # c of P blocked until DEADLINE; c of the next day's partition on time, its warn point later; the grid's next
    # point (P0 + 2 days) is later than P's deadline (P0 + 1 day + 6 h).
    assert cache.statuses()[(node("c"), P)].state is DeadlineState.BLOCKED
    assert cache.next_instant() == DEADLINE

    cache = DeadlineCache(graph)
    cache.rebuild(view_of({}), now)
    # Nothing ran: c is on time until its ETA would pass deadline - warn, at_risk right after.
    instant = cache.next_instant()
    assert instant is not None and now < instant <= DEADLINE - timedelta(minutes=30)
    just_after = instant + timedelta(milliseconds=50)
    assert deadline_states(graph, view_of({}), just_after)[(node("c"), P)].state is DeadlineState.AT_RISK


def record(alert_after: datetime | None, alerted: bool = False) -> DeadlineRecord:
    return DeadlineRecord(state=DeadlineState.BLOCKED, deadline=DEADLINE, changed_at=P0, alerted=alerted,
                          alert_after=alert_after)  # fmt: skip


def test_next_alert_after_is_the_earliest_future_hold_of_an_unalerted_record() -> None:
    """Alerted records, records without a hold and holds already over are not waited for; the earliest other is."""
    now = P0 + timedelta(hours=1)
    soon, later = now + timedelta(minutes=5), now + timedelta(minutes=9)
    assert next_alert_after([], now) is None
    assert next_alert_after([record(None), record(now), record(soon, alerted=True)], now) is None
    assert next_alert_after([record(later), record(soon), record(now - timedelta(minutes=1))], now) == soon
