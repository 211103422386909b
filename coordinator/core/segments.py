"""Segment partitions across an edge: which upstream partitions a partition of a DAG needs when either side has
segments (``eu``, ``us``, ...), and the inverse (semantics `segment-partitions`).

A DAG's partitions are times (today), segments, or a time and a segment (``coordinator.core.partition``). A DAG may
declare its segments (``"partitions": {"segments": [...]}``, with a ``cron`` for a time and a segment); the time part
of every partition maps by ``coordinator.core.grid`` exactly as before, and the segment part by one of four rules:

Rules:
- **Pass-through.** Neither DAG declares segments: a partition's segment, if it has one, passes unchanged (D for
  ``2026-01-01T00:00:00Z~eu`` needs U's hours of that day ``~eu`` under a daily-over-hourly grid; D for ``eu`` needs U
  for ``eu``), as equal logical dates join today. A graph without segments maps exactly as before.
- **Same.** Both declare segments (or the edge says ``"segments": "same"``): D's segment needs the same segment of U;
  a segment the declaring sides do not list maps to nothing.
- **All (rollup).** Only U declares segments (or the edge says ``"segments": "all"``): D's partition needs every one of
  U's segments ("all regions" of a day); D's own segment, if D declares segments, is any of D's.
- **Fan-out.** Only D declares segments: each of D's segments needs U's one partition without a segment.
- **Times agree.** A DAG that declares segments without a ``cron`` has no time: its partitions are segments only. The
  loader refuses an edge between such a DAG and one whose partitions are times (nothing relates a time to a segment
  alone); a partition of the wrong form for its DAG maps to nothing.
- **Own partitions.** :func:`can_have`: the partitions a DAG can have at all, by its grid and segments: a DAG that
  declares segments has only those segments (alone without a ``cron``, with a time of its grid with one); a DAG with a
  grid and no segments never has a segment alone (no time to place on its grid), and a time of its only on its grid.
  A DAG with neither can have anything (a segment passes through it). ``status`` lists only these for a partition.
- **Exact inverse.** :func:`segment_downstream` is the exact inverse of :func:`segment_upstream`, as
  ``coordinator.core.grid``'s mappings are: Q is in ``segment_upstream(P)`` iff P is in ``segment_downstream(Q)``.
- **Pure and cached** like ``coordinator.core.grid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from itertools import product

from coordinator.core.grid import EdgeMap, Grid, SegmentMap, downstream_partitions, upstream_partitions
from coordinator.core.model import partition_datetime
from coordinator.core.partition import join_partition, split_partition


def can_have(grid: Grid | None, segments: Segments | None, partition: str) -> bool:
    """**Own partitions**: whether a DAG of ``grid`` and ``segments`` can have ``partition`` (text of no partition
    form: True, not this rule's to judge)."""
    time, segment = split_partition(partition)
    if time is None and segment is None:
        return True
    if segments is not None:
        if segment is None or segment not in segments.names or segments.timed != (time is not None):
            return False
    elif time is None:
        return grid is None
    if grid is not None and time is not None:
        return grid.contains(partition_datetime(time))
    return True


@dataclass(frozen=True, slots=True, order=True)
class Segments:
    """A DAG's declared segments (sorted, distinct) and whether its partitions also carry a time (a ``cron``)."""

    names: tuple[str, ...]
    timed: bool

    def item(self) -> list[object]:
        """JSON-able, for the DAG's shape and the activation record."""
        return [list(self.names), self.timed]

    @classmethod
    def from_item(cls, item: object) -> Segments:
        """The value :meth:`item` wrote; ValueError for anything else."""
        if not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[1], bool):
            raise ValueError(f"not recorded segments: {item!r}")
        names = item[0]
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"not recorded segment names: {names!r}")
        return cls(tuple(sorted(set(names))), item[1])

    def __str__(self) -> str:
        return ", ".join(self.names)


class _Rule(StrEnum):
    PASS = "pass"
    SAME = "same"
    ALL = "all"
    FAN_OUT = "fan_out"


def _rule(down: Segments | None, up: Segments | None, written: SegmentMap | None) -> _Rule:
    if written is SegmentMap.SAME:
        return _Rule.SAME
    if written is SegmentMap.ALL:
        return _Rule.ALL
    if down is None and up is None:
        return _Rule.PASS
    if up is None:
        return _Rule.FAN_OUT
    if down is None:
        return _Rule.ALL
    return _Rule.SAME


def rule_name(down: Segments | None, up: Segments | None, written: SegmentMap | None) -> str:
    """The rule's name as ``why`` and ``graph`` say it: ``same segment``, ``all segments``, ``fan-out``, or ``""``."""
    return {
        _Rule.PASS: "",
        _Rule.SAME: "same segment",
        _Rule.ALL: "all segments",
        _Rule.FAN_OUT: "fan-out to every segment",
    }[_rule(down, up, written)]


def maps_segments(down: Segments | None, up: Segments | None, written: SegmentMap | None) -> bool:
    """Whether an edge's segment rule is anything but **Pass-through**."""
    return _rule(down, up, written) is not _Rule.PASS


