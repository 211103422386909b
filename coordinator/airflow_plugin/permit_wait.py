"""``WaitForPermitOperator``: the task a scheduled dependent (``"runs": "scheduled"``) puts first; it waits, deferred
in Airflow's triggerer, until the coordinator grants the permit of its run's partition (semantics
`scheduled-permit`). Works on Airflow 3.3 and 2.11.

```python
from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator

wait = WaitForPermitOperator(task_id="wait_for_upstreams", timeout=timedelta(hours=6))
wait >> load
```

Rules:
- **The plugin's settings, never REST.** The partition is the plugin's own (``core/run_partition.py``, through
  ``records.partitions_of``), the key ``{prefix}/permits/{instance}/{dag_id}/{partition}`` with the plugin's prefix
  and instance; the trigger reads etcd with the plugin's etcd settings (environment, ``[coordinator]``, the
  ``coordinator_etcd`` connection), resolved once per triggerer process, in a thread.
- **Deferred by default.** ``execute`` defers to :class:`PermitTrigger`: no worker slot while it waits. The
  trigger shares one etcd connection and one watch with every other wait of its triggerer (``permit_hub``) and never
  polls. ``deferrable=False`` runs the same wait in the worker (a slot held, still a watch).
- **A granted permit is not waited for.** Before deferring, ``execute`` reads the permits once (bounded by
  ``PEEK_TIMEOUT_S``; any failure just defers) and completes at once when each is granted, as the trigger's first read
  would. A run that starts after its grant then never goes through the triggerer, and a wait Airflow failed in its
  own race (Airflow 3.3.2 can fail a deferred task whose trigger fires within seconds of the deferral: the deferring
  attempt's "success" handled after the trigger queued the task again) completes on its retry: the operator's
  default is ``retries=1`` after ``retry_delay`` 10 s (a timeout still fails without retries).
- **Fails with the reason.** With ``timeout`` the wait fails once it passes, without retries (a retry would wait
  again for the same thing), and says what it still waits for: the upstreams' states in the partitions it needs,
  else the permit's own state (``core/permit.py``'s ``still_waiting_for``). Without ``timeout`` it waits until the
  permit comes. etcd unreachable at the start is retried (backoff up to 5 s) until the deadline.
- **A run of several partitions** (an asset-triggered run that merged two dates) waits for the permit of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from coordinator.airflow_plugin import permit_hub
from coordinator.airflow_plugin.config import PluginConfig, local_config, resolve_now
from coordinator.airflow_plugin.hooks import supervisor_lookup
from coordinator.airflow_plugin.records import partitions_of
from coordinator.core.model import NodeId
from coordinator.core.permit import Permit, parse_permit, permit_key
from coordinator.errors import StoreUnavailable

try:  # Airflow 3
    from airflow.sdk import BaseOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # pragma: no cover - Airflow 2
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[attr-defined,no-redef,unused-ignore]
    from airflow.models import BaseOperator  # type: ignore[assignment,unused-ignore]

log = logging.getLogger(__name__)

#: Seconds the triggerer waits for the plugin's settings (a secrets backend lookup): as check-plugin does.
SETTINGS_TIMEOUT_S = 30.0
#: **A granted permit is not waited for**: the most the read before deferring may take.
PEEK_TIMEOUT_S = 5.0
#: The operator's retry when the caller sets none (**A granted permit is not waited for**).
DEFAULT_RETRIES, DEFAULT_RETRY_DELAY = 1, timedelta(seconds=10)
#: Retries of an etcd that cannot be reached: 0.5 s doubling to 5 s, as the plugin's writer.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.5, 5.0

_CONFIG: asyncio.Future[PluginConfig] | None = None


async def plugin_config() -> PluginConfig:
    """**The plugin's settings, never REST**: resolved once per process (and loop), in a thread, by a task of its own
    (a wait cancelled meanwhile does not cancel it for the others); a failed resolution is tried again by the next
    wait."""
    global _CONFIG
    loop = asyncio.get_running_loop()
    if _CONFIG is None or _CONFIG.get_loop() is not loop or (_CONFIG.done() and _CONFIG.exception() is not None):
        _CONFIG = loop.create_task(asyncio.to_thread(_resolve), name="coordinator-permit-settings")
    return await asyncio.shield(_CONFIG)


def _resolve() -> PluginConfig:
    try:
        return resolve_now(timeout_s=SETTINGS_TIMEOUT_S)
    except StoreUnavailable:  # the connection lookup is slow: environment and [coordinator] may suffice
        return local_config(import_airflow=True)


class PermitTrigger(BaseTrigger):
    """Waits, in the triggerer, until the permit of every partition is granted, or ``deadline`` (ISO 8601 UTC)."""

    def __init__(self, dag: str, partitions: Sequence[str], deadline: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.dag = dag
        self.partitions = list(partitions)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"dag": self.dag, "partitions": self.partitions, "deadline": self.deadline},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        node = NodeId.parse(self.dag)
        remaining = None
        if self.deadline is not None:
            remaining = max(0.0, (datetime.fromisoformat(self.deadline) - datetime.now(UTC)).total_seconds())
        try:
            config = await plugin_config()
            keys = [permit_key(config.writer.keys, node, p) for p in self.partitions]
            async with asyncio.timeout(remaining):
                permits = await _granted(config, keys)
        except TimeoutError:
            yield _event({"status": "timeout", "reason": await _reason(node, self.partitions)})
            return
        except Exception as exc:  # settings or etcd the wait cannot use: failed, said
            yield _event({"status": "error", "reason": f"{type(exc).__name__}: {exc}"})
            return
        yield _event(
            {"status": "granted", "generations": [p.generation for p in permits], "partitions": self.partitions}
        )


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


async def _granted(config: PluginConfig, keys: Sequence[str]) -> list[Any]:
    """Every permit of ``keys`` once granted; etcd unreachable is retried (the deadline bounds it)."""
    delay = RECONNECT_FIRST_S
    while True:
        hub = permit_hub.hub_for(config.writer.etcd, config.writer.keys)
        try:
            return [await hub.wait_granted(key) for key in keys]
        except StoreUnavailable as exc:
            log.warning("permit.etcd_unreachable retry_in_s=%.1f error=%s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)


async def _reason(node: NodeId, partitions: Sequence[str]) -> str:
    """**Fails with the reason**: what the wait still waits for (bounded: a silent etcd is said as such)."""
    try:
        config = await plugin_config()
        hub = permit_hub.hub_for(config.writer.etcd, config.writer.keys)
        async with asyncio.timeout(10.0):
            found = [await hub.reason(node, p, permit_key(config.writer.keys, node, p)) for p in partitions]
        return "; ".join(found)
    except Exception as exc:
        return f"{node} {', '.join(partitions)}: no permit granted, and etcd could not say why ({exc})"


class WaitForPermitOperator(BaseOperator):
    """Wait until the coordinator grants the permit of this run's partition (deferred by default)."""

    ui_color = "#e8f0fe"

    def __init__(self, *, timeout: timedelta | float | None = None, deferrable: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("retries", DEFAULT_RETRIES)
        kwargs.setdefault("retry_delay", DEFAULT_RETRY_DELAY)
        super().__init__(**kwargs)
        self.timeout = timeout if timeout is None or isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.deferrable = deferrable

    def execute(self, context: Any) -> Any:
        dag_run = context["dag_run"]
        task = context.get("ti") or context.get("task_instance")
        partitions, why = partitions_of(dag_run, supervisor_lookup(task))
        if not partitions:
            raise AirflowFailException(f"run {dag_run.run_id} stands for no partition, so no permit can come: {why}")
        config = local_config(import_airflow=True)
        node = NodeId(config.writer.instance, dag_run.dag_id)
        deadline = None if self.timeout is None else (datetime.now(UTC) + self.timeout).isoformat()
        trigger = PermitTrigger(node.qualified, partitions, deadline)
        # Only before deferring: the worker's own wait (deferrable=False) makes the same first read.
        if self.deferrable and (granted := _granted_already(config, node, partitions)) is not None:
            return self.execute_complete(context, granted)
        self.log.info("permit.waiting dag=%s partitions=%s deadline=%s", node, ",".join(partitions), deadline)
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete")
        return self.execute_complete(context, asyncio.run(_first_event(trigger)))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        if event is None or event.get("status") != "granted":
            reason = (event or {}).get("reason", "the wait ended without an answer")
            self.log.error("permit.not_granted reason=%s", reason)
            if event is not None and event.get("status") == "timeout":
                raise AirflowFailException(f"timed out waiting for the coordinator's permit: {reason}")
            raise AirflowException(f"waiting for the coordinator's permit failed: {reason}")
        self.log.info("permit.granted partitions=%s generations=%s", event.get("partitions"), event.get("generations"))
        return {"partitions": event.get("partitions"), "generations": event.get("generations")}


def _granted_already(config: PluginConfig, node: NodeId, partitions: Sequence[str]) -> dict[str, Any] | None:
    """**A granted permit is not waited for**: the trigger's "granted" event when every permit is granted now, else
    None (not yet, or etcd did not answer within ``PEEK_TIMEOUT_S``: the trigger waits and retries)."""
    keys = [permit_key(config.writer.keys, node, p) for p in partitions]

    async def peek() -> list[Permit | None]:
        from coordinator.airflow_plugin.records import connect_store

        async with asyncio.timeout(PEEK_TIMEOUT_S):
            async with await connect_store(config.writer.etcd) as store:
                _, kvs = await store.get_many(keys)
        found = {kv.key: parse_permit(kv.value) for kv in kvs}
        return [found.get(key) for key in keys]

    try:
        permits = asyncio.run(peek())
    except Exception as exc:  # the trigger reads again, and retries an etcd it cannot reach
        log.warning("permit.peek_failed dag=%s error=%s: %s", node, type(exc).__name__, exc)
        return None
    if not all(p is not None and p.granted for p in permits):
        return None
    generations = [p.generation for p in permits if p is not None]
    log.info("permit.granted_before_wait dag=%s partitions=%s", node, ",".join(partitions))
    return {"status": "granted", "generations": generations, "partitions": list(partitions)}


async def _first_event(trigger: PermitTrigger) -> dict[str, Any]:
    """``deferrable=False``: the trigger's one event, in this process; its hub closed after (the loop ends)."""
    try:
        async for event in trigger.run():
            payload: dict[str, Any] = event.payload
            return payload
        return {"status": "error", "reason": "the wait ended without an event"}
    finally:
        for hub in list(permit_hub.hubs_of(asyncio.get_running_loop())):
            with contextlib.suppress(Exception):
                await hub.close()
