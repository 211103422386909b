"""The actuator triggers each partition form as Airflow needs it (``coordinator.core.partition``: the logical date of a
time without a segment, the graph's ``partition_key``) and finds the run Airflow holds for a keyed partition; its
Airflow calls against the fake Airflow over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core import intent
from coordinator.core.actions import Trigger
from coordinator.core.graph import DagSpec, Graph
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus, run_id_for
from coordinator.runtime.settings import InstanceSettings
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.executor import Executor
from tests.support.fake_airflow import FakeAirflow

PLAIN, KEYED = NodeId("default", "plain"), NodeId("default", "keyed")
GRAPH = Graph(dags={PLAIN: DagSpec(PLAIN), KEYED: DagSpec(KEYED, key_format="%Y-%m-%dT%H:%M:%S")})


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    server = FakeAirflow(["plain", "keyed"], password="pw", run_duration_s=0.02)
    with server:
        yield server
    assert server.internal_errors == []


def _perform(fake: FakeAirflow, node: NodeId, partition: str, instruction: intent.Call | None = None) -> Any:
    """One Airflow call of an attempt for (node, partition), as the executor's driver hands it to the actuator."""
    record = TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id=run_id_for(partition))
    action = Trigger(node=node, partition=partition, inputs={}, action=TriggerAction.CREATE, run_id=record.run_id,
                     reason="test", cause_rev=1, ledger_rev=0, trigger_count=1)  # fmt: skip

    async def go() -> Any:
        settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, timeout_s=2.0) as client:
            executor = Executor(cast(Any, None), {"default": client}, fence=lambda: None)
            act = Actuator(executor, KeyLayout("/t"), watcher_id="w", replan=lambda key: None, paused={},
                           graph=lambda: GRAPH)  # fmt: skip
            return await act._perform(action, instruction or intent.CallCreate(action.run_id, record))

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("node", "partition", "logical_date", "key"),
    [
        pytest.param(PLAIN, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", None, id="time-as-today"),
        pytest.param(KEYED, "2026-01-01T05:00:00Z", "2026-01-01T05:00:00+00:00", "2026-01-01T05:00:00", id="keyed"),
        pytest.param(PLAIN, "eu", None, "eu", id="segment"),
        pytest.param(PLAIN, "2026-01-01T00:00:00Z~eu", None, "2026-01-01T00:00:00Z|eu", id="time-and-segment"),
    ],
)
def test_each_partition_form_is_triggered_with_its_logical_date_and_key(
    fake: FakeAirflow, node: NodeId, partition: str, logical_date: str | None, key: str | None
) -> None:
    """The body's logical date and partition key per form; the run id is the deterministic one; no key, no field."""
    assert isinstance(_perform(fake, node, partition), intent.Created)
    (body,) = fake.trigger_bodies
    assert body["dag_run_id"] == run_id_for(partition) and body["logical_date"] == logical_date
    assert body.get("partition_key") == key and ("partition_key" in body) == (key is not None)


def test_the_run_airflow_holds_for_a_keyed_partition_is_found_by_its_key(fake: FakeAirflow) -> None:
    """Airflow's own partitioned run (no logical date) is the one a rerun clears; a plain segment has none."""
    fake.create_run("keyed", "scheduled__h5", None, partition_key="2026-01-01T05:00:00",
                    partition_date=datetime(2026, 1, 1, 5, tzinfo=UTC))  # fmt: skip
    found = _perform(fake, KEYED, "2026-01-01T05:00:00Z", intent.FindRunByDate())
    assert isinstance(found, intent.RunObserved) and found.run is not None and found.run.run_id == "scheduled__h5"
    assert _perform(fake, PLAIN, "apac", intent.FindRunByDate()) == intent.RunObserved(None)
