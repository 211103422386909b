"""Reading a DAG's ``partitions`` grid and the ``{"dag": REF, "offset": k}`` edge form, for the spec loader.

Rules:
- **Pure**, like the loader: values in, a :class:`Grid` / an offset out, every problem reported through ``add`` with its
  JSON path and a hint; nothing raises.
- **Partitions.** ``partitions`` is ``{"cron": "<5 fields>", "timezone": "<IANA name>"}`` (timezone default ``UTC``),
  checked when the file loads (croniter for the cron, zoneinfo for the zone), so a typo never reaches the planner.
- **Edge objects.** An edge object has ``dag`` (required), ``offset`` (an integer, default 0), ``shift`` (a signed
  duration, ``coordinator.core.duration``), ``member`` (``"first"``, ``"last"`` or an integer index), ``task`` (an
  Airflow task id) and ``condition`` (``"success"`` or ``"finished"``), and nothing else. Whether an offset or a member
  is allowed (grids on both sides) needs the whole file; :mod:`coordinator.core.spec.resolve` checks that after
  resolving.
- **Cron presets.** A cron preset (``@daily`` ...) is stored as its 5-field cron (``coordinator.core.grid``'s
  **Cron presets**).
- **Mappings that never map.** A mapping that can never map anything is an error (:func:`mapping_problem`): a shift that
  never lands on the upstream's grid, a member index no window has. "Never" is judged on the dependent's grid points
  over a fixed sample (:data:`SAMPLE_FROM`, four years or :data:`SAMPLE_POINTS` points: a daily grid's DST changes, a
  yearly grid's leap day); a valid mapping stops at its first hit, so checking costs nothing for the files that pass.
- **Data interval.** A DAG's ``data_interval`` is ``"period"`` or ``"point"`` (``coordinator.core.data_interval``);
  ``"period"`` needs the DAG's grid (a period is the window between two of its points).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.core.data_interval import IntervalKind
from coordinator.core.duration import SHIFT_HINT, format_shift, parse_shift
from coordinator.core.graph import Condition
from coordinator.core.grid import (
    DEFAULT_TIMEZONE,
    EdgeMap,
    Grid,
    SegmentMap,
    cron_problem,
    normalise_cron,
    timezone_problem,
    upstream_partitions,
)
from coordinator.core.model import NAME_RE, PARTITION_FORMAT, NodeId
from coordinator.core.partition import segment_problem
from coordinator.core.segments import Segments
from coordinator.core.spec.source import JsonPath, json_type

Add = Callable[[JsonPath, str, str], None]
PARTITION_FIELDS = ("cron", "timezone", "segments", "key_format")
#: The fields an edge object may count its mapped partitions with (read by ``spec.conditions.read_count``).
COUNT_FIELDS = ("at_least", "cutoff", "min", "late")
EDGE_FIELDS = ("dag", "offset", "shift", "member", "task", "condition", "segments", *COUNT_FIELDS)
SEGMENTS_HINT = 'write "segments": ["eu", "us", "apac"] (names of letters, digits, \'_\', \'.\', \'-\'; not dates)'
KEY_FORMAT_HINT = 'write Airflow\'s key_format of the DAG\'s timetable, e.g. "key_format": "%Y-%m-%dT%H:%M:%S"'
SEGMENT_MAP_HINT = 'write "same" (each segment needs the same segment) or "all" (every segment of the upstream)'

DATA_INTERVAL_HINT = (
    "write \"period\" (the run of P covers [P, next P) on the DAG's grid: Airflow 2's cron schedules, "
    'CronDataIntervalTimetable) or "point" ([P, P]: CronTriggerTimetable, schedule=None)'
)
CRON_HINT = (
    'write 5 fields, e.g. "0 * * * *" (hourly) or "0 0 * * *" (daily at midnight), or a preset: @hourly, @daily, '
    "@weekly, @monthly, @yearly"
)
#: Airflow's task ids (KEY_REGEX); a task in a task group is ``group.task``.
TASK_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
TASK_HINT = 'write the Airflow task id, e.g. "task": "load" or "task": "my_group.load"'
MEMBERS = {"first": 0, "last": -1}
MEMBER_HINT = 'write "first", "last" or an index into the window (0-based; -1 is the last)'
CONDITION_HINT = 'write "success" (the default) or "finished" (success or failed: the upstream merely finished)'


#: Where the sample of **Mappings that never map** starts (a Monday, a leap year); fixed so validation is deterministic.
SAMPLE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
SAMPLE_SPAN = timedelta(days=4 * 366)
SAMPLE_POINTS = 500


@dataclass(frozen=True, slots=True)
class WrittenEdge:
    """An edge object as written (None: the field is absent)."""

    ref: str
    offset: int | None = None
    shift: int | None = None
    member: int | None = None
    task: str | None = None
    condition: Condition | None = None
    segments: SegmentMap | None = None

    @property
    def extended(self) -> bool:
        return (
            self.segments is not None
            or self.shift is not None
            or self.member is not None
            or self.task is not None
            or (self.condition is not None and self.condition is not Condition.SUCCESS)
        )


TIMEZONE_HINT = 'use an IANA name such as "UTC", "Europe/Berlin" or "America/New_York"'
#: Each period of an offset is one cron step when mapping; a larger shift is a typo rather than a dependency.
MAX_OFFSET = 1000
OFFSET_HINT = 'write a whole number of the DAG\'s periods, e.g. "offset": -1 for the previous one'


def describe(value: Any) -> str:
    """A value for a message: scalars as JSON (shortened), containers by kind."""
    kind = json_type(value)
    if kind in ("object", "array"):
        return f"an {kind}"
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def check_fields(body: Mapping[str, Any], path: JsonPath, allowed: Sequence[str], add: Add) -> None:
    """Report every key not in ``allowed``, with a suggestion for a likely typo."""
    for key in body:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        add((*path, key), f"unknown field {key!r}", f"{hint} (allowed: {', '.join(allowed)})")


@dataclass(frozen=True, slots=True)
class DeclaredPartitions:
    """What a ``partitions`` value declares: a grid, segments (semantics `segment-partitions`), a key format."""

    grid: Grid | None = None
    segments: Segments | None = None
    key_format: str | None = None


def read_partitions(value: Any, path: JsonPath, add: Add) -> Grid | None:
    """The grid a ``partitions`` value declares; None after reporting what is wrong (a lineage job's partitions:
    a grid only)."""
    found = read_declared_partitions(value, path, add)
    if found is not None and found.segments is not None:
        add((*path, "segments"), "segments on an OpenLineage job", "remove them: a job's runs are times")
        return None
    return None if found is None else found.grid


def read_declared_partitions(value: Any, path: JsonPath, add: Add) -> DeclaredPartitions | None:
    """What a DAG's ``partitions`` value declares; None after reporting what is wrong (**Partitions**)."""
    if not isinstance(value, dict):
        add(path, f"expected an object, got {describe(value)}", 'write "partitions": {"cron": "0 0 * * *"}')
        return None
    check_fields(value, path, PARTITION_FIELDS, add)
    ok = True
    segments = _read_segments(value["segments"], (*path, "segments"), add) if "segments" in value else None
    if "segments" in value and segments is None:
        ok = False
    key_format = value.get("key_format")
    if "key_format" in value and not _key_format_ok(key_format):
        add(
            (*path, "key_format"),
            f"expected a strftime format with a date, got {describe(key_format)}",
            KEY_FORMAT_HINT,
        )
        ok = False
    cron = value.get("cron")
    if cron is None and "segments" not in value:
        add(path, 'missing "cron"', CRON_HINT)
        ok = False
    if cron is None:
        if "timezone" in value:
            add(
                (*path, "timezone"),
                '"timezone" without "cron"',
                "a zone places a cron's points: add a cron or remove it",
            )
            ok = False
        if key_format is not None and ok:
            add(
                (*path, "key_format"),
                '"key_format" without "cron"',
                "a key format writes a time: add the cron or remove it",
            )
            ok = False
        if not ok:
            return None
        assert isinstance(segments, tuple)
        return DeclaredPartitions(None, Segments(segments, False), None)
    if not isinstance(cron, str):
        add((*path, "cron"), f"expected a cron expression, got {describe(cron)}", CRON_HINT)
        ok = False
    elif (problem := cron_problem(cron)) is not None:
        add((*path, "cron"), f"invalid cron {cron!r}: {problem}", CRON_HINT)
        ok = False
    zone = value.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(zone, str):
        add((*path, "timezone"), f"expected a time zone name, got {describe(zone)}", TIMEZONE_HINT)
        ok = False
    elif timezone_problem(zone) is not None:
        add((*path, "timezone"), f"unknown time zone {zone!r}", TIMEZONE_HINT)
        ok = False
    if not ok:
        return None
    assert isinstance(cron, str) and isinstance(zone, str)
    grid = Grid(normalise_cron(cron), zone)
    declared = Segments(segments, True) if segments is not None else None
    return DeclaredPartitions(grid, declared, key_format if isinstance(key_format, str) else None)


