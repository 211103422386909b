"""Condition groups: a DAG that runs when ANY of some upstreams, or N OF them, are satisfied (semantics
`condition-groups`).

Rules:
- **Groups of edges.** A group is a rule (``any``, ``at_least``) over member edges, each keyed (upstream DAG, task)
  like an edge (a DAG may wait for two tasks of one upstream). The DAG's ungrouped success edges stay required (the
  ``upstreams`` list is itself the ``all`` of today); an ``all`` group in the file is flattened into that list by the
  loader, so only ``any`` and ``at_least`` reach here.
- **Met by count.** A group is met when at least ``need`` of its members are satisfied (``any`` is ``need`` 1);
  a DAG's condition is met when every required edge is satisfied and every group is met (:func:`groups_met`).
- **Pure values.** Frozen, hashable, JSON-able through :meth:`GroupSpec.item`; the graph's shape carries them only
  when present, so a graph without groups keeps its digest.
- **Cutoff.** A group may carry a cutoff (semantics `group-cutoff`): from ``P + cutoff`` on (``now`` is an input, never
  read here) it is met with ``minimum`` satisfied members instead of ``need``; ``late`` says whether members that
  complete the group after such an early run rerun D once (``rerun``) or not (``ignore``).
- **Cutoff at a time of day.** ``"cutoff": "06:00"`` on a DAG with a daily (or coarser) grid passes at the first
  06:00 in the grid's zone at or after the partition's end: yesterday's daily partition (its window closed at
  midnight) is cut off at 06:00 today, the morning its data is complete. Wall-clock time, so a DST change moves it
  with the zone (a time in the spring-forward gap is read as ``zoneinfo`` reads it: shifted by the gap).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from coordinator.core.duration import format_shift
from coordinator.core.grid import Grid
from coordinator.core.model import NodeId, partition_datetime

#: A member of a group: the upstream DAG and the task that counts (None: the whole run), as an edge is keyed.
Member = tuple[NodeId, str | None]


class GroupRule(StrEnum):
    """How many members of a group must be satisfied."""

    ANY = "any"
    AT_LEAST = "at_least"


class Late(StrEnum):
    """What members that complete a group after its cutoff run do (semantics `group-cutoff`)."""

    RERUN = "rerun"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One condition group of a DAG: ``need`` of ``members`` (sorted, distinct, at least two)."""

    rule: GroupRule
    need: int
    members: tuple[Member, ...]
    #: Seconds after the partition's start from which ``minimum`` members are enough (**Cutoff**); None: never.
    cutoff: int | None = None
    minimum: int = 1
    late: Late = Late.RERUN
    #: **Cutoff at a time of day**: seconds after midnight in ``grid``'s zone (then ``cutoff`` is None) and the DAG's
    #: grid, which says where a partition ends; both None for a duration or no cutoff.
    at_time: int | None = None
    grid: Grid | None = None

    @property
    def has_cutoff(self) -> bool:
        """A cutoff, as a duration or a time of day (**Cutoff**, **Cutoff at a time of day**)."""
        return self.cutoff is not None or self.at_time is not None

    def item(self) -> list[object]:
        """The group as JSON-able data, for the DAG's shape (**Pure values**; the cutoff only when present, a time
        of day as its ``HH:MM`` text: the grid is in the shape already)."""
        item: list[object] = [str(self.rule), self.need, [[node.qualified, task] for node, task in self.members]]
        if self.cutoff is not None:
            item += [self.cutoff, self.minimum, str(self.late)]
        elif self.at_time is not None:
            item += [clock_text(self.at_time), self.minimum, str(self.late)]
        return item

    @classmethod
    def from_item(cls, item: Sequence[object], grid: Grid | None) -> GroupSpec:
        """The group :meth:`item` wrote (``grid``: the DAG's, for a time of day); ValueError for anything else."""
        if len(item) not in (3, 6) or not isinstance(item[1], int) or not isinstance(item[2], list | tuple):
            raise ValueError(f"not a recorded condition group: {item!r}")
        members: list[Member] = []
        for pair in item[2]:
            if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
                raise ValueError(f"not a recorded group member: {pair!r}")
            members.append((NodeId.parse(pair[0]), None if pair[1] is None else str(pair[1])))
        rule, need = GroupRule(str(item[0])), item[1]
        if len(item) == 3:
            return cls(rule, need, tuple(members))
        raw, minimum, late = item[3:]
        if not isinstance(minimum, int):
            raise ValueError(f"not a recorded group minimum: {minimum!r}")
        if isinstance(raw, str):
            return cls(rule, need, tuple(members), None, minimum, Late(str(late)), parse_clock(raw), grid)
        if not isinstance(raw, int):
            raise ValueError(f"not a recorded cutoff: {raw!r}")
        return cls(rule, need, tuple(members), raw, minimum, Late(str(late)))

    def cutoff_at(self, partition: str) -> datetime | None:
        """When the cutoff of ``partition`` passes (its start plus the cutoff, or **Cutoff at a time of day**);
        None without a cutoff."""
        if self.cutoff is None and (self.at_time is None or self.grid is None):
            return None
        try:
            start = partition_datetime(partition)
        except ValueError:
            return None  # a segment partition has no time to count a cutoff from
        if self.cutoff is not None:
            return start + timedelta(seconds=self.cutoff)
        assert self.at_time is not None and self.grid is not None
        return time_of_day_after(self.grid.next(start), self.at_time, self.grid.timezone)

    def cutoff_text(self) -> str:
        """``6h after the partition's start`` / ``06:00 Europe/Berlin after the partition's end``."""
        if self.at_time is not None and self.grid is not None:
            zone = "" if self.grid.timezone == "UTC" else f" {self.grid.timezone}"
            return f"{clock_text(self.at_time)}{zone} after the partition's end"
        return f"{format_shift(self.cutoff or 0)} after the partition's start"

    def need_at(self, partition: str, now: datetime | None) -> int:
        """How many satisfied members make the group met at ``now``: ``need``, or ``minimum`` once the cutoff has
        passed (None: it never has). One number, so the planner's reason and ``why``'s lines count alike."""
        at = self.cutoff_at(partition)
        if at is not None and now is not None and now >= at:
            return min(self.need, self.minimum)
        return self.need

    def is_met(self, satisfied: int, partition: str, now: datetime | None) -> bool:
        """**Met by count**, or with ``minimum`` once the cutoff has passed at ``now`` (None: it never has)."""
        return satisfied >= self.need_at(partition, now)

    def label(self) -> str:
        """The rule in a few words, as ``coordinator graph`` names a group: ``any``, ``2 of 3``, and with a cutoff
        the minimum that is enough from it on: ``3 of 3, 2 after cutoff 6h`` (``... after cutoff 06:00``)."""
        label = "any" if self.rule is GroupRule.ANY else f"{self.need} of {len(self.members)}"
        if self.cutoff is not None:
            label += f", {self.minimum} after cutoff {format_shift(self.cutoff)}"
        elif self.at_time is not None:
            label += f", {self.minimum} after cutoff {clock_text(self.at_time)}"
        return label

    def describe(self) -> str:
        """``any of a, b`` / ``2 of a, b, c`` (the words ``why`` and ``inputs`` can reuse)."""
        names = ", ".join(member_name(m) for m in self.members)
        text = f"any of {names}" if self.rule is GroupRule.ANY else f"{self.need} of {names}"
        if self.has_cutoff:
            text += f" ({self.minimum} from {self.cutoff_text()}, late: {self.late})"
        return text


