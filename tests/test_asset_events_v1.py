"""``AirflowClient.asset_events`` on an Airflow 2 (``GET /api/v1/datasets/events``: no timestamp filter, sorted by
timestamp with no tie-breaker), through an httpx transport modelled on 2.11's endpoint (tests/support/
fake_datasets_v1.py): however many events follow the mark, a caller that lists from its last event less a minute
(the asset job's rule 1) sees every one of them, in order, each once per call, without loading the table."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.assets import AssetEventInfo, AssetEventListing
from coordinator.airflow.client import SCAN_MAX, AirflowClient
from coordinator.runtime.settings import InstanceSettings
from tests.support.fake_datasets_v1 import FakeDatasetEventsV1

T0 = datetime(2026, 3, 1, tzinfo=UTC)
OVERLAP = timedelta(seconds=60)  # the asset job's OVERLAP_S


def listing(fake: FakeDatasetEventsV1, call: Callable[[AirflowClient], object]) -> object:
    async def go() -> object:
        settings = InstanceSettings(url="http://airflow2.test", username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, transport=httpx.MockTransport(fake), name="team_a") as client:
            return await call(client)  # type: ignore[misc]

    return asyncio.run(go())


def events_since(fake: FakeDatasetEventsV1, since: datetime, **kw: object) -> list[AssetEventInfo]:
    found = listing(fake, lambda c: c.asset_events(since, **kw))  # type: ignore[arg-type]
    assert isinstance(found, AssetEventListing) and not found.stopped
    return found.events


def stamps_ok(found: list[AssetEventInfo]) -> None:
    """One call's answer: ascending by timestamp, no event twice."""
    assert [e.timestamp for e in found] == sorted(e.timestamp for e in found)
    assert len({e.event_id for e in found}) == len(found)


def test_a_backlog_of_25000_events_is_listed_whole_in_order_over_several_calls() -> None:
    """25,000 events a second apart, a mark at the 12,001st: calls that each start a minute before the last event
    listed return all 13,000 events since the mark, oldest first, none twice within a call; each call costs a
    bisection plus its pages, not a read of the table."""
    fake = FakeDatasetEventsV1()
    ids = [fake.add(T0 + timedelta(seconds=i)) for i in range(25_000)]
    mark = T0 + timedelta(seconds=12_000)
    since, seen, calls = mark, [], []
    while True:
        before = len(fake.listings)
        found = events_since(fake, since)
        calls.append((len(found), len(fake.listings) - before))
        stamps_ok(found)
        assert all(e.timestamp >= since for e in found)
        fresh = [e.event_id for e in found if e.event_id not in set(seen)]
        if not fresh:
            break
        assert [e.event_id for e in found if e.event_id in set(seen)] == seen[len(seen) - (len(found) - len(fresh)) :]
        seen += fresh
        since = found[-1].timestamp - OVERLAP
    assert seen == ids[12_000:], "an event since the mark was never listed, or out of order"
    assert calls[0][0] == SCAN_MAX, calls  # the oldest 10,000 first, the rest in later calls
    # 1 newest-first page + at most 15 one-item probes (2^15 > 25,000) + 102 pages of 100 (each re-reads the
    # previous page's last event, which may tie with the next one).
    assert calls[0][1] <= 1 + 15 + 102, calls
    assert calls[-1][1] == 1, "the caught-up call should read one newest-first page only"


def test_equal_timestamps_split_by_a_page_boundary_are_all_listed() -> None:
    """1,000 events in runs of 7 sharing one timestamp, served in a new order on every query (SQL sorts ties in no
    fixed order): every event is listed exactly once."""
    fake = FakeDatasetEventsV1(seed=7)
    ids = [fake.add(T0 + timedelta(seconds=i // 7)) for i in range(1_000)]
    fake.add(T0 + timedelta(days=1))  # the newest page does not reach back: the forward scan is used
    for _ in range(100):
        fake.add(T0 + timedelta(days=1, seconds=1))
    found = events_since(fake, T0, limit=1_000)
    stamps_ok(found)
    assert sorted(e.event_id for e in found) == ids


def test_events_added_during_a_scan_neither_hide_nor_repeat_the_others() -> None:
    """While a call bisects and pages, new events arrive (now) and late commits land in the range already read:
    every event that existed before the call and is since the mark is listed, once."""
    fake = FakeDatasetEventsV1(seed=3)
    for i in range(5_000):
        fake.add(T0 + timedelta(seconds=i))
    since = T0 + timedelta(seconds=1_000)
    existing = {e["id"] for e in fake.events if datetime.fromisoformat(e["timestamp"]) >= since}
    late = iter(range(1_000, 5_000, 37))

    def arrive(f: FakeDatasetEventsV1) -> None:
        f.add(T0 + timedelta(days=1, seconds=len(f.events)))  # newer than everything
        f.add(T0 + timedelta(seconds=next(late), microseconds=500))  # older than what the scan reached

    fake.before_list = arrive
    found = events_since(fake, since)
    stamps_ok(found)
    assert existing <= {e.event_id for e in found}


def test_a_caught_up_listing_costs_one_request_and_the_dataset_filter_is_sent() -> None:
    """With 30 events of dataset 2 since the mark among 20,000, one newest-first request answers, filtered by
    dataset_id (the target look-up's query), oldest first."""
    fake = FakeDatasetEventsV1()
    for i in range(20_000):
        fake.add(T0 + timedelta(seconds=i), dataset_id=1 + i % 2)
    since = T0 + timedelta(seconds=20_000 - 60)
    found = events_since(fake, since, asset_id=2)
    assert [e.event_id for e in found] == [i + 1 for i in range(19_940, 20_000) if i % 2 == 1]
    assert len(fake.listings) == 1
    assert fake.listings[0].url.params["dataset_id"] == "2"
    assert fake.listings[0].url.params["order_by"] == "-timestamp"


@pytest.mark.parametrize(("limit", "since_s"), [pytest.param(250, 100, id="limit-250"), pytest.param(1, 0, id="one")])
def test_limit_returns_the_oldest_events_since_the_mark(limit: int, since_s: int) -> None:
    """At most ``limit`` events, the oldest ones at or after the mark."""
    fake = FakeDatasetEventsV1()
    ids = [fake.add(T0 + timedelta(seconds=i)) for i in range(3_000)]
    found = events_since(fake, T0 + timedelta(seconds=since_s), limit=limit)
    assert [e.event_id for e in found] == ids[since_s : since_s + limit]


def test_no_event_since_the_mark_and_an_empty_table_list_nothing() -> None:
    """A mark after the newest event, or no event at all: an empty list."""
    fake = FakeDatasetEventsV1()
    assert events_since(fake, T0) == []
    for i in range(500):
        fake.add(T0 + timedelta(seconds=i))
    assert events_since(fake, T0 + timedelta(hours=1)) == []