def read_data_interval(value: Any, path: JsonPath, grid: Grid | None, add: Add) -> IntervalKind | None:
    """A DAG's ``data_interval`` (**Data interval**); None after reporting what is wrong."""
    try:
        kind = IntervalKind(value) if isinstance(value, str) else None
    except ValueError:
        kind = None
    if kind is None:
        add(path, f'expected "period" or "point", got {describe(value)}', DATA_INTERVAL_HINT)
        return None
    if kind is IntervalKind.PERIOD and grid is None:
        add(
            path,
            '"data_interval": "period" without a grid',
            'a period is a grid\'s [P, next P): add "partitions": {"cron": "<the DAG\'s schedule>"} or write "point"',
        )
        return None
    return kind


def _read_segments(raw: Any, path: JsonPath, add: Add) -> tuple[str, ...] | None:
    """Sorted distinct segment names, at least one; None after reporting."""
    if not isinstance(raw, list) or not raw:
        add(path, f"expected a non-empty list of segment names, got {describe(raw)}", SEGMENTS_HINT)
        return None
    ok = True
    for index, name in enumerate(raw):
        problem = segment_problem(name) if isinstance(name, str) else f"expected a name, got {describe(name)}"
        if problem is not None:
            add((*path, index), problem, SEGMENTS_HINT)
            ok = False
        elif raw.index(name) != index:
            add((*path, index), f"segment {name!r} is listed twice", "list each segment once")
            ok = False
    return tuple(sorted(raw)) if ok else None


