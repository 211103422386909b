"""How each loaded DAG schedules (``loader``'s **Loads as Airflow does**, **Timedelta starts**,
**Airflow's own partition mapper**): its cron grid and zone, timedelta start, asset condition or partitioned timetable,
as Airflow's own objects say, for ``core.importer.schedule`` to choose a grid.

Runs inside the estate's Airflow (2 or 3); every attribute is read defensively (:func:`attr`), so no timetable
crashes the load: what cannot be read becomes a reported problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.airflow_import.partitions import asset_mapping, scheduler_timetable
from coordinator.core.importer.facts import AssetCondition, ConditionOp, ScheduleFact, ScheduleKind


def zone_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name) if name else str(value)


def utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), UTC)


def attr(obj: Any, *names: str) -> Any:
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


#: Timetables that run a DAG when its assets update (a partitioned one with the identity mapper joins equal keys).
_ASSET_TIMETABLES = ("AssetTriggeredTimetable", "DatasetTriggeredTimetable", "PartitionedAssetTimetable")


def dag_schedule(dag: Any, producers: Mapping[str, list[Any]], names: Mapping[str, str] | None = None) -> ScheduleFact:
    """``names``: asset name -> URI of the folder's outlets, for conditions on ``Asset.ref(name=...)``."""
    names = names or {}
    timetable = dag.timetable
    kind = type(timetable).__name__
    written_value = attr(dag, "schedule", "schedule_interval")
    written = written_value if isinstance(written_value, str) else str(written_value or "")
    if kind in ("NullTimetable", "OnceTimetable"):
        return ScheduleFact(ScheduleKind.NONE, kind, written)
    if getattr(timetable, "partitioned_at_runtime", False) is True:
        # Runs only when triggered (a NullTimetable); its tasks name the partition keys of its asset events.
        return ScheduleFact(ScheduleKind.NONE, kind, kind, runtime_keys=True)
    condition = attr(timetable, "asset_condition", "dataset_condition")
    if kind == "PartitionedAssetTimetable" and condition is not None:
        return _partitioned(timetable, condition, written, producers, names)
    if kind in _ASSET_TIMETABLES and condition is not None:
        uris, problem = _asset_uris(condition, names)
        tree = asset_condition(condition, names)
        whole = None if isinstance(tree, str) else tree
        return ScheduleFact(ScheduleKind.ASSETS, kind, written, assets=uris, problem=problem, condition=whole)
    inner = getattr(timetable, "timetable", None)
    if kind in ("AssetOrTimeSchedule", "DatasetOrTimeSchedule") and inner is not None:
        # Runs on its own time schedule OR when the assets update: the grid is the time half's; an edge waits for
        # all of its upstreams, so the "or an asset event" half cannot be an edge and is reported.
        timed = _timetable_schedule(dag, inner, written)
        either = "the assets update" if condition is None else _condition_text(condition, names)
        return replace(
            timed,
            problem=f"{kind}: it also runs whenever {either}; an edge would wait for them on every run, so that "
            f"half is not translated (keep the asset schedule, or share the asset across deployments)",
        )
    return _timetable_schedule(dag, timetable, written)


def _partitioned(
    timetable: Any, condition: Any, written: str, producers: Mapping[str, list[Any]], names: Mapping[str, str]
) -> ScheduleFact:
    """Airflow 3.2+: a run per partition key once every asset has an event for the key its mapper gives; each
    asset's mapping is computed by Airflow's own mapper (``loader``'s **Airflow's own partition mapper**)."""
    kind = type(timetable).__name__
    uris, problem = _asset_uris(condition, names)
    tree = asset_condition(condition, names)
    if isinstance(tree, str):
        return ScheduleFact(ScheduleKind.ASSETS, kind, written, problem=tree)
    try:
        scheduler = scheduler_timetable(timetable)
    except Exception as exc:  # a custom mapper the scheduler cannot decode: reported, the load goes on
        why = f"the {kind}'s partition mappers could not be read ({type(exc).__name__}: {exc}); keep the asset schedule"
        return ScheduleFact(ScheduleKind.OTHER, kind, written, problem=why)
    name_of = {uri: name for name, uri in names.items()}
    mappings = tuple(
        asset_mapping(scheduler, uri, list(producers.get(uri, ())), name_of.get(uri, "")) for uri in tree.uris()
    )
    formats = {m.key_format for m in mappings}
    key_format = formats.pop() if len(formats) == 1 else None  # mappers that disagree key no run Airflow makes
    return ScheduleFact(
        ScheduleKind.ASSETS,
        kind,
        written,
        assets=uris,
        problem=problem,
        mappings=mappings,
        condition=tree,
        key_format=key_format,
    )


