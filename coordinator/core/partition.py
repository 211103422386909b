"""The three canonical forms of a partition, as the etcd keys spell them (``docs/keys.md``, "Partitions").

A partition is what a run stands for. Airflow 2 and Airflow 3's scheduled runs stand for a logical date; Airflow 3's
partitioned runs (AIP-76) stand for a partition key, which is a time (``CronPartitionTimetable``), a segment that is no
time (``eu``), or both (a day of a region). The key layout grows by two forms and keeps the first exactly:

- **Time**: ``YYYY-MM-DDTHH:MM:SSZ``, UTC, whole seconds (the only form before segments; unchanged).
- **Segment**: a name that is not a time: Airflow's own characters for names (``[A-Za-z0-9_.-]``, never ``.`` or
  ``..``), at most :data:`SEGMENT_MAX` characters, and never something that reads as a date (``2026-01-01`` is a
  date, so it cannot be a segment: one string, one meaning).
- **Time and segment**: ``{time}~{segment}`` (``2026-01-01T00:00:00Z~eu``). ``~`` is outside both forms, so the split
  is exact; it is also allowed in Airflow run ids, etcd keys, URLs and shell words unquoted (Airflow's own product key
  separator ``|`` is none of those; the plugin and the REST trigger translate, see :func:`airflow_key_parts`).

Rules:
- **Pure**: strings in, strings out; no I/O, no clock.
- **Time fast path**: a time partition is recognised by its shape before anything is parsed (the view reads millions of
  keys; a segment costs a regex only when the shape says it is not a time).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

#: Separates the time and the segment of a **Time and segment** partition.
SEGMENT_SEP = "~"
#: Longest segment (Airflow's ``partition_key`` column is 250 characters; a key of both forms must fit in it).
SEGMENT_MAX = 200
_SEGMENT_RE = re.compile(r"\A(?!\.\.?\Z)[A-Za-z0-9_.-]+\Z")
#: Something a reader would take for a date or a time, even a wrong one (``2026-01-01``, ``2026-1-1``,
#: ``2026-01-01T00:00``): never a segment, so a date written wrong stays an error instead of becoming a segment.
_TIME_LIKE = re.compile(r"\A\d{4}-")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_SHAPE = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
SEGMENT_HINT = "a segment is a name of letters, digits, '_', '.', '-' (e.g. eu), not a date, at most 200 characters"


def _is_time(text: str) -> bool:
    """**Time**: the canonical UTC form exactly (``canonical_partition(text) == text``), read without exceptions."""
    if _TIME_SHAPE.match(text) is None:
        return False
    try:
        return datetime.strptime(text, _TIME_FORMAT).strftime(_TIME_FORMAT) == text
    except ValueError:
        return False


def segment_problem(text: str) -> str | None:
    """What keeps ``text`` from being a **Segment**, or None."""
    if not text:
        return "a segment is empty"
    if len(text) > SEGMENT_MAX:
        return f"segment {text[:40]!r}... is longer than {SEGMENT_MAX} characters"
    if _SEGMENT_RE.match(text) is None:
        return f"segment {text!r} has characters outside letters, digits, '_', '.', '-'"
    if _TIME_LIKE.match(text) is not None:
        return f"segment {text!r} reads as a date; a time is written 2026-01-01T00:00:00Z"
    return None


def split_partition(partition: str) -> tuple[str | None, str | None]:
    """(time, segment) of a canonical partition of any form; (None, None) for text that is none of them."""
    if len(partition) == 20 and _is_time(partition):  # **Time fast path**
        return partition, None
    time, sep, segment = partition.partition(SEGMENT_SEP)
    if sep:
        if _is_time(time) and segment_problem(segment) is None:
            return time, segment
        return None, None
    if segment_problem(partition) is None:
        return None, partition
    return None, None


def is_partition(text: str) -> bool:
    """Whether ``text`` is a canonical partition of one of the three forms."""
    time, segment = split_partition(text)
    return time is not None or segment is not None


def join_partition(time: str | None, segment: str | None) -> str:
    """The canonical partition of a (time, segment) pair, at least one of them given (both already canonical)."""
    if time is None:
        if segment is None:
            raise ValueError("a partition needs a time, a segment or both")
        return segment
    return time if segment is None else f"{time}{SEGMENT_SEP}{segment}"


def partition_time(partition: str) -> datetime | None:
    """The UTC time of a partition (a **Time and segment** partition's time), None for a **Segment**."""
    time = partition.partition(SEGMENT_SEP)[0] if SEGMENT_SEP in partition else partition
    if not _is_time(time):
        return None
    return datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC)


