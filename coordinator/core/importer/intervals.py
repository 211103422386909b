"""A DAG's original timetable -> the ``data_interval`` its entry says (semantics `triggered-data-interval`).

Rules (``docs/import-dags.md``, "Schedules"):
- **What the original gave.** A run of a ``CronDataIntervalTimetable`` (Airflow 2's meaning of every cron string and
  preset, Airflow 3's with ``create_cron_data_intervals=True``) or a ``DeltaDataIntervalTimetable`` (Airflow 2's
  ``timedelta``) covers ``[P, next P)``: ``"period"``. A ``CronTriggerTimetable`` or ``DeltaTriggerTimetable`` run
  (Airflow 3's default) is the point ``[P, P]``: ``"point"``; so is a DAG that had no schedule of its own
  (``schedule=None``, an asset schedule) and inherits a grid (translate's **Unscheduled DAGs**): its triggered runs
  were points.
- **Written for what the coordinator triggers.** Only a dependent (an entry with ``upstreams``) with a grid gets the
  field: a root is never triggered by the coordinator, and without a grid nothing is sent. An Airflow partitioned DAG
  (``key_format``) gets none: its own partitioned timetable decides, as the default says.
- **Explicit.** ``"period"`` is written although it is the default on a grid, so a reviewer reads what each converted
  dependent's runs will cover, and a later change of the default cannot change it.
- **Pure**: the schedule fact and the entry in, the value or None out.
"""

from __future__ import annotations

from typing import Any

from coordinator.core.data_interval import IntervalKind
from coordinator.core.importer.facts import ScheduleFact

#: Timetables whose run of P covers its period ``[P, next P)`` (**What the original gave**).
PERIOD_TIMETABLES = frozenset({"CronDataIntervalTimetable", "DeltaDataIntervalTimetable"})


def interval_entry(schedule: ScheduleFact, entry: dict[str, Any]) -> str | None:
    """The ``data_interval`` of a written DAG entry, or None to write none (**Written for what the coordinator
    triggers**)."""
    partitions = entry.get("partitions") or {}
    if "upstreams" not in entry or "cron" not in partitions or "key_format" in partitions:
        return None
    kind = IntervalKind.PERIOD if schedule.timetable in PERIOD_TIMETABLES else IntervalKind.POINT
    return kind.value
