"""Reading a DAG's ``expected_by`` (its per-partition deadline), for the spec loader, into the rule values of
``core/deadline/rules.py`` (:class:`ExpectedBy`, :class:`Level`), which compute the deadline it sets.

Rules (semantics `deadlines-judged`):
- **Pure**, like the loader: a value in, an :class:`ExpectedBy` out, every problem reported through ``add`` with its
  JSON path and a hint; nothing raises.
- **One anchor.** ``expected_by`` has exactly one anchor: ``after_end`` or ``after_start`` (a duration after the
  partition's window end or start) or ``at`` (``HH:MM`` wall-clock in the DAG's grid time zone, ``day_offset`` days
  after the partition's local date, default 0). Wall-clock arithmetic happens in the zone, so a DST change moves the UTC
  instant and not the local time. A time that does not exist that day (inside a spring-forward gap) resolves forward
  like ``zoneinfo`` does (fold 0); an ambiguous one (autumn) is its first occurrence.
- **Optional fields.** Optional: ``warn`` (a slack: ``at_risk`` when the predicted finish is after the deadline minus
  it; default 0), ``duration`` (this DAG's expected run time: a duration, or ``"learned"``, see
  ``core.deadline.states``) and ``from`` (a date or partition before which no partition has a deadline, so declaring one
  does not alert about history). Alerting (``core.deadline.alerts``): ``hold`` (a duration a state must last before its
  handlers run; default 0: at once) and ``realert`` (default false: a state already alerted for a partition is not
  alerted again after a return to ``on_time``).
- **Without a grid** a partition's window is the instant itself: ``after_end`` then means the same as ``after_start``.
- **Not part of the shape.** An ``expected_by`` never changes when a DAG is due, so it is not part of the DAG's shape
  (``graph``'s **Grids in the shape only when present**).
- **Escalation levels.** Escalation (``levels``, optional): a non-empty list of ``{"name", "slack", "handlers"}``, each
  an alert level of its own (``core.deadline.levels``): ``name`` (a short identifier, unique in the list), ``slack``
  (the level's ``warn``: ``at_risk`` for this level when the predicted finish is after the deadline minus it; default
  0), ``handlers`` (DAG references run for this level's transitions; resolved by the loader like ``on_late_of``). Levels
  add alerts, they change nothing else: the DAG's own state, ``warn`` and ``on_late_of`` stay as they are, and a rule
  without ``levels`` keeps its :meth:`ExpectedBy.item` (and the graph digest) unchanged.
- **Task deadlines.** A task deadline (``task``, optional): a task id of this DAG, written like an edge's ``task``; the
  deadline is then judged on that task's state in the partition (``core.deadline.states``' **Task deadlines**) and
  ``duration`` is the task's. Which task ids a DAG has cannot be checked offline; a task id that cannot be part of a key
  is an error. A rule without ``task`` keeps its item (and the graph digest) unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

# The loader and the schema read these through the parser (explicit re-exports); everything else imports rules.
from coordinator.core.deadline.rules import ANCHORS as ANCHORS
from coordinator.core.deadline.rules import ExpectedBy as ExpectedBy
from coordinator.core.deadline.rules import Level, is_task_id
from coordinator.core.duration import parse_shift
from coordinator.core.model import canonical_partition
from coordinator.core.spec.source import JsonPath

Add = Callable[[JsonPath, str, str], None]
EXPECTED_BY_FIELDS = (*ANCHORS, "day_offset", "warn", "duration", "from", "hold", "realert", "levels", "task")
TASK_HINT = 'write "task": "load" (a task id of this DAG: letters, digits, _ . -)'
LEVEL_FIELDS = ("name", "slack", "handlers")
LEVELS_HINT = (
    'write "levels": [{"name": "warn", "slack": "2h", "handlers": ["notify"]}, {"name": "page", "handlers": ["pager"]}]'
)
#: A level name is part of an etcd key and a run id: the characters of a DAG id, short.
_LEVEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
LEARNED = "learned"
EXPECTED_BY_HINT = 'write "expected_by": {"after_end": "6h"} or {"at": "10:00", "day_offset": 1, "warn": "30m"}'
DURATION_HINT = 'write a duration such as "6h", "45m" or "1d2h"'
_AT_RE = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")
#: A day offset beyond this is a typo (a monthly report due a year later is still within it).
MAX_DAY_OFFSET = 366


def _duration(raw: Any, path: JsonPath, add: Add, *, signed: bool = False) -> int | None:
    if not isinstance(raw, str):
        add(path, f"expected a duration string, got {type(raw).__name__}", DURATION_HINT)
        return None
    parsed = parse_shift(raw)
    if isinstance(parsed, str):
        add(path, parsed, DURATION_HINT)
        return None
    if parsed < 0 and not signed:
        add(path, f"{raw!r} is negative", "a deadline is after the partition: drop the '-'")
        return None
    return parsed


def read_expected_by(value: Any, path: JsonPath, add: Add) -> ExpectedBy | None:
    """The rule an ``expected_by`` value declares; None after reporting what is wrong."""
    if not isinstance(value, Mapping):
        add(path, f"expected an object, got {type(value).__name__}", EXPECTED_BY_HINT)
        return None
    ok = True
    for key in value:
        if key not in EXPECTED_BY_FIELDS:
            add((*path, key), f"unknown field {key!r}", f"allowed: {', '.join(EXPECTED_BY_FIELDS)}")
            ok = False
    anchors = [name for name in ANCHORS if name in value]
    if len(anchors) != 1:
        what = "no anchor" if not anchors else f"{len(anchors)} anchors ({', '.join(anchors)})"
        add(path, f"{what}: expected exactly one of after_end, after_start, at", EXPECTED_BY_HINT)
        return None
    anchor = anchors[0]
    seconds, at = 0, (0, 0)
    if anchor == "at":
        raw = value["at"]
        match = _AT_RE.match(raw) if isinstance(raw, str) else None
        if match is None:
            add((*path, "at"), f"{raw!r} is not a wall-clock time HH:MM", 'write "at": "10:00" (24-hour clock)')
            ok = False
        else:
            at = (int(match["h"]), int(match["m"]))
    else:
        parsed = _duration(value[anchor], (*path, anchor), add)
        ok = ok and parsed is not None
        seconds = parsed or 0
    day_offset = value.get("day_offset", 0)
    if "day_offset" in value and anchor != "at":
        add((*path, "day_offset"), '"day_offset" without "at"', 'remove it, or write "at": "HH:MM" with it')
        ok = False
    elif isinstance(day_offset, bool) or not isinstance(day_offset, int) or not 0 <= day_offset <= MAX_DAY_OFFSET:
        add((*path, "day_offset"), f"expected 0..{MAX_DAY_OFFSET} days, got {day_offset!r}", "write it unquoted")
        ok = False
    warn = _duration(value["warn"], (*path, "warn"), add) if "warn" in value else 0
    ok = ok and warn is not None
    duration, learned = None, False
    if "duration" in value:
        if value["duration"] == LEARNED:
            learned = True
        else:
            duration = _duration(value["duration"], (*path, "duration"), add)
            ok = ok and duration is not None
    start = None
    if "from" in value:
        try:
            start = canonical_partition(str(value["from"])) if isinstance(value["from"], str) else None
        except ValueError:
            start = None
        if start is None:
            add((*path, "from"), f"{value['from']!r} is not a date", 'write "from": "2026-01-01"')
            ok = False
    hold = _duration(value["hold"], (*path, "hold"), add) if "hold" in value else 0
    ok = ok and hold is not None
    realert = value.get("realert", False)
    if not isinstance(realert, bool):
        add((*path, "realert"), f"expected true or false, got {realert!r}", 'write "realert": true (unquoted)')
        ok = False
    levels = read_levels(value["levels"], (*path, "levels"), add) if "levels" in value else ()
    ok = ok and levels is not None
    task = value.get("task")
    if "task" in value and not is_task_id(task):
        add((*path, "task"), f"{task!r} is not a task id", TASK_HINT)
        ok = False
    if not ok or levels is None:
        return None
    return ExpectedBy(anchor, seconds, at, day_offset, warn or 0, duration, learned, start, hold or 0, realert, levels,
                      task)  # fmt: skip


def read_levels(value: Any, path: JsonPath, add: Add) -> tuple[Level, ...] | None:
    """**Escalation levels**' ``levels``; None after reporting what is wrong (every problem, not only the first)."""
    if not isinstance(value, list) or not value:
        what = "an empty list" if isinstance(value, list) else type(value).__name__
        add(path, f"expected a non-empty list of levels, got {what}", LEVELS_HINT)
        return None
    ok, levels, seen = True, [], set[str]()
    for index, raw in enumerate(value):
        where: JsonPath = (*path, index)
        if not isinstance(raw, Mapping):
            add(where, f"expected an object, got {type(raw).__name__}", LEVELS_HINT)
            ok = False
            continue
        for key in raw:
            if key not in LEVEL_FIELDS:
                add((*where, key), f"unknown field {key!r}", f"allowed: {', '.join(LEVEL_FIELDS)}")
                ok = False
        name = raw.get("name")
        if not isinstance(name, str) or not _LEVEL_RE.match(name):
            add(
                (*where, "name"),
                f"{name!r} is not a level name",
                'write "name": "warn" (a letter, then letters, digits, _ . -; at most 40)',
            )
            ok = False
        elif name in seen:
            add((*where, "name"), f"level {name!r} is listed twice", "give each level its own name")
            ok = False
        else:
            seen.add(name)
        slack = _duration(raw["slack"], (*where, "slack"), add) if "slack" in raw else 0
        ok = ok and slack is not None
        handlers = raw.get("handlers", [])
        if isinstance(handlers, str):
            handlers = [handlers]
        if not isinstance(handlers, list) or not handlers or not all(isinstance(h, str) for h in handlers):
            add((*where, "handlers"), f"expected a non-empty list of dag ids, got {handlers!r}",
                'write "handlers": ["notify_owner"] (the DAGs this level runs)')  # fmt: skip
            ok = False
        elif ok:
            levels.append(Level(name, slack or 0, tuple(handlers)))  # type: ignore[arg-type]
    return tuple(levels) if ok else None
