"""What the asset endpoints of the REST API answer, as frozen values, and their parsing (no I/O, no HTTP client).

Airflow 3 (v2): ``GET /api/v2/assets`` items have ``id``, ``uri``, ``name``; ``GET /api/v2/assets/events`` items
have ``id``, ``asset_id``, ``uri``, ``name``, ``extra``, ``partition_key`` (3.2+), ``source_*`` and ``timestamp``.
Airflow 2 (v1): ``GET /api/v1/datasets/{uri}`` has ``id`` and ``uri`` (no name); events have ``dataset_id`` and
``dataset_uri`` instead, and no partition key. A payload that does not parse raises ValueError (the client names
the request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from coordinator.airflow.runs import _parse_dt


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """One asset (a dataset on Airflow 2) of an Airflow instance."""

    asset_id: int
    uri: str
    name: str | None = None
    #: The DAGs that schedule on it (v2 ``scheduled_dags``, v1 ``consuming_dags``), when the listing says.
    consumers: tuple[str, ...] = ()
    #: The DAGs with a task that has it as an outlet (``producing_tasks``, both versions), when the listing says.
    producers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AssetEventInfo:
    """One asset event as Airflow lists it; ``timestamp`` is aware UTC."""

    event_id: int
    asset_id: int
    uri: str
    timestamp: datetime
    name: str | None = None
    extra: Any = field(default_factory=lambda: MappingProxyType({}), hash=False)
    partition_key: str | None = None
    source_dag_id: str | None = None
    source_run_id: str | None = None
    source_task_id: str | None = None


@dataclass(frozen=True, slots=True)
class AssetEventListing:
    """The events a listing read, in its order, and whether it stopped early.

    ``stopped``: Airflow answered 500 for the event right after the last one listed, and the listing ends there.
    Airflow 3.x before apache/airflow#71379 (issue #71360) cannot serialize an event one of whose consumer runs has
    no ``start_date`` yet: a run just created (usually milliseconds) or cleared and still queued (as long as it
    waits). Every page holding that event fails, so the client reads up to it and says so; the event becomes readable
    once its run starts. A caller must not take "not listed" for "not there" when ``stopped`` is set.
    """

    events: list[AssetEventInfo]
    stopped: bool = False


def parse_asset(data: object, _: str = "") -> AssetInfo:
    if not isinstance(data, dict) or not isinstance(data.get("id"), int) or not isinstance(data.get("uri"), str):
        raise ValueError("asset payload lacks id or uri")
    name = data.get("name")
    return AssetInfo(
        asset_id=data["id"], uri=data["uri"], name=name if isinstance(name, str) else None,
        consumers=_dag_ids(data.get("scheduled_dags", data.get("consuming_dags"))),
        producers=_dag_ids(data.get("producing_tasks")),
    )  # fmt: skip


def _dag_ids(refs: object) -> tuple[str, ...]:
    """The distinct ``dag_id`` of a listing's references (DAGs or tasks), in order."""
    items = refs if isinstance(refs, list) else []
    return tuple(dict.fromkeys(str(r["dag_id"]) for r in items if isinstance(r, dict) and "dag_id" in r))


def parse_asset_event(data: object, _: str = "") -> AssetEventInfo:
    if not isinstance(data, dict):
        raise ValueError("asset event payload is not an object")
    event_id = data.get("id")
    asset_id = data.get("asset_id", data.get("dataset_id"))
    uri = data.get("uri", data.get("dataset_uri"))
    timestamp = _parse_dt(data.get("timestamp"))
    if not isinstance(event_id, int) or not isinstance(asset_id, int) or not isinstance(uri, str) or not timestamp:
        raise ValueError("asset event payload lacks id, asset id, uri or timestamp")
    extra = data.get("extra")

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    return AssetEventInfo(
        event_id=event_id,
        asset_id=asset_id,
        uri=uri,
        timestamp=timestamp,
        name=text("name"),
        extra=MappingProxyType(dict(extra) if isinstance(extra, dict) else {}),
        partition_key=text("partition_key"),
        source_dag_id=text("source_dag_id"),
        source_run_id=text("source_run_id"),
        source_task_id=text("source_task_id"),
    )
