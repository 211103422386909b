"""Many waits of scheduled dependents in one event loop: the wait's own code (``PermitTrigger.run``, the shared
``permit_hub``) on a real etcd, as Airflow's triggerer runs it, without Airflow's triggerer around it.

Set-up: a private etcd; ``--waits`` triggers (default 1,000: 10 DAGs x 100 daily partitions) started in one asyncio
loop with the plugin's settings from the environment; then, from another connection, every permit is granted, one
put each, as fast as one client writes them.

Numbers (one JSON line):
- ``connections``: etcd stores the waits opened (the claim: one for all);
- ``rss_mib_before`` / ``rss_mib_waiting``: this process's resident memory before the waits and while they wait;
- ``cpu_s_idle``: CPU seconds this process used during ``--idle`` seconds of waiting (the claim: no polling, ~0);
- ``register_s``: from starting the triggers to every one registered with the hub;
- ``last_grant_to_last_open_s``: from sending the last grant's write to the last trigger's event;
- ``first_grant_to_last_open_s``: from the first grant's write to the last trigger's event (all 1,000 written one
  after another by one client).

Run: ``python bench/permit_waits.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.airflow_plugin import permit_hub, permit_wait, records
from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.permit import dump_permit, permit_key, permit_of
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer

PREFIX = "/bench-permits"


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(waits: int, idle_s: float, endpoint: str) -> dict[str, Any]:
    keys = KeyLayout(PREFIX)
    settings = EtcdSettings(endpoints=parse_endpoints(endpoint))
    connects = 0
    real = records.connect_store

    async def counted(s: EtcdSettings) -> EtcdStore:
        nonlocal connects
        connects += 1
        return await real(s)

    records.connect_store = counted  # type: ignore[assignment]
    dags = [NodeId("default", f"sched_{i:02d}") for i in range(max(1, waits // 100))]
    pairs = [(dag, f"2025-{1 + (d // 28) % 12:02d}-{1 + d % 28:02d}T00:00:00Z") for dag in dags for d in range(100)]
    pairs = pairs[:waits]
    before = rss_mib()
    ended: list[float] = []

    async def one(dag: NodeId, partition: str) -> None:
        async for event in permit_wait.PermitTrigger(dag.qualified, [partition]).run():
            assert event.payload["status"] == "granted", event.payload
            ended.append(time.perf_counter())

    begin = time.perf_counter()
    tasks = [asyncio.create_task(one(dag, p)) for dag, p in pairs]
    hub = None
    while hub is None or hub.waiting < len(pairs):
        await asyncio.sleep(0.01)
        if permit_wait._CONFIG is not None and permit_wait._CONFIG.done():
            hub = permit_hub.hub_for(settings, keys)
    registered = time.perf_counter() - begin
    waiting_rss = rss_mib()
    cpu0 = time.process_time()
    await asyncio.sleep(idle_s)
    cpu_idle = time.process_time() - cpu0
    record = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="scheduled__x")
    value = dump_permit(permit_of(record))
    async with await EtcdStore.connect(settings) as writer:
        first_grant = time.perf_counter()
        for dag, p in pairs:
            last_grant = time.perf_counter()  # when the last grant's write is sent
            await writer.put(permit_key(keys, dag, p), value)
    await asyncio.gather(*tasks)
    for found in permit_hub.hubs_of(asyncio.get_running_loop()):
        await found.close()
    return {
        "waits": len(pairs),
        "connections": connects,
        "rss_mib_before": round(before, 1),
        "rss_mib_waiting": round(waiting_rss, 1),
        "cpu_s_idle": round(cpu_idle, 3),
        "idle_s": idle_s,
        "register_s": round(registered, 3),
        "last_grant_to_last_open_s": round(max(ended) - last_grant, 4),
        "first_grant_to_last_open_s": round(max(ended) - first_grant, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with EtcdServer(unsafe_no_fsync=True) as server:
        os.environ["COORDINATOR_ETCD_ENDPOINTS"] = server.endpoint
        os.environ["COORDINATOR_PREFIX"] = PREFIX
        permit_wait._resolve = lambda: permit_wait.local_config()  # type: ignore[assignment]
        print(json.dumps(asyncio.run(run(args.waits, args.idle, server.endpoint))))


if __name__ == "__main__":
    main()