def _key_format_ok(value: Any) -> bool:
    """A strftime format that writes at least the year (a key Airflow can decode back to its date)."""
    if not isinstance(value, str) or "%Y" not in value or len(value) > 100:
        return False
    try:
        return bool(SAMPLE_FROM.strftime(value))
    except ValueError:
        return False


def read_edge(value: Mapping[str, Any], path: JsonPath, add: Add) -> WrittenEdge | None:
    """The fields of an edge object (**Edge objects**); None after reporting what is wrong."""
    check_fields(value, path, EDGE_FIELDS, add)
    problems: list[JsonPath] = []

    def note(where: JsonPath, what: str, hint: str) -> None:
        problems.append(where)
        add(where, what, hint)

    ref = value.get("dag")
    offset = value.get("offset")
    if not isinstance(ref, str):
        what = 'missing "dag"' if ref is None else f'"dag" must be a dag id, got {describe(ref)}'
        note(path if ref is None else (*path, "dag"), what, 'write {"dag": "upstream_dag", "offset": -1}')
    if "offset" in value and (isinstance(offset, bool) or not isinstance(offset, int)):
        note((*path, "offset"), f"expected an integer offset, got {describe(offset)}", OFFSET_HINT)
    elif isinstance(offset, int) and abs(offset) > MAX_OFFSET:
        note((*path, "offset"), f"offset {offset} is out of range", f"use at most {MAX_OFFSET} periods either way")
    shift = _read_shift(value["shift"], (*path, "shift"), note) if "shift" in value else None
    member = _read_member(value["member"], (*path, "member"), note) if "member" in value else None
    task = _read_task(value["task"], (*path, "task"), note) if "task" in value else None
    condition = _read_condition(value["condition"], (*path, "condition"), note) if "condition" in value else None
    segments = _read_segment_map(value["segments"], (*path, "segments"), note) if "segments" in value else None
    if problems:
        return None
    assert isinstance(ref, str) and (offset is None or isinstance(offset, int))
    return WrittenEdge(ref, offset, shift, member, task, condition, segments)


def _read_segment_map(raw: Any, path: JsonPath, add: Add) -> SegmentMap | None:
    if isinstance(raw, str) and raw in tuple(SegmentMap):
        return SegmentMap(raw)
    add(path, f"expected same or all, got {describe(raw)}", SEGMENT_MAP_HINT)
    return None


def _read_shift(raw: Any, path: JsonPath, add: Add) -> int | None:
    """Seconds; None after reporting."""
    if not isinstance(raw, str):
        add(path, f"expected a duration string, got {describe(raw)}", SHIFT_HINT)
        return None
    parsed = parse_shift(raw)
    if isinstance(parsed, str):
        add(path, f"invalid shift: {parsed}", SHIFT_HINT)
        return None
    return parsed


