"""The leader's asset round wired as the watcher wires it (``watcher/service.py``), on a clock the test moves.

What it builds, from one etcd prefix and the Airflow clients of a test: an informer that loads the prefix and follows
its watch into an asset index (the only index the round and the streams read), the executor that records its own
writes in the informer's expectations, the asset streams' reconciler on that index, and the asset round fed the same
index. The informer's changes hand every changed stream to the streams' controller (the watcher's interest in
``AssetIndex.STREAMS``), as in production.

Rules:
- **Time is the test's.** ``round(now)`` runs one round at ``now``; the streams' reconciler reads the same clock, and
  the streams' queue measures its delays on it (a key backed off for a second is ready once the test moves a second
  on), so the rounds are as deterministic as the test's instants.
- **Settled, then the next round.** After a round, the rig waits until the watch has brought everything written so
  far (a sentinel key put under the prefix and seen back) and reconciles every ready stream key, until none is ready:
  what the round recorded is delivered before ``round`` returns, and keys waiting out a delay wait for the clock.
- **What the test writes counts too.** A round begins once the watch has brought every earlier write, the test's own
  puts included, so the index is never staler than etcd at the start of a round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from coordinator.airflow.client import AirflowClient
from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.etcd.types import Fence
from coordinator.informer.informer import Changes, Informer
from coordinator.manager import Controller, WorkQueue
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.assets import AssetJob
from coordinator.watcher.deliveries import AssetDeliveries
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AssetStream

#: How long the rig waits for the watch to bring a write back, or for the streams to settle, before failing the test.
SETTLE_TIMEOUT_S = 15.0


class AssetRig:
    """One watcher's asset round, index and streams on a test clock (every rule of the module)."""

    def __init__(
        self,
        store: EtcdStore,
        keys: AssetKeys,
        graph: Graph,
        clients: Mapping[str, AirflowClient],
        fence: Callable[[], Fence | None],
        start: datetime,
        *,
        deliveries: Mapping[str, Any] | None = None,
        job: Mapping[str, Any] | None = None,
    ) -> None:
        self.store, self.keys, self.clients, self.fence = store, keys, clients, fence
        self.now = self.origin = start
        self.index = AssetIndex(keys)
        self.informer = Informer(View(KeyLayout(keys.prefix)), [self.index])
        self.metrics = Metrics()
        self.executor = self.executor_on(store)
        self.deliveries = AssetDeliveries(
            executor=self.executor, keys=keys, graph=lambda: graph, watcher_id="w1", metrics=self.metrics,
            leading=lambda: True, term_started=lambda: time.monotonic() - 3600.0, call_timeout_s=5.0,
            index=self.index, now=lambda: self.now, **(deliveries or {}),
        )  # fmt: skip
        # **Time is the test's**: the streams' controller as the reconciler builds it, its queue on the test's clock.
        backoff_max_s = self.deliveries.backoff_max_s
        self.deliveries.controller = Controller(
            "streams", self.deliveries, workers=self.executor.policy.max_concurrent_streams, needs_leader=True,
            leading=lambda: True, backoff_max_s=backoff_max_s, now=lambda: self.now,
            queue=WorkQueue(clock=self._elapsed_s, backoff_max_s=backoff_max_s),
        )  # fmt: skip
        self.job = AssetJob(
            store=store, executor=self.executor, keys=keys, graph=lambda: graph, clients=dict(clients),
            watcher_id="w1", metrics=self.metrics, interval_s=2.0, deliveries=self.deliveries, index=self.index,
            **(job or {}),
        )  # fmt: skip
        self._seen = 0
        self._watch: asyncio.Task[None] | None = None

    def executor_on(self, store: Any) -> Executor:
        """An executor over ``store`` (a wrapper of the real one, say) whose writes the informer expects back."""
        return Executor(store, self.clients, fence=self.fence, expectations=self.informer.expectations)

    def use_executor(self, executor: Executor) -> None:
        """Every write of the round and of the streams through ``executor`` from now on."""
        self.executor = self.job.executor = self.deliveries.executor = executor

    async def start(self) -> None:
        """Load the prefix into the index and follow its watch."""
        root = KeyLayout(self.keys.prefix).root
        loaded = await self.informer.load(self.store, root)
        self._seen = loaded.revision
        self._watch = asyncio.create_task(self.informer.run(self.store, root, loaded.revision, then=self._changed))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.executor.drain()

    async def round(self, now: datetime) -> None:
        """One asset round at ``now``, then its streams delivered (**Settled, then the next round**)."""
        assert now >= self.now, "the test's clock never goes back"
        self.now = now
        await self.synced()
        await self.job.run_once(now)
        await self.settle()

    async def settle(self) -> None:
        """**Settled, then the next round**: every ready stream key reconciled on what the watch brought."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            await self.synced()
            if not await self.deliveries.controller.drain_ready():
                return
            assert time.monotonic() < deadline, "the streams never settled"

    async def synced(self) -> None:
        """**What the test writes counts too**: wait until the watch has brought every write made before this call."""
        revision = await self.store.put(f"{self.keys.prefix}/test-rig-sync", b"")
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self._seen < revision:
            assert self._watch is not None and not self._watch.done(), "the rig's watch ended"
            assert time.monotonic() < deadline, "the watch never brought the rig's own write back"
            await asyncio.sleep(0.005)

    def _changed(self, changes: Changes) -> None:
        """The watcher's interest in ``AssetIndex.STREAMS``: each changed stream to the streams' controller."""
        self._seen = max(self._seen, changes.revision)
        for stream in sorted(changes.of(AssetIndex.STREAMS)):
            self.deliveries.controller.add(AssetStream(*stream))

    def _elapsed_s(self) -> float:
        """**Time is the test's**: the streams' queue's monotonic clock."""
        return (self.now - self.origin) / timedelta(seconds=1)
