"""When does a root DAG's run for a partition start: the instant its deadline ETA begins from
(semantics `deadlines-judged`).

A root is started by Airflow's scheduler, not by the coordinator, and when depends on the timetable: Airflow 2 reads
a cron string as a data-interval timetable (the run for logical date P starts at P's window end), Airflow 3 as
``CronTriggerTimetable`` (``create_cron_data_intervals=False``: the run for P starts AT P). Predicting Airflow 2's
start on Airflow 3 puts a daily root's ETA a day late and pages for nothing.

Rules:
- **Pure**: values in, a :class:`StartRule` out; no clock, no I/O.
- **First source that knows.** A DAG's predicted start for partition P is taken from the first source that knows, in
  this order (:func:`start_rule`):
  a. ``history``: its own runs' start minus their logical date, learned like durations (``learned_duration``:
     the 90th percentile of the latest samples after dropping outliers, at least three samples), over the runs the
     scheduler made (:func:`scheduled`: manual, backfill, asset-triggered and coordinator runs start when someone
     asks, not on the timetable). A running state without ``start_date`` counts from the writer's ``updated_at``.
  b. ``timetable``: what the importer or the audit saw of the DAG's timetable (:class:`Timetable`: at the logical
     date or at the window end, plus a delay), when the caller has it.
  c. ``airflow_version``: the instance's Airflow major version as the watcher found it (API v2 is Airflow 3):
     3 starts at P, 2 at P's window end.
  d. ``default``: nothing known: the window end (Airflow 2's behaviour, what semantics `deadlines-judged` said before
     Airflow 3).
- **Overdue.** A (DAG, partition) without any fact whose predicted start plus :data:`START_GRACE` has passed has not
  started: it is overdue (``states``: ``at_risk`` with the cause ``dag@P has not started (due HH:MM, Nh late)``, shown
  by every dependent that waits for it), instead of an ETA pushed later and later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from coordinator.core.deadline.rules import window_end
from coordinator.core.grid import Grid
from coordinator.core.model import NodeId, partition_datetime
from coordinator.core.partition import is_segment_only
from coordinator.core.view import RunFact

#: How long after its predicted start a root may still not have a run before it is overdue (**Overdue**): Airflow's
#: scheduler creates a due run within seconds, a busy one within a minute or two; five minutes without any state is
#: a stopped scheduler, a paused DAG or a writer that did not run, which the on-call engineer wants named.
START_GRACE = timedelta(minutes=5)

#: Run id prefixes of runs that start when someone asks, not on the timetable (**First source that knows** (a)):
#: Airflow's manual, backfill and asset/dataset-triggered runs, and the coordinator's own (``core.model`` names them
#: ``coordinator__...``).
UNSCHEDULED_PREFIXES = ("manual__", "backfill__", "asset_triggered__", "dataset_triggered__", "coordinator")


class StartSource(StrEnum):
    """Where a predicted start came from (**First source that knows**), as ``status`` and ``why`` show it."""

    HISTORY = "history"
    TIMETABLE = "timetable"
    VERSION = "airflow_version"
    DEFAULT = "default"


class TimetableKind(StrEnum):
    #: ``CronTriggerTimetable`` (Airflow 3's reading of a cron string): the run for P starts at P.
    TRIGGER = "trigger"
    #: A data-interval timetable (Airflow 2's ``CronDataIntervalTimetable``): the run for P starts at its window end.
    INTERVAL = "interval"


@dataclass(frozen=True, slots=True)
class Timetable:
    """What the importer or the audit saw of a DAG's timetable (**First source that knows** (b))."""

    kind: TimetableKind
    #: Seconds after the timetable's instant the run starts (``CronTriggerTimetable(interval=...)``, a delay).
    delay_s: int = 0


@dataclass(frozen=True, slots=True)
class StartRule:
    """One DAG's start prediction: ``P + offset``, or P's window end + offset, and where it came from."""

    source: StartSource
    offset: timedelta = timedelta(0)
    at_window_end: bool = False

    def at(self, grid: Grid | None, partition: str) -> datetime:
        """The predicted start of ``partition``'s run."""
        base = window_end(grid, partition) if self.at_window_end else _logical(partition)
        return base + self.offset


def start_rule(
    node: NodeId,
    *,
    history: Mapping[NodeId, float],
    timetables: Mapping[NodeId, Timetable],
    majors: Mapping[str, int],
) -> StartRule:
    """**First source that knows**: the first source that knows when ``node`` starts."""
    learned = history.get(node)
    if learned is not None:
        return StartRule(StartSource.HISTORY, timedelta(seconds=learned))
    timetable = timetables.get(node)
    if timetable is not None:
        return StartRule(StartSource.TIMETABLE, timedelta(seconds=timetable.delay_s),
                         timetable.kind is TimetableKind.INTERVAL)  # fmt: skip
    major = majors.get(node.instance)
    if major is not None:
        return StartRule(StartSource.VERSION, timedelta(0), major < 3)
    return StartRule(StartSource.DEFAULT, timedelta(0), True)


def scheduled(run_id: str) -> bool:
    """The run was started by the timetable (**First source that knows** (a)), so its start teaches when the next one
    starts."""
    return not run_id.startswith(UNSCHEDULED_PREFIXES)


def start_offset(fact: RunFact, partition: str) -> float | None:
    """Seconds from ``partition`` to the start of the run ``fact`` records, for a scheduled run with a start."""
    started = fact.started
    if started is None or not scheduled(fact.run_id) or is_segment_only(partition):
        return None  # a segment alone has no time to start after (semantics `segment-partitions`)
    return (started - _logical(partition)).total_seconds()


@lru_cache(maxsize=1 << 16)
def _logical(partition: str) -> datetime:
    """``partition_datetime``, cached: every root of an estate shares the same few partitions, and ``strptime``
    costs ~60 us (a pass learning 500 roots' starts over 30 partitions spent 1 s in it)."""
    return partition_datetime(partition)
