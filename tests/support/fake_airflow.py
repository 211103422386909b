"""A fake Airflow 3 REST API (v2) on a real socket, for scenario tests and benchmarks.

It mimics the Airflow 3.3 behaviour measured in the project notes, not a simplified ideal of it:

1. Login: ``POST /auth/token`` with the configured user -> 201 ``{"access_token"}``. Every other endpoint except
   ``/api/v2/version`` and ``/api/v2/monitor/health`` needs ``Authorization: Bearer <token>``: none -> 401, unknown
   token -> 403, expired token (:meth:`FakeAirflow.expire_tokens`) -> 401 "Token Expired". ``/api/v1/*`` -> 404.
2. ``(dag_id, run_id)`` and ``(dag_id, non-null logical_date)`` are unique; either violation -> the same generic 409
   "Unique constraint violation". Unknown (or "missing") DAG -> 404. Naive datetimes and unknown body keys -> 422.
   Unknown query parameters are silently ignored; an unknown ``order_by`` -> 400.
3. Clear: ``dry_run`` DEFAULTS TO TRUE, and then nothing changes. ``dry_run: false`` -> ``clear_number + 1``, state
   queued, new ``queued_at``, and the run executes again with the same run id, logical date and conf.
4. Execution: a queued run of an unpaused DAG turns running after ``queue_delay_s``, then success (or the DAG's
   configured outcome) after the DAG's duration. A paused DAG keeps its runs queued until it is unpaused.
   ``on_state(dag_id, run_id, logical_date, state, clear_number)`` is called for ``running`` and for the terminal
   state, never for ``queued`` (exactly like Airflow's listener hooks), from ONE executor thread, in order; a slow
   callback delays later transitions as a slow listener delays the scheduler. Callback exceptions are recorded in
   :attr:`FakeAirflow.callback_errors` and never stop the fake (Airflow logs and ignores listener errors).
5. Faults (:meth:`fail_next`, :meth:`delay_next`, :meth:`drop_next`) apply to the next matching requests before
   they have any effect; with ``after=True`` they apply AFTER the effect: the run was created or cleared, and then
   the answer is an error, comes late, or never comes (the connection is closed without a response).
6. Every request is counted per endpoint and DAG (:meth:`calls`) and logged (:meth:`requests`: endpoint, DAG,
   status, and which client sent it when an ``identify`` callback maps the client's address to a name); effective
   creations and clears per DAG (:meth:`creates`, :meth:`clears`); each attempt's execution is on the timeline
   (:meth:`executions`), with ``time.monotonic()`` start and end so tests can assert ordering ("06 started only after
   02..05 ended").
7. Task instances exist only as a test sets them (:meth:`set_task_instance`): the simulated scheduler runs whole DAG
   runs. ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id|~}/taskInstances`` lists them, filtered by ``task_id`` and
   ``updated_at_gte`` (the time they were set), paged like the run list.
8. A bug in the fake (an unexpected exception in a handler) answers 500 like a broken server would, and is recorded
   in :attr:`FakeAirflow.internal_errors`: a test harness must fail on it, or a client's retries would hide it.

9. Assets (Airflow 3.3's asset endpoints, as ``docs/`` and the notes describe them): :meth:`add_asset` registers an
   asset (id, uri, name, the DAGs that schedule on it) and :meth:`emit_asset_event` is a producer task's outlet
   event. ``GET /api/v2/assets`` filters by ``uri_pattern`` as a SUBSTRING (SQL ``ilike %x%``), paged.
   ``GET /api/v2/assets/events`` filters by ``asset_id`` and ``timestamp_gte``, orders by ``timestamp`` (default)
   or ``-timestamp`` and refuses ``order_by=id`` with 400 (not in Airflow's allowed list), paged.
   ``POST /api/v2/assets/events`` takes a strict body (``asset_id``, ``extra``, ``partition_key``; anything else
   422), answers 404 for an unknown asset id, adds ``"from_rest_api": true`` to ``extra``, and creates a NEW event
   on every call (no idempotency key). Consumer runs are not simulated: :meth:`asset_events` is what a consumer
   would see. :meth:`set_event_unreadable` reproduces apache/airflow#71360 (Airflow 3.x before #71379): while set,
   any page of ``GET /api/v2/assets/events`` holding that event answers 500, as when one of its consumer runs has no
   start date yet.

10. Requests of the coordinator's read-only instance checks (the watcher's start check, ``doctor``; their User-Agent
   ends in ``/check``) are answered exactly like any other but logged apart (:meth:`checks`), not counted by
   :meth:`calls` or listed by :meth:`requests`, and never consume an injected fault: scenario tests count what the
   watcher DOES (triggers, clears, who calls), which a check never changes.

11. Partitions (Airflow 3.2+): a trigger's ``partition_key`` is kept on the run (its ``partition_date`` stays null,
   as for a ``PartitionedAtRuntime`` DAG), or refused with Airflow's 400 by a DAG set not partitioned
   (:meth:`set_partitioned`); :meth:`create_run` makes a partitioned run (key and date) or an
   asset-triggered one with the events it consumed, which
   ``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents`` lists (unpaged, as Airflow does).
12. Timetables: every DAG has one (:data:`TIMETABLES`; ``PartitionedAtRuntime`` unless :meth:`add_dag` or
   :meth:`set_timetable` says otherwise, so a key is accepted as rule 11 says). ``GET /api/v2/dags`` lists its
   ``timetable_summary``, ``timetable_description``, ``timetable_partitioned`` and ``fileloc`` as Airflow 3.3 does,
   filters by ``timetable_type`` (repeatable; a custom timetable's type is its import path), and a trigger with a
   ``partition_key`` of a DAG whose timetable is neither partitioned nor partitioned at run time is refused with
   Airflow's 400. ``timetable=None`` lists the DAG without those fields, as an Airflow before 3.2 does.

12. Data intervals (``TriggerDAGRunPostBody``): a trigger's ``data_interval_start`` and ``data_interval_end`` come
   both or neither (one alone -> 422, as Airflow's model validator answers); with a logical date they are the run's
   interval, without them the fake's DAGs answer as ``schedule=None`` does (``NullTimetable``: the point
   ``[logical_date, logical_date]``); a run without a logical date has none. The run's JSON and :class:`RunView` say
   it.

Responses close the connection: no keep-alive socket can outlive :meth:`stop` or race a server-side idle timeout.
Run standalone for benchmarks: ``python -m tests.support.fake_airflow --port 0 --dags a,b,c`` prints the URL.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

StateCallback = Callable[[str, str, datetime | None, str, int], None]
#: Maps a client's (host, port) to a name for the request log, or None when unknown; called in the request thread.
Identify = Callable[[tuple[str, int]], str | None]
_Event = tuple[str, str, datetime | None, str, int]

AIRFLOW_VERSION = "3.3.2"
#: How the coordinator's instance checks sign their requests (``User-Agent: airflow-etcd-coordinator/check``).
CHECK_AGENT_SUFFIX = "/check"
#: The status logged for a request whose connection was closed without an answer (drop_next).
DROPPED = 0
TERMINAL = frozenset({"success", "failed"})
# TriggerDAGRunPostBody is a strict model: any other key -> 422.
_TRIGGER_KEYS = frozenset(
    {
        "dag_run_id",
        "data_interval_start",
        "data_interval_end",
        "logical_date",
        "run_after",
        "conf",
        "note",
        "partition_key",
    }
)
_CLEAR_KEYS = frozenset({"dry_run", "only_failed", "only_new", "run_on_latest_version", "note"})
_DATE_FILTERS = ("logical_date", "run_after", "start_date", "end_date", "updated_at")
_ORDERABLE = ("id", "state", "dag_id", "run_id", "logical_date", "run_after", "start_date", "end_date", "updated_at")


class HttpError(Exception):
    """An HTTP error answer; ``detail`` is serialised as Airflow's ``{"detail": ...}`` body."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Execution:
    """One attempt of one run: started when it turned running, ended at its terminal state (or its clear)."""

    dag_id: str
    run_id: str
    logical_date: datetime | None
    attempt: int  # the run's clear_number during this attempt
    started: float  # time.monotonic()
    ended: float | None = None
    outcome: str | None = None  # success, failed, cleared (interrupted), marked_success, marked_failed


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the fake saw it: what, for which DAG, from whom, and the status it answered."""

    seq: int
    method: str
    endpoint: str
    dag_id: str
    client: str | None  # the identify callback's name for the sender; None without a callback or when unknown
    received: float  # time.monotonic() when the request was read
    status: int | None  # None while it is being handled (delayed); DROPPED when closed without an answer

    @property
    def changing(self) -> bool:
        """A request that may change Airflow's state (create, clear, pause, mark), whatever it answered."""
        return self.endpoint in ("trigger", "clear", "patch_dag", "patch_run")


