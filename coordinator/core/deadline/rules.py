"""A DAG's deadline rule as a value (semantics `deadlines-judged`): its escalation levels, the deadline it sets for a
partition and the end of a partition's window. ``core/spec/deadline.py`` reads a rule from ``dependencies.json``
into these values; the judging (``states``, ``cache``, ``levels``, ``start``) and the graph use them.

Rules (what an ``expected_by`` means is ``core/spec/deadline.py``'s **One anchor**, **Optional fields**,
**Escalation levels** and **Task deadlines**):
- **Values only.** Frozen values, their flat items (the graph's digest and the activation record them) and the
  deadline arithmetic; no parsing, no problems reported: a value that is not a rule's item raises ValueError.
- **One anchor.** A deadline is ``seconds`` after the partition's window end or start, or ``HH:MM`` wall-clock in the
  DAG's grid time zone ``day_offset`` days after the partition's local date. Wall-clock arithmetic happens in the
  zone, so a DST change moves the UTC instant and not the local time; a time inside a spring-forward gap resolves
  forward like ``zoneinfo`` does (fold 0), an ambiguous one (autumn) is its first occurrence.
- **Without a grid** a partition's window is the instant itself: ``after_end`` then means the same as ``after_start``.
- **Items stay stable.** A rule without the alerting fields, levels or task keeps the item (and the graph digest) it
  would have without them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from coordinator.core.grid import DEFAULT_TIMEZONE, Grid
from coordinator.core.model import NAME_RE, partition_datetime
from coordinator.core.partition import is_segment_only

#: A level as the digest and the activation record it (``Level.item``), and a whole rule (``ExpectedBy.item``).
LevelItem = tuple[str, int, tuple[str, ...]]
RuleItem = tuple[str | int | bool | tuple[LevelItem, ...] | None, ...]

#: Where a deadline counts from (**One anchor**): the window's end or start, or a wall-clock time.
ANCHORS = ("after_end", "after_start", "at")

#: An edge's task id (``spec.grid.TASK_RE``, not imported: that module imports the graph, which imports this one).
_TASK_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class Level:
    """One escalation level (**Escalation levels**). ``handlers`` are references as written until the loader resolves
    them to qualified DAG names (``instance/dag_id``)."""

    name: str
    #: Seconds before the deadline from which a predicted finish puts this level ``at_risk`` (its ``warn``).
    slack: int = 0
    handlers: tuple[str, ...] = ()

    def item(self) -> LevelItem:
        return self.name, self.slack, self.handlers

    @classmethod
    def from_item(cls, item: object) -> Level:
        """The level :meth:`item` wrote (JSON turns its tuples into lists); raise ValueError on anything else."""
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"not a level: {item!r}")
        name, slack, handlers = item
        if not isinstance(name, str) or isinstance(slack, bool) or not isinstance(slack, int):
            raise ValueError(f"not a level: {item!r}")
        if not isinstance(handlers, (list, tuple)) or not all(isinstance(h, str) for h in handlers):
            raise ValueError(f"not a level: {item!r}")
        return cls(name, slack, tuple(handlers))


@dataclass(frozen=True, slots=True)
class ExpectedBy:
    """A DAG's deadline rule (**One anchor** and **Optional fields**). ``anchor`` is one of :data:`ANCHORS`."""

    anchor: str
    #: Seconds after the window's end or start (``after_*``); 0 for ``at``.
    seconds: int = 0
    #: ``(hour, minute)`` for ``at``.
    at: tuple[int, int] = (0, 0)
    day_offset: int = 0
    warn: int = 0
    #: Expected run time in seconds; None: not given (learned or, without history, zero).
    duration: int | None = None
    learned: bool = False
    #: Canonical partition; partitions before it have no deadline.
    start: str | None = None
    #: Seconds a state must last before its handlers run (**Optional fields**); 0: at once.
    hold: int = 0
    #: Alert a state again after a return to on_time within the same partition (**Optional fields**).
    realert: bool = False
    #: Escalation levels (**Escalation levels**), in the order written; empty: the single-level form.
    levels: tuple[Level, ...] = ()
    #: The task whose state the deadline is judged on (**Task deadlines**); None: the DAG run's.
    task: str | None = None

    def applies(self, partition: str) -> bool:
        """Whether the rule judges ``partition``: from its ``from`` on, and never a segment without a time (semantics
        `segment-partitions`: nothing to count a deadline from)."""
        if is_segment_only(partition):
            return False
        return self.start is None or partition >= self.start

    def item(self) -> RuleItem:
        """Every field as a flat JSON-able tuple (the graph's digest and the activation record it)."""
        hour, minute = self.at
        base = (self.anchor, self.seconds, hour, minute, self.day_offset, self.warn, self.duration, self.learned,
                self.start)  # fmt: skip
        # The alerting fields only when set (**Items stay stable**: a rule without them has the nine-field item); the
        # levels likewise, as one more element (a tuple of level items) after the alerting fields, and the task as
        # one more after the levels (an empty tuple of levels when it has none).
        if self.task is not None:
            levels = tuple(level.item() for level in self.levels)
            return (*base, self.hold, self.realert, levels, self.task)
        if self.levels:
            return (*base, self.hold, self.realert, tuple(level.item() for level in self.levels))
        return base if not (self.hold or self.realert) else (*base, self.hold, self.realert)

    @classmethod
    def from_item(cls, item: Sequence[object]) -> ExpectedBy:
        """The rule :meth:`item` wrote; raise ValueError on anything else."""
        hold, realert = 0, False
        levels: tuple[Level, ...] = ()
        task: str | None = None
        if len(item) == 13:
            raw_task = item[12]
            if not isinstance(raw_task, str) or not is_task_id(raw_task):
                raise ValueError(f"not an expected_by: {item!r}")
            task = raw_task
            raw_levels = item[11]
            if not isinstance(raw_levels, (list, tuple)):
                raise ValueError(f"not an expected_by: {item!r}")
            levels = tuple(Level.from_item(level) for level in raw_levels)
            item = item[:11]
        if len(item) == 12:
            raw = item[11]
            if not isinstance(raw, (list, tuple)) or not raw:
                raise ValueError(f"not an expected_by: {item!r}")
            levels = tuple(Level.from_item(level) for level in raw)
            item = item[:11]
        if len(item) == 11:
            hold, realert = item[9], item[10]  # type: ignore[assignment]
            item = item[:9]
            if isinstance(hold, bool) or not isinstance(hold, int) or not isinstance(realert, bool):
                raise ValueError(f"not an expected_by: {item!r}")
        if len(item) != 9:
            raise ValueError(f"not an expected_by: {item!r}")
        anchor, seconds, hour, minute, day_offset, warn, duration, learned, start = item
        ints = (seconds, hour, minute, day_offset, warn)
        if anchor not in ANCHORS or not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise ValueError(f"not an expected_by: {item!r}")
        if not isinstance(learned, bool) or not (duration is None or isinstance(duration, int)):
            raise ValueError(f"not an expected_by: {item!r}")
        if not (start is None or isinstance(start, str)):
            raise ValueError(f"not an expected_by: {item!r}")
        assert isinstance(anchor, str)  # for mypy: ANCHORS holds strings
        return cls(anchor, seconds, (hour, minute), day_offset, warn, duration, learned, start,  # type: ignore[arg-type]
                   hold, realert, levels, task)  # fmt: skip

    def deadline(self, grid: Grid | None, partition: str) -> datetime:
        """The UTC instant by which ``partition`` should have succeeded (**One anchor** and **Without a grid**)."""
        return _deadline(self, grid, partition)

    def deadlines(self, grid: Grid | None) -> Mapping[str, datetime]:
        """:meth:`deadline` by partition (``table[partition]``), one table shared by every DAG with an equal rule and
        grid: a pass hashes the rule and the grid once per DAG, not once per partition (hashing and comparing these
        dataclasses cost more than the deadline itself when it is cached)."""
        return _table(self, grid)

    def _compute(self, grid: Grid | None, partition: str) -> datetime:
        start = partition_datetime(partition)
        if self.anchor == "after_start":
            return start + timedelta(seconds=self.seconds)
        if self.anchor == "after_end":
            return window_end(grid, partition) + timedelta(seconds=self.seconds)
        zone = ZoneInfo(grid.timezone if grid is not None else DEFAULT_TIMEZONE)
        local_day = start.astimezone(zone).date() + timedelta(days=self.day_offset)
        hour, minute = self.at
        wall = datetime(local_day.year, local_day.month, local_day.day, hour, minute, tzinfo=zone)
        return wall.astimezone(start.tzinfo)