def has_segment(partition: str) -> bool:
    """Whether a canonical partition carries a segment (**Segment** or **Time and segment**); cheap."""
    return not (len(partition) == 20 and partition[-1] == "Z" and partition[10] == "T")


#: Airflow's separator of the parts of a product partition key (``ProductMapper(delimiter="|")``).
AIRFLOW_KEY_SEP = "|"


def airflow_key_parts(key: str) -> tuple[list[str], list[str]]:
    """Airflow's ``partition_key`` cut at ``|`` into its time-like parts and its other parts (the segment): a part is
    time-like when it reads as a date or a date-time (``2026-11-26T17:00:00``, ``2026-11-26``), whatever its zone,
    which the run's ``partition_date`` decides, not the text."""
    times: list[str] = []
    others: list[str] = []
    for part in key.split(AIRFLOW_KEY_SEP):
        (times if _TIME_LIKE.match(part) is not None else others).append(part)
    return times, others


#: ``CronPartitionTimetable``'s default ``key_format``: how Airflow spells a partition's time in a partition key.
AIRFLOW_KEY_FORMAT = "%Y-%m-%dT%H:%M:%S"


def airflow_partition_key(partition: str, key_format: str | None, timezone: str = "UTC") -> str | None:
    """The ``partition_key`` to trigger a run of ``partition`` with (Airflow 3.2+), or None to trigger by logical date
    alone (a time partition of a DAG that declares no ``key_format``: today's trigger, unchanged).

    A segment is sent as it is (``eu``). A time is formatted with ``key_format`` in ``timezone`` (the zone of the
    DAG's grid), as ``CronPartitionTimetable`` formats its own keys and decodes them into the run's
    ``partition_date``; without a ``key_format`` it is written canonical, in UTC with its ``Z``
    (``2026-01-01T00:00:00Z``), so whoever reads the key knows its instant without knowing the DAG. A time and a
    segment are joined with Airflow's product separator (``2026-01-01T00:00:00Z|eu``). A run with a segment is
    triggered without a logical date (:func:`trigger_logical_date`): Airflow keeps one run per logical date, and the
    segments of one day share it."""
    time, segment = split_partition(partition)
    if time is None and segment is None:
        raise ValueError(f"{partition!r} is not a canonical partition")
    if segment is None and key_format is None:
        return None
    parts: list[str] = []
    if time is not None:
        if key_format is None:
            parts.append(time)
        else:
            at = datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
            parts.append(at.strftime(key_format))
    if segment is not None:
        parts.append(segment)
    return AIRFLOW_KEY_SEP.join(parts)


def trigger_logical_date(partition: str) -> datetime | None:
    """The logical date a run of ``partition`` is triggered with: its time when it has no segment, else None (the
    segments of one day would share one logical date, and Airflow allows one run per logical date)."""
    time, segment = split_partition(partition)
    if segment is not None or time is None:
        return None
    return datetime.strptime(time, _TIME_FORMAT).replace(tzinfo=UTC)


def key_time(part: str) -> str | None:
    """The canonical time of a partition key's part that says its own zone (``2026-01-01T00:00:00Z``,
    ``2026-01-01T01:00:00+01:00``), or None: a time without a zone (``2026-01-01T00:00:00``) is not read, its zone is
    the timetable's, which only the run's ``partition_date`` says."""
    if _TIME_LIKE.match(part) is None:
        return None
    try:
        at = datetime.fromisoformat(part.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None or at.utcoffset() is None or at.microsecond:
        return None
    return at.astimezone(UTC).strftime(_TIME_FORMAT)


def is_segment_only(partition: str) -> bool:
    """Whether a canonical partition is a **Segment** alone (no time: no deadline, no cutoff, no retention by age)."""
    return has_segment(partition) and SEGMENT_SEP not in partition