def _fits(segments: Segments | None, time: str | None, segment: str | None, rule_side: bool) -> bool:
    """Whether (time, segment) is a partition of a DAG declaring ``segments`` (**Times agree**); ``rule_side``: the
    rule leaves that side's segment free (an undeclared side under **Pass-through** or **Same**)."""
    if segments is None:
        return rule_side or segment is None
    if segments.timed != (time is not None):
        return False
    return segment in segments.names


def _time_map(
    time: str | None, down: Grid | None, up: Grid | None, mapping: EdgeMap, upward: bool
) -> tuple[str | None, ...]:
    if time is None:
        return (None,)
    if upward:
        return upstream_partitions(down, up, mapping.in_time, time)
    return downstream_partitions(down, up, mapping.in_time, time)


@lru_cache(maxsize=65_536)
def segment_upstream(
    down_grid: Grid | None,
    down: Segments | None,
    up_grid: Grid | None,
    up: Segments | None,
    mapping: EdgeMap,
    written: SegmentMap | None,
    partition: str,
) -> tuple[str, ...]:
    """The partitions of U that D's ``partition`` needs: the time part mapped by the grids, the segment part by the
    edge's rule (the module's rules), every pair of them, in time order."""
    time, segment = split_partition(partition)
    if time is None and segment is None:
        return ()
    rule = _rule(down, up, written)
    if not _fits(down, time, segment, rule in (_Rule.PASS, _Rule.SAME)):
        return ()
    if rule is _Rule.PASS:
        segments: tuple[str | None, ...] = (segment,)
    elif rule is _Rule.SAME:
        segments = (segment,) if segment is not None and (up is None or segment in up.names) else ()
    elif rule is _Rule.ALL:
        segments = up.names if up is not None else ()
    else:  # **Fan-out**
        segments = (None,)
    times = _time_map(time, down_grid, up_grid, mapping, True)
    if up is not None and up.timed != (times != (None,)):  # **Times agree**
        return ()
    return tuple(join_partition(t, s) for t, s in product(times, segments) if t is not None or s is not None)


@lru_cache(maxsize=65_536)
def segment_downstream(
    down_grid: Grid | None,
    down: Segments | None,
    up_grid: Grid | None,
    up: Segments | None,
    mapping: EdgeMap,
    written: SegmentMap | None,
    partition: str,
) -> tuple[str, ...]:
    """The partitions of D that need U's ``partition`` (**Exact inverse** of :func:`segment_upstream`)."""
    time, segment = split_partition(partition)
    if time is None and segment is None:
        return ()
    # Candidates by the rule, then only those the forward mapping agrees with (**Exact inverse**): a partition of D
    # that does not fit D, a segment U does not declare, a time U's grid does not hold all fall out there.
    rule = _rule(down, up, written)
    if rule is _Rule.PASS or rule is _Rule.SAME:
        segments: tuple[str | None, ...] = (segment,)
    elif rule is _Rule.ALL:
        if segment is None:
            return ()
        segments = down.names if down is not None else (None,)
    else:  # **Fan-out**: U's partition has no segment
        if segment is not None or down is None:
            return ()
        segments = down.names
    times = _time_map(time, down_grid, up_grid, mapping, False)
    found = [join_partition(t, s) for t, s in product(times, segments) if t is not None or s is not None]
    return tuple(p for p in found if partition in segment_upstream(down_grid, down, up_grid, up, mapping, written, p))


SEGMENT_EDGE_HINT = (
    'declare both DAGs\' "partitions" alike: both with a "cron" (times, with or without segments) or both '
    'segments alone; or write "segments": "same" on the edge'
)


def segment_edge_problem(down: Segments | None, up: Segments | None, written: SegmentMap | None) -> str | None:
    """Why an edge between DAGs declaring ``down`` / ``up`` can never map a partition (**Times agree**), or None."""
    rule = _rule(down, up, written)
    if rule is _Rule.PASS:
        return None
    if rule is _Rule.SAME:
        if down is not None and up is not None and down.timed != up.timed:
            return "one DAG's partitions have a time and the other's do not"
        return None
    if rule is _Rule.ALL:
        if up is None:
            return "the upstream declares no segments to take all of"
        if not up.timed and (down is None or down.timed):
            return "taking all of the upstream's segments needs times on both sides: its segments have none"
        if up.timed and down is not None and not down.timed:
            return "the dependent's partitions have no time, the upstream's do"
        return None
    assert down is not None  # **Fan-out**: only the dependent declares segments
    if not down.timed:
        return "a fan-out from the upstream's times to segments without a time"
    return None


def partition_problem(grid: Grid | None, declared: Segments | None, partition: str) -> str | None:
    """Why ``partition`` is not one of a DAG's partitions by its form (**Times agree**, a segment it does not
    declare), or None; a time off the grid is the grid's to say."""
    time, segment = split_partition(partition)
    if time is None and segment is None:
        return "not a partition"
    if declared is None:
        if grid is not None and time is None:
            return f"its partitions are times on the grid {grid}, and a segment alone has none"
        return None
    if declared.timed and time is None:
        example = f"2026-01-01T00:00:00Z~{declared.names[0]}"
        return f"its partitions are a time and one of the segments {declared}: write one such as {example}"
    if not declared.timed and time is not None:
        return f"its partitions are the segments {declared} alone, without a time"
    if segment not in declared.names:
        return f"its segments are {declared}"
    return None
