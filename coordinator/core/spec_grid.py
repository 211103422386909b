"""Reading a DAG's ``partitions`` grid and the ``{"dag": REF, "offset": k}`` edge form, for the spec loader.

Rules:
1. Pure, like the loader: values in, a :class:`Grid` / an offset out, every problem reported through ``add`` with its
   JSON path and a hint; nothing raises.
2. ``partitions`` is ``{"cron": "<5 fields>", "timezone": "<IANA name>"}`` (timezone default ``UTC``), checked when
   the file loads (croniter for the cron, zoneinfo for the zone), so a typo never reaches the planner.
3. An edge object has ``dag`` (required) and ``offset`` (an integer, default 0) and nothing else. Whether an offset is
   allowed (grids on both sides) needs the whole file; :mod:`coordinator.core.spec` checks that after resolving.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from coordinator.core.grid import DEFAULT_TIMEZONE, Grid, cron_problem, timezone_problem
from coordinator.core.model import NodeId
from coordinator.core.spec_json import JsonPath, json_type

Add = Callable[[JsonPath, str, str], None]
PARTITION_FIELDS = ("cron", "timezone")
EDGE_FIELDS = ("dag", "offset")
CRON_HINT = 'write 5 fields, e.g. "0 * * * *" (hourly) or "0 0 * * *" (daily at midnight)'
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


def read_partitions(value: Any, path: JsonPath, add: Add) -> Grid | None:
    """The grid a ``partitions`` value declares; None after reporting what is wrong."""
    if not isinstance(value, dict):
        add(path, f"expected an object, got {describe(value)}", 'write "partitions": {"cron": "0 0 * * *"}')
        return None
    check_fields(value, path, PARTITION_FIELDS, add)
    cron = value.get("cron")
    ok = True
    if cron is None:
        add(path, 'missing "cron"', CRON_HINT)
        ok = False
    elif not isinstance(cron, str):
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
    return Grid(" ".join(cron.split()), zone)


def read_edge(value: Mapping[str, Any], path: JsonPath, add: Add) -> tuple[str, int | None] | None:
    """(reference text, offset or None when not written) of an edge object; None after reporting what is wrong."""
    check_fields(value, path, EDGE_FIELDS, add)
    ref = value.get("dag")
    offset = value.get("offset")
    ok = True
    if not isinstance(ref, str):
        what = 'missing "dag"' if ref is None else f'"dag" must be a dag id, got {describe(ref)}'
        add(path if ref is None else (*path, "dag"), what, 'write {"dag": "upstream_dag", "offset": -1}')
        ok = False
    if "offset" in value and (isinstance(offset, bool) or not isinstance(offset, int)):
        add((*path, "offset"), f"expected an integer offset, got {describe(offset)}", OFFSET_HINT)
        ok = False
    elif isinstance(offset, int) and abs(offset) > MAX_OFFSET:
        add((*path, "offset"), f"offset {offset} is out of range", f"use at most {MAX_OFFSET} periods either way")
        ok = False
    if not ok:
        return None
    assert isinstance(ref, str)
    return ref, offset


def edge_offsets(
    node: NodeId,
    grid: Grid | None,
    sources: Mapping[NodeId, tuple[JsonPath, int | None]],
    grids: Mapping[NodeId, Grid | None],
    add: Add,
) -> tuple[tuple[NodeId, int], ...]:
    """The non-zero offsets of ``node``'s edges, sorted by source; an offset written on an edge without grids on both
    sides is reported at its ``offset`` key (rule 3). ``sources``: source -> (path of its ``dag`` value, offset)."""
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
