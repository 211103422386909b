"""Edge mappings beyond the offset (coordinator.core.grid rule 5): shift and member, exact inverses across DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.grid import EdgeMap, Grid, downstream_partitions, is_identity, upstream_partitions
from tests.support.examples import examples

DAILY = Grid("0 0 * * *")
DAILY_1 = Grid("0 1 * * *")
DAILY_5 = Grid("0 5 * * *")
HOURLY = Grid("0 * * * *")
WEEKLY_SAT = Grid("0 10 * * 6")  # Saturdays 10:00
WEEKLY = Grid("0 0 * * 1")
BERLIN_1 = Grid("0 1 * * *", "Europe/Berlin")
BERLIN = Grid("0 0 * * *", "Europe/Berlin")
NEW_YORK_HOURLY = Grid("30 * * * *", "America/New_York")
SIX_HOURLY = Grid("0 */6 * * *")

H = 3600
D = 86400


@pytest.mark.parametrize(
    ("down", "up", "edge", "partition", "expected"),
    [
        pytest.param(DAILY_5, DAILY_1, EdgeMap(shift=-4 * H), "2024-03-10T05:00:00Z", ("2024-03-10T01:00:00Z",),
                     id="execution-delta-4h"),
        pytest.param(DAILY_5, DAILY_1, EdgeMap(), "2024-03-10T05:00:00Z",
                     ("2024-03-10T01:00:00Z", "2024-03-11T01:00:00Z"), id="overlap-asks-two-days"),
        pytest.param(DAILY, Grid("0 2 * * *"), EdgeMap(shift=2 * H), "2024-03-10T00:00:00Z",
                     ("2024-03-10T02:00:00Z",), id="negative-delta-looks-forward"),
        pytest.param(WEEKLY_SAT, Grid("0 2 * * *"), EdgeMap(shift=-(D + 8 * H)), "2024-03-09T10:00:00Z",
                     ("2024-03-08T02:00:00Z",), id="saturday-waits-friday"),
        pytest.param(DAILY_5, DAILY_1, EdgeMap(shift=-3 * H), "2024-03-10T05:00:00Z", (), id="shift-off-grid"),
        pytest.param(None, DAILY_1, EdgeMap(shift=-4 * H), "2024-03-10T05:00:00Z", ("2024-03-10T01:00:00Z",),
                     id="ungridded-down"),
        pytest.param(None, None, EdgeMap(shift=-D), "2024-03-10T05:17:00Z", ("2024-03-09T05:17:00Z",),
                     id="no-grids-exact-date"),
        pytest.param(DAILY_5, None, EdgeMap(shift=-4 * H), "2024-03-10T05:00:00Z", ("2024-03-10T01:00:00Z",),
                     id="ungridded-up"),
        pytest.param(DAILY_5, None, EdgeMap(shift=-4 * H), "2024-03-10T06:00:00Z", (), id="down-off-grid"),
        pytest.param(DAILY, DAILY, EdgeMap(offset=-1, shift=-H), "2024-03-10T00:00:00Z", (),
                     id="offset-then-shift-off-grid"),
        pytest.param(DAILY, HOURLY, EdgeMap(offset=-1, shift=-H), "2024-03-10T00:00:00Z",
                     ("2024-03-08T23:00:00Z",), id="offset-then-shift"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=-1), "2024-03-11T00:00:00Z", ("2024-03-17T00:00:00Z",),
                     id="last-day-of-week"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=0), "2024-03-11T00:00:00Z", ("2024-03-11T00:00:00Z",),
                     id="first-day-of-week"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=4), "2024-03-11T00:00:00Z", ("2024-03-15T00:00:00Z",),
                     id="friday"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=7), "2024-03-11T00:00:00Z", (), id="member-beyond-window"),
        pytest.param(WEEKLY, DAILY, EdgeMap(offset=-1, member=-1), "2024-03-11T00:00:00Z",
                     ("2024-03-10T00:00:00Z",), id="last-day-of-previous-week"),
        pytest.param(BERLIN, HOURLY, EdgeMap(member=-1), "2024-03-30T23:00:00Z", ("2024-03-31T21:00:00Z",),
                     id="last-hour-of-23h-day"),
        pytest.param(BERLIN_1, BERLIN_1, EdgeMap(shift=-D), "2024-03-31T23:00:00Z", (),
                     id="fixed-24h-misses-after-dst"),
        pytest.param(DAILY, DAILY, EdgeMap(shift=0), "2024-03-10T00:00:00Z", ("2024-03-10T00:00:00Z",),
                     id="zero-shift-identity"),
        pytest.param(DAILY, HOURLY, EdgeMap(shift=0), "2024-03-10T00:00:00Z", ("2024-03-10T00:00:00Z",),
                     id="zero-shift-exact-date"),
    ],
)  # fmt: skip
def test_upstream_partitions_of_an_edge(
    down: Grid | None, up: Grid | None, edge: EdgeMap, partition: str, expected: tuple[str, ...]
) -> None:
    """A shift maps to exactly P + shift on the upstream's grid; a member picks one partition of the window."""
    assert upstream_partitions(down, up, edge, partition) == expected


