"""A DAG's timetable -> its partition grid, and the sample partitions on which sensors are evaluated.

Rules (``docs/import-dags.md``, "Schedules"):
- **Cron grids.** A cron schedule (presets included) becomes ``partitions: {cron, timezone}`` with the zone of the DAG's
  start date; a preset is written as the DAG wrote it (``@daily``), which ``partitions.cron`` accepts.
- **Logical dates on the cron.** A logical date of a cron DAG is a point of its cron in Airflow 2 (start of the data
  interval) and in Airflow 3 (the run time) alike, so the grid is the cron in both; only *which* point a given day's
  data carries differs, and the sensors being translated were written against the dates of the Airflow that loads them.
- **Timedelta points.** A ``timedelta`` schedule has the points ``start + k * delta`` in absolute time. When a cron in
  UTC has exactly those points (a divisor of an hour or of a day, one day, one week) that cron is the grid; any other
  interval (90 minutes, 5 hours, 2 days) has no cron and is reported: the DAG gets no grid (edges join equal dates).
- **Fixed offsets.** A fixed-offset zone (``+02:00``) becomes ``Etc/GMT-2`` when it is whole hours, else it is reported.
- **Sample partitions** are consecutive grid points from anchors chosen to cross what breaks date arithmetic: year and
  month ends, a leap February, and the daylight-saving changes of Europe and North America in two years.
- **Partitioned consumers.** An Airflow 3.2+ partitioned consumer (``PartitionedAssetTimetable``) whose assets are
  mapped by one temporal mapper (``StartOfDayMapper``, or a ``RollupMapper`` over it) runs at that mapper's periods: its
  grid is their cron in the mapper's zone (checked against every partition date Airflow's mapper gave on the samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from coordinator.core.grid import CRON_PRESETS, Grid, timezone_problem
from coordinator.core.importer.facts import ScheduleFact, ScheduleKind

#: Where sample partitions start (UTC): each anchor is followed by SAMPLES_PER_ANCHOR grid points.
ANCHORS = tuple(
    datetime(*parts, tzinfo=UTC)
    for parts in (
        (2024, 1, 1, 0, 0),  # a year start
        (2024, 2, 28, 22, 0),  # a leap February's end
        (2024, 3, 10, 5, 0),  # North America springs forward at 07:00Z on 10 March 2024
        (2024, 3, 30, 23, 0),  # Europe springs forward at 01:00Z on 31 March 2024
        (2024, 10, 26, 23, 0),  # Europe falls back at 01:00Z on 27 October 2024
        (2024, 11, 3, 4, 0),  # North America falls back at 06:00Z on 3 November 2024
        (2024, 12, 31, 20, 0),  # a year end
        (2025, 2, 28, 20, 0),  # a common February's end
        (2025, 3, 29, 23, 0),  # Europe springs forward on 30 March 2025
        (2025, 10, 25, 23, 0),  # Europe falls back on 26 October 2025
    )
)
#: A temporal partition mapper's periods as a cron (its ``to_partition_date`` is the period's start; an ISO week
#: starts on Monday).
PERIOD_CRONS = {
    "StartOfHourMapper": "0 * * * *",
    "StartOfDayMapper": "0 0 * * *",
    "StartOfWeekMapper": "0 0 * * 1",
    "StartOfMonthMapper": "0 0 1 * *",
    "StartOfQuarterMapper": "0 0 1 1,4,7,10 *",
    "StartOfYearMapper": "0 0 1 1 *",
}
#: Grid points after each anchor: an hourly grid crosses the daylight-saving hour, a daily one the changed day.
SAMPLES_PER_ANCHOR = 5
#: Without a grid a partition can be any instant: times of day that a shift or a truncation treats differently.
UNGRIDDED_STEPS = (timedelta(0), timedelta(hours=1), timedelta(hours=5, minutes=30), timedelta(days=1, hours=3))


@dataclass(frozen=True, slots=True)
class GridChoice:
    """The grid for one DAG (None: no grid) and, when the schedule or a part of it cannot be written, why.

    A problem beside a grid is a schedule only half of which is a grid (Airflow 3's ``AssetOrTimeSchedule``: its cron
    is the grid, its "or when the assets update" half is reported).
    """

    grid: Grid | None
    #: What ``partitions.cron`` says (a preset as written, else the 5 fields).
    written_cron: str | None = None
    problem: str | None = None


def zone_name(zone: str) -> tuple[str | None, str | None]:
    """(IANA name, None) for a zone the adapter read, or (None, why not) (**Fixed offsets**)."""
    if zone in ("UTC", "Z", "+00:00", "GMT"):
        return "UTC", None
    if zone[:1] in "+-" and len(zone) == 6 and zone[3] == ":":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if minutes:
            return None, f"the fixed offset {zone} is not whole hours: no IANA zone has it"
        # POSIX-style names invert the sign: UTC+2 is Etc/GMT-2.
        return f"Etc/GMT{'-' if zone[0] == '+' else '+'}{hours}", None
    if timezone_problem(zone) is not None:
        return None, f"the time zone {zone!r} is not an IANA name"
    return zone, None


def delta_cron(delta: timedelta, start: datetime) -> str | None:
    """The UTC cron whose points are exactly ``start + k * delta``, or None (**Timedelta points**)."""
    start = start.astimezone(UTC)
    seconds = int(delta.total_seconds())
    if seconds <= 0 or seconds % 60 or delta.microseconds or start.second or start.microsecond:
        return None
    minutes = seconds // 60
    if minutes < 60 and 60 % minutes == 0:
        first = start.minute % minutes
        return "* * * * *" if minutes == 1 else f"{first}-59/{minutes} * * * *"
    if minutes % 60 == 0 and minutes < 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        return f"{start.minute} {start.hour % hours}-23/{hours} * * *"
    if minutes == 1440:
        return f"{start.minute} {start.hour} * * *"
    if minutes == 7 * 1440:
        return f"{start.minute} {start.hour} * * {(start.weekday() + 1) % 7}"  # cron: Sunday is 0
    return None


def choose_grid(schedule: ScheduleFact) -> GridChoice:
    """The grid a DAG's schedule gives it (**Cron grids**, **Timedelta points**, **Fixed offsets**)."""
    if schedule.kind is ScheduleKind.CRON and schedule.cron is not None:
        zone, problem = zone_name(schedule.timezone or "UTC")
        if zone is None or problem is not None:
            return GridChoice(None, None, f"schedule {schedule.written!r}: {problem}")
        cron = " ".join(schedule.cron.split())
        if len(cron.split()) != 5:
            return GridChoice(None, None, f"schedule {schedule.written!r}: a cron with seconds or years has no grid")
        written = schedule.written if CRON_PRESETS.get(schedule.written) == cron else cron
        return GridChoice(Grid(cron, zone), written, schedule.problem)
    if schedule.kind is ScheduleKind.DELTA and schedule.delta is not None and schedule.start is not None:
        every = delta_cron(schedule.delta, schedule.start)
        if every is None:
            return GridChoice(
                None,
                None,
                f"schedule every {schedule.delta} from {schedule.start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}: no cron "
                f"has exactly these points, so the DAG gets no grid (its edges join equal dates)",
            )
        return GridChoice(Grid(every, "UTC"), every)
    if schedule.kind is ScheduleKind.DELTA:
        return GridChoice(None, None, "a timedelta schedule without a start date has no fixed points")
    if schedule.kind is ScheduleKind.OTHER:
        return GridChoice(None, None, schedule.problem or f"the {schedule.timetable} has no cron grid")
    if schedule.kind is ScheduleKind.ASSETS and schedule.mappings:
        return _period_grid(schedule)
    return GridChoice(None)


