"""Which partitions an Airflow DAG run stands for (semantics `asset-triggered-partitions`): the one rule the plugin
(from Airflow's ORM or the Task SDK) and the REST audit (from the API's answers) both apply, so the key a run is
recorded under never depends on who recorded it.

Rules, in order (the first that gives a partition decides):

1. **Time**: the run's ``logical_date``; else its ``partition_date``; else the time part of its ``partition_key`` when
   that part says its own zone (:func:`~coordinator.core.partition.key_time`: ``2026-01-01T00:00:00Z``, how the
   coordinator writes a key without a ``key_format``). A time part without a zone and no ``partition_date`` is not
   read: its zone is the timetable's, which only ``partition_date`` says.
2. **Segment**: the parts of ``partition_key`` that are not time-like, joined by Airflow's ``|``
   (:func:`~coordinator.core.partition.airflow_key_parts`); it must be a valid segment.
3. **Own partition**: with a time or a segment, the run stands for ``join_partition(time, segment)``. A run with a
   logical date and no segment in its key stands for that date exactly as before partition keys existed.
4. **Consumed partitions**: an asset-triggered run (``run_type`` ``asset_triggered``) with none of the above stands
   for the partitions of the asset events it consumed: each event's source run by all these rules (an
   asset-triggered source stands for what it consumed), else the event's own ``partition_key`` by **Time** to **Own
   partition**. Each distinct partition counts once: a run Airflow fed with events of several dates stands for each
   of them, never for an invented one.
5. **Unrecorded**: anything else stands for no partition, with a reason (:class:`Unrecorded`) the caller counts and
   logs: no date, key or consumed partition at all; a key that is neither a readable time nor a valid segment; a date
   the key layout cannot name (sub-second, naive).

Pure: typed values in, typed values out; no Airflow, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from coordinator.core.model import canonical_partition
from coordinator.core.partition import AIRFLOW_KEY_SEP, airflow_key_parts, join_partition, key_time, segment_problem

#: Airflow's ``DagRunType.ASSET_TRIGGERED`` value (Airflow 2's ``dataset_triggered`` runs always have a logical date).
ASSET_TRIGGERED = "asset_triggered"


@dataclass(frozen=True, slots=True)
class ConsumedEvent:
    """One asset event a run consumed: its own ``partition_key`` and, when it could be read, its source run."""

    partition_key: str | None = None
    source: AirflowRun | None = None


@dataclass(frozen=True, slots=True)
class AirflowRun:
    """What an Airflow DAG run says about its partition (the ``dag_run`` columns and its consumed events)."""

    logical_date: datetime | None = None
    partition_date: datetime | None = None
    partition_key: str | None = None
    run_type: str = ""
    #: The events of an asset-triggered run (empty for every other run, and when nobody read them).
    consumed: tuple[ConsumedEvent, ...] = ()


class Unrecorded(StrEnum):
    """Why a run stands for no partition (**Unrecorded**); the values are the ``reason=`` of ``plugin.not_recorded``."""

    NO_PARTITION = "no_partition"  # no date, no key, no consumed partition
    UNUSABLE_PARTITION_KEY = "unusable_partition_key"  # a key that is neither a readable time nor a segment
    UNNAMEABLE_DATE = "unnameable_date"  # a date the key layout cannot name (sub-second, naive)


@dataclass(frozen=True, slots=True)
class RunPartitions:
    """The partitions a run stands for (sorted, distinct; empty when ``unrecorded`` says why)."""

    partitions: tuple[str, ...] = ()
    unrecorded: Unrecorded | None = None
    #: What a person needs to see why (the problem with the key or date, or how many events had no partition).
    detail: str = ""
    #: True when the partitions are the consumed events' (**Consumed partitions**).
    consumed: bool = False


def _problem(reason: Unrecorded, detail: str) -> RunPartitions:
    return RunPartitions(unrecorded=reason, detail=detail)


def own_partition(run: AirflowRun) -> RunPartitions:
    """**Time**, **Segment**, **Own partition** (and **Unrecorded**) for ``run``'s own columns, its consumed events
    not looked at."""
    time: str | None = None
    try:
        if run.logical_date is not None:
            time = canonical_partition(run.logical_date)
        elif run.partition_date is not None:
            time = canonical_partition(run.partition_date)
    except ValueError as exc:
        return _problem(Unrecorded.UNNAMEABLE_DATE, f"{type(exc).__name__}: {exc}")
    key = run.partition_key
    if not key:
        if time is None:
            return _problem(Unrecorded.NO_PARTITION, "no logical date, partition date or partition key")
        return RunPartitions((time,))
    times, others = airflow_key_parts(key)
    if time is None and times:
        read = key_time(times[0]) if len(times) == 1 else None
        if read is None:
            return _problem(
                Unrecorded.UNUSABLE_PARTITION_KEY,
                f"partition key {key!r} has a time without a zone and the run has no partition date",
            )
        time = read
    segment = AIRFLOW_KEY_SEP.join(others) if others else None
    if segment is not None and (problem := segment_problem(segment)) is not None:
        return _problem(Unrecorded.UNUSABLE_PARTITION_KEY, f"partition key {key!r}: {problem}")
    if time is None and segment is None:  # pragma: no cover - a non-empty key has a part of one kind or the other
        return _problem(Unrecorded.UNUSABLE_PARTITION_KEY, f"partition key {key!r} is empty")
    return RunPartitions((join_partition(time, segment),))


def run_partitions(run: AirflowRun) -> RunPartitions:
    """The partitions ``run`` stands for, by the module's rules, **Time** to **Unrecorded**."""
    own = own_partition(run)
    if own.unrecorded is not Unrecorded.NO_PARTITION or run.run_type != ASSET_TRIGGERED:
        return own
    found: set[str] = set()
    unusable = 0
    for event in run.consumed:
        got = run_partitions(event.source) if event.source is not None else RunPartitions()
        if not got.partitions and event.partition_key:
            got = own_partition(AirflowRun(partition_key=event.partition_key))
        unusable += got.unrecorded is Unrecorded.UNUSABLE_PARTITION_KEY
        found.update(got.partitions)
    if found:
        return RunPartitions(tuple(sorted(found)), consumed=True)
    events = len(run.consumed)
    if unusable:
        return _problem(
            Unrecorded.UNUSABLE_PARTITION_KEY,
            f"asset-triggered: {unusable} of {events} consumed event(s) carry a key that is no partition",
        )
    return _problem(
        Unrecorded.NO_PARTITION,
        f"asset-triggered: none of its {events} consumed event(s) comes from a run with a partition",
    )
