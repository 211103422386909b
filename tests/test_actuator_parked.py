"""The actuator parks actions for an Airflow instance that refuses our credentials (real etcd, fake Airflow): nothing is
written or sent while the instance's one backoff lasts, and the action runs, once, as soon as the instance accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.gate import Refusal
from coordinator.core.actions import Trigger
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerStatus, parse_trigger_record, run_id_for
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.actuator import Actuator
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import DagKey
from coordinator.watcher.paused import paused_lists
from tests.support.fake_airflow import FakeAirflow
from tests.support.offers import submit

PARTITION = "2026-01-01T00:00:00Z"
NODE = NodeId("default", "child")


def trigger() -> Trigger:
    return Trigger(
        node=NODE,
        partition=PARTITION,
        inputs={"default/root": 1},
        action=TriggerAction.CREATE,
        run_id=run_id_for(PARTITION),
        reason="root succeeded",
        cause_rev=1,
        ledger_rev=0,
        trigger_count=1,
    )


def test_an_action_for_a_refusing_instance_is_parked_then_runs_once_when_it_accepts(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """While the instance's gate is closed the action is parked (no ledger write, no request, its key back at the
    step's end); when the instance accepts again the parked key comes back at once and the run is created once."""

    async def main() -> None:
        keys = KeyLayout(etcd_prefix)
        now = [1000.0]
        told: list[tuple[str, Refusal | None]] = []
        with FakeAirflow(["child"]) as fake:
            settings = InstanceSettings(url=fake.url, username="admin", password="admin")
            async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(
                settings, clock=lambda: now[0], on_refusal=lambda instance, r: told.append((instance, r))
            ) as client:  # fmt: skip
                clients = {"default": client}
                executor = Executor(store, clients, fence=lambda: None)
                actuator = Actuator(
                    executor, keys, watcher_id="w", replan=lambda key: None, paused=paused_lists(clients)
                )
                gate = client.gate
                refused = gate.refused(now[0], 0.0, 401, "credentials refused", gate.admit(now[0]).epoch)
                assert refused is not None and refused.step_s > 0
                before = await store.current_revision()

                assert submit(actuator, trigger(), view_revision=before)
                await actuator.controller.drain_ready()
                key = DagKey(NODE, PARTITION)
                assert actuator.controller.queue.waiting(key)  # back when the step ends
                assert await store.current_revision() == before and fake.calls("trigger") == 0
                assert not submit(actuator, trigger(), view_revision=before)  # still queued to start: not twice

                probe = gate.admit(now[0] + refused.step_s)  # the step is over; the probe is accepted
                gate.accepted(probe.epoch)
                actuator.instance_changed(*told[-1])
                assert actuator.controller.queue.waiting(key) and len(actuator.controller.queue) == 1
                await actuator.controller.drain_ready()
                ledger = await store.get(keys.trigger_key(NODE, PARTITION))
                assert ledger is not None
                record, _ = parse_trigger_record(ledger.value)
                assert record is not None and record.status is TriggerStatus.DONE
                assert fake.creates("child") == 1

    arun(main())
