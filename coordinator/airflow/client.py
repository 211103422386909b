"""Async client for one Airflow instance's REST API (v2 on Airflow 3, v1 on Airflow 2): what the API offers (DAGs,
runs, task instances, assets), each endpoint in both versions, on the requests of ``requests.InstanceRequests``
(credential, gate, slots of calls at once, the one error mapping: its rules hold for every call here).

Rules:
- **Aware datetimes.** Datetimes go out as ISO 8601 with an explicit ``+00:00`` (Airflow 3 answers 422 to naive ones);
  naive input is a programming error and raises ValueError. Datetimes come back as aware UTC.
- **Frozen values.** Values returned are frozen dataclasses, never dicts.
- **Paged to the end.** A listing reads pages of ``PAGE_SIZE`` by offset until an empty page or the reported total
  (a server may cap the page size), at most the caller's bound; a page Airflow answers 500 for can be read again in
  halves to the item that fails (asset events).

Idempotency, for callers that retry: :meth:`AirflowClient.trigger` is safe to repeat (deterministic run id, a 409 is
resolved by reading the run back). :meth:`AirflowClient.clear` is not: a clear whose response was lost (timeout) may
have happened, and repeating it reruns the DAG again; compare the run's ``queued_at`` with the value seen before the
first attempt to tell.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from coordinator.airflow.assets import AssetEventInfo, AssetEventListing, AssetInfo, parse_asset, parse_asset_event
from coordinator.airflow.conflicts import resolve_conflict
from coordinator.airflow.requests import InstanceRequests, Params
from coordinator.airflow.runs import (
    RUN_AFTER_MARGIN_S,
    ApiVersion,
    DagInfo,
    DagRunInfo,
    TaskInstanceInfo,
    TriggerOutcome,
    TriggerResult,
    iso_utc,
    logical_date_filter,
    parse_dag,
    parse_run,
    parse_task_instance,
    startable_run_after,
)
from coordinator.airflow.v1_events import v1_asset_events
from coordinator.core.data_interval import DataInterval
from coordinator.errors import (
    AirflowConflict,
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
)

# The value types live in coordinator.airflow.runs (no httpx); importers keep using these names from here.
__all__ = [
    "RUN_AFTER_MARGIN_S",
    "AirflowClient",
    "ApiVersion",
    "DagInfo",
    "DagRunInfo",
    "TaskInstanceInfo",
    "TriggerOutcome",
    "TriggerResult",
    "iso_utc",
    "startable_run_after",
]

#: Page size for run listings: Airflow's default ``[api] maximum_page_limit`` (a larger limit is silently cut).
PAGE_SIZE = 100
#: Upper bound on runs scanned by a logical-date lookup whose filter the server ignored (see find_run_by_logical_date).
SCAN_MAX = 10_000


def _q(segment: str) -> str:
    """Percent-encode a path segment: run ids hold ':' and '+' (``manual__...+00:00``)."""
    return quote(segment, safe="")


class _Unreadable(Exception):
    """A halved listing reached the item Airflow answers 500 for (``AssetEventListing.stopped``)."""


class AirflowClient(InstanceRequests):
    """Async client for one Airflow instance's REST API: its endpoints, on the requests of ``requests.InstanceRequests``
    (credential, gate, slots, errors). Use as ``async with AirflowClient(settings) as client: ...``."""

    # ---------------------------------------------------------------- public API

    async def version(self) -> str:
        """Airflow's version string (a cheap reachability check), sent with the credential of the version probe."""
        api = await self.api_version()
        data = await self._send("GET", f"/api/{api}/version", probe=True)
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise self._bad_payload("GET", f"/api/{api}/version", "no version field")
        return version

    async def get_dag(self, dag_id: str) -> DagInfo:
        """The DAG's paused flag; AirflowNotFound when the DAG does not exist."""
        path = f"/api/{await self.api_version()}/dags/{_q(dag_id)}"
        return self._parsed(parse_dag, "GET", path, await self._send("GET", path), dag_id)

    async def any_dag(self) -> str | None:
        """One DAG id, or None when there is none: ``GET /dags?limit=1``, the cheapest read that needs auth."""
        path = f"/api/{await self.api_version()}/dags"
        data = await self._send("GET", path, params={"limit": "1"})
        items = data.get("dags") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._bad_payload("GET", path, "no dags list")
        return self._parsed(parse_dag, "GET", path, items[0], "").dag_id if items else None

    async def paused_dags(self) -> frozenset[str]:
        """Ids of the paused DAGs: ``GET /dags?paused=true`` (v1: Airflow 2.6+)."""
        return frozenset(dag for dag, paused in (await self.dags(paused_only=True)).items() if paused)

    async def dags(self, *, paused_only: bool = False) -> dict[str, bool]:
        """DAG id -> paused, of every DAG this user may read (only the paused ones when asked), paged; AirflowError
        past SCAN_MAX. Each item's own flag is kept: a server that ignores the filter costs pages, not answers."""
        return {dag.dag_id: dag.is_paused for dag in await self.dag_list(paused_only=paused_only)}

    async def dag_list(self, *, paused_only: bool = False, timetable_types: Sequence[str] = ()) -> list[DagInfo]:
        """Every DAG this user may read, with its paused flag and timetable (only the paused ones, or only those whose
        timetable's type is one of ``timetable_types`` (Airflow 3.2+), when asked), paged; AirflowError past
        SCAN_MAX."""
        path = f"/api/{await self.api_version()}/dags"
        params: dict[str, str | Sequence[str]] = {"paused": "true"} if paused_only else {}
        if timetable_types:
            params["timetable_type"] = list(timetable_types)
        dags = [self._parsed(parse_dag, "GET", path, i, "") async for i in self._pages(path, "dags", params, SCAN_MAX)]
        if len(dags) >= SCAN_MAX:  # the list may go on: an incomplete set would miss DAGs
            raise self._bad_payload("GET", path, f"{SCAN_MAX} or more DAGs listed")
        return dags

    async def send(self, method: str, path: str, body: Any) -> Any:
        """One authenticated request with the errors of ``requests``' **One error mapping** (for read-only probes
        such as ``doctor``'s)."""
        return await self._send(method, path, json=body)

    async def unpause(self, dag_id: str) -> DagInfo:
        """Unpause the DAG (a no-op if it is not paused)."""
        path = f"/api/{await self.api_version()}/dags/{_q(dag_id)}"
        data = await self._send("PATCH", path, json={"is_paused": False}, params={"update_mask": "is_paused"})
        return self._parsed(parse_dag, "PATCH", path, data, dag_id)

    async def get_run(self, dag_id: str, run_id: str) -> DagRunInfo | None:
        """The run, or None when Airflow answers 404 (the run, or the whole DAG, does not exist)."""
        path = f"/api/{await self.api_version()}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"
        try:
            data = await self._send("GET", path)
        except AirflowNotFound:
            return None
        return self._run("GET", path, data, dag_id)

    async def list_task_instances(
        self, dag_id: str, task_id: str, since: datetime, limit: int = 1000
    ) -> list[TaskInstanceInfo]:
        """Instances of task ``task_id`` of ``dag_id``, across its runs, whose row changed since ``since``.

        ``GET /dags/{dag_id}/dagRuns/~/taskInstances`` on v2 and v1, paged, at most ``limit``. Airflow 2's list has no
        ``task_id`` filter and its strict validation answers 400 to an unknown parameter, so the filter is sent on v2
        only and each item's task id is checked here (on v1 the other tasks' instances cost more pages).
        """
        api = await self.api_version()
        path = f"/api/{api}/dags/{_q(dag_id)}/dagRuns/~/taskInstances"
        params = {"updated_at_gte": iso_utc(since)}
        if api is ApiVersion.V2:
            params["task_id"] = task_id
        found = [
            self._parsed(parse_task_instance, "GET", path, item, dag_id)
            async for item in self._pages(path, "task_instances", params, limit)
        ]
        return [ti for ti in found if ti.task_id == task_id]

    async def find_run_by_logical_date(self, dag_id: str, logical_date: datetime) -> DagRunInfo | None:
        """The run holding exactly this logical date, or None.

        Airflow ignores unknown query parameters (a v1 filter name on v2 returns every run), so each result's logical
        date is checked here; if the filter was ignored the scan pages on, bounded by SCAN_MAX runs.
        """
        params = logical_date_filter(await self.api_version(), logical_date)
        target = logical_date.astimezone(UTC)
        # aclosing: leaving the loop early must close the generator now, not at garbage collection.
        async with aclosing(self._iter_runs(dag_id, params, SCAN_MAX)) as runs:
            async for run in runs:
                if run.logical_date == target:
                    return run
        return None

    async def find_run_by_partition_key(self, dag_id: str, partition_key: str) -> DagRunInfo | None:
        """The newest run of exactly this partition key, or None (Airflow 2 has none). Airflow's filter is a pattern
        (``partition_key_pattern``, SQL ``ilike``), so each result's key is checked here, bounded by SCAN_MAX runs."""
        if await self.api_version() is ApiVersion.V1:
            return None
        params = {"partition_key_pattern": partition_key, "order_by": "-id"}
        async with aclosing(self._iter_runs(dag_id, params, SCAN_MAX)) as runs:
            async for run in runs:
                if run.partition_key == partition_key:
                    return run
        return None

    async def runs_at(self, dag_id: str, logical_date: datetime) -> list[DagRunInfo]:
        """Every run holding exactly this logical date: one per DAG, of ``dag_id`` or (``~``) of every DAG.

        Checked here like :meth:`find_run_by_logical_date`, bounded by SCAN_MAX runs if the filter was ignored.
        """
        params = logical_date_filter(await self.api_version(), logical_date)
        target = logical_date.astimezone(UTC)
        return [run async for run in self._iter_runs(dag_id, params, SCAN_MAX) if run.logical_date == target]

    async def list_runs(self, dag_id: str, since: datetime, limit: int = 1000) -> list[DagRunInfo]:
        """Runs of ``dag_id`` (``~`` = every DAG) whose row changed since ``since``, newest created first.

        "Changed" is Airflow's ``updated_at``: created, started, finished or cleared. Pages of PAGE_SIZE by offset;
        a run created while paging shifts later pages, so duplicates are dropped here (a skipped run is seen by the
        next audit).
        """
        params = {"updated_at_gte": iso_utc(since), "order_by": "-id"}
        seen: set[tuple[str, str]] = set()
        result: list[DagRunInfo] = []
        async for run in self._iter_runs(dag_id, params, limit):
            if (run.dag_id, run.run_id) not in seen:
                seen.add((run.dag_id, run.run_id))
                result.append(run)
        return result

    async def trigger(
        self,
        dag_id: str,
        run_id: str,
        logical_date: datetime | None,
        conf: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
        data_interval: DataInterval | None = None,
    ) -> TriggerOutcome:
        """Create run ``run_id`` for ``logical_date`` (None: a run without one) and, on Airflow 3.2+, ``partition_key``
        (Airflow validates it against the DAG's timetable); resolve a 409 by reading back which constraint was hit.

        ``data_interval`` (semantics `triggered-data-interval`) is sent as ``data_interval_start``/``_end``, which
        Airflow 3's TriggerDAGRunPostBody and Airflow 2.11's v1 DAGRun body both take (both or neither); None sends
        neither, and Airflow infers the interval from the DAG's timetable. Only with a logical date: Airflow 3 ignores
        an interval without one.

        Airflow answers the same 409 whether the run id or the (dag, logical date) pair is taken. The run id found ->
        ALREADY_EXISTS (our earlier attempt); else the run holding the logical date, of the same partition key ->
        LOGICAL_DATE_TAKEN. A run id that exists with another logical date or partition key, a holder of another
        partition key, or a 409 nothing explains (a run without a logical date can only collide by run id) raises
        AirflowConflict. Airflow 2 (API v1) has no partition keys and no run without a logical date: refused here with
        an AirflowError saying so, never sent as a guess.
        """
        api = await self.api_version()
        if api is ApiVersion.V1 and (partition_key is not None or logical_date is None):
            what = f"partition key {partition_key!r}" if partition_key is not None else "a run without a logical date"
            raise AirflowError(f"{self.name}: {dag_id} is on Airflow 2 (API v1), which cannot trigger {what}")
        path = f"/api/{api}/dags/{_q(dag_id)}/dagRuns"
        when = None if logical_date is None else iso_utc(logical_date)
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": when, "conf": dict(conf or {})}
        if api is ApiVersion.V2:  # every Airflow 3 accepts run_after; Airflow 2 (v1) has no such field
            body["run_after"] = iso_utc(startable_run_after(datetime.now(UTC)))
        if partition_key is not None:
            body["partition_key"] = partition_key
        if data_interval is not None and logical_date is not None:
            body["data_interval_start"] = iso_utc(data_interval.start)
            body["data_interval_end"] = iso_utc(data_interval.end)
        try:
            data = await self._send("POST", path, json=body)
        except AirflowConflict as conflict:
            return await resolve_conflict(self, conflict, dag_id, run_id, logical_date, partition_key)
        return TriggerOutcome(TriggerResult.CREATED, self._run("POST", path, data, dag_id))

    async def clear(self, dag_id: str, run_id: str) -> DagRunInfo | None:
        """Rerun an existing run (same run id, logical date and conf). Not idempotent: see the module docstring.

        Sends ``dry_run: false`` explicitly: Airflow's default is true, which changes nothing and still answers 200.
        Returns the run as Airflow reports it after the clear, or None if the answer did not include it.
        """
        path = f"/api/{await self.api_version()}/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/clear"
        data = await self._send("POST", path, json={"dry_run": False})
        if isinstance(data, dict) and ("dag_run_id" in data or "run_id" in data):
            return self._run("POST", path, data, dag_id)
        return None

    # ------------------------------------------------ assets (semantics `assets-by-route`, `asset-exactly-once`)

    async def find_asset(self, uri: str, name: str | None = None) -> AssetInfo | None:
        """The asset with exactly this URI (and name, when several share it), or None.

        v2: ``GET /assets?uri_pattern=`` is a substring match, so every item is checked here; v1: ``GET
        /datasets/{uri}`` (404: None)."""
        api = await self.api_version()
        if api is ApiVersion.V1:
            path = f"/api/v1/datasets/{_q(uri)}"
            try:
                data = await self._send("GET", path)
            except AirflowNotFound:
                return None
            return self._parsed(parse_asset, "GET", path, data, "")
        path = "/api/v2/assets"
        found = [
            asset
            async for item in self._pages(path, "assets", {"uri_pattern": uri}, SCAN_MAX)
            if (asset := self._parsed(parse_asset, "GET", path, item, "")).uri == uri
        ]
        named = [a for a in found if name is not None and a.name == name]
        candidates = named or found
        return candidates[0] if candidates else None

    async def assets(self) -> list[AssetInfo]:
        """Every asset (dataset) of this Airflow with the DAGs that schedule on it, paged, at most SCAN_MAX."""
        api = await self.api_version()
        path, key = ("/api/v2/assets", "assets") if api is ApiVersion.V2 else ("/api/v1/datasets", "datasets")
        return [self._parsed(parse_asset, "GET", path, item, "") async for item in self._pages(path, key, {}, SCAN_MAX)]

    async def asset_events(
        self, since: datetime, *, asset_id: int | None = None, limit: int = SCAN_MAX
    ) -> AssetEventListing:
        """The OLDEST ``limit`` events (of one asset, or all) with a timestamp at or after ``since``, oldest first, so
        a backlog larger than one listing is read in order over several calls, each starting where the last one
        ended. Neither version orders events by id.

        v2: ``timestamp_gte`` and ``order_by=timestamp``; pages that Airflow answers 500 are halved down to the one
        event it cannot serialize (apache/airflow#71360): the listing ends before that event, ``stopped`` (see
        AssetEventListing). v1 (Airflow 2) has no timestamp filter: see ``v1_events.v1_asset_events``."""
        api = await self.api_version()
        if api is ApiVersion.V1:
            return AssetEventListing(await v1_asset_events(self._v1_page, since, asset_id, limit, PAGE_SIZE))
        path, key = "/api/v2/assets/events", "asset_events"
        params = {"order_by": "timestamp", "timestamp_gte": iso_utc(since)}
        if asset_id is not None:
            params["asset_id"] = str(asset_id)
        events: list[AssetEventInfo] = []
        seen: set[int] = set()
        stopped = False
        try:
            async with aclosing(self._pages(path, key, params, limit, halve_500=True)) as items:
                async for item in items:
                    event = self._parsed(parse_asset_event, "GET", path, item, "")
                    if event.timestamp < since:
                        continue  # filtered already; a server that ignored the filter costs pages, not answers
                    if event.event_id not in seen:  # a page shifted by a new event repeats one
                        seen.add(event.event_id)
                        events.append(event)
        except _Unreadable:
            stopped = True
        return AssetEventListing(events, stopped)

    async def _v1_page(
        self, path: str, key: str, params: Mapping[str, str], offset: int, limit: int
    ) -> tuple[list[AssetEventInfo], int]:
        """One page of v1 dataset events and the ``total_entries`` the server counted for it."""
        data = await self._send("GET", path, params={**params, "limit": str(limit), "offset": str(offset)})
        items = data.get(key) if isinstance(data, dict) else None
        total = data.get("total_entries") if isinstance(data, dict) else None
        if not isinstance(items, list) or not isinstance(total, int):
            raise self._bad_payload("GET", path, f"no {key} list or total_entries")
        return [self._parsed(parse_asset_event, "GET", path, item, "") for item in items], total

    async def post_asset_event(
        self, asset: AssetInfo, extra: Mapping[str, Any], partition_key: str | None
    ) -> AssetEventInfo:
        """Create one asset event. NOT idempotent: every call creates one more (see semantics `delivery-look-first`).

        v2 takes the asset's id (404: no such id), v1 its URI; v1 has no partition key (``partition_key`` must be
        None there)."""
        api = await self.api_version()
        if api is ApiVersion.V2:
            path = "/api/v2/assets/events"
            body: dict[str, Any] = {"asset_id": asset.asset_id, "extra": dict(extra)}
            if partition_key is not None:
                body["partition_key"] = partition_key
        else:
            path = "/api/v1/datasets/events"
            body = {"dataset_uri": asset.uri, "extra": dict(extra)}
        data = await self._send("POST", path, json=body)
        return self._parsed(parse_asset_event, "POST", path, data, "")

    # ---------------------------------------------------------------- internals

    async def _iter_runs(
        self, dag_id: str, params: Mapping[str, str], max_items: int
    ) -> AsyncGenerator[DagRunInfo, None]:
        path = f"/api/{await self.api_version()}/dags/{_q(dag_id)}/dagRuns"
        async with aclosing(self._pages(path, "dag_runs", params, max_items)) as items:
            async for item in items:
                yield self._run("GET", path, item, dag_id)

    async def _pages(
        self, path: str, key: str, params: Params, max_items: int, *, halve_500: bool = False
    ) -> AsyncGenerator[object, None]:
        """The items of list ``key`` of a paged GET, pages of PAGE_SIZE by offset, at most ``max_items``.

        ``halve_500``: a page answered 500 is read again in halves (:meth:`_readable`); the items before the one that
        fails are yielded, then :class:`_Unreadable` is raised."""
        offset = 0
        while offset < max_items:
            page = min(PAGE_SIZE, max_items - offset)
            try:
                data = await self._send("GET", path, params={**params, "limit": str(page), "offset": str(offset)})
            except AirflowUnavailable as exc:
                if not halve_500 or exc.status != 500:
                    raise
                items, complete = await self._readable(path, key, params, offset, page)
                for item in items:
                    yield item
                if not complete:
                    raise _Unreadable from exc
                if len(items) < page:
                    return  # the halves reached the end of the list
                offset += len(items)
                continue
            items = self._items(data, path, key)
            for item in items:
                yield item
            offset += len(items)
            total = data.get("total_entries")
            # Stop on an empty page or the reported total, not on a short page: the server may cap the page size.
            if not items or (isinstance(total, int) and offset >= total):
                return

    async def _readable(self, path: str, key: str, params: Params, offset: int, size: int) -> tuple[list[object], bool]:
        """Items ``[offset, offset + size)`` of a paged GET up to the first one Airflow answers 500 for, and True
        when none did. Each 500 halves the range: about log2(PAGE_SIZE) quiet requests find the item."""
        try:
            data = await self._send(
                "GET", path, params={**params, "limit": str(size), "offset": str(offset)}, quiet=True
            )
        except AirflowUnavailable as exc:
            if exc.status != 500:
                raise
            if size == 1:
                return [], False
            half = size // 2
            left, complete = await self._readable(path, key, params, offset, half)
            if not complete or len(left) < half:
                return left, complete
            right, complete = await self._readable(path, key, params, offset + half, size - half)
            return left + right, complete
        return self._items(data, path, key), True

    def _items(self, data: Any, path: str, key: str) -> list[object]:
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._bad_payload("GET", path, f"no {key} list")
        return items

    def _run(self, method: str, path: str, data: object, dag_id: str) -> DagRunInfo:
        return self._parsed(parse_run, method, path, data, dag_id)
