"""The dependencies page at estate scale: request latency, memory growth and HTML size.

Set-up: bench/cold_start.py's layered graph of 1,000 DAGs (10 layers of 100) and its preload, ``--partitions`` run
states per DAG (1,000 for 1,000,000 run states) in a real etcd with fsync on, the activation adopted. Then, in this
process (as the api-server plugin calls it), ``dependencies_page`` is asked for: the default view (no partition:
the newest), random partitions, a DAG's details, a state filter and a neighbourhood. Reported: the first request
(imports, and the process's asset index loaded: ``page/asset_feed.py``), then p50/p99 per request,
the process's RSS growth over all requests (VmHWM after minus VmRSS before), the default view's HTML size.

Targets: p50 <= 300 ms, p99 <= 1 s, RSS growth <= 50 MB, default HTML <= 200 KB.

``--assets N`` adds N shared assets (routed across deployments): asset i made by the first layer's DAG i % 100, 5
recorded events, delivered to two target instances (4 done, 1 pending each), so the page reads and draws them as
graph nodes. ``--events E`` records E events per asset instead (E - 1 done and 1 pending in each target): a long
history.

    .venv/bin/python bench/page.py --partitions 100               # 100,000 run states
    .venv/bin/python bench/page.py --partitions 1000 --max-txn-ops 1024 --batch 1000   # 1,000,000
    .venv/bin/python bench/page.py --partitions 100 --assets 200 --events 500   # and 100,000 asset events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
from cold_start import layered_graph, preload


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def measure(endpoint: str, deps: Path, partitions: int, requests: int, names: list[list[str]]) -> dict[str, Any]:
    from coordinator.page.service import dependencies_page
    from coordinator.runtime.settings import Settings

    settings = Settings(etcd_endpoints=endpoint, prefix=h.PREFIX, deps=deps, http="off")
    rng = random.Random(11)
    dags = [d for layer in names for d in layer]
    t = time.perf_counter()
    first = await dependencies_page(None, None, instance="default", settings=settings)  # warm imports
    first_ms = (time.perf_counter() - t) * 1000  # also loads the process's asset index (page.asset_feed)
    assert first.status == 200, first.html[:500]
    # The preload ran in this process: forget its peak, so VmHWM is the requests' own (Linux: clear_refs 5).
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = status_kb("VmRSS")
    default_sizes: list[int] = []
    times: dict[str, list[float]] = {}
    kinds = ("default", "partition", "detail", "state filter", "around")
    for i in range(requests):
        kind = kinds[i % len(kinds)]
        part = h.partition(rng.randrange(partitions))
        dag = rng.choice(dags)
        args: dict[str, Any] = {
            "default": {"partition": None, "node": None, "query": {}},
            "partition": {"partition": part, "node": None, "query": {}},
            "detail": {"partition": part, "node": f"default/{dag}", "query": {}},
            "state filter": {"partition": part, "node": None, "query": {"state": "succeeded", "page": "3"}},
            "around": {"partition": part, "node": None, "query": {"around": f"default/{dag}", "depth": "2"}},
        }[kind]
        t = time.perf_counter()
        answer = await dependencies_page(args["partition"], args["node"], instance="default", settings=settings,
                                         query=args["query"])  # fmt: skip
        times.setdefault(kind, []).append(time.perf_counter() - t)
        assert answer.status == 200, answer.html[:500]
        if kind == "default":
            default_sizes.append(len(answer.html.encode()))
    every = sorted(x for xs in times.values() for x in xs)

    def pct(q: float) -> float:
        return every[min(len(every) - 1, int(q * len(every)))] * 1000

    return {
        "first_ms": round(first_ms, 1),
        "requests": len(every),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "max_ms": round(every[-1] * 1000, 1),
        "by_kind_p50_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()},
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_growth_mb": round((status_kb("VmHWM") - rss_before) / 1024, 1),
        "default_html_kb": round(max(default_sizes) / 1024, 1),
    }


async def preload_assets(endpoint: str, producers: list[str], count: int, batch: int, events: int = 5) -> None:
    """``count`` shared assets as the leader records them: ``events`` events each, 2 targets with all but the last
    delivered."""
    from datetime import UTC, datetime

    from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus

    keys, at = AssetKeys(h.PREFIX), datetime(2026, 1, 1, tzinfo=UTC)
    items: list[tuple[str, bytes]] = []
    for i in range(count):
        uri = f"s3://lake/bench/asset-{i:04d}"
        for event in range(1, events + 1):
            fact = AssetEventFact(event_id=event, uri=uri, timestamp=at, source_dag_id=producers[i % len(producers)])
            items.append((keys.event_key("default", uri, event), fact.model_dump_json().encode()))
            for target in ("team_b", "team_c"):
                status = DeliveryStatus.DONE if event < events else DeliveryStatus.PENDING
                record = DeliveryRecord(status=status, source="default", event_id=event, uri=uri, requested_at=at)
                items.append((keys.delivery_key(target, "default", uri, event), record.model_dump_json().encode()))
    etcd = h.RawEtcd(endpoint)
    for start in range(0, len(items), batch):
        await etcd.put_many(items[start : start + batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128, help="puts per preload transaction")
    parser.add_argument("--max-txn-ops", type=int, default=0, help="etcd --max-txn-ops (0: etcd's default, 128)")
    parser.add_argument("--assets", type=int, default=0, help="shared assets to record (events and deliveries)")
    parser.add_argument("--events", type=int, default=5, help="recorded events per shared asset")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-page-"))
    deps = workdir / "dependencies.json"
    names, spec = layered_graph(10, 100)
    h.write_deps(deps, spec)
    etcd_args = [f"--max-txn-ops={args.max_txn_ops}"] if args.max_txn_ops else []
    with h.start_etcd(etcd_args) as etcd:
        t = time.monotonic()
        revision = asyncio.run(preload(etcd.endpoint, names, args.partitions, deps, args.batch))
        print(f"preloaded {1000 * args.partitions} run states in {time.monotonic() - t:.1f} s (revision {revision})",
              file=sys.stderr)  # fmt: skip
        if args.assets:
            asyncio.run(preload_assets(etcd.endpoint, names[0], args.assets, args.batch, args.events))
        result = asyncio.run(measure(etcd.endpoint, deps, args.partitions, args.requests, names))
    result.update(machine=h.machine_line(info), dags=1000, run_states=1000 * args.partitions, assets=args.assets,
                  asset_events=args.assets * args.events)  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
