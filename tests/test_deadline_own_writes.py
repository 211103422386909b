"""The deadline pass never writes into the deadline index (``watcher/deadline_alerts.py``'s **Own writes come back
through the watch**): within a pass it reads what it wrote itself, across passes it waits for the informer to bring
its writes back, on a real etcd and the fake Airflow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import EtcdStore, Fence, WatchBatch
from coordinator.etcd.types import Event, EventKind
from coordinator.informer import DeadlineIndex, Informer
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.deadlines import DeadlineJob, deadline_pass
from coordinator.watcher.executor import Executor
from tests.support.fake_airflow import FakeAirflow

P = "2026-01-05T00:00:00Z"
P0 = datetime(2026, 1, 5, tzinfo=UTC)
#: a failed two hops above c: c is blocked a day after its partition starts, its deadline (6 h after the window) ahead.
NOW = P0 + timedelta(hours=25)
A, C = NodeId("default", "a"), NodeId("default", "c")


def chain_graph() -> Graph:
    """a -> b -> c on a daily grid; c declares a deadline; h handles c's deadline transitions."""
    daily = {"partitions": {"cron": "0 0 * * *"}}
    expected = {"after_end": "6h", "warn": "30m", "duration": "1h"}
    return parse_spec(json.dumps({"version": 1, "dags": {
        "a": daily, "b": {"upstreams": "a", **daily}, "c": {"upstreams": "b", **daily, "expected_by": expected},
        "h": {"on_late_of": "c"},
    }}))  # fmt: skip


async def no_paused(graph: Graph) -> frozenset[NodeId]:
    return frozenset()


def test_two_passes_before_the_watch_brings_the_record_back_record_and_alert_once(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A blocked transition is recorded and its handler triggered in the first pass (read from the pass's own write);
    a second pass before the informer applied anything, and a third after it applied only the unalerted record, write
    nothing and call Airflow for nothing; once the watch has brought both writes, a fourth pass does nothing either."""

    async def scenario() -> None:
        keys = KeyLayout(etcd_prefix)
        graph = chain_graph()
        with FakeAirflow(["h"]) as fake:
            instance = InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin"))
            async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(instance) as client:
                await store.put(keys.run_key(A, P), dump_record(RunRecord(state=RunState.FAILED, run_id="r")))
                leader = f"{etcd_prefix}/leader"
                await store.put(leader, b"w1")
                kv = await store.get(leader)
                assert kv is not None
                fence = Fence(leader, kv.create_revision)
                deadlines = DeadlineIndex(keys)
                informer = Informer(View(keys), [deadlines])
                loaded = await informer.load(store, etcd_prefix)
                executor = Executor(store, {"default": client}, fence=lambda: fence,
                                    expectations=informer.expectations)  # fmt: skip
                job = DeadlineJob(
                    executor=executor, keys=keys, graph=lambda: graph, view=informer.view, view_lock=asyncio.Lock(),
                    tracker=deadlines, paused=no_paused, unreachable=frozenset, metrics=Metrics(), watcher_id="w1",
                    interval_s=15.0,
                )  # fmt: skip
                key = keys.deadline_key(C, P)

                first = await deadline_pass(job, NOW)
                assert [(t.status.node, t.status.state.value) for t in first] == [(C, "blocked")]
                assert len(fake.requests("trigger", "h")) == 1
                written = await store.get(key)
                assert written is not None and written.version == 2  # recorded, then marked alerted
                assert json.loads(written.value)["alerted"] is True
                assert not deadlines.records  # nothing written into the index
                after_first = await store.current_revision()

                assert await deadline_pass(job, NOW + timedelta(seconds=15)) == []
                assert len(fake.requests("trigger", "h")) == 1
                assert await store.current_revision() == after_first

                # The watch has come as far as the unalerted record, not the write that marked it alerted.
                recorded_at = written.mod_revision - 1
                _, (at_record,) = await store.get_many([key], revision=recorded_at)
                informer.apply(WatchBatch((Event(EventKind.PUT, key, at_record.value, recorded_at),), recorded_at))
                assert deadlines.unalerted == {(C, P)}
                assert await deadline_pass(job, NOW + timedelta(seconds=30)) == []
                assert len(fake.requests("trigger", "h")) == 1
                assert await store.current_revision() == after_first

                async def until_met() -> None:
                    async for _ in informer.watch(store, etcd_prefix, recorded_at):
                        if not informer.expectations.pending(key):
                            return

                await asyncio.wait_for(until_met(), timeout=30)
                assert deadlines.records[(C, P)].alerted and loaded.revision < recorded_at
                assert await deadline_pass(job, NOW + timedelta(seconds=45)) == []
                assert len(fake.requests("trigger", "h")) == 1
                assert await store.current_revision() == after_first

    arun(scenario())
