"""Partition mapping between grids (coordinator.core.grid): rollups, fan-outs, offsets, time zones and DST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.grid import Grid, downstream_partitions, upstream_partitions
from tests.support.examples import examples

HOURLY = Grid("0 * * * *")
DAILY = Grid("0 0 * * *")
BERLIN = Grid("0 0 * * *", "Europe/Berlin")
BERLIN_HOURLY = Grid("0 * * * *", "Europe/Berlin")
WEEKLY = Grid("0 0 * * 1")  # Mondays
SIX_HOURLY = Grid("0 */6 * * *")


def hours(start: str, count: int) -> tuple[str, ...]:
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return tuple((first + timedelta(hours=i)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(count))


def days(start: str, count: int) -> tuple[str, ...]:
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return tuple((first + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(count))


@pytest.mark.parametrize(
    ("down", "up", "offset", "partition", "expected"),
    [
        pytest.param(DAILY, DAILY, 0, "2025-03-10T00:00:00Z", ("2025-03-10T00:00:00Z",), id="identity"),
        pytest.param(None, HOURLY, 0, "2025-03-10T00:30:00Z", ("2025-03-10T00:30:00Z",), id="ungridded-down"),
        pytest.param(DAILY, None, 0, "2025-03-10T00:00:00Z", ("2025-03-10T00:00:00Z",), id="ungridded-up"),
        pytest.param(DAILY, HOURLY, 0, "2025-03-10T00:00:00Z", hours("2025-03-10T00:00:00Z", 24), id="rollup"),
        pytest.param(HOURLY, DAILY, 0, "2025-03-10T05:00:00Z", ("2025-03-10T00:00:00Z",), id="fan-out"),
        pytest.param(HOURLY, DAILY, 0, "2025-03-10T00:00:00Z", ("2025-03-10T00:00:00Z",), id="fan-out-midnight"),
        pytest.param(DAILY, DAILY, -1, "2025-03-10T00:00:00Z", ("2025-03-09T00:00:00Z",), id="yesterday"),
        pytest.param(DAILY, DAILY, 2, "2025-03-10T00:00:00Z", ("2025-03-12T00:00:00Z",), id="plus-two"),
        pytest.param(DAILY, HOURLY, -1, "2025-03-10T00:00:00Z", hours("2025-03-09T00:00:00Z", 24), id="rollup-1"),
        pytest.param(HOURLY, DAILY, -1, "2025-03-10T00:00:00Z", ("2025-03-09T00:00:00Z",), id="fan-out-prev-hour"),
        pytest.param(HOURLY, DAILY, -1, "2025-03-10T05:00:00Z", ("2025-03-10T00:00:00Z",), id="fan-out-offset"),
        pytest.param(WEEKLY, DAILY, 0, "2025-03-10T00:00:00Z", days("2025-03-10T00:00:00Z", 7), id="weekly"),
        pytest.param(DAILY, SIX_HOURLY, 0, "2025-03-10T00:00:00Z", hours("2025-03-10T00:00:00Z", 24)[::6], id="6h"),
        pytest.param(BERLIN, HOURLY, 0, "2025-03-09T23:00:00Z", hours("2025-03-09T23:00:00Z", 24), id="berlin-day"),
        pytest.param(BERLIN, HOURLY, 0, "2025-03-29T23:00:00Z", hours("2025-03-29T23:00:00Z", 23), id="berlin-23h"),
        pytest.param(BERLIN, HOURLY, 0, "2025-10-25T22:00:00Z", hours("2025-10-25T22:00:00Z", 25), id="berlin-25h"),
        pytest.param(
            BERLIN, DAILY, 0, "2025-03-09T23:00:00Z", ("2025-03-09T00:00:00Z", "2025-03-10T00:00:00Z"), id="tz-overlap"
        ),
        pytest.param(
            DAILY, BERLIN, 0, "2025-03-10T00:00:00Z", ("2025-03-09T23:00:00Z", "2025-03-10T23:00:00Z"), id="utc-in-cet"
        ),
        pytest.param(BERLIN, BERLIN, -1, "2025-03-30T22:00:00Z", ("2025-03-29T23:00:00Z",), id="berlin-yesterday"),
        pytest.param(DAILY, HOURLY, 0, "2025-03-10T05:00:00Z", (), id="off-grid"),
    ],
)
def test_upstream_partitions(
    down: Grid | None, up: Grid | None, offset: int, partition: str, expected: tuple[str, ...]
) -> None:
    """D's partition maps to every upstream grid point whose window overlaps D's window shifted by the offset."""
    assert upstream_partitions(down, up, offset, partition) == expected


@pytest.mark.parametrize(
    ("down", "up", "offset", "partition", "expected"),
    [
        pytest.param(DAILY, HOURLY, 0, "2025-03-10T05:00:00Z", ("2025-03-10T00:00:00Z",), id="rollup"),
        pytest.param(HOURLY, DAILY, 0, "2025-03-10T00:00:00Z", hours("2025-03-10T00:00:00Z", 24), id="fan-out"),
        pytest.param(DAILY, DAILY, -1, "2025-03-09T00:00:00Z", ("2025-03-10T00:00:00Z",), id="yesterday"),
        pytest.param(BERLIN, HOURLY, 0, "2025-03-30T21:00:00Z", ("2025-03-29T23:00:00Z",), id="berlin-last-hour"),
        pytest.param(BERLIN, HOURLY, 0, "2025-03-30T22:00:00Z", ("2025-03-30T22:00:00Z",), id="berlin-next-day"),
        pytest.param(HOURLY, BERLIN, 0, "2025-10-25T22:00:00Z", hours("2025-10-25T22:00:00Z", 25), id="fan-out-25"),
        pytest.param(DAILY, HOURLY, 0, "2025-03-10T05:30:00Z", (), id="off-grid"),
    ],
)
def test_downstream_partitions(
    down: Grid | None, up: Grid | None, offset: int, partition: str, expected: tuple[str, ...]
) -> None:
    """An upstream partition maps back to every D partition that needs it."""
    assert downstream_partitions(down, up, offset, partition) == expected


GRIDS = [HOURLY, DAILY, BERLIN, BERLIN_HOURLY, WEEKLY, SIX_HOURLY]
#: Every hour of two weeks around the spring and the autumn DST changes in Europe.
INSTANTS = st.sampled_from(
    [*hours("2025-03-24T00:00:00Z", 14 * 24), *hours("2025-10-20T00:00:00Z", 14 * 24)],
)


@settings(max_examples=examples(300), deadline=None)
@given(down=st.sampled_from(GRIDS), up=st.sampled_from(GRIDS), offset=st.integers(-2, 2), at=INSTANTS)
def test_downstream_is_the_exact_inverse(down: Grid, up: Grid, offset: int, at: str) -> None:
    """Q is in upstream_partitions(P) exactly when P is in downstream_partitions(Q), DST weeks included."""
    for q in upstream_partitions(down, up, offset, at):
        assert at in downstream_partitions(down, up, offset, q)
    for p in downstream_partitions(down, up, offset, at):
        assert at in upstream_partitions(down, up, offset, p)


@settings(max_examples=examples(200), deadline=None)
@given(down=st.sampled_from(GRIDS), up=st.sampled_from(GRIDS), offset=st.integers(-2, 2), at=INSTANTS)
def test_mapped_windows_cover_the_shifted_window(down: Grid, up: Grid, offset: int, at: str) -> None:
    """For a D grid point, the mapped upstream windows are contiguous and cover D's shifted window, no more."""
    point = datetime.fromisoformat(at.replace("Z", "+00:00"))
    mapped = upstream_partitions(down, up, offset, at)
    if not down.contains(point):
        assert mapped == () or (down == up and offset == 0)
        return
    start = down.shift(point, offset)
    end = down.next(start)
    windows = [(datetime.fromisoformat(q.replace("Z", "+00:00")),) for q in mapped]
    firsts = [w[0] for w in windows]
    assert firsts[0] <= start < up.next(firsts[0])
    assert all(up.next(a) == b for a, b in itertools.pairwise(firsts))
    assert firsts[-1] < end <= up.next(firsts[-1])


CRONS = ["0 1 * * *", "5-59/15 * * * *", "30 4 * * 1-5", "0 0 1 * *", "0 0 L * *", "0 9 * * 1#2", "0 3-23/6 * * *",
         "0 0 29 2 *", "*/7 * * * *", "0 12 15W * *"]  # fmt: skip
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


@settings(max_examples=examples(300), deadline=None)
@given(
    cron=st.sampled_from(CRONS),
    zone=st.sampled_from(ZONES),
    at=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
)
def test_a_grid_steps_exactly_as_plain_croniter_does(cron: str, zone: str, at: datetime) -> None:
    """The grid parses each cron expression once (a cached croniter parse): next, prev and floor agree with a croniter
    built from scratch at every step, across zones with daylight saving, L, W and # fields, a leap day."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    grid, local = Grid(cron, zone), at.astimezone(ZoneInfo(zone))
    assert grid.next(at) == croniter(cron, local).get_next(datetime).astimezone(UTC)
    assert grid.prev(at) == croniter(cron, local).get_prev(datetime).astimezone(UTC)
    previous = grid.prev(at)
    assert grid.next(previous) > previous and grid.contains(previous)
