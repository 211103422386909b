"""What the Airflow REST API answers, as frozen values: API version, DAG, DAG run, trigger outcome; and their parsing.

Rules: no I/O and no HTTP client here (the client is ``airflow.client``); datetimes are aware UTC (naive input
is a programming error); a payload that does not parse raises ValueError, which the client maps to an AirflowError
naming the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from coordinator.core.key_acceptance import DagTimetable
from coordinator.errors import AirflowAuthError, AirflowConflict, AirflowError, AirflowNotFound, AirflowUnavailable


class ApiVersion(StrEnum):
    V1 = "v1"  # Airflow 2: /api/v1, HTTP basic auth
    V2 = "v2"  # Airflow 3: /api/v2, JWT from POST /auth/token


@dataclass(frozen=True, slots=True)
class DagInfo:
    dag_id: str
    is_paused: bool
    #: Its timetable as the DAG list says (``timetable_partitioned`` is None on an Airflow without partition keys).
    timetable: DagTimetable | None = None


@dataclass(frozen=True, slots=True)
class DagRunInfo:
    """One DAG run as Airflow reports it. Datetimes are aware UTC; ``state`` is Airflow's string (queued, ...)."""

    dag_id: str
    run_id: str
    logical_date: datetime | None
    state: str
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    # Read-only view; excluded from the hash because a mapping is not hashable.
    conf: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    run_type: str = ""
    #: Airflow 3.2+'s partition of the run (API v2 only; Airflow 2 has neither): its key as Airflow spells it and
    #: the date its timetable decoded from it.
    partition_key: str | None = None
    partition_date: datetime | None = None
    #: Airflow 3's ``run_after`` (when the run was made to run; a clear keeps it): the run's place among several runs
    #: of one partition (semantics `newest-run-stands`). Airflow 2 (API v1) has none.
    run_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskInstanceInfo:
    """One task instance of a DAG run as Airflow reports it (``state`` is Airflow's string; "" before scheduling)."""

    dag_id: str
    run_id: str
    task_id: str
    state: str
    logical_date: datetime | None = None
    try_number: int | None = None
    map_index: int = -1
    start_date: datetime | None = None
    end_date: datetime | None = None
    #: The operator's class name ("" when Airflow does not say): an ``EmptyOperator`` is marked success by the
    #: scheduler without running, so no plugin code records it.
    operator: str = ""


class TriggerResult(StrEnum):
    CREATED = "created"  # this call created the run
    ALREADY_EXISTS = "already_exists"  # the run id exists (an earlier attempt of ours, or a retry after a timeout)
    LOGICAL_DATE_TAKEN = "logical_date_taken"  # another run holds the logical date: the caller clears that run


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    result: TriggerResult
    run: DagRunInfo


def iso_utc(value: datetime) -> str:
    """ISO 8601 with an explicit ``+00:00``; refuse naive datetimes rather than guess their zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} sent to Airflow: pass an aware UTC datetime")
    return value.astimezone(UTC).isoformat()


def _parse_dt(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    dt = datetime.fromisoformat(value)
    # Airflow always sends an offset; a naive value can only be UTC (the metadata database stores UTC).
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_dag(data: object, dag_id: str) -> DagInfo:
    """A DagInfo from a v2 ``DAGResponse`` or a v1 ``DAG`` (one DAG, or one item of a DAG list); ValueError if not."""
    if not isinstance(data, dict) or not isinstance(data.get("is_paused"), bool):
        raise ValueError("no is_paused flag")
    found = str(data.get("dag_id") or dag_id)
    partitioned = data.get("timetable_partitioned")
    timetable = DagTimetable(
        found,
        partitioned if isinstance(partitioned, bool) else None,
        _text(data.get("timetable_summary")),
        _text(data.get("timetable_description")),
        _text(data.get("fileloc")),
    )
    return DagInfo(dag_id=found, is_paused=data["is_paused"], timetable=timetable)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_run(data: object, dag_id: str) -> DagRunInfo:
    """A DagRunInfo from a v2 ``DAGRunResponse`` or a v1 ``DAGRun``; ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("run payload is not an object")
    run_id = data.get("dag_run_id") or data.get("run_id")
    state = data.get("state")
    if not isinstance(run_id, str) or not isinstance(state, str):
        raise ValueError("run payload lacks dag_run_id or state")
    # v1 sends both execution_date and logical_date (2.2+); v2 only logical_date.
    logical = data["logical_date"] if "logical_date" in data else data.get("execution_date")
    conf = data.get("conf")
    return DagRunInfo(
        dag_id=str(data.get("dag_id") or dag_id),
        run_id=run_id,
        logical_date=_parse_dt(logical),
        state=state,
        queued_at=_parse_dt(data.get("queued_at")),
        start_date=_parse_dt(data.get("start_date")),
        end_date=_parse_dt(data.get("end_date")),
        conf=MappingProxyType(dict(conf) if isinstance(conf, dict) else {}),
        run_type=str(data.get("run_type") or ""),
        partition_key=key if isinstance(key := data.get("partition_key"), str) and key else None,
        partition_date=_parse_dt(data.get("partition_date")),
        run_after=_parse_dt(data.get("run_after")),
    )


