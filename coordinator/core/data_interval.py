"""The data interval a run the coordinator creates is triggered with (semantics `triggered-data-interval`; the rule and
its table are in docs/dependencies.md, "Data intervals of triggered runs").

Rules:
- **Pure.** :func:`data_interval` takes the partition, the DAG's grid, its declared kind (``data_interval`` in the
  file) and whether it is an Airflow partitioned DAG (``key_format``), and returns the interval to send, or None: send
  none, and Airflow's own timetable decides (``infer_manual_data_interval``; a point for ``schedule=None``).
- **Period by default on a grid.** A DAG with a grid gets its partition's window ``[P, next P)``, what Airflow 2's
  cron schedules and Airflow 3's ``CronDataIntervalTimetable`` give the run of P. ``"data_interval": "point"`` gets
  ``[P, P]``, what Airflow 3's ``CronTriggerTimetable`` (its default for a cron string) gives.
- **Never invented.** None for a run without a logical date (a segment, ``trigger_logical_date``: Airflow then has no
  interval to set), for a DAG without a grid and nothing declared (there is no period), for ``period`` on a partition
  that is not a point of the grid (a manual upstream run at an odd time: it has no period of its own), and for an
  Airflow partitioned DAG that declares nothing (its own partitioned timetable decides, as for every run it makes).
- **Sent explicitly.** Both kinds are sent, ``point`` too: a DAG that keeps its schedule (a gated one) would otherwise
  get its timetable's manual interval, which for Airflow 2's ``@daily`` ends at P instead of starting there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from coordinator.core.grid import Grid
from coordinator.core.partition import trigger_logical_date


class IntervalKind(StrEnum):
    """What a DAG declares its triggered runs' data interval to be (``"data_interval"`` in the file)."""

    #: ``[P, next P)`` on the DAG's grid (Airflow 2's cron schedules, ``CronDataIntervalTimetable``).
    PERIOD = "period"
    #: ``[P, P]`` (Airflow 3's ``CronTriggerTimetable``, and ``schedule=None``).
    POINT = "point"


@dataclass(frozen=True, slots=True)
class DataInterval:
    """``[start, end)`` (both aware UTC); ``start == end`` is Airflow's point (``DataInterval.exact``)."""

    start: datetime
    end: datetime


def data_interval(
    partition: str, grid: Grid | None, declared: IntervalKind | None, partitioned: bool = False
) -> DataInterval | None:
    """The interval a run of ``partition`` is triggered with, or None to send none (**Never invented**)."""
    at = trigger_logical_date(partition)
    if at is None:
        return None
    kind = declared if declared is not None else default_kind(grid, partitioned)
    if kind is IntervalKind.POINT:
        return DataInterval(at, at)
    if kind is None or grid is None or not grid.contains(at):
        return None
    return DataInterval(at, grid.next(at))


def default_kind(grid: Grid | None, partitioned: bool) -> IntervalKind | None:
    """A DAG's kind when it declares none (**Period by default on a grid**; None: send none)."""
    return IntervalKind.PERIOD if grid is not None and not partitioned else None