def parse_clock(text: str) -> int:
    """Seconds after midnight of ``HH:MM`` (or ``HH:MM:SS``), 00:00 to 23:59:59; ValueError otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    hours, minutes, seconds = (int(p) for p in (*parts, "00")[:3])
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"not a time of day (HH:MM): {text!r}")
    return hours * 3600 + minutes * 60 + seconds


def clock_text(seconds: int) -> str:
    """``HH:MM`` (``HH:MM:SS`` when the seconds are not zero) of seconds after midnight."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def time_of_day_after(at: datetime, seconds: int, zone: str) -> datetime:
    """The first wall-clock time ``seconds`` after midnight in ``zone`` at or after ``at``, in UTC (**Cutoff at a
    time of day**)."""
    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    clock = time(seconds // 3600, seconds // 60 % 60, seconds % 60)
    day = local.date()
    for _ in range(3):  # today or tomorrow; a third day only if a DST gap pushed a candidate back before ``at``
        candidate = datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)
        if candidate >= at:
            return candidate
        day += timedelta(days=1)
    return candidate


def member_name(member: Member) -> str:
    node, task = member
    return str(node) if task is None else f"{node} task {task}"


def groups_met(
    groups: Sequence[GroupSpec], satisfied: Collection[Member], partition: str, now: datetime | None
) -> bool:
    """Whether every group is met (**Met by count**, **Cutoff**; required edges apart) for ``partition`` at ``now``."""
    return all(group.is_met(sum(m in satisfied for m in group.members), partition, now) for group in groups)


def grouped(groups: Sequence[GroupSpec]) -> frozenset[Member]:
    """Every member of every group (the other success edges of the DAG are required)."""
    return frozenset(m for group in groups for m in group.members)
