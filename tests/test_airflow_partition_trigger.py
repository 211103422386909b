"""Triggering a partition over REST (``AirflowClient.trigger`` with a ``partition_key``): the v2 body, runs without a
logical date, what a 409 means when partitions share a day, the partitioned run found by key, and Airflow 2's
refusal; against the fake Airflow over real sockets (and a scripted v1 for Airflow 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient, TriggerResult
from coordinator.airflow.runs import parse_run
from coordinator.errors import AirflowConflict, AirflowError
from coordinator.runtime.settings import InstanceSettings
from tests.support.fake_airflow import FakeAirflow

DAY = datetime(2026, 1, 1, tzinfo=UTC)
EU, US = "2026-01-01T00:00:00Z~eu", "2026-01-01T00:00:00Z~us"


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    server = FakeAirflow(["d"], password="pw", run_duration_s=0.02)
    with server:
        yield server
    assert server.internal_errors == []


def call(fake: FakeAirflow, fn: Callable[[AirflowClient], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, timeout_s=2.0) as client:
            return await fn(client)

    return asyncio.run(go())


def _bodies(fake: FakeAirflow) -> list[dict[str, Any]]:
    return fake.trigger_bodies


def test_a_segment_is_triggered_with_its_key_and_no_logical_date(fake: FakeAirflow) -> None:
    """The v2 body carries ``partition_key`` and a null logical date; the run keeps the key; a retry finds it."""
    first = call(fake, lambda c: c.trigger("d", "coordinator__eu", None, {}, "eu"))
    again = call(fake, lambda c: c.trigger("d", "coordinator__eu", None, {}, "eu"))
    assert first.result is TriggerResult.CREATED and again.result is TriggerResult.ALREADY_EXISTS
    assert first.run.partition_key == "eu" and first.run.logical_date is None
    assert _bodies(fake)[0]["partition_key"] == "eu" and _bodies(fake)[0]["logical_date"] is None
    assert fake.creates("d") == 1


def test_two_segments_of_one_day_are_two_runs(fake: FakeAirflow) -> None:
    """Without a logical date, two segments of one day do not collide on Airflow's one-run-per-logical-date rule."""
    for partition in (EU, US):
        key = partition.replace("~", "|")
        outcome = call(fake, lambda c, p=partition, k=key: c.trigger("d", f"coordinator__{p}", None, {}, k))
        assert outcome.result is TriggerResult.CREATED
    assert fake.creates("d") == 2


def test_a_time_trigger_without_key_sends_no_partition_key(fake: FakeAirflow) -> None:
    """A plain time partition's body is exactly today's: no ``partition_key`` field at all."""
    call(fake, lambda c: c.trigger("d", "coordinator__2026-01-01T00:00:00Z", DAY, {}))
    assert "partition_key" not in _bodies(fake)[0]


def test_a_run_id_taken_by_another_partition_key_is_a_conflict(fake: FakeAirflow) -> None:
    """The run id exists with another key: a conflict naming both, never ALREADY_EXISTS."""
    fake.create_run("d", "coordinator__eu", None, partition_key="us")
    with pytest.raises(AirflowConflict, match="partition key us instead of"):
        call(fake, lambda c: c.trigger("d", "coordinator__eu", None, {}, "eu"))


def test_a_logical_date_held_by_another_partition_key_is_not_taken_over(fake: FakeAirflow) -> None:
    """A holder of the logical date with another key would rerun another partition: a conflict, not a clear."""
    fake.create_run("d", "manual__x", DAY, partition_key="2026-01-01T00:00:00|us")
    with pytest.raises(AirflowConflict, match="rerunning it would not run this partition"):
        call(fake, lambda c: c.trigger("d", "coordinator__p", DAY, {}, "2026-01-01T00:00:00|eu"))
    holder = fake.create_run("d", "scheduled__y", datetime(2026, 1, 2, tzinfo=UTC), partition_key="2026-01-02T00:00:00")
    outcome = call(fake, lambda c: c.trigger("d", "coordinator__q", holder.logical_date, {}, "2026-01-02T00:00:00"))
    assert outcome.result is TriggerResult.LOGICAL_DATE_TAKEN and outcome.run.run_id == "scheduled__y"


def test_the_run_of_a_partition_key_is_found_by_its_exact_key(fake: FakeAirflow) -> None:
    """Airflow's own partitioned run (no logical date) is found by key; a key it merely contains is not."""
    fake.create_run("d", "scheduled__h5", None, partition_key="2026-01-01T05:00:00", partition_date=DAY)
    fake.create_run("d", "scheduled__h15", None, partition_key="2026-01-01T15:00:00")
    found = call(fake, lambda c: c.find_run_by_partition_key("d", "2026-01-01T05:00:00"))
    assert found is not None and found.run_id == "scheduled__h5" and found.partition_date == DAY
    assert call(fake, lambda c: c.find_run_by_partition_key("d", "2026-01-01T05")) is None


@pytest.mark.parametrize(
    ("logical_date", "key"),
    [pytest.param(None, "eu", id="segment"), pytest.param(DAY, "2026-01-01T00:00:00", id="keyed-time")],
)
def test_airflow_2_refuses_a_partition_key_without_sending(logical_date: datetime | None, key: str) -> None:
    """API v1 has no partition keys: a clear AirflowError, and no trigger request is sent."""
    sent: list[httpx.Request] = []

    def v1(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/api/v1/version":
            return httpx.Response(200, json={"version": "2.11.2"})
        return httpx.Response(404, json={"detail": "Not Found"})

    async def go() -> Any:
        settings = InstanceSettings(url="http://af2.test", username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, timeout_s=2.0, transport=httpx.MockTransport(v1), name="af2") as client:
            return await client.trigger("d", "coordinator__eu", logical_date, {}, key)

    with pytest.raises(AirflowError, match=r"Airflow 2 \(API v1\), which cannot trigger partition key"):
        asyncio.run(go())
    assert not [r for r in sent if r.method == "POST"]


def test_run_listings_carry_the_partition_on_v2_only() -> None:
    """A v2 run's partition_key and partition_date are parsed; a v1 run (Airflow 2 has neither) has none."""
    v2 = {"dag_run_id": "r", "state": "success", "logical_date": None, "partition_key": "eu", "partition_date": None}
    hourly = {**v2, "partition_key": "2026-01-01T05:00:00", "partition_date": "2026-01-01T05:00:00Z"}
    v1 = {"dag_run_id": "r", "state": "success", "execution_date": "2026-01-01T00:00:00+00:00"}
    assert (parse_run(v2, "d").partition_key, parse_run(v2, "d").partition_date) == ("eu", None)
    assert parse_run(hourly, "d").partition_date == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert (parse_run(v1, "d").partition_key, parse_run(v1, "d").partition_date) == (None, None)
