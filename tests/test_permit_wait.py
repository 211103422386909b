"""The wait of a scheduled dependent (coordinator/airflow_plugin/permit_wait.py, permit_hub.py) against a real etcd:
its trigger completes on the permit of its partition, many share one connection and one watch, a timeout says what
is still missing, and the operator defers with the plugin's own partition."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from coordinator.airflow_plugin import permit_hub, permit_wait, records
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.permit import dump_permit, permit_key, permit_of
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from devtools.procs import free_port
from tests.conftest import run_coro

DOWN = NodeId("default", "g_daily")
P1, P2 = "2031-07-01T00:00:00Z", "2031-07-02T00:00:00Z"


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch, etcd_endpoint: str, etcd_prefix: str) -> KeyLayout:
    """The plugin's settings, as a triggerer would have them (the environment: no Airflow connection is needed)."""
    monkeypatch.setenv("COORDINATOR_ETCD_ENDPOINTS", etcd_endpoint)
    monkeypatch.setenv("COORDINATOR_PREFIX", etcd_prefix)
    monkeypatch.setattr(permit_wait, "_resolve", lambda: permit_wait.local_config())
    monkeypatch.setattr(permit_wait, "_CONFIG", None)
    return KeyLayout(etcd_prefix)


def grant(generation: int = 1, granted: bool = True) -> bytes:
    record = TriggerRecord(
        status=TriggerStatus.DONE if granted else TriggerStatus.PENDING, action=TriggerAction.CREATE,
        run_id="scheduled__x", trigger_count=generation, done_at=datetime.now(UTC) if granted else None,
    )  # fmt: skip
    return dump_permit(permit_of(record))


async def first_event(trigger: permit_wait.PermitTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        payload: dict[str, Any] = event.payload
        return payload
    raise AssertionError("no event")


def test_many_waits_share_one_connection_and_one_watch(
    plugin_env: KeyLayout, etcd_settings: EtcdSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 waits in one loop open one etcd store; each completes when (and only when) its own permit is granted;
    a permit written not granted completes nothing; a wait whose permit never comes is still waiting."""
    connects: list[object] = []
    real = records.connect_store

    async def counted(settings: EtcdSettings) -> EtcdStore:
        store = await real(settings)
        connects.append(store)
        return store

    monkeypatch.setattr(records, "connect_store", counted)
    partitions = [f"2031-01-{day:02d}T00:00:00Z" for day in range(1, 29)] * 4  # 112 waits, 28 partitions, 4 DAGs

    async def scenario() -> None:
        dags = [NodeId("default", f"d{i}") for i in range(4)]
        tasks = [
            asyncio.create_task(first_event(permit_wait.PermitTrigger(dag.qualified, [p])))
            for i, dag in enumerate(dags)
            for p in partitions[i * 28 : (i + 1) * 28]
        ]
        async with await EtcdStore.connect(etcd_settings) as store:
            hub = permit_hub.hub_for(etcd_settings, plugin_env)
            while hub.waiting < len(tasks):
                await asyncio.sleep(0.01)
            await store.put(permit_key(plugin_env, dags[0], partitions[0]), grant(granted=False))
            for dag in dags:
                for p in partitions[1:28]:
                    await store.put(permit_key(plugin_env, dag, p), grant())
            done = [await task for task in tasks[1:28]]
            assert all(event["status"] == "granted" for event in done)
            others = [tasks[0], *(t for i, t in enumerate(tasks) if i % 28 == 0 and i)]
            await asyncio.sleep(0.2)
            assert not any(t.done() for t in others)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for hub in permit_hub.hubs_of(asyncio.get_running_loop()):
                await hub.close()

    run_coro(scenario())
    assert len(connects) == 1


def test_a_permit_granted_before_the_wait_completes_it_at_once(
    plugin_env: KeyLayout, etcd_settings: EtcdSettings
) -> None:
    """The read after registering finds a grant made before the wait started."""

    async def scenario() -> dict[str, Any]:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(permit_key(plugin_env, DOWN, P1), grant(generation=2))
        try:
            return await first_event(permit_wait.PermitTrigger(DOWN.qualified, [P1]))
        finally:
            for hub in permit_hub.hubs_of(asyncio.get_running_loop()):
                await hub.close()

    event = run_coro(scenario())
    assert event == {"status": "granted", "generations": [2], "partitions": [P1]}


def test_a_timeout_says_which_upstream_is_still_missing(plugin_env: KeyLayout, etcd_settings: EtcdSettings) -> None:
    """Past its deadline the trigger answers timeout with why's words: the upstream that has not run, the one that
    failed."""
    spec = {"version": 1, "dags": {"g_daily": {"upstreams": ["up", "other"], "runs": "scheduled"}}}
    graph = parse_spec(json.dumps(spec))
    activation = adopt(graph.shapes, graph.digest, None, 1, sources=graph.dags)
    assert activation is not None

    async def scenario() -> dict[str, Any]:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(plugin_env.config_key("graph"), dump_activation(activation))
            failed = {"state": "failed", "run_id": "scheduled__o", "clear_number": 0}
            await store.put(plugin_env.run_key(NodeId("default", "other"), P1), json.dumps(failed).encode())
        deadline = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
        try:
            return await first_event(permit_wait.PermitTrigger(DOWN.qualified, [P1], deadline))
        finally:
            for hub in permit_hub.hubs_of(asyncio.get_running_loop()):
                await hub.close()

    event = run_coro(scenario())
    assert event["status"] == "timeout"
    assert event["reason"] == (f"g_daily {P1} waits for: other {P1} is failed (run scheduled__o); up {P1} has not run")


def test_the_trigger_serializes_to_its_own_classpath() -> None:
    """The triggerer rebuilds the trigger from its classpath and kwargs."""
    trigger = permit_wait.PermitTrigger(DOWN.qualified, [P1, P2], "2031-01-01T00:00:00+00:00")
    path, kwargs = trigger.serialize()
    assert path == "coordinator.airflow_plugin.permit_wait.PermitTrigger"
    assert permit_wait.PermitTrigger(**kwargs).serialize() == (path, kwargs)


def test_the_operator_defers_with_its_runs_partition(plugin_env: KeyLayout) -> None:
    """execute defers at once (no worker slot while waiting) to a trigger of the plugin's partition of the run."""
    op = permit_wait.WaitForPermitOperator(task_id="wait", timeout=3600)
    run = SimpleNamespace(
        dag_id="g_daily", run_id="scheduled__2031-07-02T00:00:00+00:00", run_type="scheduled",
        logical_date=datetime(2031, 7, 1, tzinfo=UTC), partition_key=None, partition_date=None,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"dag_run": run, "ti": None})
    trigger = deferred.value.trigger
    assert isinstance(trigger, permit_wait.PermitTrigger)
    assert (trigger.dag, trigger.partitions) == ("default/g_daily", [P1]) and trigger.deadline is not None


def scheduled_run() -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="g_daily", run_id="scheduled__2031-07-02T00:00:00+00:00", run_type="scheduled",
        logical_date=datetime(2031, 7, 1, tzinfo=UTC), partition_key=None, partition_date=None,
    )  # fmt: skip


