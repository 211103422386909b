"""Partition grids: which upstream partitions a partition of a DAG on another schedule needs, and the inverse.

Rules (semantics `partition-grids`):
- **Grids.** A grid is a 5-field cron expression read in an IANA time zone. Partition P of a gridded DAG is a point of
  its grid and covers the window ``[P, next(P))``. Keys stay canonical UTC strings: the zone only decides where the
  points fall (a Berlin day starts at 23:00Z in winter, 22:00Z in summer, and lasts 23 or 25 hours on a DST Sunday).
- **Mapping by overlap.** An edge U -> D with offset k maps D's partition P to every grid point Q of U whose window
  overlaps D's window shifted by k of D's periods (k = -1: the previous period). Finer U: many (a rollup); coarser U:
  the one that contains it (a fan-out); same grid and k = 0: identity, ``(P,)``.
- **Exact inverse.** :func:`downstream_partitions` is the exact inverse on grid points: Q is in
  ``upstream_partitions(P)`` iff P is in ``downstream_partitions(Q)``. A partition that is not a point of its DAG's grid
  (a manual run at an odd time) maps to nothing, except under identity, where every partition maps to itself (today's
  exact-date join).
- **Pure and cached.** Pure and deterministic; results are cached because the planner asks the same questions for every
  pass.
- **Edge maps.** An edge's mapping is an :class:`EdgeMap` (offset, shift, member); the plain offset ``k`` of
  **Mapping by overlap** is ``EdgeMap(offset=k)``. With a ``shift`` s (seconds), P needs exactly the one upstream
  partition ``P' + s``, where P' is P moved by the offset (**Mapping by overlap**' periods): without a grid on the
  upstream side any date, with one only a grid point (else nothing maps). A ``member`` i picks the i-th (0-based;
  negative counts from the end) of the overlapping window of **Mapping by overlap**, and nothing when the window has
  fewer members. **Exact inverse** holds for all of them.
- **Cron presets** (``@daily`` ...) are read as their 5-field cron (:func:`normalise_cron`), so ``@daily`` and ``0 0 * *
  *`` are one grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from coordinator.core.model import PARTITION_FORMAT, partition_datetime

DEFAULT_TIMEZONE = "UTC"
#: A window never needs more upstream partitions than this (a minute grid under a monthly DAG is 44,640): the
#: mapping stops there instead of exhausting memory on a cron typo such as ``* * * * *`` under a yearly DAG.
MAX_MAPPED = 50_000
_SECOND = timedelta(seconds=1)
#: Airflow's cron presets (airflow.utils.dates.cron_presets), which most DAGs use.
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def normalise_cron(cron: str) -> str:
    """A preset as its 5-field cron, any other expression with its whitespace collapsed (**Cron presets**)."""
    text = " ".join(cron.split())
    return CRON_PRESETS.get(text.lower(), text)


class SegmentMap(StrEnum):
    """How an edge maps segments when written (``coordinator.core.segments``' **Same**, **All (rollup)**); unwritten,
    the rule follows from which DAGs declare segments."""

    SAME = "same"
    ALL = "all"


@dataclass(frozen=True, slots=True, order=True)
class EdgeMap:
    """How an edge maps D's partition to the upstream's (**Mapping by overlap** and **Edge maps**). The default is the
    plain overlap join."""

    #: Periods of D's grid (**Mapping by overlap**); needs grids on both sides.
    offset: int = 0
    #: Seconds added to (the offset) P; None: no shift (the window overlap of **Mapping by overlap**, or equal dates).
    shift: int | None = None
    #: Index into the mapped window (0 first, -1 last); None: the whole window. Needs grids on both sides.
    member: int | None = None
    #: The segment rule written on the edge (``coordinator.core.segments``); None: follows from the DAGs' segments.
    segments: SegmentMap | None = None

    @property
    def plain(self) -> bool:
        """No shift, member or segment rule: **Mapping by overlap**' overlap with an offset (or **Grids**' equal
        dates)."""
        return self.shift is None and self.member is None and self.segments is None

    @property
    def in_time(self) -> EdgeMap:
        """The mapping of the time part alone (the segment rule is ``coordinator.core.segments``')."""
        return self if self.segments is None else EdgeMap(self.offset, self.shift, self.member)


@dataclass(frozen=True, slots=True, order=True)
class Grid:
    """A DAG's partition grid: ``cron`` (5 fields) evaluated in ``timezone`` (IANA name)."""

    cron: str
    timezone: str = DEFAULT_TIMEZONE

    def __str__(self) -> str:
        return self.cron if self.timezone == DEFAULT_TIMEZONE else f"{self.cron} {self.timezone}"

    def _iter(self, at: datetime) -> croniter:
        return _ParsedOnce(self.cron, at.astimezone(ZoneInfo(self.timezone)))

    def next(self, at: datetime) -> datetime:
        """The first grid point strictly after ``at``."""
        return _step(self, at, True)

    def prev(self, at: datetime) -> datetime:
        """The last grid point strictly before ``at``."""
        return _step(self, at, False)

    def floor(self, at: datetime) -> datetime:
        """The last grid point at or before ``at`` (partitions are whole seconds)."""
        return self.prev(at + _SECOND)

    def contains(self, at: datetime) -> bool:
        return self.floor(at) == at

    def shift(self, at: datetime, periods: int) -> datetime:
        """``at`` moved by ``periods`` grid points (negative: back)."""
        for _ in range(periods):
            at = self.next(at)
        for _ in range(-periods):
            at = self.prev(at)
        return at


@lru_cache(maxsize=65_536)
def _step(grid: Grid, at: datetime, forward: bool) -> datetime:
    """One step along ``grid`` from ``at`` (**Pure and cached**: the planner, the importer's fitting and the page ask
    the same steps many times; 65,536 entries hold a 300-sensor folder's fitting and stay under 20 MB)."""
    cron = grid._iter(at)
    return _utc(cron.get_next(datetime) if forward else cron.get_prev(datetime))


class _ParsedOnce(croniter):
    """croniter that parses each expression once per process. Every grid step builds a croniter at a new start (it
    keeps no cursor of ours), and its parse (``_expand``) was most of the cost: 56,000 parses of the same few
    expressions for a 300-sensor folder, 70 us each. The parse depends on the expression alone unless a hash id or a
    start-relative expansion is asked for (neither is, here); croniter copies what it changes, and each caller gets
    its own copy of the lists anyway. tests/test_grid.py checks it against plain croniter."""

    @classmethod
    def _expand(
        cls, expr_format: str, hash_id: bytes | None = None, second_at_beginning: bool = False,
        from_timestamp: float | None = None, **kwargs: object,
    ) -> tuple[list[list[object]], dict[object, object], list[str], set[object]]:  # fmt: skip
        if hash_id is not None or from_timestamp is not None or any(kwargs.values()):
            return super()._expand(  # type: ignore[misc, no-any-return]
                expr_format, hash_id, second_at_beginning, from_timestamp, **kwargs
            )
        expanded, nth, expressions, nearest = _parse(expr_format, second_at_beginning)
        return [list(field) for field in expanded], dict(nth), list(expressions), set(nearest)


@lru_cache(maxsize=1024)
def _parse(
    expr_format: str, second_at_beginning: bool
) -> tuple[tuple[tuple[object, ...], ...], dict[object, object], tuple[str, ...], frozenset[object]]:
    expanded, nth, expressions, nearest = croniter._expand(  # type: ignore[attr-defined]
        expr_format, second_at_beginning=second_at_beginning
    )
    return tuple(tuple(f) for f in expanded), dict(nth), tuple(expressions), frozenset(nearest)


def cron_problem(cron: str) -> str | None:
    """What is wrong with a cron expression, or None: a preset or exactly 5 fields that croniter accepts."""
    cron = normalise_cron(cron)
    fields = cron.split()
    if len(fields) == 1 and cron.startswith("@"):
        return f"unknown preset (known: {', '.join(CRON_PRESETS)})"
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day month weekday), got {len(fields)}"
    if not croniter.is_valid(cron):
        return "croniter cannot parse it"
    return None