def _read_member(raw: Any, path: JsonPath, add: Add) -> int | None:
    if isinstance(raw, str) and raw in MEMBERS:
        return MEMBERS[raw]
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) <= MAX_OFFSET:
        return raw
    add(path, f"expected first, last or an index, got {describe(raw)}", MEMBER_HINT)
    return None


def _read_task(raw: Any, path: JsonPath, add: Add) -> str | None:
    # NAME_RE as well: TASK_RE is also the JSON schema's pattern, which cannot say "not . or .." or "no newline".
    if isinstance(raw, str) and TASK_RE.match(raw) and NAME_RE.match(raw) and len(raw) <= 250:
        return raw
    add(path, f"expected an Airflow task id, got {describe(raw)}", TASK_HINT)
    return None


def _read_condition(raw: Any, path: JsonPath, add: Add) -> Condition | None:
    if isinstance(raw, str) and raw in tuple(Condition):
        return Condition(raw)
    add(path, f"expected success or finished, got {describe(raw)}", CONDITION_HINT)
    return None


def edge_offsets(
    node: NodeId,
    grid: Grid | None,
    sources: Mapping[NodeId, tuple[JsonPath, int | None]],
    grids: Mapping[NodeId, Grid | None],
    add: Add,
) -> tuple[tuple[NodeId, int], ...]:
    """The non-zero offsets of ``node``'s edges, sorted by source; an offset written on an edge without grids on both
    sides is reported at its ``offset`` key (**Edge objects**). ``sources``: source -> (path of its ``dag`` value,
    offset)."""
    found = []
    for src, (path, offset) in sources.items():
        if offset is None:
            continue
        if grid is None or grids.get(src) is None:
            ungridded = src if grid is not None else node
            add(
                (*path[:-1], "offset"),
                f"offset on an edge without grids on both sides ({ungridded} has no partitions)",
                'declare "partitions": {"cron": ...} on both DAGs, or remove "offset" (without grids the edge '
                "joins equal logical dates)",
            )
        elif offset:
            found.append((src, offset))
    return tuple(sorted(found))


def _sample(grid: Grid) -> Iterator[datetime]:
    """Grid points from :data:`SAMPLE_FROM` on (**Mappings that never map**), the first one included; lazily, so a check
    stops at its first hit."""
    point = grid.floor(SAMPLE_FROM)
    for _ in range(SAMPLE_POINTS):
        yield point
        point = grid.next(point)
        if point - SAMPLE_FROM >= SAMPLE_SPAN:
            return


def mapping_problem(down: Grid | None, up: Grid | None, mapping: EdgeMap, source: str) -> tuple[str, str] | None:
    """(what, hint) when ``mapping`` can never map a partition of D (**Mappings that never map**); None when it can or
    cannot be judged (no grid on the dependent's side: its partitions are whatever dates runs have)."""
    if down is None or (up is None and mapping.member is None):
        return None
    if mapping.member is None and mapping.shift is not None:
        assert up is not None
        return _shift_problem(down, up, mapping.shift, source)
    if up is None or mapping.member is None:
        return None
    largest = 0
    for point in _sample(down):
        window = upstream_partitions(down, up, EdgeMap(mapping.offset, mapping.shift), point.strftime(PARTITION_FORMAT))
        largest = max(largest, len(window))
        if -largest <= mapping.member < largest:
            return None
    if largest == 0:
        return f"no partition of {source} ({up}) ever falls in this DAG's windows ({down})", "check both crons"
    return (
        f"member {mapping.member} never exists: a window of {source} ({up}) has at most {largest} partitions",
        f'use an index from 0 to {largest - 1} (or -{largest} to -1), or "first" / "last"',
    )


def _shift_problem(down: Grid, up: Grid, shift: int, source: str) -> tuple[str, str] | None:
    delta = timedelta(seconds=shift)
    if any(up.contains(point + delta) for point in _sample(down)):
        return None
    start = down.floor(SAMPLE_FROM)
    first = start + delta
    nearest = sorted(
        {int((up.floor(first) - start).total_seconds()), int((up.next(first) - start).total_seconds())},
        key=lambda s: (abs(s - shift), s),
    )
    shown = " or ".join(f'"{format_shift(s)}"' for s in nearest)
    return (
        f"shift \"{format_shift(shift)}\" never lands on {source}'s grid ({up}): this DAG's partitions ({down}) "
        "plus the shift are never a point of it, so nothing would ever map",
        f"the nearest shifts that land are {shown}",
    )