def test_a_permit_granted_before_the_run_completes_the_wait_without_deferring(
    plugin_env: KeyLayout, etcd_settings: EtcdSettings
) -> None:
    """execute reads the permit once before deferring: granted, it returns its generation and never defers."""

    async def put(value: bytes) -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(permit_key(plugin_env, DOWN, P1), value)

    op = permit_wait.WaitForPermitOperator(task_id="wait", timeout=3600)
    run_coro(put(grant(generation=3, granted=False)))
    with pytest.raises(TaskDeferred):  # requested, not granted: it waits in the triggerer
        op.execute({"dag_run": scheduled_run(), "ti": None})
    run_coro(put(grant(generation=3)))
    assert op.execute({"dag_run": scheduled_run(), "ti": None}) == {"partitions": [P1], "generations": [3]}


def test_an_etcd_that_does_not_answer_defers_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read before deferring is bounded: with etcd unreachable the operator still defers (the trigger retries)."""
    monkeypatch.setenv("COORDINATOR_ETCD_ENDPOINTS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(permit_wait, "PEEK_TIMEOUT_S", 1.0)
    with pytest.raises(TaskDeferred):
        permit_wait.WaitForPermitOperator(task_id="wait").execute({"dag_run": scheduled_run(), "ti": None})


def test_the_wait_retries_once_unless_told_otherwise() -> None:
    """A wait failed by anything but its timeout is tried again once by default; a retries setting given wins."""
    assert (permit_wait.WaitForPermitOperator(task_id="a").retries, permit_wait.WaitForPermitOperator(
        task_id="b", retries=0).retries) == (1, 0)  # fmt: skip


def test_a_timeout_fails_the_task_with_the_reason_and_a_grant_completes_it() -> None:
    """execute_complete: granted returns the generations; timeout fails without retries, naming what is missing."""
    op = permit_wait.WaitForPermitOperator(task_id="wait")
    assert op.execute_complete({}, {"status": "granted", "partitions": [P1], "generations": [1]}) == {
        "partitions": [P1], "generations": [1],
    }  # fmt: skip
    with pytest.raises(AirflowFailException, match=r"default/up .* has not run"):
        op.execute_complete(
            {}, {"status": "timeout", "reason": f"default/g_daily {P1} waits for: default/up {P1} has not run"}
        )


def test_a_wait_cancelled_while_the_hub_connects_does_not_break_the_others(
    plugin_env: KeyLayout, etcd_settings: EtcdSettings
) -> None:
    """The first wait of a loop, cancelled before its connection is up (a task killed, a timeout), leaves the shared
    settings and connection to the others: the second wait still completes on its grant."""

    async def scenario() -> dict[str, Any]:
        first = asyncio.create_task(first_event(permit_wait.PermitTrigger(DOWN.qualified, [P1])))
        second = asyncio.create_task(first_event(permit_wait.PermitTrigger(DOWN.qualified, [P2])))
        await asyncio.sleep(0)
        first.cancel()
        async with await EtcdStore.connect(etcd_settings) as store:
            hub = permit_hub.hub_for(etcd_settings, plugin_env)
            while hub.waiting < 1:
                await asyncio.sleep(0.01)
            await store.put(permit_key(plugin_env, DOWN, P2), grant())
        try:
            return await second
        finally:
            for found in permit_hub.hubs_of(asyncio.get_running_loop()):
                await found.close()

    assert run_coro(scenario())["status"] == "granted"
