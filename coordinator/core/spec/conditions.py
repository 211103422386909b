"""Reading condition groups of ``upstreams`` (semantics `condition-groups`; the format in ``docs/dependencies.md``).

Rules:
- **Three rules.** A group is ``{"any": [...]}``, ``{"all": [...]}`` or ``{"at_least": N, "of": [...]}``; a member is
  whatever an upstream entry may be (a reference or an edge object, with every field an edge has).
- **One level.** ``all`` is the meaning of the ``upstreams`` list itself, so an ``all`` group is flattened into it
  and may hold ``any``/``at_least`` groups (a required input beside an ``any`` of two feeds); an ``any`` or
  ``at_least`` group holds edges only. Deeper nesting is refused, naming the way to write it.
- **Meaningless is refused.** An empty group, a group of one member ("write the edge itself"), ``at_least`` above the
  group's size or below 1, two rules in one object.
- **Cutoff.** ``cutoff`` (a positive duration after the partition's start), ``min`` (members enough from then on,
  default 1, below the group's need) and ``late`` (``rerun``, the default, or ``ignore``) on an ``at_least`` or ``all``
  group (semantics `group-cutoff`); an ``all`` group with a cutoff is ``at_least`` all of its members, so it holds
  edges only. Refused: a cutoff on ``any`` (it already runs with one member), ``min``/``late`` without ``cutoff``.
- **Cutoff at a time of day.** ``"cutoff": "06:00"`` (``HH:MM`` in the DAG's zone, after the partition's end:
  ``GroupSpec`` has the rule) needs a daily or coarser grid (:func:`time_cutoff_problem`, which the loader asks with
  the DAG's grid): a finer grid, or none, has no day for it to fall on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.core.conditions import GroupRule, Late, parse_clock
from coordinator.core.duration import parse_shift
from coordinator.core.grid import Grid, normalise_cron
from coordinator.core.partition_count import PartitionCount
from coordinator.core.spec.grid import Add, check_fields, describe
from coordinator.core.spec.source import JsonPath

#: The keys that make an upstream entry a group rather than an edge (an edge has "dag").
RULE_KEYS = ("any", "all", "at_least")
CUTOFF_FIELDS = ("cutoff", "min", "late")
GROUP_FIELDS = (*RULE_KEYS, "of", *CUTOFF_FIELDS)
CUTOFF_HINT = (
    'write a duration after the partition\'s start ("cutoff": "6h" or "PT6H") or a time of day in the DAG\'s zone '
    '("cutoff": "06:00", daily or coarser grids)'
)
GROUP_EXAMPLE = '{"any": ["feed_a", "feed_b"]} or {"at_least": 2, "of": ["eu", "us", "apac"]}'


@dataclass(frozen=True, slots=True)
class WrittenGroup:
    """A group as written: its rule (None: ``all``, flattened by the loader), how many members it needs and each
    member's raw value with its JSON path."""

    rule: GroupRule | None
    need: int
    members: tuple[tuple[Any, JsonPath], ...]
    #: **Cutoff**: seconds after the partition's start, None without one; then ``minimum`` and ``late``.
    cutoff: int | None = None
    minimum: int = 1
    late: Late = Late.RERUN
    #: **Cutoff at a time of day**: seconds after midnight (then ``cutoff`` is None), and where the cutoff was written.
    at_time: int | None = None
    at_path: JsonPath = ()


def time_cutoff_problem(grid: Grid | None) -> str | None:
    """Why a time-of-day cutoff cannot apply to a DAG with ``grid``, or None (**Cutoff at a time of day**): the grid
    must have at most one point a day (a single minute and hour field), so each partition has one day."""
    if grid is None:
        return "a time-of-day cutoff needs the DAG's partitions to be days (or longer): it has no grid"
    minute, hour = normalise_cron(grid.cron).split()[:2]
    if not (minute.isdigit() and hour.isdigit()):
        return f"a time-of-day cutoff needs a daily or coarser grid, not {grid.cron!r} (several partitions a day)"
    return None


def is_group(value: Any) -> bool:
    """Whether an upstream entry is a group (an object without ``dag`` naming a rule or a cutoff field)."""
    return isinstance(value, dict) and "dag" not in value and any(key in value for key in GROUP_FIELDS)