def _period_grid(schedule: ScheduleFact) -> GridChoice:
    """**Partitioned consumers**: a partitioned consumer's grid is the periods of its temporal mapper, when every
    sampled mapping agrees on one and every consumer date Airflow computed is a point of it."""
    sampled = [m for m in schedule.mappings if m.dates()]
    periods = {(m.period, m.timezone) for m in sampled}
    if len(periods) != 1:
        return GridChoice(None)
    ((period, zone),) = periods
    cron = PERIOD_CRONS.get(period or "")
    if cron is None or timezone_problem(zone) is not None:
        return GridChoice(None)
    grid = Grid(cron, zone)
    if not all(grid.contains(at) for m in sampled for at in m.dates()):
        return GridChoice(None)
    return GridChoice(grid, cron)


@lru_cache(maxsize=4096)
def sample_partitions(grid: Grid | None) -> tuple[datetime, ...]:
    """The partitions of a DAG on which its sensors are evaluated (**Sample partitions**), sorted, without repeats."""
    found: set[datetime] = set()
    for anchor in ANCHORS:
        if grid is None:
            found.update(anchor + step for step in UNGRIDDED_STEPS)
            continue
        point = grid.floor(anchor)
        for _ in range(SAMPLES_PER_ANCHOR):
            point = grid.next(point)
            found.add(point)
    return tuple(sorted(found))
