"""The deadlines as a controller (``watcher/deadlines.py``'s **Keys, and time as a requeue**): a watch batch brings
(DAG, partition) keys, a relist or a moved retention floor everything, a moved record the clock key; a pass judges what
its keys name, and requeues the clock at the next instant the clock alone changes a state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.states import DeadlineState
from coordinator.core.floor import RetentionFloor
from coordinator.core.model import KeyLayout, RunRecord, RunState, dump_record
from coordinator.core.view import ALL, View
from coordinator.etcd import EtcdStore, Fence
from coordinator.informer import DeadlineIndex, Informer
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.deadlines import CLOCK, CLOCK_MARGIN_S, DeadlineJob
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AllPartitions, DagKey, PartitionKey
from tests.support.changes import changes_of
from tests.support.fake_airflow import FakeAirflow
from tests.test_deadline_own_writes import NOW, P0, A, C, P, chain_graph, no_paused

P2 = "2026-01-06T00:00:00Z"
#: c of P: 6 hours after its window ends.
DEADLINE = P0 + timedelta(days=1, hours=6)


def job_for(keys: KeyLayout, view: View, deadlines: DeadlineIndex, executor: Any = None) -> DeadlineJob:
    graph = chain_graph()
    return DeadlineJob(
        executor=cast(Executor, executor), keys=keys, graph=lambda: graph, view=view, view_lock=asyncio.Lock(),
        tracker=deadlines, paused=no_paused, unreachable=frozenset, metrics=Metrics(), watcher_id="w1",
        interval_s=15.0,
    )  # fmt: skip


def test_a_watch_batch_brings_the_keys_it_changed_and_everything_only_when_needed() -> None:
    """A standby queues nothing; the leader gets a key per changed (DAG, partition) and per backfilled partition,
    everything after a relist or when the retention floor moved (not for the view's other "re-plan everything"), and
    the clock when the batch's changes name a moved record, which the next pass takes once."""
    keys = KeyLayout("/t")
    view, deadlines = View(keys), DeadlineIndex(keys)
    job = job_for(keys, view, deadlines)
    changes = changes_of(5, nodes=[(A, P)], partitions={P2, ALL})
    assert job.interest(changes, leading=False) == []
    assert job.interest(changes, leading=True) == [DagKey(A, P), PartitionKey(P2)]
    assert AllPartitions in job.interest(changes_of(6, relisted=True), leading=True)
    view.floor = RetentionFloor(before=P, by="test")
    assert job.interest(changes_of(7, partitions={ALL}), leading=True) == [AllPartitions]
    assert job.interest(changes_of(8, partitions={ALL}), leading=True) == []
    record = DeadlineRecord(state=DeadlineState.BLOCKED, deadline=DEADLINE, changed_at=NOW)
    deadlines.apply(keys.deadline_key(C, P), dump_record(record), 9)
    assert job.interest(changes_of(9, deadlines={(C, P)}), leading=True) == [CLOCK]
    # The moved record is taken by the next pass with the view's changes, once (**One view, one change set**).
    assert job._take(view)[1] == {(C, P)} and job._take(view)[1] == set()


def test_a_pass_judges_what_its_keys_name_and_requeues_the_clock_at_the_next_instant(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """After a full first pass, a failed root the watch brings is judged by the next pass, even one only the clock woke
    (its key still waits): c is recorded blocked; the clock comes back at the interval while the next instant (c's
    deadline) is hours away, and a moment after the deadline when it is seconds away."""

    async def scenario() -> None:
        keys = KeyLayout(etcd_prefix)
        with FakeAirflow(["h"]) as fake:
            instance = InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin"))
            async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(instance) as client:
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
                job = job_for(keys, informer.view, deadlines, executor)

                first = await job.reconcile_batch([CLOCK], NOW)
                assert not (await store.get(keys.deadline_key(C, P)))
                assert first[CLOCK].requeue_after == 15.0

                await store.put(keys.run_key(A, P), dump_record(RunRecord(state=RunState.FAILED, run_id="r")))
                brought: list[Any] = []
                async for changes in informer.watch(store, etcd_prefix, loaded.revision):
                    brought = job.interest(changes, leading=True)
                    if brought:
                        break
                assert brought == [DagKey(A, P)]
                result = await job.reconcile_batch([CLOCK], NOW + timedelta(seconds=1))
                written = await store.get(keys.deadline_key(C, P))
                assert written is not None and b'"blocked"' in written.value
                assert result[CLOCK].requeue_after == 15.0  # c's deadline is hours away
                await job.reconcile_batch(brought, NOW + timedelta(seconds=2))  # the key, handed out later: nothing new
                again = await store.get(keys.deadline_key(C, P))
                assert again is not None and again.mod_revision == written.mod_revision

                soon = await job.reconcile_batch([CLOCK], DEADLINE - timedelta(seconds=10))
                requeue = soon[CLOCK].requeue_after
                assert requeue is not None and abs(requeue - (10.0 + CLOCK_MARGIN_S)) < 1e-6

    arun(scenario())