@dataclass(frozen=True, slots=True)
class RunView:
    """A snapshot of one fake run, for assertions."""

    dag_id: str
    run_id: str
    logical_date: datetime | None
    state: str
    clear_number: int
    conf: dict[str, Any]
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    #: Airflow 3.2+'s key of a partitioned run (None: a run by logical date).
    partition_key: str | None = None
    #: The run's data interval (**Data intervals**); None for a run without a logical date.
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Timetable:
    """A timetable as Airflow 3.3's DAG list shows it (rule 12); ``at_runtime`` is ``partitioned_at_runtime``, which
    the list does not show."""

    type_name: str
    summary: str | None
    description: str
    partitioned: bool = False
    at_runtime: bool = False

    @property
    def accepts_keys(self) -> bool:
        return self.partitioned or self.at_runtime


#: The timetables tests name (rule 12), as Airflow 3.3.2's own classes describe themselves.
TIMETABLES = {
    "PartitionedAtRuntime": Timetable(
        "PartitionedAtRuntime", "PartitionedAtRuntime", "Never, partition key(s) set at runtime", at_runtime=True
    ),
    "None": Timetable("NullTimetable", None, "Never, external triggers only"),
    "@daily": Timetable("CronTriggerTimetable", "0 0 * * *", "At 00:00"),
    "CronPartitionTimetable": Timetable("CronPartitionTimetable", "0 0 * * *", "At 00:00", partitioned=True),
    # A custom timetable that sets partitioned_at_runtime (Airflow's example plugin): the list cannot say so.
    "custom": Timetable(
        "plugins.timetables.ScheduledRuntimePartitionTimetable", "0 0 * * *", "At 00:00", at_runtime=True
    ),
}


@dataclass
class _Dag:
    dag_id: str
    is_paused: bool = False
    missing: bool = False
    outcome: str = "success"
    duration_s: float | None = None  # None: the server's run_duration_s
    #: Rule 12: None lists no timetable fields (an Airflow before 3.2).
    timetable: Timetable | None = TIMETABLES["PartitionedAtRuntime"]


@dataclass
class _Run:
    id: int
    dag_id: str
    run_id: str
    logical_date: datetime | None
    conf: dict[str, Any]
    run_type: str
    run_after: datetime
    queued_at: datetime
    updated_at: datetime
    state: str = "queued"
    start_date: datetime | None = None
    end_date: datetime | None = None
    clear_number: int = 0
    start_pending: bool = False
    execution: int | None = None  # index of the current attempt on the timeline
    partition_key: str | None = None
    partition_date: datetime | None = None
    consumed: tuple[int, ...] = ()  # ids of the asset events an asset-triggered run consumed
    #: (start, end) as the trigger sent it; None: the NullTimetable's point at the logical date (**Data intervals**).
    interval: tuple[datetime, datetime] | None = None

    @property
    def data_interval(self) -> tuple[datetime | None, datetime | None]:
        if self.logical_date is None:
            return None, None
        return self.interval or (self.logical_date, self.logical_date)

    def view(self) -> RunView:
        return RunView(
            self.dag_id,
            self.run_id,
            self.logical_date,
            self.state,
            self.clear_number,
            dict(self.conf),
            self.queued_at,
            self.start_date,
            self.end_date,
            self.partition_key,
            *self.data_interval,
        )


@dataclass
class _Fault:
    kind: str  # "fail", "delay", "drop" or "hold"
    remaining: int
    status: int = 500
    seconds: float = 0.0
    after: bool = False
    endpoint: str | None = None
    dag_id: str | None = None
    #: A hold's: the request waits (before its effect) until the test sets it.
    gate: threading.Event | None = None

    def matches(self, endpoint: str, dag_id: str) -> bool:
        return (self.endpoint in (None, endpoint)) and (self.dag_id in (None, dag_id))


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    kind: str = field(compare=False)  # "start", "finish" or "notify" (a state set by a user)
    dag_id: str = field(compare=False)
    run_id: str = field(compare=False)
    attempt: int = field(compare=False)
    state: str = field(compare=False, default="")


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(value: datetime | None) -> str | None:
    # Airflow (pydantic) renders UTC datetimes with a "Z".
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: Any, loc: list[str]) -> datetime:
    """Parse an aware ISO datetime like pydantic's AwareDatetime, else 422."""
    try:
        dt = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        dt = None
    if dt is None:
        raise HttpError(
            422, [{"type": "datetime_from_date_parsing", "loc": loc, "msg": "Input should be a valid datetime"}]
        )
    if dt.tzinfo is None:
        raise HttpError(422, [{"type": "timezone_aware", "loc": loc, "msg": "Input should have timezone info"}])
    return dt.astimezone(UTC)