def read_group(value: Mapping[str, Any], path: JsonPath, add: Add) -> WrittenGroup | None:
    """The group at ``path`` (**Three rules**, **Meaningless is refused**); None after reporting what is wrong."""
    check_fields(value, path, GROUP_FIELDS, add)
    ok = all(key in GROUP_FIELDS for key in value)
    rules = [key for key in RULE_KEYS if key in value]
    if len(rules) != 1:
        what = "a group without a rule" if not rules else f"a group with {len(rules)} rules ({', '.join(rules)})"
        add(path, what, f"write one of any, all or at_least: {GROUP_EXAMPLE}")
        return None
    rule = rules[0]
    if rule == "at_least":
        need = value["at_least"]
        if isinstance(need, bool) or not isinstance(need, int) or need < 1:
            add((*path, "at_least"), f"expected a whole number of at least 1, got {describe(need)}", GROUP_EXAMPLE)
            ok = False
        if "of" not in value:
            add(path, '"at_least" without "of"', 'list the members in "of": {"at_least": 2, "of": ["a", "b", "c"]}')
            return None
        where: JsonPath = (*path, "of")
        members = value["of"]
    else:
        if "of" in value:
            add((*path, "of"), f'"of" belongs to "at_least", not to "{rule}"', f'write {{"{rule}": [...]}}')
            ok = False
        need, where, members = 1, (*path, rule), value[rule]
    if not isinstance(members, list):
        add(where, f"expected a list of members, got {describe(members)}", GROUP_EXAMPLE)
        return None
    if not members:
        add(where, f"empty {rule} group", "list its members, or remove the group")
        return None
    if len(members) == 1:
        add(where, f"a group of one member ({rule})", "write the edge itself in upstreams: one member needs no group")
        return None
    if rule == "at_least" and isinstance(need, int) and need > len(members):
        add(
            (*path, "at_least"),
            f"at_least {need} of {len(members)} members can never hold",
            f"write at most {len(members)}, or add members",
        )
        ok = False
    found = tuple((item, (*where, i)) for i, item in enumerate(members))
    if rule != "all":
        for item, at in found:
            if is_group(item):
                add(
                    at,
                    f"a group inside an {rule} group",
                    "groups nest one level: an any or at_least group lists edges; put it beside them in upstreams "
                    '(or in an "all" group), e.g. "upstreams": ["required", {"any": ["feed_a", "feed_b"]}]',
                )
                ok = False
    if rule == "all":
        need = len(members)
    cut = _read_cutoff(value, path, rule, need if isinstance(need, int) else 0, found, add)
    if not ok or cut is None:
        return None
    cutoff, minimum, late, at_time = cut
    at_path: JsonPath = (*path, "cutoff") if at_time is not None else ()
    if rule == "all" and (cutoff is not None or at_time is not None):  # **Cutoff**: at_least all of them
        return WrittenGroup(GroupRule.AT_LEAST, len(members), found, cutoff, minimum, late, at_time, at_path)
    kind = None if rule == "all" else GroupRule(rule)
    return WrittenGroup(kind, need if isinstance(need, int) else 1, found, cutoff, minimum, late, at_time, at_path)


def _read_cutoff(
    value: Mapping[str, Any],
    path: JsonPath,
    rule: str,
    need: int,
    members: tuple[tuple[Any, JsonPath], ...],
    add: Add,
) -> tuple[int | None, int, Late, int | None] | None:
    """(cutoff seconds or None, minimum, late, time of day or None) of a group (**Cutoff**); None after reporting
    what is wrong."""
    if "cutoff" not in value:
        for key in ("min", "late"):
            if key in value:
                add(
                    (*path, key),
                    f'"{key}" without "cutoff"',
                    f"it says what happens at the cutoff: add one ({CUTOFF_HINT})",
                )
                return None
        return None, 1, Late.RERUN, None
    if rule == "any":
        add((*path, "cutoff"), "a cutoff on an any group", "an any group already runs with one member: remove it")
        return None
    raw = value["cutoff"]
    at_time: int | None = None
    seconds = parse_shift(raw) if isinstance(raw, str) and ":" not in raw else None
    if isinstance(raw, str) and ":" in raw:
        try:
            at_time = parse_clock(raw)
        except ValueError:
            add((*path, "cutoff"), f"expected a time of day HH:MM (00:00 to 23:59), got {describe(raw)}", CUTOFF_HINT)
            return None
    elif not isinstance(raw, str) or not isinstance(seconds, int) or seconds <= 0 or raw.startswith(("+", "-")):
        add((*path, "cutoff"), f"expected a positive duration, got {describe(raw)}", CUTOFF_HINT)
        return None
    minimum = value.get("min", 1)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        add((*path, "min"), f"expected a whole number of at least 1, got {describe(minimum)}", '"min": 1')
        return None
    if need and minimum >= need:
        add(
            (*path, "min"),
            f"min {minimum} is not below the {need} members the group needs: the cutoff changes nothing",
            f"write at most {need - 1}, or remove the cutoff",
        )
        return None
    if rule == "all" and any(is_group(item) for item, _ in members):
        add((*path, "cutoff"), "a cutoff on an all group that holds groups", "put the cutoff on a group of edges")
        return None
    late = value.get("late", str(Late.RERUN))
    if late not in tuple(Late):
        add((*path, "late"), f"expected rerun or ignore, got {describe(late)}", '"late": "rerun" or "late": "ignore"')
        return None
    return (seconds if isinstance(seconds, int) else None), minimum, Late(late), at_time


COUNT_HINT = 'write "at_least": 20 (that many of the edge\'s mapped partitions are enough)'


def read_count(value: Mapping[str, Any], path: JsonPath, add: Add) -> PartitionCount | None:
    """An edge object's count of its mapped partitions (``at_least``, ``cutoff``, ``min``, ``late``: semantics
    `partition-count`); None when it has none or after reporting what is wrong (``add`` is called then)."""
    if not any(key in value for key in ("at_least", "cutoff", "min", "late")):
        return None
    at_least = value.get("at_least")
    if "at_least" in value and (isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 1):
        add((*path, "at_least"), f"expected a whole number of at least 1, got {describe(at_least)}", COUNT_HINT)
        return None
    found = _read_cutoff(value, path, "at_least", at_least or 0, (), add)
    if found is None:
        return None
    cutoff, minimum, late, at_time = found
    return PartitionCount(at_least, cutoff, minimum, late, at_time)