def timezone_problem(name: str) -> str | None:
    """What is wrong with an IANA time zone name, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "not an IANA time zone name"
    return None


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _key(at: datetime) -> str:
    return at.astimezone(UTC).strftime(PARTITION_FORMAT)


def _overlapping(grid: Grid, start: datetime, end: datetime) -> tuple[str, ...]:
    """The points of ``grid`` whose windows overlap ``[start, end)``: from the one containing ``start`` on."""
    found: list[str] = []
    point = grid.floor(start)
    while point < end and len(found) < MAX_MAPPED:
        found.append(_key(point))
        point = grid.next(point)
    return tuple(found)


def _as_map(mapping: EdgeMap | int) -> EdgeMap:
    return mapping if isinstance(mapping, EdgeMap) else EdgeMap(offset=mapping)


def is_identity(down: Grid | None, up: Grid | None, mapping: EdgeMap | int) -> bool:
    """Whether the edge joins equal partitions only (no grid on a side, or the same grid without an offset; a zero
    shift is identity only between equal grids, since elsewhere it still demands a point of the upstream's grid)."""
    edge = _as_map(mapping)
    if edge.offset or edge.member is not None:
        return False
    if edge.shift is None:
        return down is None or up is None or down == up
    return edge.shift == 0 and down == up


def upstream_partitions(down: Grid | None, up: Grid | None, mapping: EdgeMap | int, partition: str) -> tuple[str, ...]:
    """The partitions of the upstream that D's ``partition`` needs (**Mapping by overlap** and **Edge maps**), in time
    order."""
    return _upstream(down, up, _as_map(mapping), partition)


def downstream_partitions(
    down: Grid | None, up: Grid | None, mapping: EdgeMap | int, partition: str
) -> tuple[str, ...]:
    """The partitions of D that need the upstream's ``partition`` (the inverse of :func:`upstream_partitions`)."""
    return _downstream(down, up, _as_map(mapping), partition)


def _shifted(at: datetime, seconds: int) -> datetime:
    return at + timedelta(seconds=seconds)


@lru_cache(maxsize=65_536)
def _upstream(down: Grid | None, up: Grid | None, edge: EdgeMap, partition: str) -> tuple[str, ...]:
    if is_identity(down, up, edge):
        return (partition,)
    at = partition_datetime(partition)
    if down is not None and not down.contains(at):
        return ()
    start = down.shift(at, edge.offset) if down is not None else at
    if edge.shift is not None and edge.member is None:  # **Edge maps**: exactly one date
        target = _shifted(start, edge.shift)
        return (_key(target),) if up is None or up.contains(target) else ()
    assert down is not None and up is not None  # the loader demands both grids for an offset or a member
    end = down.next(start)
    if edge.shift is not None:
        start, end = _shifted(start, edge.shift), _shifted(end, edge.shift)
    window = _overlapping(up, start, end)
    if edge.member is None:
        return window
    if -len(window) <= edge.member < len(window):
        return (window[edge.member],)
    return ()


@lru_cache(maxsize=65_536)
def _downstream(down: Grid | None, up: Grid | None, edge: EdgeMap, partition: str) -> tuple[str, ...]:
    if is_identity(down, up, edge):
        return (partition,)
    at = partition_datetime(partition)
    if up is not None and not up.contains(at):
        return ()
    if edge.shift is not None and edge.member is None:
        start = _shifted(at, -edge.shift)
        if down is None:
            return (_key(start),)
        if not down.contains(start):
            return ()
        return (_key(down.shift(start, -edge.offset)),)
    assert down is not None and up is not None
    if edge.shift is not None:
        # The upstream window [Q, next Q) moved back by the shift overlaps D's shifted windows.
        points = _overlapping(down, _shifted(at, -edge.shift), _shifted(up.next(at), -edge.shift))
    else:
        points = _overlapping(down, at, up.next(at))
    found = tuple(_key(down.shift(partition_datetime(p), -edge.offset)) for p in points)
    if edge.member is None:
        return found
    # A member is one of the window's points: keep the D partitions whose chosen member is this one.
    return tuple(p for p in found if _upstream(down, up, edge, p) == (partition,))
