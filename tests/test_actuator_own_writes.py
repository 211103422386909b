"""The actuator skips actions planned on a view that has not received its own last ledger write (real etcd, fake
Airflow): such a plan saw a ledger we already changed, and the watch event of our write re-plans the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.airflow.client import AirflowClient
from coordinator.core.actions import Trigger
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerStatus, parse_trigger_record, run_id_for
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.executor import Executor
from coordinator.watcher.paused import paused_lists
from tests.support.fake_airflow import FakeAirflow
from tests.support.offers import submit

PARTITION = "2026-01-01T00:00:00Z"
NODE = NodeId("default", "child")


def trigger(ledger_rev: int = 0) -> Trigger:
    return Trigger(
        node=NODE,
        partition=PARTITION,
        inputs={"default/root": 1},
        action=TriggerAction.CREATE,
        run_id=run_id_for(PARTITION),
        reason="root succeeded",
        cause_rev=1,
        ledger_rev=ledger_rev,
        trigger_count=1,
    )


def test_a_plan_older_than_our_own_ledger_write_is_not_started(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """After a confirmed trigger, the same trigger planned on a view older than the confirmation writes nothing and
    calls nothing; planned on a view that has it, it is started and its CAS refuses it (the safety net stays)."""

    async def main() -> None:
        keys = KeyLayout(etcd_prefix)
        with FakeAirflow(["child"]) as fake:
            async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(
                InstanceSettings(url=fake.url, username="admin", password="admin")
            ) as client:  # fmt: skip
                clients = {"default": client}
                executor = Executor(store, clients, fence=lambda: None)
                actuator = Actuator(
                    executor, keys, watcher_id="w", replan=lambda key: None, paused=paused_lists(clients)
                )
                before = await store.current_revision()
                assert submit(actuator, trigger(), view_revision=before)
                await actuator.controller.drain_ready()
                ledger = await store.get(keys.trigger_key(NODE, PARTITION))
                assert ledger is not None
                record, _ = parse_trigger_record(ledger.value)
                assert record is not None and record.status is TriggerStatus.DONE
                confirmed = await store.current_revision()

                # The view is still at `before`: it has not seen our intent nor our confirmation.
                assert not submit(actuator, trigger(), view_revision=before)
                assert not submit(actuator, trigger(), view_revision=confirmed - 1)
                await actuator.controller.drain_ready()
                assert await store.current_revision() == confirmed
                assert fake.creates("child") == 1
                assert actuator.outcome.skipped == 0

                # Once the view has our write, a (still stale) plan is started again and the ledger CAS refuses it.
                assert submit(actuator, trigger(), view_revision=confirmed)
                await actuator.controller.drain_ready()
                assert actuator.outcome.skipped == 1
                assert await store.current_revision() == confirmed
                assert fake.creates("child") == 1

    arun(main())
