"""Partition grids: which upstream partitions a partition of a DAG on another schedule needs, and the inverse.

Rules (``docs/semantics.md``, rule 10):
1. A grid is a 5-field cron expression read in an IANA time zone. Partition P of a gridded DAG is a point of its grid
   and covers the window ``[P, next(P))``. Keys stay canonical UTC strings: the zone only decides where the points
   fall (a Berlin day starts at 23:00Z in winter, 22:00Z in summer, and lasts 23 or 25 hours on a DST Sunday).
2. An edge U -> D with offset k maps D's partition P to every grid point Q of U whose window overlaps D's window
   shifted by k of D's periods (k = -1: the previous period). Finer U: many (a rollup); coarser U: the one that
   contains it (a fan-out); same grid and k = 0: identity, ``(P,)``.
3. :func:`downstream_partitions` is the exact inverse on grid points: Q is in ``upstream_partitions(P)`` iff P is in
   ``downstream_partitions(Q)``. A partition that is not a point of its DAG's grid (a manual run at an odd time) maps
   to nothing, except under identity, where every partition maps to itself (today's exact-date join).
4. Pure and deterministic; results are cached because the planner asks the same questions for every pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from coordinator.core.model import PARTITION_FORMAT, partition_datetime

DEFAULT_TIMEZONE = "UTC"
#: A window never needs more upstream partitions than this (a minute grid under a monthly DAG is 44,640): the
#: mapping stops there instead of exhausting memory on a cron typo such as ``* * * * *`` under a yearly DAG.
MAX_MAPPED = 50_000
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True, order=True)
class Grid:
    """A DAG's partition grid: ``cron`` (5 fields) evaluated in ``timezone`` (IANA name)."""

    cron: str
    timezone: str = DEFAULT_TIMEZONE

    def __str__(self) -> str:
        return self.cron if self.timezone == DEFAULT_TIMEZONE else f"{self.cron} {self.timezone}"

    def _iter(self, at: datetime) -> croniter:
        return croniter(self.cron, at.astimezone(ZoneInfo(self.timezone)))

    def next(self, at: datetime) -> datetime:
        """The first grid point strictly after ``at``."""
        return _utc(self._iter(at).get_next(datetime))

    def prev(self, at: datetime) -> datetime:
        """The last grid point strictly before ``at``."""
        return _utc(self._iter(at).get_prev(datetime))

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


def cron_problem(cron: str) -> str | None:
    """What is wrong with a cron expression, or None: exactly 5 fields that croniter accepts."""
    fields = cron.split()
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


def is_identity(down: Grid | None, up: Grid | None, offset: int) -> bool:
    """Whether the edge joins equal partitions only (no grid on a side, or the same grid without an offset)."""
    return down is None or up is None or (down == up and offset == 0)


@lru_cache(maxsize=65_536)
def upstream_partitions(down: Grid | None, up: Grid | None, offset: int, partition: str) -> tuple[str, ...]:
    """The partitions of the upstream that D's ``partition`` needs (rule 2), in time order."""
    if is_identity(down, up, offset):
        return (partition,)
    assert down is not None and up is not None  # is_identity covers a missing grid
    at = partition_datetime(partition)
    if not down.contains(at):
        return ()
    start = down.shift(at, offset)
    return _overlapping(up, start, down.next(start))


@lru_cache(maxsize=65_536)
def downstream_partitions(down: Grid | None, up: Grid | None, offset: int, partition: str) -> tuple[str, ...]:
    """The partitions of D that need the upstream's ``partition`` (the inverse of :func:`upstream_partitions`)."""
    if is_identity(down, up, offset):
        return (partition,)
    assert down is not None and up is not None
    at = partition_datetime(partition)
    if not up.contains(at):
        return ()
    points = _overlapping(down, at, up.next(at))
    return tuple(_key(down.shift(partition_datetime(p), -offset)) for p in points)