def _interval(data: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """A trigger body's data interval (**Data intervals**): both or neither, else 422 like TriggerDAGRunPostBody."""
    start, end = data.get("data_interval_start"), data.get("data_interval_end")
    if (start is None) != (end is None):
        msg = "Value error, Either both data_interval_start and data_interval_end must be provided or both must be None"
        raise HttpError(422, [{"type": "value_error", "loc": ["body"], "msg": msg}])
    if start is None:
        return None
    return _aware(start, ["body", "data_interval_start"]), _aware(end, ["body", "data_interval_end"])


class FakeAirflow:
    """The fake server and its simulated scheduler. Thread-safe; every public method may be called from tests."""

    def __init__(
        self,
        dags: Iterable[str] = (),
        *,
        username: str = "admin",
        password: str = "admin",
        on_state: StateCallback | None = None,
        identify: Identify | None = None,
        queue_delay_s: float = 0.01,
        run_duration_s: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username = username
        self.password = password
        self.on_state = on_state
        self.identify = identify
        self.queue_delay_s = queue_delay_s
        self.run_duration_s = run_duration_s
        self.callback_errors: list[BaseException] = []
        #: When set, every 429 answer (``fail_next(status=429)``) carries ``Retry-After`` with this many seconds, as a
        #: rate-limiting proxy in front of Airflow sends it.
        self.retry_after_s: int | None = None
        #: Unexpected exceptions inside request handling (bugs of the fake), each answered with a 500.
        self.internal_errors: list[str] = []
        self._host, self._port = host, port
        self._lock = threading.Condition(threading.RLock())
        self._dags: dict[str, _Dag] = {d: _Dag(d) for d in dags}
        self._runs: dict[tuple[str, str], _Run] = {}
        #: Task instances the tests set (``set_task_instance``), by (dag_id, run_id, task_id): the simulated
        #: scheduler runs whole DAG runs only; task states are what a test says Airflow reports.
        self._task_instances: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._ids = itertools.count(1)
        #: Rule 9: uri -> (id, name); events in creation order.
        self._assets: dict[str, tuple[int, str | None]] = {}
        self._asset_events: list[dict[str, Any]] = []
        #: Every trigger body as sent (valid or not), in order: what a client put on the wire.
        self.trigger_bodies: list[dict[str, Any]] = []
        self._unreadable_events: set[int] = set()
        self._consumers: dict[str, tuple[str, ...]] = {}
        self._producers: dict[str, tuple[str, ...]] = {}
        self._seq = itertools.count()
        self._due: list[_Due] = []
        self._busy = 0  # transitions being applied (callback included) right now
        self._timeline: list[Execution] = []
        self._calls: Counter[tuple[str, str]] = Counter()
        self._creates: Counter[str] = Counter()
        self._clears: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._held = 0  # requests waiting at a hold's gate
        self._requests: list[Request] = []
        #: Requests being handled right now, and the most there were at once (``peak_in_flight``).
        self._in_flight = 0
        self.peak_in_flight = 0
        self._checks: list[Request] = []  # rule 8
        self._peer = threading.local()  # the client address of the request this thread is serving
        self._tokens: set[str] = set()
        self._expired: set[str] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeAirflow:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler, self)
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-airflow-http"
            ),
            threading.Thread(target=self._executor, name="fake-airflow-executor"),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and executing; joins every thread (in-flight delays are cut short)."""
        if self._server is None:
            return
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()  # joins the request threads (block_on_close)
        for thread in self._threads:
            thread.join()
        self._server = None
        self._threads = []

    def __enter__(self) -> FakeAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------ configuration and faults

    def add_dag(
        self,
        dag_id: str,
        *,
        paused: bool = False,
        outcome: str = "success",
        duration_s: float | None = None,
        timetable: str | None = "PartitionedAtRuntime",
    ) -> None:
        """Add (or replace) a DAG; ``timetable`` names one of :data:`TIMETABLES` (rule 12)."""
        with self._lock:
            self._dags[dag_id] = _Dag(dag_id, is_paused=paused, outcome=outcome, duration_s=duration_s,
                                      timetable=None if timetable is None else TIMETABLES[timetable])  # fmt: skip

    def set_timetable(self, dag_id: str, timetable: str | None) -> None:
        """Give a DAG another of :data:`TIMETABLES` (None: list it without timetable fields), as a reparse would."""
        with self._lock:
            self._dags[dag_id].timetable = None if timetable is None else TIMETABLES[timetable]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause (unpausing starts the DAG's queued runs), as ``PATCH /dags/{id}`` does."""
        with self._lock:
            self._set_paused(self._dags[dag_id], paused)

    def set_missing(self, dag_id: str, missing: bool = True) -> None:
        """A missing DAG answers 404 everywhere (deleted or not parsed yet) and its runs do not progress."""
        with self._lock:
            dag = self._dags.setdefault(dag_id, _Dag(dag_id))
            dag.missing = missing
            if not missing:
                self._schedule_queued(dag)

    def set_partitioned(self, dag_id: str, partitioned: bool) -> None:
        """A DAG that is not partitioned (``schedule=None``, a cron) refuses a trigger that carries a ``partition_key``
        with Airflow 3.3's 400; a partitioned one (the default) accepts it."""
        self.set_timetable(dag_id, "PartitionedAtRuntime" if partitioned else "None")

    def set_outcome(self, dag_id: str, outcome: str) -> None:
        if outcome not in TERMINAL:
            raise ValueError(f"outcome must be one of {sorted(TERMINAL)}")
        with self._lock:
            self._dags[dag_id].outcome = outcome

    def set_duration(self, dag_id: str, seconds: float) -> None:
        with self._lock:
            self._dags[dag_id].duration_s = seconds

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        endpoint: str | None = None,
        dag_id: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` before they have any effect; ``after=True``
        applies the effect first (the run was created or cleared, the answer says it failed)."""
        with self._lock:
            self._faults.append(_Fault("fail", n, status=status, after=after, endpoint=endpoint, dag_id=dag_id))

    def delay_next(
        self, n: int, seconds: float, *, endpoint: str | None = None, dag_id: str | None = None, after: bool = False
    ) -> None:
        """Delay the next ``n`` matching requests; ``after=True`` applies the effect first (a lost response)."""
        with self._lock:
            self._faults.append(_Fault("delay", n, seconds=seconds, after=after, endpoint=endpoint, dag_id=dag_id))

    def hold_next(self, n: int = 1, *, endpoint: str | None = None, dag_id: str | None = None) -> threading.Event:
        """Hold the next ``n`` matching requests before they have any effect until the returned event is set (an
        answer whose moment the test chooses: something else happens while the request is in flight); ``held``
        counts the requests waiting now."""
        gate = threading.Event()
        with self._lock:
            self._faults.append(_Fault("hold", n, endpoint=endpoint, dag_id=dag_id, gate=gate))
        return gate

    def held(self) -> int:
        """Requests a hold (``hold_next``) keeps waiting right now."""
        with self._lock:
            return self._held

    def drop_next(
        self, n: int = 1, *, endpoint: str | None = None, dag_id: str | None = None, after: bool = True
    ) -> None:
        """Close the connection of the next ``n`` matching requests without any answer; by default AFTER the effect
        (the server crashed or the network broke between applying the request and answering it)."""
        with self._lock:
            self._faults.append(_Fault("drop", n, after=after, endpoint=endpoint, dag_id=dag_id))

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 401 "Token Expired" (Airflow's JWTs live 24 h)."""
        with self._lock:
            self._expired |= self._tokens
            self._tokens.clear()

    # ------------------------------------------------------------ assets (rule 9)

    def add_asset(
        self, uri: str, name: str | None = None, consumers: Iterable[str] = (), producers: Iterable[str] = ()
    ) -> int:
        """Register an asset (as a DAG file that names it would) with the DAGs that schedule on it and the DAGs whose
        task has it as an outlet (``producing_tasks``); returns its id. A second call re-creates it under a new id
        (its events follow it), so a cached id goes stale."""
        with self._lock:
            self._consumers[uri] = tuple(consumers)
            self._producers[uri] = tuple(producers)
            old = self._assets.get(uri)
            new_id = 1 + max((i for i, _ in self._assets.values()), default=0)
            self._assets[uri] = (new_id, name if name is not None else uri)
            if old is not None:
                for event in self._asset_events:
                    if event["asset_id"] == old[0]:
                        event["asset_id"] = new_id
            return new_id

    def emit_asset_event(
        self,
        uri: str,
        *,
        extra: dict[str, Any] | None = None,
        partition_key: str | None = None,
        source_dag_id: str | None = "producer",
        source_run_id: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """A producer task's outlet event (not through REST: no ``from_rest_api``); returns the event id. ``at``: its
        timestamp (now by default), for events a test needs older than a retention period."""
        with self._lock:
            return self._add_event(uri, dict(extra or {}), partition_key, source_dag_id, source_run_id, at)

    def set_event_unreadable(self, event_id: int, unreadable: bool = True) -> None:
        """While set, a listing page holding event ``event_id`` answers 500 (rule 9, apache/airflow#71360)."""
        with self._lock:
            if unreadable:
                self._unreadable_events.add(event_id)
            else:
                self._unreadable_events.discard(event_id)

    def asset_events(self, uri: str | None = None) -> list[dict[str, Any]]:
        """Every event (of one asset), oldest first, as the API would list them."""
        with self._lock:
            return [dict(e) for e in self._asset_events if uri in (None, e["uri"])]

    def _add_event(
        self,
        uri: str,
        extra: dict[str, Any],
        partition_key: str | None,
        dag: str | None,
        run: str | None,
        at: datetime | None = None,
    ) -> int:
        asset_id, name = self._assets[uri]
        event_id = len(self._asset_events) + 1
        self._asset_events.append(
            {
                "id": event_id, "asset_id": asset_id, "uri": uri, "name": name, "group": "asset", "extra": extra,
                "source_task_id": "task" if dag else None, "source_dag_id": dag, "source_run_id": run,
                "source_map_index": -1, "created_dagruns": [], "timestamp": _fmt(at or _now()),
                "partition_key": partition_key,
            }
        )  # fmt: skip
        return event_id

    def _list_assets(self, query: dict[str, list[str]]) -> dict[str, Any]:
        pattern = query.get("uri_pattern", [""])[-1].lower()
        items: list[dict[str, Any]] = [
            {
                "id": i,
                "uri": uri,
                "name": name,
                "group": "asset",
                "extra": {},
                "scheduled_dags": [{"dag_id": d} for d in self._consumers.get(uri, ())],
                "producing_tasks": [{"dag_id": d, "task_id": "produce"} for d in self._producers.get(uri, ())],
            }
            for uri, (i, name) in sorted(self._assets.items(), key=lambda kv: kv[1][0])
            if pattern in uri.lower()
        ]
        limit = min(_int(query, "limit", 50), 100)
        offset = _int(query, "offset", 0)
        return {"assets": items[offset : offset + limit], "total_entries": len(items)}

    def _list_asset_events(self, query: dict[str, list[str]]) -> dict[str, Any]:
        events = list(self._asset_events)
        wanted = query.get("asset_id", [""])[-1]
        if wanted:
            events = [e for e in events if str(e["asset_id"]) == wanted]
        since = query.get("timestamp_gte")
        if since:
            bound = _aware(since[-1], ["query", "timestamp_gte"])
            events = [e for e in events if _aware(e["timestamp"], ["timestamp"]) >= bound]
        order = query.get("order_by", ["timestamp"])[-1]
        if order.removeprefix("-") not in ("timestamp", "source_task_id", "source_dag_id", "source_run_id"):
            raise HttpError(400, f"Ordering with '{order.removeprefix('-')}' is disallowed")
        key = order.removeprefix("-")
        if key == "timestamp":  # by time, not by text: isoformat drops a zero microsecond part
            events.sort(key=lambda e: (_aware(e["timestamp"], ["timestamp"]), e["id"]), reverse=order.startswith("-"))
        else:
            events.sort(key=lambda e: (e[key] or "", e["id"]), reverse=order.startswith("-"))
        limit = min(_int(query, "limit", 50), 100)
        offset = _int(query, "offset", 0)
        page = events[offset : offset + limit]
        if any(e["id"] in self._unreadable_events for e in page):
            # Airflow's own answer: pydantic fails on created_dagruns[].start_date and uvicorn sends a bare 500.
            raise HttpError(500, "Internal Server Error")
        return {"asset_events": page, "total_entries": len(events)}

    def _post_asset_event(self, data: dict[str, Any]) -> dict[str, Any]:
        _no_extra(data, frozenset({"asset_id", "extra", "partition_key", "access_control"}))
        asset_id, extra = data.get("asset_id"), data.get("extra", {})
        if not isinstance(asset_id, int) or not isinstance(extra, dict):
            raise HttpError(422, [{"type": "int_type", "loc": ["body", "asset_id"], "msg": "Input should be int"}])
        uri = next((u for u, (i, _) in self._assets.items() if i == asset_id), None)
        if uri is None:
            raise HttpError(404, f"Asset with ID: `{asset_id}` was not found")
        event_id = self._add_event(uri, {**extra, "from_rest_api": True}, data.get("partition_key"), None, None)
        return dict(self._asset_events[event_id - 1])

    # ------------------------------------------------------------ direct actions (the scheduler or a user)

    def create_run(
        self,
        dag_id: str,
        run_id: str,
        logical_date: datetime | None,
        conf: dict[str, Any] | None = None,
        *,
        run_type: str = "scheduled",
        partition_key: str | None = None,
        partition_date: datetime | None = None,
        consumed: Iterable[int] = (),
    ) -> RunView:
        """Create a run as the scheduler would (a partitioned run with its key and date, an asset-triggered one with
        the ids of the events it consumed); raises HttpError (404, 409) like the endpoint."""
        with self._lock:
            run = self._create(dag_id, run_id, logical_date, conf or {}, run_type, partition_key)
            run.partition_date, run.consumed = partition_date, tuple(consumed)
            return run.view()

    def clear_run(self, dag_id: str, run_id: str) -> RunView:
        """Clear a run as a user in the UI would (dry_run false)."""
        with self._lock:
            return self._clear(dag_id, run_id).view()

    def mark(self, dag_id: str, run_id: str, state: str) -> RunView:
        """Mark a run success/failed (or queued, which does NOT re-execute), as ``PATCH .../dagRuns/{id}`` does."""
        with self._lock:
            return self._mark(dag_id, run_id, state).view()

    # ------------------------------------------------------------ assertions

    def set_task_instance(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        state: str | None,
        *,
        try_number: int = 1,
        map_index: int = -1,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        operator: str = "PythonOperator",
    ) -> None:
        """Make ``GET /dags/{dag_id}/dagRuns/~/taskInstances`` list this task instance (v2 response shape), updated
        now (its ``updated_at``, which the list's ``updated_at_gte`` filters on)."""
        with self._lock:
            run = self._get_run(dag_id, run_id)
            self._task_instances[(dag_id, run_id, task_id)] = {
                "logical_date": _fmt(run.logical_date),
                "updated_at": _fmt(_now()),
                "id": f"{dag_id}.{run_id}.{task_id}",
                "task_id": task_id,
                "dag_id": dag_id,
                "dag_run_id": run_id,
                "map_index": map_index,
                "try_number": try_number,
                "max_tries": 0,
                "state": state,
                "start_date": _fmt(start_date),
                "end_date": _fmt(end_date),
                "operator": operator,
            }

    def calls(self, endpoint: str, dag_id: str | None = None) -> int:
        """Requests received for an endpoint (version, health, login, list_dags, get_dag, patch_dag, list_runs,
        trigger, get_run, patch_run, clear, other), optionally for one DAG; faulted requests included."""
        with self._lock:
            return sum(c for (ep, d), c in self._calls.items() if ep == endpoint and dag_id in (None, d))

    def requests(self, endpoint: str | None = None, dag_id: str | None = None) -> list[Request]:
        """Every request received (answered, dropped or still in progress), in arrival order, optionally for one
        endpoint and DAG."""
        with self._lock:
            return [r for r in self._requests if endpoint in (None, r.endpoint) and dag_id in (None, r.dag_id)]

    def creates(self, dag_id: str) -> int:
        with self._lock:
            return self._creates[dag_id]

    def clears(self, dag_id: str) -> int:
        """Effective clears (dry_run false) of any run of the DAG."""
        with self._lock:
            return self._clears[dag_id]

    def executions(self, dag_id: str | None = None) -> list[Execution]:
        with self._lock:
            return [e for e in self._timeline if dag_id in (None, e.dag_id)]

    def run(self, dag_id: str, run_id: str) -> RunView | None:
        with self._lock:
            found = self._runs.get((dag_id, run_id))
            return None if found is None else found.view()

    def runs(self, dag_id: str) -> list[RunView]:
        with self._lock:
            return [r.view() for r in self._runs.values() if r.dag_id == dag_id]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no transition is pending (runs of paused DAGs stay queued); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Airflow still busy after {timeout} s: {len(self._due)} transitions due")
                self._lock.wait(min(left, 0.05))

    # ------------------------------------------------------------ simulated scheduler (lock held unless noted)

    def _dag(self, dag_id: str) -> _Dag:
        dag = self._dags.get(dag_id)
        if dag is None or dag.missing:
            raise HttpError(404, f"The Dag with ID: `{dag_id}` was not found")
        return dag

    def _get_run(self, dag_id: str, run_id: str) -> _Run:
        self._dag(dag_id)
        run = self._runs.get((dag_id, run_id))
        if run is None:
            raise HttpError(404, f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found")
        return run

    def _create(
        self,
        dag_id: str,
        run_id: str,
        logical_date: datetime | None,
        conf: dict[str, Any],
        run_type: str,
        partition_key: str | None = None,
    ) -> _Run:
        dag = self._dag(dag_id)
        taken = (dag_id, run_id) in self._runs or (
            logical_date is not None
            and any(r.dag_id == dag_id and r.logical_date == logical_date for r in self._runs.values())
        )
        if taken:
            # Airflow's body does not say which constraint failed; clients must read the run back to learn it.
            raise HttpError(
                409,
                {
                    "reason": "Unique constraint violation",
                    "statement": "hidden",
                    "orig_error": "hidden",
                    "message": "Serious error when handling your request. Check logs for more details",
                },
            )
        now = _now()
        run = _Run(next(self._ids), dag_id, run_id, logical_date, dict(conf), run_type, now, now, now)
        run.partition_key = partition_key
        self._runs[(dag_id, run_id)] = run
        self._creates[dag_id] += 1
        self._schedule_start(dag, run)
        return run

    def _clear(self, dag_id: str, run_id: str) -> _Run:
        run = self._get_run(dag_id, run_id)
        now = _now()
        self._end_execution(run, "cleared")
        run.clear_number += 1
        run.state, run.queued_at, run.updated_at = "queued", now, now
        run.start_date = run.end_date = None
        run.start_pending = False  # a start still due belongs to the old attempt and will be ignored
        self._clears[dag_id] += 1
        self._schedule_start(self._dags[dag_id], run)
        return run

    def _mark(self, dag_id: str, run_id: str, state: str) -> _Run:
        if state not in ("queued", "success", "failed"):
            raise HttpError(
                422,
                [{"type": "enum", "loc": ["body", "state"], "msg": "Input should be 'queued', 'success' or 'failed'"}],
            )
        run = self._get_run(dag_id, run_id)
        now = _now()
        self._end_execution(run, f"marked_{state}")
        run.state, run.updated_at = state, now
        if state in TERMINAL:
            run.end_date = now
            # Airflow's api-server fires the listener on a user's state change too; the executor thread calls
            # on_state so that every callback keeps coming from one thread, in order.
            self._push(0.0, "notify", run, state)
        return run

    def _set_paused(self, dag: _Dag, paused: bool) -> None:
        dag.is_paused = paused
        if not paused:
            self._schedule_queued(dag)

    def _schedule_queued(self, dag: _Dag) -> None:
        for run in self._runs.values():
            if run.dag_id == dag.dag_id and run.state == "queued":
                self._schedule_start(dag, run)

    def _schedule_start(self, dag: _Dag, run: _Run) -> None:
        if dag.is_paused or dag.missing or run.start_pending:
            return
        run.start_pending = True
        self._push(self.queue_delay_s, "start", run)

    def _push(self, delay: float, kind: str, run: _Run, state: str = "") -> None:
        due = _Due(time.monotonic() + delay, next(self._seq), kind, run.dag_id, run.run_id, run.clear_number, state)
        heapq.heappush(self._due, due)
        self._lock.notify_all()

    def _end_execution(self, run: _Run, outcome: str) -> None:
        if run.execution is not None:
            current = self._timeline[run.execution]
            if current.ended is None:
                self._timeline[run.execution] = replace(current, ended=time.monotonic(), outcome=outcome)
            run.execution = None

    def _apply(self, due: _Due, events: list[_Event]) -> None:
        run = self._runs.get((due.dag_id, due.run_id))
        if run is None or run.clear_number != due.attempt:
            return  # a transition of an attempt that was cleared since
        dag = self._dags[due.dag_id]
        now = _now()
        if due.kind == "notify":
            events.append((run.dag_id, run.run_id, run.logical_date, due.state, run.clear_number))
        elif due.kind == "start":
            run.start_pending = False
            if run.state != "queued" or dag.is_paused or dag.missing:
                return  # stays queued; unpausing schedules it again
            run.state, run.start_date, run.updated_at = "running", now, now
            run.execution = len(self._timeline)
            self._timeline.append(
                Execution(run.dag_id, run.run_id, run.logical_date, run.clear_number, time.monotonic())
            )
            self._push(self.run_duration_s if dag.duration_s is None else dag.duration_s, "finish", run)
            events.append((run.dag_id, run.run_id, run.logical_date, "running", run.clear_number))
        elif run.state == "running":
            run.state, run.end_date, run.updated_at = dag.outcome, now, now
            self._end_execution(run, dag.outcome)
            events.append((run.dag_id, run.run_id, run.logical_date, dag.outcome, run.clear_number))

    def _executor(self) -> None:
        """The scheduler thread: applies due transitions in time order, calls on_state outside the lock."""
        while True:
            events: list[_Event] = []
            with self._lock:
                while not self._stopping.is_set() and (not self._due or self._due[0].at > time.monotonic()):
                    self._lock.wait(None if not self._due else max(0.0, self._due[0].at - time.monotonic()))
                if self._stopping.is_set():
                    return
                self._apply(heapq.heappop(self._due), events)
                self._busy += 1
            try:
                self._fire(events)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def _fire(self, events: list[_Event]) -> None:
        if self.on_state is None:
            return
        for event in events:
            try:
                self.on_state(*event)
            except Exception as exc:  # a listener error is logged by Airflow and never fails the run
                log.exception("fake airflow on_state callback failed event=%s", event)
                with self._lock:
                    self.callback_errors.append(exc)

    # ------------------------------------------------------------ HTTP endpoints (called by the handler)

    def _take_faults(self, endpoint: str, dag_id: str) -> dict[str, _Fault]:
        """Consume the first matching fault of each kind: kind -> fault."""
        taken: dict[str, _Fault] = {}
        with self._lock:
            for kind in ("fail", "delay", "drop", "hold"):
                fault = next((f for f in self._faults if f.kind == kind and f.matches(endpoint, dag_id)), None)
                if fault is None:
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                taken[kind] = fault
        return taken

    def _injected(self, faults: dict[str, _Fault], *, after: bool) -> tuple[int, Any] | None:
        """Apply the faults due at this point (before or after the effect): a hold or a delay, then a failure or a
        drop."""
        hold = faults.get("hold")
        if hold is not None and hold.gate is not None and not after:
            with self._lock:
                self._held += 1
            try:
                while not hold.gate.wait(0.05) and not self._stopping.is_set():
                    pass
            finally:
                with self._lock:
                    self._held -= 1
        delay = faults.get("delay")
        if delay is not None and delay.after == after:
            self._stopping.wait(delay.seconds)
        fail = faults.get("fail")
        if fail is not None and fail.after == after:
            return fail.status, {"detail": f"injected fault {fail.status}"}
        drop = faults.get("drop")
        if drop is not None and drop.after == after:
            return DROPPED, None
        return None

    def _who(self) -> str | None:
        peer = getattr(self._peer, "value", None)
        if self.identify is None or peer is None:
            return None
        return self.identify(peer)

    def record_internal_error(self, description: str) -> None:
        """Called by the request handler when handling raised: a bug of the fake, not a simulated fault."""
        with self._lock:
            self.internal_errors.append(description)

    def _check_token(self, header: str | None) -> None:
        if not header or not header.startswith("Bearer "):
            raise HttpError(401, "Not authenticated")
        token = header.removeprefix("Bearer ").strip()
        if token in self._expired:
            raise HttpError(401, "Token Expired")
        if token not in self._tokens:
            raise HttpError(403, "Invalid JWT token")

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Route one request: returns (status, JSON body). Faults, counting and auth happen here."""
        parts = urlsplit(raw_path)
        segs = [unquote(s) for s in parts.path.strip("/").split("/")] if parts.path.strip("/") else []
        query = parse_qs(parts.query, keep_blank_values=True)
        endpoint, dag_id, public = _classify(method, segs)
        received = time.monotonic()
        client = self._who()  # before any delay: the client may hang up while it waits
        if headers.get("user-agent", "").endswith(CHECK_AGENT_SUFFIX):
            return self._handle_check(method, endpoint, dag_id, public, client, received, segs, query, headers, body)
        with self._lock:
            self._calls[(endpoint, dag_id)] += 1
            seq = len(self._requests)
            self._requests.append(Request(seq, method, endpoint, dag_id, client, received, None))
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        status = 500  # what the handler answers if this raises (a bug of the fake)
        try:
            faults = self._take_faults(endpoint, dag_id)
            result = self._injected(faults, after=False)
            if result is None:
                try:
                    if not public:
                        with self._lock:
                            self._check_token(headers.get("authorization"))
                    result = self._dispatch(endpoint, method, segs, query, body)
                except HttpError as err:
                    result = (err.status, {"detail": err.detail})
                result = self._injected(faults, after=True) or result
            status = result[0]
            return result
        finally:
            with self._lock:
                self._requests[seq] = replace(self._requests[seq], status=status)
                self._in_flight -= 1

    def _handle_check(
        self, method: str, endpoint: str, dag_id: str, public: bool, client: str | None, received: float,
        segs: list[str], query: dict[str, list[str]], headers: dict[str, str], body: bytes,
    ) -> tuple[int, Any]:  # fmt: skip
        """Rule 8: answered like any request, but logged apart and never faulted."""
        try:
            if not public:
                with self._lock:
                    self._check_token(headers.get("authorization"))
            result = self._dispatch(endpoint, method, segs, query, body)
        except HttpError as err:
            result = (err.status, {"detail": err.detail})
        with self._lock:
            self._checks.append(Request(len(self._checks), method, endpoint, dag_id, client, received, result[0]))
        return result

    def checks(self) -> list[Request]:
        """The requests of instance checks (rule 8), in arrival order."""
        with self._lock:
            return list(self._checks)

    def _dispatch(
        self, endpoint: str, method: str, segs: list[str], query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        if endpoint == "version":
            return 200, {"version": AIRFLOW_VERSION, "git_version": None}
        if endpoint == "health":
            return 200, {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"}}
        if endpoint == "login":
            if method == "GET":  # a token without credentials: only in simple_auth_manager_all_admins mode
                raise HttpError(403, "This method is only allowed if ``[core] simple_auth_manager_all_admins`` is True")
            data = _json_body(body)
            if data.get("username") != self.username or data.get("password") != self.password:
                raise HttpError(401, "Invalid credentials")
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
            return 201, {"access_token": token}
        if endpoint == "v1":
            raise HttpError(404, "The /api/v1 API has been removed in Airflow 3; use /api/v2")
        if endpoint == "other":
            raise HttpError(404, "Not Found")
        if endpoint == "list_dags":
            with self._lock:
                return 200, self._list_dags(query)
        if endpoint in ("list_assets", "list_asset_events", "post_asset_event"):
            with self._lock:
                if endpoint == "list_assets":
                    return 200, self._list_assets(query)
                if endpoint == "list_asset_events":
                    return 200, self._list_asset_events(query)
                return 200, self._post_asset_event(_json_body(body))
        dag_id = segs[3]
        with self._lock:
            if endpoint == "get_dag":
                return 200, _dag_json(self._dag(dag_id))
            if endpoint == "patch_dag":
                data = _json_body(body)
                if set(data) - {"is_paused"} or not isinstance(data.get("is_paused"), bool):
                    raise HttpError(
                        422,
                        [{"type": "bool_type", "loc": ["body", "is_paused"], "msg": "Input should be a valid boolean"}],
                    )
                dag = self._dag(dag_id)
                self._set_paused(dag, data["is_paused"])
                return 200, _dag_json(dag)
            if endpoint == "list_runs":
                return 200, self._list(dag_id, query)
            if endpoint == "trigger":
                return 200, _run_json(self._trigger(dag_id, _json_body(body)))
            if endpoint == "list_task_instances":
                return 200, self._list_task_instances(dag_id, segs[5], query)
            if endpoint == "upstream_events":
                return 200, self._upstream_events(dag_id, segs[5])
            run_id = segs[5]
            if endpoint == "get_run":
                return 200, _run_json(self._get_run(dag_id, run_id))
            if endpoint == "clear":
                data = _json_body(body)
                _no_extra(data, _CLEAR_KEYS)
                # Airflow's DAGRunClearBody: dry_run defaults to TRUE, and a dry run changes nothing.
                if data.get("dry_run", True):
                    run = self._get_run(dag_id, run_id)
                    return 200, {"task_instances": [{"task_id": "task", "dag_run_id": run.run_id}], "total_entries": 1}
                return 200, _run_json(self._clear(dag_id, run_id))
            # patch_run
            data = _json_body(body)
            return 200, _run_json(self._mark(dag_id, run_id, str(data.get("state"))))

    def _trigger(self, dag_id: str, data: dict[str, Any]) -> _Run:
        self.trigger_bodies.append(dict(data))
        # FastAPI validates the body (422) before the endpoint looks the DAG up (404).
        _no_extra(data, _TRIGGER_KEYS)
        if "logical_date" not in data:
            raise HttpError(422, [{"type": "missing", "loc": ["body", "logical_date"], "msg": "Field required"}])
        raw_date = data["logical_date"]
        logical_date = None if raw_date is None else _aware(raw_date, ["body", "logical_date"])
        conf = data.get("conf") or {}
        if not isinstance(conf, dict):
            raise HttpError(
                422, [{"type": "dict_type", "loc": ["body", "conf"], "msg": "Input should be a valid dictionary"}]
            )
        key = data.get("partition_key")
        if not (key is None or isinstance(key, str)):
            raise HttpError(
                422,
                [{"type": "string_type", "loc": ["body", "partition_key"], "msg": "Input should be a valid string"}],
            )
        interval = _interval(data)
        run_id = data.get("dag_run_id") or f"manual__{(logical_date or _now()).isoformat()}"
        dag = self._dag(dag_id)
        if key is not None and dag.timetable is not None and not dag.timetable.accepts_keys:
            # Rule 12: Airflow's DagNotPartitionedError, answered 400.
            raise HttpError(400, f"Dag '{dag_id}' is not a partitioned Dag and does not accept a partition_key.")
        # Airflow decodes partition_date from the key with the DAG's timetable; the fake's DAGs have none (as
        # PartitionedAtRuntime): partition_date stays null.
        run = self._create(dag_id, str(run_id), logical_date, conf, "manual", key)
        run.interval = interval
        return run

    def _upstream_events(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """``GET .../dagRuns/{run_id}/upstreamAssetEvents``: the events an asset-triggered run consumed, unpaged."""
        run = self._get_run(dag_id, run_id)
        events = [dict(e) for e in self._asset_events if e["id"] in run.consumed]
        return {"asset_events": events, "total_entries": len(events)}

    def _list_task_instances(self, dag_id: str, run_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        # Airflow 3's GET /dags/{dag_id}/dagRuns/{run_id|~}/taskInstances with the task_id and updated_at_gte
        # filters, ordered by id, paged like the run list.
        self._dag(dag_id)
        items = [ti for (d, r, _), ti in sorted(self._task_instances.items()) if d == dag_id and run_id in ("~", r)]
        wanted = query.get("task_id", [""])[-1]
        if wanted:
            items = [ti for ti in items if ti["task_id"] == wanted]
        since = query.get("updated_at_gte")
        if since:
            bound = _aware(since[-1], ["query", "updated_at_gte"])
            items = [ti for ti in items if _aware(ti["updated_at"], ["updated_at"]) >= bound]
        limit = min(_int(query, "limit", 50), 100)
        offset = _int(query, "offset", 0)
        return {"task_instances": items[offset : offset + limit], "total_entries": len(items)}

    def _list_dags(self, query: dict[str, list[str]]) -> dict[str, Any]:
        # Airflow 3's GET /dags: ``paused`` filters when given (absent: both), missing DAGs are not listed, ordered
        # by dag_id, paged like the run list.
        dags = sorted((d for d in self._dags.values() if not d.missing), key=lambda d: d.dag_id)
        paused = query.get("paused", [""])[-1].lower()
        if paused not in ("", "true", "false"):
            raise HttpError(
                422, [{"type": "bool_parsing", "loc": ["query", "paused"], "msg": "Input should be a bool"}]
            )
        if paused:
            dags = [d for d in dags if d.is_paused == (paused == "true")]
        types = query.get("timetable_type")
        if types:
            dags = [d for d in dags if d.timetable is not None and d.timetable.type_name in types]
        limit = min(_int(query, "limit", 50), 100)
        offset = _int(query, "offset", 0)
        return {"dags": [_dag_json(d) for d in dags[offset : offset + limit]], "total_entries": len(dags)}

    def _list(self, dag_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if dag_id != "~":
            self._dag(dag_id)
        runs = [r for r in self._runs.values() if dag_id in ("~", r.dag_id)]
        for name in _DATE_FILTERS:
            for op in ("gte", "gt", "lte", "lt"):
                values = query.get(f"{name}_{op}")
                if values:
                    bound = _aware(values[-1], ["query", f"{name}_{op}"])
                    runs = [r for r in runs if _compare(getattr(r, name), op, bound)]
        states = [s for v in query.get("state", []) for s in v.split(",") if s]
        if states:
            runs = [r for r in runs if r.state in states]
        order = query.get("order_by", ["id"])[-1]
        key = order.removeprefix("-")
        key = "run_id" if key == "dag_run_id" else key
        if key not in _ORDERABLE:
            raise HttpError(400, f"Ordering with '{key}' is disallowed or the attribute does not exist on the model")
        desc = order.startswith("-")
        present = sorted((r for r in runs if getattr(r, key) is not None), key=lambda r: getattr(r, key), reverse=desc)
        absent = [r for r in runs if getattr(r, key) is None]
        runs = absent + present if desc else present + absent  # PostgreSQL: NULLS LAST ascending, FIRST descending
        limit = min(_int(query, "limit", 50), 100)  # Airflow: fallback_page_limit 50, maximum_page_limit 100
        offset = _int(query, "offset", 0)
        return {"dag_runs": [_run_json(r) for r in runs[offset : offset + limit]], "total_entries": len(runs)}


def _classify(method: str, segs: list[str]) -> tuple[str, str, bool]:
    """(endpoint name, dag id or "", public?) for a request path."""
    if segs == ["auth", "token"] and method in ("GET", "POST"):
        return "login", "", True
    if segs[:2] == ["api", "v1"]:
        return "v1", "", True
    if segs[:2] != ["api", "v2"]:
        return "other", "", True
    rest = segs[2:]
    if rest == ["version"] and method == "GET":
        return "version", "", True
    if rest == ["monitor", "health"] and method == "GET":
        return "health", "", True
    if rest == ["dags"] and method == "GET":
        return "list_dags", "", False
    if rest == ["assets"] and method == "GET":
        return "list_assets", "", False
    if rest == ["assets", "events"]:
        return {"GET": "list_asset_events", "POST": "post_asset_event"}.get(method, "other"), "", False
    if len(rest) == 2 and rest[0] == "dags":
        return {"GET": "get_dag", "PATCH": "patch_dag"}.get(method, "other"), rest[1], False
    if len(rest) == 3 and rest[0] == "dags" and rest[2] == "dagRuns":
        return {"GET": "list_runs", "POST": "trigger"}.get(method, "other"), rest[1], False
    if len(rest) == 4 and rest[0] == "dags" and rest[2] == "dagRuns":
        return {"GET": "get_run", "PATCH": "patch_run"}.get(method, "other"), rest[1], False
    if len(rest) == 5 and rest[0] == "dags" and rest[2] == "dagRuns" and rest[4] == "taskInstances" and method == "GET":
        return "list_task_instances", rest[1], False
    if len(rest) == 5 and rest[0] == "dags" and rest[2] == "dagRuns" and rest[4] == "clear" and method == "POST":
        return "clear", rest[1], False
    if len(rest) == 5 and rest[2] == "dagRuns" and rest[4] == "upstreamAssetEvents" and method == "GET":
        return "upstream_events", rest[1], False
    return "other", "", False


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise HttpError(422, [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]) from exc
    if not isinstance(data, dict):
        raise HttpError(422, [{"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be an object"}])
    return data


def _no_extra(data: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise HttpError(
            422,
            [{"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"} for k in extra],
        )


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        value = int(query.get(name, [str(default)])[-1])
    except ValueError as exc:
        raise HttpError(
            422, [{"type": "int_parsing", "loc": ["query", name], "msg": "Input should be a valid integer"}]
        ) from exc
    if value < 0:
        raise HttpError(422, [{"type": "greater_than_equal", "loc": ["query", name], "msg": "Input should be >= 0"}])
    return value or default


def _compare(value: datetime | None, op: str, bound: datetime) -> bool:
    if value is None:
        return False  # SQL: NULL compares false
    return {"gte": value >= bound, "gt": value > bound, "lte": value <= bound, "lt": value < bound}[op]


def _dag_json(dag: _Dag) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dag_id": dag.dag_id,
        "dag_display_name": dag.dag_id,
        "is_paused": dag.is_paused,
        "is_stale": False,
        "fileloc": f"/opt/airflow/dags/{dag.dag_id}.py",
    }
    if dag.timetable is not None:  # rule 12
        body |= {
            "timetable_summary": dag.timetable.summary,
            "timetable_description": dag.timetable.description,
            "timetable_partitioned": dag.timetable.partitioned,
        }
    return body


def _run_json(run: _Run) -> dict[str, Any]:
    duration = (run.end_date - run.start_date).total_seconds() if run.end_date and run.start_date else None
    return {
        "dag_run_id": run.run_id,
        "dag_id": run.dag_id,
        "logical_date": _fmt(run.logical_date),
        "queued_at": _fmt(run.queued_at),
        "start_date": _fmt(run.start_date),
        "end_date": _fmt(run.end_date),
        "duration": duration,
        "data_interval_start": _fmt(run.data_interval[0]),
        "data_interval_end": _fmt(run.data_interval[1]),
        "run_after": _fmt(run.run_after),
        "last_scheduling_decision": None,
        "run_type": run.run_type,
        "state": run.state,
        "triggered_by": "rest_api" if run.run_type == "manual" else None,
        "triggering_user_name": None,
        "conf": run.conf,
        "note": None,
        "dag_versions": [],
        "bundle_version": None,
        "dag_display_name": run.dag_id,
        "partition_key": run.partition_key,
        "partition_date": _fmt(run.partition_date),
    }


class _Server(ThreadingHTTPServer):
    # Request threads are joined by server_close(), so stop() leaves no thread behind.
    daemon_threads = False
    block_on_close = True
    # socketserver's default listen backlog is 5: a burst of concurrent clients would see dropped SYNs and 1 s stalls.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeAirflow) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here (delay_next); anything else is a fake bug worth seeing.
        log.debug("fake airflow request error client=%s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = self.server.fake
        fake._peer.value = self.client_address[:2]
        try:
            status, payload = fake.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: answer 500 loudly rather than hang up, and record it
            log.exception("fake airflow handler failed method=%s path=%s", self.command, self.path)
            fake.record_internal_error(f"{self.command} {self.path}: {type(exc).__name__}: {exc}")
            status, payload = 500, {"detail": "fake airflow internal error"}
        finally:
            fake._peer.value = None
        self.close_connection = True
        if status == DROPPED:
            return  # no answer at all: the server closes the connection
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if status == 429 and fake.retry_after_s is not None:
                self.send_header("Retry-After", str(fake.retry_after_s))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout); the effect, if any, stays, as in a real server

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake airflow %s", format % args)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Airflow 3 REST API for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dags", default="", help="comma-separated dag ids")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--queue-delay", type=float, default=0.01, help="seconds from queued to running")
    parser.add_argument("--duration", type=float, default=0.05, help="seconds from running to success")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    dags = [d for d in args.dags.split(",") if d]
    fake = FakeAirflow(
        dags,
        username=args.username,
        password=args.password,
        queue_delay_s=args.queue_delay,
        run_duration_s=args.duration,
        host=args.host,
        port=args.port,
    )
    with fake:
        print(fake.url, flush=True)
        stop.wait()
        summary = {
            d: {"creates": fake.creates(d), "clears": fake.clears(d), "executions": len(fake.executions(d))}
            for d in dags
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    _main()
