"""Async client for one Airflow instance's REST API (v2 on Airflow 3, v1 on Airflow 2).

The only module of the package that imports httpx.

Rules:
- **Timeouts everywhere.** Every request carries the configured timeout (httpx's own default is 5 s); nothing waits
  forever.
- **One error mapping.** HTTP and transport failures are mapped in one place (:meth:`AirflowClient._send`): 5xx, 429,
  timeouts and connection errors -> AirflowUnavailable; 404 -> AirflowNotFound; 401/403 that survive one refresh of the
  credential (or whose method cannot refresh) -> AirflowAuthError; 409 -> AirflowConflict unless the method explains it;
  any other 4xx -> AirflowError with the server's detail, trimmed. Each error names the method, path and status of the
  request that actually failed, never the one before it.
- **No credential in errors.** No credential (password, token, cookie) reaches an error message or a log line: login
  failures carry no response body and every detail text is scrubbed of them
  (:meth:`coordinator.airflow.auth.Authenticator.redact`).
- **Aware datetimes.** Datetimes go out as ISO 8601 with an explicit ``+00:00`` (Airflow 3 answers 422 to naive ones);
  naive input is a programming error and raises ValueError. Datetimes come back as aware UTC.
- **One refresh, no retry policy.** The only retry here is the single refresh-and-retry after a 401/403 (rules of
  :mod:`coordinator.airflow.auth`: shared by concurrent requests, counted when it fails). The retry POLICY belongs to
  the caller (the actuator retries AirflowUnavailable only, with :mod:`coordinator.runtime.retry`).
- **One backoff per instance.** Every call passes the instance's gate (:mod:`coordinator.airflow.gate`) first: while
  the instance refuses our credentials (a login refused, a credential that cannot be obtained, a 401, a 403 to a
  credential it never accepted) or asked us to slow down (429 with ``Retry-After``), calls are kept back without a
  request (``AirflowBackingOff``) and one probe goes per backoff step; a refusal also drops the credential, so the
  probe obtains a new one (a password or token file is read again). A 403 after a successful fresh login is a missing
  permission on that object, not a refusing instance: it stays that call's error.
- **Calls at once.** With ``max_calls``, at most that many calls are in flight to the instance at once; the others
  wait for a slot before the gate is asked. Each call holds one of the api-server's database connections while it
  runs, and the tasks of that Airflow need the same pool: a watcher that opened more at once starved them
  (``COORDINATOR_AIRFLOW_MAX_CALLS`` says the default). A call made inside another (a login, the API version
  detected for it) shares its slot, so no call ever waits for a slot its own caller holds.
- **Frozen values.** Values returned are frozen dataclasses, never dicts.

Idempotency, for callers that retry: :meth:`AirflowClient.trigger` is safe to repeat (deterministic run id, a 409 is
resolved by reading the run back). :meth:`AirflowClient.clear` is not: a clear whose response was lost (timeout) may
have happened, and repeating it reruns the DAG again; compare the run's ``queued_at`` with the value seen before the
first attempt to tell.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import httpx

from coordinator.airflow.assets import AssetEventInfo, AssetEventListing, AssetInfo, parse_asset, parse_asset_event
from coordinator.airflow.auth import Authenticator, AuthMethod, Exchange
from coordinator.airflow.auth_methods import method_for, secret_files
from coordinator.airflow.conflicts import resolve_conflict
from coordinator.airflow.gate import InstanceGate, Refusal, backing_off_text, iso_at, refused_backoff, retry_after_s
from coordinator.airflow.runs import (
    RUN_AFTER_MARGIN_S,
    ApiVersion,
    DagInfo,
    DagRunInfo,
    TaskInstanceInfo,
    TriggerOutcome,
    TriggerResult,
    error_class,
    error_detail,
    iso_utc,
    logical_date_filter,
    parse_dag,
    parse_run,
    parse_task_instance,
    startable_run_after,
)
from coordinator.airflow.transport import lean_transport_for
from coordinator.airflow.v1_events import v1_asset_events
from coordinator.core.data_interval import DataInterval
from coordinator.errors import (
    AirflowAuthError,
    AirflowBackingOff,
    AirflowConflict,
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
)
from coordinator.runtime.redact import redact_url
from coordinator.runtime.retry import RetryPolicy
from coordinator.runtime.settings import InstanceSettings

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

log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: A request's query: a list value repeats the parameter (``timetable_type=A&timetable_type=B``).
Params = Mapping[str, str | Sequence[str]]
#: Set while a call the gate admitted runs (in its task): the calls it makes itself are part of it.
_GATED: ContextVar[bool] = ContextVar("airflow_gated", default=False)


#: Longest server detail kept in an error message: enough for Airflow's sentences, short enough for one log line.
DETAIL_MAX = 300
#: Page size for run listings: Airflow's default ``[api] maximum_page_limit`` (a larger limit is silently cut).
PAGE_SIZE = 100
#: Upper bound on runs scanned by a logical-date lookup whose filter the server ignored (see find_run_by_logical_date).
SCAN_MAX = 10_000
_USER_AGENT = "airflow-etcd-coordinator"


def _q(segment: str) -> str:
    """Percent-encode a path segment: run ids hold ':' and '+' (``manual__...+00:00``)."""
    return quote(segment, safe="")


class _Unreadable(Exception):
    """A halved listing reached the item Airflow answers 500 for (``AssetEventListing.stopped``)."""


class _Forbidden(AirflowAuthError):
    """A 403 to a credential the instance accepts (a fresh login just worked, or it answered with it before): a missing
    permission on that object, not a refusing instance (**One backoff per instance**)."""


class AirflowClient:
    """Async client for one Airflow instance. Use as ``async with AirflowClient(settings) as client: ...``.

    The API version is detected on first use when ``settings.api`` is ``auto``, with the instance's credentials. Safe
    for concurrent use from one event loop: a credential refresh is shared by every request that saw the same stale
    credential. ``on_auth_failure(instance, method)`` is told of every credential that could not be obtained and every
    request a fresh credential could not authenticate (the metric ``coordinator_airflow_auth_failures_total``).
    ``auth`` replaces the method the settings name (tests). ``backoff`` is the policy of **One backoff per instance**,
    ``on_refusal(instance, refusal)`` is told of each step and of the opening (None).
    """

    def __init__(
        self,
        settings: InstanceSettings,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "default",
        on_request: Callable[[str, str, str, float], None] | None = None,
        purpose: str = "",
        on_auth_failure: Callable[[str, str], None] | None = None,
        auth: AuthMethod | None = None,
        backoff: RetryPolicy | None = None,
        on_refusal: Callable[[str, Refusal | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_calls: int | None = None,
    ) -> None:
        # A purpose (``check``) goes into the User-Agent (Airflow's access log tells the probes' 4xx apart) and makes
        # failures debug lines: the check expects refusals and reports its own verdict.
        self._quiet = bool(purpose)
        self.name = name
        # Told (instance, method, status or timeout/error, seconds) of every HTTP exchange (the watcher's metrics).
        self._on_request = on_request or (lambda instance, method, status, seconds: None)
        self._settings = settings
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            timeout=httpx.Timeout(timeout_s),
            # The lean keep-alive transport (transport.py: a third of httpcore's CPU per request) unless a
            # proxy applies; an injected transport (tests) wins.
            transport=transport if transport is not None else lean_transport_for(settings.url),
            headers={"Accept": "application/json", "User-Agent": f"{_USER_AGENT}/{purpose}".rstrip("/")},
            # A redirect to a login page must surface as an error, not be followed to an HTML 200.
            follow_redirects=False,
        )
        self._api: ApiVersion | None = None if settings.api == "auto" else ApiVersion(settings.api)
        self._detect_lock = asyncio.Lock()
        self.auth = Authenticator(
            auth if auth is not None else method_for(name, settings, timeout_s),
            instance=name,
            on_failure=on_auth_failure,
            secret_files=secret_files(settings) if auth is None else (),
        )
        self._exchange = Exchange(self._raw, self._error)
        self._clock, self._wall = clock, wall
        told = on_refusal or (lambda instance, refusal: None)
        # A probe is a login and one call: twice the request timeout before another caller may try.
        self.gate = InstanceGate(backoff or refused_backoff(), probe_hold_s=2 * timeout_s,
                                 on_change=lambda refusal: told(name, refusal))  # fmt: skip
        #: The credential generations the instance answered without a 401/403 (the last few: a 403 to one of them is a
        #: missing permission, **One backoff per instance**).
        self._accepted_gen = -1
        #: **Calls at once**: the slots of the calls in flight (None: no bound).
        self._slots = asyncio.Semaphore(max_calls) if max_calls is not None else None

    async def __aenter__(self) -> AirflowClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---------------------------------------------------------------- public API

    def ready_in(self) -> float:
        """Seconds before work for this instance should start (0: now), from **One backoff per instance**; a caller
        told 0 while the instance refuses makes the probe."""
        return self.gate.ready(self._clock())

    async def api_version(self) -> ApiVersion:
        """v2 or v1; detected once (``GET /api/v2/version``, then ``/api/v1/version``) when settings say auto."""
        if self._api is None:
            async with self._detect_lock:
                if self._api is None:
                    self._api = await self._gated("GET", "/api/v2/version", self._detect)
        return self._api

    @property
    def known_major(self) -> int | None:
        """Airflow's major version as far as already known without a request: only Airflow 3 serves ``/api/v2``
        (None until the API version was detected or configured)."""
        if self._api is None:
            return None
        return 3 if self._api is ApiVersion.V2 else 2

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
        """One authenticated request with the errors of **One error mapping** (for read-only probes such as
        ``doctor``'s)."""
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

    async def _detect(self) -> ApiVersion:
        """v2 or v1, asked with the instance's credentials (a managed front answers 401/403 without them)."""
        v2 = await self._probe("/api/v2/version")
        if v2.status_code == 200:
            return ApiVersion.V2
        if v2.status_code >= 500:
            raise self._error("GET", "/api/v2/version", v2)
        if v2.status_code in (401, 403):
            # An auth front before any API: the credential is wrong, and guessing v1 would hide that.
            raise self._refused("GET", "/api/v2/version", v2, refreshed=self.auth.method.refreshable(None))
        v1 = await self._probe("/api/v1/version")
        # 401/403 still prove the v1 API is there; the credentials problem surfaces on the first real call.
        if v1.status_code in (200, 401, 403):
            return ApiVersion.V1
        if v1.status_code >= 500:
            raise self._error("GET", "/api/v1/version", v1)
        raise self._log(
            AirflowError(
                f"{self.name}: no Airflow REST API at {redact_url(self._settings.url)}: "
                f"GET /api/v2/version -> {v2.status_code}, GET /api/v1/version -> {v1.status_code}",
                status=v1.status_code,
            )
        )

    async def _probe(self, path: str) -> httpx.Response:
        """GET a version path with the credential, refreshed and retried once on 401/403 (``auth``
        **One shared refresh**)."""
        for attempt in (1, 2):
            gen, credential = await self.auth.credential(None, self._exchange)
            resp = await self._raw("GET", path, headers=credential.headers)
            if (
                attempt == 1
                and resp.status_code in (401, 403)
                and await self.auth.refresh(gen, None, self._exchange, resp.status_code)
            ):
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        probe: bool = False,
        quiet: bool = False,
    ) -> Any:
        """Send one request with the credential and the single refresh-and-retry; map failures; return the JSON;
        through the instance's gate (**One backoff per instance**).

        ``probe``: the version probe's credential (the same for both API versions: no Airflow 3 login needed for it).
        ``quiet``: a failure the caller expects and reports itself is a debug line, not a warning.
        """
        return await self._gated(
            method, path, lambda: self._send_once(method, path, json=json, params=params, probe=probe, quiet=quiet)
        )

    async def _gated(self, method: str, path: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` if the gate admits it, its outcome told to the gate (**One backoff per instance**), once a slot
        is free (**Calls at once**). A call made inside an admitted one (the API version detected for it, a login) is
        part of it: it takes no slot of its own."""
        if _GATED.get():
            return await call()
        if self._slots is None:
            return await self._admitted(method, path, call)
        async with self._slots:
            return await self._admitted(method, path, call)

    async def _admitted(self, method: str, path: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``_gated``'s call, its slot taken."""
        gate = self.gate
        admission = gate.admit(self._clock())
        if admission.wait_s > 0:
            refusal = gate.refusal
            assert refusal is not None  # a gate that holds calls back holds a refusal
            raise AirflowBackingOff(
                backing_off_text(
                    self.name, self._settings.credentials_from, method, unquote(path), refusal, admission.wait_s
                ),
                refusal.status,
                admission.wait_s,
            )
        token = _GATED.set(True)
        try:
            result = await call()
        except AirflowBackingOff:
            raise
        except _Forbidden:
            gate.accepted(admission.epoch)
            raise
        except AirflowAuthError as exc:
            reason = "credentials refused" if exc.status else "no credential could be obtained"
            self._refusing(exc.status, reason, admission.epoch)
            raise
        except AirflowUnavailable:
            raise  # proves nothing (a 429 with Retry-After closed the gate where it was answered)
        except AirflowError:
            gate.accepted(admission.epoch)  # an answer such as 404 or 409 took our credential
            raise
        finally:
            _GATED.reset(token)
            if admission.probe:
                gate.released()  # no-op once the outcome above settled it (a cancellation, a transport error)
        gate.accepted(admission.epoch)
        return result

    def _refusing(self, status: int, reason: str, epoch: int) -> None:
        """A refusal: the next backoff step, and the credential dropped, so the probe after it obtains a new one."""
        refusal = self.gate.refused(self._clock(), self._wall(), status, reason, epoch)
        if refusal is None:
            return  # another call's refusal already started this step (``gate``'s **Counted once**)
        self.auth.invalidate()
        # A check (``purpose``) reports its own verdict and makes no second call: its step is no news.
        level = logging.DEBUG if self._quiet else logging.WARNING
        log.log(level, "airflow.refusing instance=%s status=%s reason=%r attempts=%d retry_in_s=%.1f since=%s",
                self.name, status, reason, refusal.attempts, refusal.step_s, iso_at(refusal.since))  # fmt: skip

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        probe: bool = False,
        quiet: bool = False,
    ) -> Any:
        api = await self.api_version()
        auth_api = None if probe else api
        resp: httpx.Response | None = None
        for attempt in (1, 2):
            gen, credential = await self.auth.credential(auth_api, self._exchange)
            resp = await self._raw(method, path, headers=credential.headers, json=json, params=params)
            # 401: expired; 403: rejected (e.g. Airflow 3's JWT secret rotated, a revoked token). One refresh, one
            # retry, shared with every concurrent request that saw the same credential (``auth``
            # **One shared refresh**).
            if resp.status_code in (401, 403):
                if attempt == 1 and await self.auth.refresh(gen, auth_api, self._exchange, resp.status_code):
                    continue
                accepted = attempt == 2 or gen == self._accepted_gen
                raise self._refused(method, path, resp, refreshed=attempt == 2, accepted=accepted)
            self._accepted_gen = gen
            break
        assert resp is not None  # the loop runs at least once
        if resp.is_success:
            if resp.status_code == 204 or not resp.content:
                return None
            data = _json_or_none(resp)
            if data is None:
                raise self._bad_payload(method, path, "body is not JSON")
            return data
        if resp.status_code == 429:
            self._throttled(resp)
        raise self._error(method, path, resp, quiet=quiet)

    def _throttled(self, resp: httpx.Response) -> None:
        """A 429 that names a ``Retry-After`` (seconds, or an HTTP date): every call waits until then."""
        retry_after = retry_after_s(resp.headers.get("retry-after"), self._wall())
        if retry_after is None:
            return  # no time named: an ordinary transient failure, retried by the caller's policy
        refusal = self.gate.throttled(self._clock(), self._wall(), retry_after)
        log.warning("airflow.throttled instance=%s retry_after_s=%.1f retry_in_s=%.1f", self.name, retry_after,
                    refusal.step_s)  # fmt: skip

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Params | None = None,
    ) -> httpx.Response:
        """One HTTP exchange; transport failures become AirflowUnavailable with status 0."""
        started = time.monotonic()
        status = "error"  # no answer: a transport error, or "timeout"
        try:
            resp = await self._http.request(method, path, headers=headers, json=json, data=data, params=params)
            status = str(resp.status_code)
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise self._log(
                AirflowUnavailable(f"{self.name}: {method} {unquote(path)}: timed out after {self._timeout_s:g} s")
            ) from exc
        except httpx.TransportError as exc:
            # The exception text names the socket error, never headers, so it cannot leak credentials.
            reason = self._redact(str(exc))[:DETAIL_MAX] or type(exc).__name__
            raise self._log(
                AirflowUnavailable(f"{self.name}: {method} {unquote(path)}: connection failed: {reason}")
            ) from exc
        finally:
            self._on_request(self.name, method, status, time.monotonic() - started)
        log.debug("airflow.request instance=%s method=%s path=%s status=%s ms=%.1f", self.name, method, path,
                  resp.status_code, (time.monotonic() - started) * 1000)  # fmt: skip
        return resp

    def _error(
        self,
        method: str,
        path: str,
        resp: httpx.Response,
        *,
        quiet: bool = False,
        cls: type[AirflowError] | None = None,
    ) -> AirflowError:
        """THE status -> exception mapping; the message carries this request's own method, path and status."""
        status = resp.status_code
        message = f"{self.name}: {method} {unquote(path)} -> {status}: {self._detail(resp)}"
        if status == 401 and self._settings.credentials_from:  # Airflow 2's basic auth: the password is wrong
            message += f"; check {self._settings.credentials_from}"
        elif status == 403:
            message += f"; the user {self._settings.username or '(none)'} lacks this permission: give its role access"
        return self._log((cls or error_class(status))(message, status), quiet=quiet)

    def _refused(
        self, method: str, path: str, resp: httpx.Response, *, refreshed: bool, accepted: bool = False
    ) -> AirflowError:
        """A final 401/403: counted (``auth`` **Failures named and counted**), and the message says which credential was
        refused. A 403 to a credential the instance ``accepted`` is a missing permission (**One backoff per
        instance**): :class:`_Forbidden`."""
        status = resp.status_code
        if status == 403 and accepted:
            return self._error(method, path, resp, cls=_Forbidden)
        self.auth.rejected()
        how = "after one refresh" if refreshed else "and cannot be refreshed"
        message = (
            f"{self.name}: {method} {unquote(path)} -> {status}: {self._detail(resp)} "
            f"({self.auth.method.name} credential refused {how})"
        )
        if self.auth.method.name == "password" and self._settings.credentials_from:
            message += f"; check {self._settings.credentials_from}"
        return self._log(error_class(status)(message, status))

    def _detail(self, resp: httpx.Response) -> str:
        body = _json_or_none(resp)
        text = resp.text if body is None else error_detail(body)
        text = " ".join(self._redact(text).split()) or resp.reason_phrase
        return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"

    def _redact(self, text: str) -> str:
        password = self._settings.password.get_secret_value() if self._settings.password else ""
        return self.auth.redact(text.replace(password, "***") if password else text)

    def _bad_payload(self, method: str, path: str, what: str) -> AirflowError:
        return self._log(AirflowError(f"{self.name}: {method} {unquote(path)}: unexpected response: {what}", 200))

    def _run(self, method: str, path: str, data: object, dag_id: str) -> DagRunInfo:
        return self._parsed(parse_run, method, path, data, dag_id)

    def _parsed(self, parse: Callable[[object, str], _T], method: str, path: str, data: object, dag_id: str) -> _T:
        try:
            return parse(data, dag_id)
        except ValueError as exc:
            raise self._bad_payload(method, path, str(exc)) from exc

    def _log(self, exc: AirflowError, *, quiet: bool = False) -> AirflowError:
        # 404 and 409 are answers callers expect and handle; everything else is worth a warning.
        expected = quiet or self._quiet or isinstance(exc, AirflowNotFound | AirflowConflict)
        level = logging.DEBUG if expected else logging.WARNING
        log.log(level, "airflow.request_failed instance=%s status=%s error=%s", self.name, exc.status, exc)
        return exc


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