def test_an_integer_offset_is_the_plain_edge_map() -> None:
    """Callers passing an offset (the grid API before edge maps) get the same answers as with EdgeMap(offset=k)."""
    for offset in (-1, 0, 2):
        assert upstream_partitions(DAILY, HOURLY, offset, "2024-03-10T00:00:00Z") == upstream_partitions(
            DAILY, HOURLY, EdgeMap(offset=offset), "2024-03-10T00:00:00Z"
        )
    assert is_identity(DAILY, DAILY, 0) and not is_identity(DAILY, DAILY, EdgeMap(member=0))
    assert not is_identity(DAILY, HOURLY, EdgeMap(shift=0)) and is_identity(None, None, EdgeMap(shift=0))


@pytest.mark.parametrize(
    ("down", "up", "edge", "partition", "expected"),
    [
        pytest.param(DAILY_5, DAILY_1, EdgeMap(shift=-4 * H), "2024-03-10T01:00:00Z", ("2024-03-10T05:00:00Z",),
                     id="one-dependent-per-upstream-day"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=-1), "2024-03-17T00:00:00Z", ("2024-03-11T00:00:00Z",),
                     id="sunday-feeds-its-week"),
        pytest.param(WEEKLY, DAILY, EdgeMap(member=-1), "2024-03-16T00:00:00Z", (), id="saturday-feeds-nothing"),
        pytest.param(None, DAILY_1, EdgeMap(shift=-4 * H), "2024-03-10T01:00:00Z", ("2024-03-10T05:00:00Z",),
                     id="ungridded-down"),
    ],
)  # fmt: skip
def test_downstream_partitions_of_an_edge(
    down: Grid | None, up: Grid | None, edge: EdgeMap, partition: str, expected: tuple[str, ...]
) -> None:
    """An upstream partition maps back to exactly the D partitions whose shift or member lands on it."""
    assert downstream_partitions(down, up, edge, partition) == expected


GRIDS = [DAILY, DAILY_1, DAILY_5, HOURLY, WEEKLY, WEEKLY_SAT, BERLIN, BERLIN_1, NEW_YORK_HOURLY, SIX_HOURLY, None]
#: Every half hour of two weeks around the European and the American DST changes of spring and autumn 2024.
_STARTS = ("2024-03-06T00:00:00Z", "2024-03-27T00:00:00Z", "2024-10-24T00:00:00Z", "2024-10-31T00:00:00Z")
INSTANTS = st.sampled_from(
    [
        (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=30 * i))
        .astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        for start in _STARTS
        for i in range(14 * 48)
    ]
)
SHIFTS = st.one_of(st.none(), st.sampled_from([0, -H, -4 * H, 2 * H, -D, -(5 * D + 16 * H), 30 * 60, -7 * D]))
MEMBERS = st.one_of(st.none(), st.sampled_from([0, 1, 4, -1, -2, 30]))


@st.composite
def edges(draw: st.DrawFn) -> tuple[Grid | None, Grid | None, EdgeMap]:
    """A pair of grids and a mapping the loader accepts for them (offset and member need grids on both sides)."""
    down, up = draw(st.sampled_from(GRIDS)), draw(st.sampled_from(GRIDS))
    both = down is not None and up is not None
    offset = draw(st.integers(-2, 2)) if both else 0
    member = draw(MEMBERS) if both else None
    return down, up, EdgeMap(offset, draw(SHIFTS), member)


@settings(max_examples=examples(600), deadline=None)
@given(edge=edges(), at=INSTANTS)
def test_downstream_is_the_exact_inverse_for_every_edge_map(
    edge: tuple[Grid | None, Grid | None, EdgeMap], at: str
) -> None:
    """Q is in upstream_partitions(P) exactly when P is in downstream_partitions(Q), for shifts and members too."""
    down, up, mapping = edge
    for q in upstream_partitions(down, up, mapping, at):
        assert at in downstream_partitions(down, up, mapping, q)
    for p in downstream_partitions(down, up, mapping, at):
        assert at in upstream_partitions(down, up, mapping, p)


@settings(max_examples=examples(300), deadline=None)
@given(edge=edges(), at=INSTANTS)
def test_a_shift_or_member_maps_to_at_most_one_partition(
    edge: tuple[Grid | None, Grid | None, EdgeMap], at: str
) -> None:
    """A shift (without member) is one date, P moved by the offset plus the shift; a member is one of the window."""
    down, up, mapping = edge
    found = upstream_partitions(down, up, mapping, at)
    if mapping.member is not None:
        assert len(found) <= 1
        if mapping.shift is None:  # with a shift the window is the overlap of D's window moved by it (rule 5)
            assert set(found) <= set(upstream_partitions(down, up, EdgeMap(mapping.offset), at))
    elif mapping.shift is not None and not (mapping.shift == 0 and mapping.offset == 0 and down == up):
        point = datetime.fromisoformat(at.replace("Z", "+00:00"))
        assert len(found) <= 1
        if found:
            start = down.shift(point, mapping.offset) if down is not None else point
            assert found[0] == (start + timedelta(seconds=mapping.shift)).strftime("%Y-%m-%dT%H:%M:%SZ")
