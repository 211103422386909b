"""The leader's retention keyed by partition: what a flood of events and a sweep over many partitions cost it.

Retention is a controller of per-partition keys (``coordinator/watcher/retention.py``): a watch batch brings a key for
each partition it touched unless the controller holds that key already, and a sweep (``AllPartitions``: the first one
after start, a relist) keys every partition the view holds. This measures, in the process, with no etcd (nothing is
due, so nothing is written):

- a batch of EVENTS events in one partition: how many keys it brings, and how long ``interest`` takes;
- a batch touching every one of PARTITIONS young partitions that already wait: keys brought, time;
- the sweep of PARTITIONS young partitions through the controller's own worker: how long until every partition is
  reconciled once (each answered "not due yet", requeued), and the longest the event loop waited meanwhile (the watch
  and the lease renewal run on that loop).

    .venv/bin/python bench/retention_keys.py --partitions 10000 --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from coordinator.core.model import KeyLayout, NodeId, canonical_partition
from coordinator.core.view import View
from coordinator.informer import Changes
from coordinator.informer.retention import RetentionTracker
from coordinator.manager import WorkQueue
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AllPartitions, RetentionPartition
from coordinator.watcher.retention import RetentionReconciler

#: Long enough that no partition of the estate is due: the benchmark measures keys and turns, not deletes.
PERIOD = timedelta(days=3650)
NODE = NodeId("default", "a")


def _changes(revision: int, nodes: list[tuple[NodeId, str]]) -> Changes:
    """A watch batch that named ``nodes`` (the view's kind), as the informer hands it."""
    changes = Changes(revision, relisted=False)
    changes.update(View.NODES, nodes)
    return changes


def estate(partitions: int) -> tuple[KeyLayout, View, list[str]]:
    """A view whose index holds ``partitions`` hourly partitions, one DAG each."""
    keys = KeyLayout("/bench")
    view = View(keys)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    names = [canonical_partition(base + timedelta(hours=h)) for h in range(partitions)]
    for name in names:
        view.partitions[name] = {NODE}
    return keys, view, names


def reconciler(keys: KeyLayout, view: View, name: str) -> RetentionReconciler:
    # No executor: nothing is due, so nothing is written (a write would fail loudly on None).
    return RetentionReconciler(cast(Executor, None), keys, PERIOD, 3600.0, view, RetentionTracker(keys), name,
                               queue=WorkQueue())  # fmt: skip


async def sweep(keys: KeyLayout, view: View, partitions: int) -> dict[str, float]:
    """The sweep through the controller's worker, with a task that measures the event loop's longest wait."""
    retention = reconciler(keys, view, "sweep")
    controller = retention.controller
    controller.add(AllPartitions)
    longest, stop = 0.0, False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    tick = asyncio.create_task(ticker())
    worker = asyncio.create_task(controller.run())
    start = time.perf_counter()
    while controller.reconciles < partitions + 1:
        await asyncio.sleep(0.01)
    took = time.perf_counter() - start
    stop = True
    controller.queue.shutdown()
    await tick
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    return {"sweep_s": took, "longest_loop_wait_ms": longest * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args()
    keys, view, names = estate(args.partitions)
    result: dict[str, Any] = {"partitions": args.partitions, "events": args.events}

    retention = reconciler(keys, view, "flood")
    start = time.perf_counter()
    flood = retention.interest(_changes(1, [(NODE, names[0])] * args.events))
    result["flood"] = {"keys": len(flood), "ms": (time.perf_counter() - start) * 1e3}

    # Every partition waits (its key handed out and requeued), then one batch touches them all.
    for name in names:
        retention.controller.add_after(RetentionPartition(name), 3600.0)
    start = time.perf_counter()
    again = retention.interest(_changes(2, [(NODE, name) for name in names]))
    result["touch_all_waiting"] = {"keys": len(again), "ms": (time.perf_counter() - start) * 1e3}

    result["sweep"] = asyncio.run(sweep(keys, view, args.partitions))
    flood_ms = result["flood"]["ms"]
    print(f"{args.events:,} events in one partition: {result['flood']['keys']} key(s) in {flood_ms:.1f} ms")
    print(f"a batch touching {args.partitions:,} waiting partitions: {result['touch_all_waiting']['keys']} keys in "
          f"{result['touch_all_waiting']['ms']:.1f} ms")  # fmt: skip
    print(f"sweep of {args.partitions:,} young partitions: {result['sweep']['sweep_s'] * 1e3:.0f} ms, longest "
          f"event-loop wait {result['sweep']['longest_loop_wait_ms']:.1f} ms")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