def _timetable_schedule(dag: Any, timetable: Any, written: str) -> ScheduleFact:
    """A time-based timetable's fact; anything without one cron grid as OTHER with its description."""
    kind = type(timetable).__name__
    if kind in ("CronTriggerTimetable", "CronDataIntervalTimetable", "CronPartitionTimetable"):
        cron = attr(timetable, "expression", "_expression")
        zone = attr(timetable, "timezone", "_timezone")
        key_format = attr(timetable, "key_format", "_key_format") if kind == "CronPartitionTimetable" else None
        interval = attr(timetable, "_interval", "interval") if kind == "CronTriggerTimetable" else None
        return ScheduleFact(
            ScheduleKind.CRON,
            kind,
            written,
            str(cron),
            zone_name(zone) if zone else "UTC",
            key_format=key_format if isinstance(key_format, str) else None,
            trigger_interval=interval if isinstance(interval, timedelta) and interval > timedelta(0) else None,
        )
    if kind in ("DeltaDataIntervalTimetable", "DeltaTriggerTimetable"):
        delta = attr(timetable, "delta", "_delta")
        if not isinstance(delta, timedelta):
            return ScheduleFact(ScheduleKind.OTHER, kind, written, problem=f"schedule {delta!r}: a calendar interval "
                                "(relativedelta) has no fixed points a cron can name")  # fmt: skip
        return ScheduleFact(ScheduleKind.DELTA, kind, written, delta=delta, start=_start(dag))
    # Not every timetable has ``summary`` (Airflow 3's PartitionedAssetTimetable, AssetOrTimeSchedule): never raise.
    if " object at 0x" in written:  # a timetable without __repr__ (PartitionedAtRuntime): its class says more
        written = kind
    described = attr(timetable, "summary", "description") or written or kind
    problem = f"the {kind} ({described!s}) has no single cron grid"
    return ScheduleFact(ScheduleKind.OTHER, kind, written, problem=problem)


def _start(dag: Any) -> datetime | None:
    """Where a timedelta schedule's points start: the earliest of the DAG's and its tasks' start dates, as the
    scheduler's time restriction takes it. Airflow 2 leaves ``dag.start_date`` None when the date is only in
    ``default_args`` (its common pattern) but gives every task that date; Airflow 3 copies it onto the DAG."""
    found = [utc(t.start_date) for t in dag.tasks if getattr(t, "start_date", None)]
    found += [utc(dag.start_date), utc((getattr(dag, "default_args", None) or {}).get("start_date"))]
    dates = [d for d in found if d is not None]
    return min(dates) if dates else None


def dag_root(dag: Any) -> str | None:
    """The top DAG an Airflow 2 SubDAG runs inside (``parent.child`` of a ``SubDagOperator``), None for a DAG."""
    parent = getattr(dag, "parent_dag", None)
    if parent is None:
        return None
    while getattr(parent, "parent_dag", None) is not None:
        parent = parent.parent_dag
    return str(parent.dag_id)


def _condition_text(condition: Any, names: Mapping[str, str]) -> str:
    uris, _ = _asset_uris(condition, names)
    if not uris:
        return "its asset condition is met"
    return f"{uris[0]} is updated" if len(uris) == 1 else f"all of {', '.join(uris)} are updated"


def asset_condition(condition: Any, names: Mapping[str, str] | None = None) -> AssetCondition | str:
    """The condition as Airflow nests it (``&`` and ``|`` over assets), or why it has no fixed producers (an alias, a
    custom condition). An ``Asset.ref(name=...)`` is the folder's outlet of that name (``names``), as the scheduler
    resolves it by name."""
    kind = type(condition).__name__
    uri = getattr(condition, "uri", None)
    if isinstance(uri, str) and "Alias" not in kind:
        return AssetCondition(ConditionOp.ASSET, uri)
    name = getattr(condition, "name", None)
    if kind == "AssetNameRef" and isinstance(name, str) and name in (names or {}):
        return AssetCondition(ConditionOp.ASSET, (names or {})[name])
    if kind in ("AssetAll", "DatasetAll", "AssetAny", "DatasetAny"):
        items: list[AssetCondition] = []
        for item in list(getattr(condition, "objects", ()) or ()):
            found = asset_condition(item, names)
            if isinstance(found, str):
                return found
            items.append(found)
        return AssetCondition(ConditionOp.ALL if kind.endswith("All") else ConditionOp.ANY, items=tuple(items))
    return f"the asset condition {kind} (an alias or a custom condition) has no fixed producer"


def _asset_uris(condition: Any, names: Mapping[str, str]) -> tuple[tuple[str, ...] | None, str | None]:
    """The URIs of an AND of assets; (None, why) for OR, aliases and anything else."""
    tree = asset_condition(condition, names)
    if isinstance(tree, str):
        return None, tree
    if _plain_and(tree):
        return tree.uris(), None
    return None, f"the asset condition {tree.text()} is an OR (|): Airflow runs on any of them"


def _plain_and(tree: AssetCondition) -> bool:
    """An asset, or ANDs of them (an OR of one item is that item, as Airflow evaluates it)."""
    if tree.op is ConditionOp.ANY and len(tree.items) != 1:
        return False
    return all(_plain_and(item) for item in tree.items)


def asset_producers(dags: Iterable[Any]) -> dict[str, list[Any]]:
    """Asset URI -> the DAGs with a task that has it in its outlets."""
    found: dict[str, list[Any]] = {}
    for dag in dags:
        uris = {getattr(o, "uri", None) for task in dag.tasks for o in getattr(task, "outlets", None) or ()}
        for uri in sorted(u for u in uris if isinstance(u, str)):
            found.setdefault(uri, []).append(dag)
    return found


def asset_names(dags: Iterable[Any]) -> dict[str, str]:
    """Asset name -> URI for every outlet of the folder with a name (an ``@asset``'s is its function's)."""
    found: dict[str, str] = {}
    for dag in dags:
        for task in dag.tasks:
            for outlet in getattr(task, "outlets", None) or ():
                name, uri = getattr(outlet, "name", None), getattr(outlet, "uri", None)
                if isinstance(name, str) and isinstance(uri, str):
                    found.setdefault(name, uri)
    return found
