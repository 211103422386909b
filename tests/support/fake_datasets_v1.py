"""Airflow 2.11's dataset events listing at the HTTP boundary, as an ``httpx.MockTransport`` handler (no sockets: a
listing test pages through tens of thousands of events in a second).

What it copies from ``airflow/api_connexion/endpoints/dataset_endpoint.py::get_dataset_events`` and
``parameters.py`` of the installed 2.11 (``.venv-airflow2``):

1. ``GET /api/v1/datasets/events`` takes ``limit`` (default 100, above ``[api] maximum_page_limit`` = 100 cut to it,
   0 -> the fallback 100, negative -> 400), ``offset``, ``order_by`` (``timestamp`` by default; one of
   ``source_dag_id``, ``source_task_id``, ``source_run_id``, ``source_map_index``, ``timestamp``, with ``-`` for
   descending, anything else 400) and filters by ``dataset_id``. There is NO timestamp filter, and a parameter the
   spec does not name is refused: 400 "Extra query parameter(s) timestamp_gte not in spec" (connexion's strict
   validation). Checked against a real 2.11.2 app on SQLite: these answers, ``order_by=id`` -> 400, ``limit=500``
   -> 100 events, and the client's listings equal a direct query of the table.
2. ``total_entries`` counts the filtered events before paging.
3. ``ORDER BY timestamp`` has no tie-breaker: events with equal timestamps come in an order that may differ from one
   query to the next (here: shuffled on every request, seeded).
4. ``/api/v2/version`` answers 404 and ``/api/v1/version`` 200, so the client detects v1; auth is not checked.
5. :attr:`FakeDatasetEventsV1.before_list` runs before each listing is answered (events added during a scan).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

PATH = "/api/v1/datasets/events"
_PARAMS = frozenset({"limit", "offset", "order_by", "dataset_id", "source_dag_id", "source_task_id", "source_run_id",
                     "source_map_index"})  # fmt: skip
_ORDERABLE = ("source_dag_id", "source_task_id", "source_run_id", "source_map_index", "timestamp")


class FakeDatasetEventsV1:
    """An Airflow 2.11 holding dataset events; call it with a request (an ``httpx.MockTransport`` handler)."""

    def __init__(self, seed: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self._at: dict[int, datetime] = {}  # parsed timestamps by id: sorting 25,000 events per request stays cheap
        self.listings: list[httpx.Request] = []
        self.before_list: Callable[[FakeDatasetEventsV1], None] | None = None
        self._rng = random.Random(seed)
        #: Events by timestamp and the (start, end) of each run of equal timestamps in it; None: to be sorted again.
        self._by_time: tuple[list[dict[str, Any]], list[tuple[int, int]]] | None = None

    def add(self, timestamp: datetime, *, dataset_id: int = 1, uri: str = "s3://lake/orders",
            extra: dict[str, Any] | None = None) -> int:  # fmt: skip
        """A new event (ids grow by insertion, as the database's would; the timestamp is the caller's)."""
        event_id = len(self.events) + 1
        self._at[event_id] = timestamp
        self._by_time = None
        self.events.append({
            "id": event_id, "dataset_id": dataset_id, "dataset_uri": uri, "extra": extra or {},
            "source_task_id": "publish", "source_dag_id": "producer", "source_run_id": "scheduled__x",
            "source_map_index": -1, "created_dagruns": [], "timestamp": timestamp.astimezone(UTC).isoformat(),
        })  # fmt: skip
        return event_id

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/version":
            return httpx.Response(200, json={"version": "2.11.0", "git_version": None})
        if path == PATH and request.method == "GET":
            self.listings.append(request)
            if self.before_list is not None:
                self.before_list(self)
            return self._list(request.url.params)
        return httpx.Response(404, json={"title": "Not Found", "status": 404})

    def _list(self, params: httpx.QueryParams) -> httpx.Response:
        extra = sorted(set(params) - _PARAMS)
        if extra:
            detail = f"Extra query parameter(s) {', '.join(extra)} not in spec"
            return httpx.Response(400, json={"detail": detail, "status": 400})
        try:
            limit, offset = int(params.get("limit", "100")), int(params.get("offset", "0"))
        except ValueError:
            return httpx.Response(400, json={"detail": "limit and offset must be integers", "status": 400})
        if limit < 0 or offset < 0:
            return httpx.Response(400, json={"detail": "Page limit must be a positive integer", "status": 400})
        limit = min(limit or 100, 100)
        order_by = params.get("order_by", "timestamp")
        field = order_by.lstrip("-")
        if field not in _ORDERABLE:
            detail = f"Ordering with '{field}' is disallowed or the attribute does not exist on the model"
            return httpx.Response(400, json={"detail": detail, "status": 400})
        events = self._ordered(field)
        wanted = params.get("dataset_id")
        if wanted:
            events = [e for e in events if str(e["dataset_id"]) == wanted]
        if order_by.startswith("-"):
            events.reverse()
        page = events[offset : offset + limit]
        return httpx.Response(200, json={"dataset_events": page, "total_entries": len(events)})

    def _ordered(self, field: str) -> list[dict[str, Any]]:
        """Every event by ``field`` ascending; rule 3: each run of equal timestamps in a new order on every call."""
        if field != "timestamp":
            return sorted(self.events, key=lambda e: (e[field] is None, e[field]))
        if self._by_time is None:
            flat = sorted(self.events, key=lambda e: self._at[e["id"]])
            ties, start = [], 0
            for end in range(1, len(flat) + 1):
                if end == len(flat) or self._at[flat[end]["id"]] != self._at[flat[start]["id"]]:
                    if end - start > 1:
                        ties.append((start, end))
                    start = end
            self._by_time = (flat, ties)
        flat, ties = self._by_time
        ordered = list(flat)
        for start, end in ties:
            ordered[start:end] = self._rng.sample(ordered[start:end], end - start)
        return ordered
