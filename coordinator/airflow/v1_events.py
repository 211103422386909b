"""Airflow 2's asset (dataset) event listing read oldest first: ``GET /api/v1/datasets/events`` has no timestamp
filter and no tie-breaker, so reading the oldest events at or after a time takes the search below. The client
(``client.py``) hands it one page at a time; no HTTP here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from coordinator.airflow.assets import AssetEventInfo

#: One page of v1 dataset events at an offset, and the ``total_entries`` the server counted for it:
#: ``(path, key, params, offset, limit) -> (events, total)``.
Page = Callable[[str, str, Mapping[str, str], int, int], Awaitable[tuple[list[AssetEventInfo], int]]]


async def v1_asset_events(
    fetch: Page, since: datetime, asset_id: int | None, limit: int, page_size: int
) -> list[AssetEventInfo]:
    """``GET /api/v1/datasets/events`` filters by dataset but not by time, and sorts by ``timestamp`` alone
    (Airflow 2.11's ``apply_sorting``: no tie-breaker, so equal timestamps come in any order). Reading newest
    first until ``since`` would stop after a fixed number and lose the oldest of a larger backlog for good.

    1. One newest-first page: when it reaches back past ``since`` (or holds every event), it is the answer (the
       steady state: one request).
    2. Else the offset of the first event at or after ``since`` in ascending order is found by bisection over
       ``total_entries`` with one-item pages (O(log n) requests, nothing loaded whole). Events added meanwhile
       have later timestamps and land after it; the events before it stay put.
    3. From there, pages in ascending order, at most ``limit`` events. Each next page starts at the first event
       of the previous page's trailing run of equal timestamps (at least its last event), so a run split by a
       page boundary (in a different order on the next query) is read whole; repeats are dropped by id.
    """
    path, key = "/api/v1/datasets/events", "dataset_events"
    base = {} if asset_id is None else {"dataset_id": str(asset_id)}
    newest, total = await fetch(path, key, {**base, "order_by": "-timestamp"}, 0, page_size)
    if total <= len(newest) or (newest and newest[-1].timestamp < since):
        return oldest_first([e for e in newest if e.timestamp >= since], limit)
    ascending = {**base, "order_by": "timestamp"}
    low, high = 0, total  # [0, low): older than since; [high, total): at or after it
    while low < high:
        middle = (low + high) // 2
        probe, _ = await fetch(path, key, ascending, middle, 1)
        if probe and probe[0].timestamp < since:
            low = middle + 1
        else:
            high = middle  # at or after since, or past the end (the table shrank: read from here)
    events: dict[int, AssetEventInfo] = {}
    offset = low
    while len(events) < limit:
        page, total = await fetch(path, key, ascending, offset, page_size)
        events.update((e.event_id, e) for e in page if e.timestamp >= since)
        if not page or offset + len(page) >= total:
            break
        # The last event may share its timestamp with the next page's first: read it (and its run) again.
        run = len(page) - 1
        while run > 0 and page[run - 1].timestamp == page[-1].timestamp:
            run -= 1
        offset += run or len(page)  # a page of one timestamp only: move on (more ties than a page)
    return oldest_first(list(events.values()), limit)


def oldest_first(events: list[AssetEventInfo], limit: int) -> list[AssetEventInfo]:
    """Each event once (pages that overlap or shifted repeat some), by timestamp then id, the first ``limit``."""
    unique = {e.event_id: e for e in events}
    return sorted(unique.values(), key=lambda e: (e.timestamp, e.event_id))[:limit]