def parse_task_instance(data: object, dag_id: str) -> TaskInstanceInfo:
    """A TaskInstanceInfo from a v2 ``TaskInstanceResponse`` or a v1 ``TaskInstance``; ValueError if it is not one."""
    if not isinstance(data, dict):
        raise ValueError("task instance payload is not an object")
    task_id, run_id = data.get("task_id"), data.get("dag_run_id") or data.get("run_id")
    if not isinstance(task_id, str) or not isinstance(run_id, str):
        raise ValueError("task instance payload lacks task_id or dag_run_id")
    state = data.get("state")
    try_number = data.get("try_number")
    map_index = data.get("map_index")
    return TaskInstanceInfo(
        dag_id=str(data.get("dag_id") or dag_id),
        run_id=run_id,
        task_id=task_id,
        state=state if isinstance(state, str) else "",
        # v1 sends execution_date (and logical_date from 2.2); v2 only logical_date.
        logical_date=_parse_dt(data["logical_date"] if "logical_date" in data else data.get("execution_date")),
        try_number=try_number if isinstance(try_number, int) else None,
        map_index=map_index if isinstance(map_index, int) else -1,
        start_date=_parse_dt(data.get("start_date")),
        end_date=_parse_dt(data.get("end_date")),
        operator=operator if isinstance(operator := data.get("operator"), str) else "",
    )


#: How far behind this process's clock the ``run_after`` of a triggered run is set (see startable_run_after).
RUN_AFTER_MARGIN_S = 1


def startable_run_after(now: datetime) -> datetime:
    """The ``run_after`` of a triggered run: ``now`` minus RUN_AFTER_MARGIN_S, cut to the whole second.

    Airflow 3's scheduler starts a queued run once ``run_after <= now()`` in its database, and it defaults
    ``run_after`` to the api-server's clock with microseconds. SQLite's ``CURRENT_TIMESTAMP`` and MySQL's ``NOW()``
    have whole seconds, so such a run waits for the next whole second (0-1 s) even when the scheduler looks at it
    earlier. A whole second in the past makes the run startable in the scheduler's next loop, also when this
    process's clock is up to the margin ahead of the database's. Nothing else reads it for a run with a logical
    date (data intervals come from the logical date); the UI shows it as "Run After".
    """
    return now.replace(microsecond=0) - timedelta(seconds=RUN_AFTER_MARGIN_S)


def error_detail(body: object) -> str:
    """The human part of an Airflow error body: FastAPI's validation list, Airflow 3's database error, or ``detail``."""
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail") or body.get("title")
    if isinstance(detail, list):
        # FastAPI validation errors: keep location and message, drop "input" (it echoes the request body).
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}" for e in detail if isinstance(e, dict)
        )
    if isinstance(detail, dict):
        # Airflow 3's database-error body: {"reason": "Unique constraint violation", "message": ...}.
        return "; ".join(str(detail[k]) for k in ("reason", "message") if detail.get(k)) or str(detail)
    return "" if detail is None else str(detail)


def error_class(status: int) -> type[AirflowError]:
    """THE status -> exception mapping (``coordinator.airflow.requests``' **One error mapping**)."""
    if status >= 500 or status == 429:  # 429: rate limited, as transient as a 503
        return AirflowUnavailable
    if status == 404:
        return AirflowNotFound
    if status in (401, 403):
        return AirflowAuthError
    return AirflowConflict if status == 409 else AirflowError


def logical_date_filter(api: ApiVersion, logical_date: datetime) -> dict[str, str]:
    """Run-list query parameters selecting exactly ``logical_date`` (v1 names it ``execution_date``)."""
    name = "logical_date" if api is ApiVersion.V2 else "execution_date"
    when = iso_utc(logical_date)
    return {f"{name}_gte": when, f"{name}_lte": when}
