"""The schedule each DAG of the written file needs in Airflow once the coordinator runs it: one ``schedule:`` note per
DAG that needs one (``docs/import-dags.md``, "Roll out").

Rules:
- **Dependents are triggered.** A DAG with upstreams in the written file (after the loader's rejections) is triggered
  by the coordinator for each of its partitions; a schedule of its own would start runs besides, so it needs one that
  never does.
- **Keyed dependents need PartitionedAtRuntime.** A dependent the coordinator triggers with a ``partition_key`` needs
  ``schedule=PartitionedAtRuntime()``: Airflow refuses a key for every other schedule but a partitioned one, and a
  partitioned one (``CronPartitionTimetable``) schedules runs of its own. It is keyed when its entry declares a
  ``key_format`` or ``segments``, or when a key passes through to it (semantics `segment-partitions`: a plain edge
  from a DAG whose keys are decided at run time and declared by no segments, directly or through such DAGs). Any
  other dependent needs ``schedule=None``.
- **Set or keep.** The note says whether to set the schedule or to keep the one the DAG has; it names no current
  schedule, so the notes of many DAGs fold into one line of the report.
- **Runtime-keyed producers as what they are.** A DAG whose keys are decided at run time (``PartitionedAtRuntime``)
  that is no dependent keeps that schedule: its runs are keyed by whoever triggers them. Its note says so, and how the
  file writes its keys (the segments its consumers read, or each key passing through).
- **A lookback no triggered run keeps.** A dependent whose ``CronTriggerTimetable`` has an ``interval`` gave its
  runs ``[P - interval, P]``; the ``data_interval`` of a triggered run is a period or a point, so its note says so
  and to keep its schedule (a scheduled dependent's runs are Airflow's own, with their intervals).
- **Pure.**
"""

from __future__ import annotations

from coordinator.core.importer.edges import Work
from coordinator.core.importer.facts import DagFact, FindingKind, ScheduleKind
from coordinator.core.importer.partitioned import key_format

AT_RUNTIME = "PartitionedAtRuntime"
IMPORT = "from airflow.sdk import PartitionedAtRuntime"


def schedule_notes(work: Work) -> None:
    """Add the ``schedule:`` note of each DAG (**Dependents are triggered** to **Runtime-keyed producers as what they
    are**)."""
    for dag_id, dag in work.dags.items():
        if work.upstream_edges(dag_id):
            work.add(FindingKind.NOTE, dag, _dependent(work, dag))
        elif dag.schedule.runtime_keys:
            work.add(FindingKind.NOTE, dag, _runtime_producer(work, dag))


def keyed_by(work: Work, dag_id: str) -> str | None:
    """What makes the coordinator trigger ``dag_id`` with a ``partition_key`` (**Keyed dependents need
    PartitionedAtRuntime**), or None."""
    fmt = key_format(work, dag_id)
    if fmt is not None:
        return f"its key_format {fmt!r}"
    segments = work.segments.get(dag_id)
    if segments is not None:
        return f"its segments {', '.join(segments)}"
    source = passed_keys(work, dag_id)
    if source is not None:
        return f"the keys of {source}, decided at run time, pass through to it"
    return None


def passed_keys(work: Work, dag_id: str, seen: frozenset[str] = frozenset()) -> str | None:
    """The DAG whose run-time keys pass through to ``dag_id`` over plain edges of DAGs that declare no segments, or
    None."""
    for edge in work.upstream_edges(dag_id):
        source = edge.dag.rsplit("/", 1)[-1]
        fact = work.dags.get(source)
        if edge.segments is not None or fact is None or source in seen or source in work.segments:
            continue
        if fact.schedule.runtime_keys:
            return source
        found = passed_keys(work, source, seen | {dag_id})
        if found is not None:
            return found
    return None


def _dependent(work: Work, dag: DagFact) -> str:
    schedule = dag.schedule
    why = keyed_by(work, dag.dag_id)
    if why is not None:
        reason = (
            f"the coordinator triggers it with a partition_key ({why}), which Airflow refuses for any schedule but a "
            "partitioned one"
        )
        if schedule.timetable == AT_RUNTIME:
            return f"schedule: keep schedule=PartitionedAtRuntime(): {reason}"
        return f"schedule: set schedule=PartitionedAtRuntime() ({IMPORT}): {reason}"
    if schedule.runtime_keys:
        return (
            "schedule: keep schedule=PartitionedAtRuntime(), or set schedule=None: the coordinator triggers it without "
            "a partition_key"
        )
    if schedule.kind is ScheduleKind.NONE and schedule.timetable == "NullTimetable":
        return "schedule: keep schedule=None: the coordinator triggers it"
    note = (
        "schedule: set schedule=None: the coordinator triggers it for each partition, and a schedule of its own would "
        "start runs besides"
    )
    if schedule.trigger_interval is not None:  # **A lookback no triggered run keeps**
        note += (
            f"; but its {schedule.timetable}(interval={schedule.trigger_interval}) gives its runs "
            f'[P - {schedule.trigger_interval}, P] and a triggered run gets [P, P] ("data_interval": "point"): '
            'keep its schedule instead (import-dags --rewrite marks it "runs": "scheduled")'
        )
    return note


def _runtime_producer(work: Work, dag: DagFact) -> str:
    what = (
        "schedule=PartitionedAtRuntime()" if dag.schedule.timetable == AT_RUNTIME else f"its {dag.schedule.timetable}"
    )
    segments = work.segments.get(dag.dag_id)
    if segments is not None:
        keys = f"written with the segments its consumers read ({', '.join(segments)})"
    else:
        keys = "written without segments: each key passes through to the dependents that take it unchanged"
    return (
        f"schedule: keep {what}: its partition keys are decided at run time, so its runs are keyed by whoever "
        f"triggers them (the coordinator does not: it has no upstreams); {keys}"
    )
