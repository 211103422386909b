"""What the plugin's task hook costs a task process (task-level upstreams): the time the final-state hook takes.

Each round builds a fresh writer (as a new task process would: its own thread, no connection yet) and calls the
success hook for a task-SDK stand-in in three cases, against a real etcd (fsync on):

- ``not named, cache fresh``: the host's cache file of named tasks is fresh and does not name the task: no etcd call.
- ``not named, cache stale``: the TTL ran out: the writer connects to etcd and reads the graph value first.
- ``named``: the task is named and the cache is fresh: one read-decide-CAS write of the task key.

The hook returns when the state is handled (written, or known not to be needed): that is the time a task process
spends in it before it may exit. gRPC is imported once in this process, so a real task process pays its import
(~0.1-0.3 s of CPU, overlapped with the task's own run: it starts at the running hook) on top of the stale case.

Usage: ``.venv/bin/python bench/task_hook.py [--rounds 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import _harness as h

from coordinator.airflow_plugin.records import WriterConfig
from coordinator.airflow_plugin.writer import BackgroundWriter, install_writer, record_task_instance
from coordinator.core.model import KeyLayout, RunState
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints


def ti(task_id: str, try_number: int) -> SimpleNamespace:
    run = SimpleNamespace(run_id="bench", logical_date=datetime(2026, 1, 1, tzinfo=UTC), clear_number=0)
    return SimpleNamespace(
        dag_id="bench_dag", task_id=task_id, run_id="bench", map_index=-1, try_number=try_number, state="success",
        start_date=None, end_date=None, _ti_context_from_server=SimpleNamespace(dag_run=run),
    )  # fmt: skip


def one(config: WriterConfig, task: SimpleNamespace) -> tuple[float, BackgroundWriter]:
    writer = BackgroundWriter(config)
    install_writer(writer)
    started = time.perf_counter()
    record_task_instance(task, RunState.SUCCESS)
    elapsed = time.perf_counter() - started
    writer.close(1.0)
    install_writer(None)
    return elapsed, writer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with h.start_etcd() as etcd, tempfile.TemporaryDirectory(prefix="bench-task-hook-") as tmp:
        settings = EtcdSettings(endpoints=parse_endpoints(etcd.endpoint))
        graph = {"digest": "b", "nodes": {}, "upstream_tasks": {"default/bench_dag": ["named"]}}

        async def put() -> None:
            async with await EtcdStore.connect(settings) as store:
                await store.put("/coordinator/config/graph", json.dumps(graph).encode())

        asyncio.run(put())
        fresh = WriterConfig(etcd=settings, keys=KeyLayout("/coordinator"), tasks_cache_dir=Path(tmp))
        stale = WriterConfig(etcd=settings, keys=KeyLayout("/coordinator"), tasks_cache_dir=Path(tmp), tasks_ttl_s=0)
        one(fresh, ti("warm_up", 1))  # fills the cache file and imports everything once
        cases = {"not named, cache fresh": [], "not named, cache stale": [], "named": []}
        for i in range(args.rounds):
            for name, config, task in (
                ("not named, cache fresh", fresh, ti("other", 1)),
                ("not named, cache stale", stale, ti("other", 1)),
                ("named", fresh, ti("named", i + 1)),  # a new try each round: a real write every time
            ):
                elapsed, writer = one(config, task)
                assert writer.stats.task_flush_timeouts == 0, name
                cases[name].append(elapsed * 1000)
        print(f"machine: {h.machine_line(h.machine())}")
        print(f"command: {h.command_line()}  (at {h.now_utc()})")
        print("| case | median ms | p95 ms | max ms |\n| --- | --- | --- | --- |")
        for name, values in cases.items():
            p95 = h.percentile(values, 95)
            print(f"| {name} | {statistics.median(values):.2f} | {p95:.2f} | {max(values):.2f} |")


if __name__ == "__main__":
    main()
