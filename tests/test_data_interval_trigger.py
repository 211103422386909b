"""The data interval on the wire (semantics `triggered-data-interval`): the actuator's trigger of a gridded dependent
sends ``data_interval_start``/``_end`` and the run Airflow (the fake, as TriggerDAGRunPostBody) makes carries it;
what is sent for a point, for no grid and for a segment; the fake refuses one bound alone as Airflow does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core import intent
from coordinator.core.actions import Trigger
from coordinator.core.data_interval import DataInterval, IntervalKind
from coordinator.core.graph import DagSpec, Graph
from coordinator.core.grid import Grid
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus, run_id_for
from coordinator.runtime.settings import InstanceSettings
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.executor import Executor
from tests.support.fake_airflow import FakeAirflow

DAILY = Grid("0 0 * * *")
PERIOD, POINT, PLAIN, PERIOD_GONE = (NodeId("default", name) for name in ("period", "point", "plain", "gone"))
GRAPH = Graph(
    dags={
        PERIOD: DagSpec(PERIOD, grid=DAILY),
        POINT: DagSpec(POINT, grid=DAILY, data_interval=IntervalKind.POINT),
        PLAIN: DagSpec(PLAIN),
    }
)
DAY, NEXT = datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 7, 2, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    server = FakeAirflow(["period", "point", "plain", "gone"], password="pw", run_duration_s=0.02)
    with server:
        yield server
    assert server.internal_errors == []


def settings(fake: FakeAirflow) -> InstanceSettings:
    return InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))


def create(fake: FakeAirflow, node: NodeId, partition: str) -> Any:
    """The actuator's create call for (node, partition), as the executor's driver hands it over."""
    record = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id=run_id_for(partition))
    action = Trigger(node=node, partition=partition, inputs={}, action=TriggerAction.CREATE, run_id=record.run_id,
                     reason="test", cause_rev=1, ledger_rev=0, trigger_count=1)  # fmt: skip

    async def go() -> Any:
        async with AirflowClient(settings(fake), timeout_s=2.0) as client:
            executor = Executor(cast(Any, None), {"default": client}, fence=lambda: None)
            act = Actuator(executor, KeyLayout("/t"), watcher_id="w", replan=lambda key: None, paused={},
                           graph=lambda: GRAPH)  # fmt: skip
            return await act._perform(action, intent.CallCreate(action.run_id, record))

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("node", "partition", "sent", "run_has"),
    [
        pytest.param(PERIOD, "2025-07-01T00:00:00Z", (DAY, NEXT), (DAY, NEXT), id="grid-period"),
        pytest.param(POINT, "2025-07-01T00:00:00Z", (DAY, DAY), (DAY, DAY), id="declared-point"),
        pytest.param(PLAIN, "2025-07-01T00:00:00Z", None, (DAY, DAY), id="no-grid-airflow-infers-the-point"),
        pytest.param(PERIOD, "2025-07-01T05:00:00Z", None, (DAY.replace(hour=5),) * 2, id="off-grid-nothing-sent"),
        pytest.param(PERIOD_GONE, "2025-07-01T00:00:00Z", None, (DAY, DAY), id="dag-gone-from-the-graph"),
        pytest.param(PERIOD, "eu", None, (None, None), id="segment-no-logical-date"),
    ],
)
def test_the_actuator_triggers_each_dag_with_its_interval_and_the_run_carries_it(
    fake: FakeAirflow,
    node: NodeId,
    partition: str,
    sent: tuple[datetime, datetime] | None,
    run_has: tuple[datetime | None, datetime | None],
) -> None:
    """The body has both bounds or neither (as the rule says), and the run Airflow made has that interval."""
    assert isinstance(create(fake, node, partition), intent.Created)
    (body,) = fake.trigger_bodies
    got = body.get("data_interval_start"), body.get("data_interval_end")
    assert got == ((None, None) if sent is None else tuple(d.isoformat() for d in sent))
    assert ("data_interval_start" in body) == (sent is not None)
    run = fake.run(node.dag_id, run_id_for(partition))
    assert run is not None and (run.data_interval_start, run.data_interval_end) == run_has


def test_the_client_reads_the_interval_back_in_the_run_json(fake: FakeAirflow) -> None:
    """GET of the created run answers the interval that was sent (Airflow's DAGRunResponse fields)."""

    async def go() -> Any:
        async with AirflowClient(settings(fake), timeout_s=2.0) as client:
            await client.trigger("period", "r1", DAY, {}, None, DataInterval(DAY, NEXT))
            return await client.send("GET", "/api/v2/dags/period/dagRuns/r1", None)

    body = asyncio.run(go())
    assert (body["data_interval_start"], body["data_interval_end"]) == ("2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z")


def test_one_bound_alone_is_refused_like_airflow(fake: FakeAirflow) -> None:
    """The fake answers 422 to a body with only data_interval_start, as TriggerDAGRunPostBody's validator does, so a
    client that ever sent half an interval would fail here."""
    body = {"dag_run_id": "x", "logical_date": DAY.isoformat(), "conf": {}, "data_interval_start": DAY.isoformat()}
    token = httpx.post(f"{fake.url}/auth/token", json={"username": "admin", "password": "pw"}).json()["access_token"]
    answer = httpx.post(f"{fake.url}/api/v2/dags/period/dagRuns", json=body,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert answer.status_code == 422 and "both" in answer.text
    assert fake.creates("period") == 0