class _Deadlines(dict[str, datetime]):
    """One rule's deadlines on one grid, computed on first lookup."""

    def __init__(self, rule: ExpectedBy, grid: Grid | None) -> None:
        super().__init__()
        self._rule, self._grid = rule, grid

    def __missing__(self, partition: str) -> datetime:
        found = self[partition] = self._rule._compute(self._grid, partition)
        return found


@lru_cache(maxsize=1 << 12)
def _table(rule: ExpectedBy, grid: Grid | None) -> _Deadlines:
    return _Deadlines(rule, grid)


@lru_cache(maxsize=1 << 18)
def _deadline(rule: ExpectedBy, grid: Grid | None, partition: str) -> datetime:
    """Cached: thousands of DAGs share a few rules and grids, and a pass asks about the same partitions every time."""
    return rule._compute(grid, partition)


@lru_cache(maxsize=1 << 16)
def window_end(grid: Grid | None, partition: str) -> datetime:
    """The end of ``partition``'s window (**Without a grid**: the partition itself without a grid), cached (croniter is
    slow)."""
    start = partition_datetime(partition)
    return grid.next(start) if grid is not None else start


def is_task_id(raw: object) -> bool:
    """An Airflow task id that can be part of a key, checked like an edge's ``task`` (**Task deadlines**)."""
    return isinstance(raw, str) and bool(_TASK_RE.match(raw)) and bool(NAME_RE.match(raw)) and len(raw) <= 250
