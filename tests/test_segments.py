"""The segment mapping of an edge (``coordinator.core.segments``): its exact inverse on random declarations, and the
partition forms it reads (``coordinator.core.partition``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.grid import EdgeMap, Grid, SegmentMap
from coordinator.core.partition import airflow_key_parts, is_partition, join_partition, split_partition
from coordinator.core.segments import Segments, segment_downstream, segment_upstream

NAMES = ("apac", "eu", "us", "latam")
TIMES = ("2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T05:00:00Z")
GRIDS = (None, Grid("0 0 * * *"), Grid("0 * * * *"), Grid("0 0 * * *", "Europe/Berlin"))

declared = st.one_of(
    st.none(),
    st.builds(
        Segments,
        st.lists(st.sampled_from(NAMES), min_size=1, unique=True).map(lambda x: tuple(sorted(x))),
        st.booleans(),
    ),
)
partitions = st.one_of(
    st.sampled_from(TIMES),
    st.sampled_from(NAMES),
    st.builds(lambda t, s: f"{t}~{s}", st.sampled_from(TIMES), st.sampled_from(NAMES)),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(GRIDS), declared, st.sampled_from(GRIDS), declared,
    st.sampled_from((None, SegmentMap.SAME, SegmentMap.ALL)), partitions, partitions,
)  # fmt: skip
def test_the_segment_mapping_has_an_exact_inverse(
    down_grid: Grid | None, down: Segments | None, up_grid: Grid | None, up: Segments | None,
    written: SegmentMap | None, p: str, q: str,
) -> None:  # fmt: skip
    """Q is among the upstream partitions of P exactly when P is among the dependent partitions of Q."""
    mapping = EdgeMap(segments=written)
    forward = q in segment_upstream(down_grid, down, up_grid, up, mapping, written, p)
    backward = p in segment_downstream(down_grid, down, up_grid, up, mapping, written, q)
    assert forward == backward


def test_the_three_forms_split_and_join_back() -> None:
    """A time, a segment and a time with a segment split into their parts and join into the same text."""
    for text in ("2026-01-01T00:00:00Z", "eu", "2026-01-01T00:00:00Z~eu"):
        assert is_partition(text) and join_partition(*split_partition(text)) == text
    for text in ("2026-01-01", "2026-01-01T00:00:00+01:00", "eu~2026-01-01T00:00:00Z", "..", "a b", "", "x~"):
        assert not is_partition(text), text


def test_airflow_keys_split_into_their_time_and_segment_parts() -> None:
    """An Airflow product key's time-like parts are told from its segment, whatever the time's spelling."""
    assert airflow_key_parts("2026-11-26T17:00:00|eu") == (["2026-11-26T17:00:00"], ["eu"])
    assert airflow_key_parts("eu") == ([], ["eu"])
    assert airflow_key_parts("2026-11-26") == (["2026-11-26"], [])
