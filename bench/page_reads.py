"""What one dependencies-page request costs the page's process, counted rather than timed: etcd connections, reads
(by call) and read models built (``View.load``: the heads' view and each informer load), plus the process's CPU
time per request (``time.process_time``: etcd's own work is not in it, so a loaded machine moves it far less than
the wall time ``bench/page.py`` reports).

Set-up: ``bench/page.py``'s (bench/cold_start.py's layered graph of 1,000 DAGs, ``--partitions`` run states each,
the activation adopted, ``--assets`` shared assets), then ``--requests`` requests of its five kinds.

    .venv/bin/python bench/page_reads.py --partitions 100 --assets 50 --requests 60
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/page_reads.py ...   # the same against another tree
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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
from cold_start import layered_graph, preload
from page import preload_assets

#: EtcdStore methods that read (``connect`` counts connections).
READS = ("get", "get_many", "newest", "newest_keys", "snapshot", "stream_snapshot", "current_revision")


def count_calls(counts: Counter[str]) -> None:
    """Wrap the store's reads, its connect and ``View.load`` so each call is counted under its name."""
    from coordinator.core.view import View
    from coordinator.etcd import EtcdStore

    def wrap(owner: Any, name: str, label: str) -> None:
        real = owner.__dict__[name]
        if isinstance(real, classmethod):
            fn = real.__func__

            async def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
                counts[label] += 1
                return await fn(cls, *args, **kwargs)

            setattr(owner, name, classmethod(connect))
            return
        if asyncio.iscoroutinefunction(real):

            async def call(*args: Any, **kwargs: Any) -> Any:
                counts[label] += 1
                return await real(*args, **kwargs)

            setattr(owner, name, call)
        else:

            def plain(*args: Any, **kwargs: Any) -> Any:
                counts[label] += 1
                return real(*args, **kwargs)

            setattr(owner, name, plain)

    wrap(EtcdStore, "connect", "connections")
    for name in READS:
        if name in EtcdStore.__dict__:
            wrap(EtcdStore, name, f"read.{name}")
    wrap(View, "load", "models built")


async def measure(endpoint: str, deps: Path, partitions: int, requests: int, names: list[list[str]]) -> dict[str, Any]:
    from coordinator.page.service import dependencies_page
    from coordinator.runtime.settings import Settings

    settings = Settings(etcd_endpoints=endpoint, prefix=h.PREFIX, deps=deps, http="off")
    rng = random.Random(11)
    dags = [d for layer in names for d in layer]
    first = await dependencies_page(None, None, instance="default", settings=settings)  # loads the asset feed
    assert first.status == 200, first.html[:500]
    await asyncio.sleep(0.5)  # the feed's watches open
    counts: Counter[str] = Counter()
    count_calls(counts)
    cpu: list[float] = []
    per_request: list[Counter[str]] = []
    kinds = ("default", "partition", "detail", "state filter", "around")
    for i in range(requests):
        kind = kinds[i % len(kinds)]
        part = h.partition(rng.randrange(partitions))
        dag = rng.choice(dags)
        query: dict[str, str] = {"state filter": {"state": "succeeded", "page": "3"},
                                 "around": {"around": f"default/{dag}", "depth": "2"}}.get(kind, {})  # fmt: skip
        before = Counter(counts)
        t = time.process_time()
        answer = await dependencies_page(None if kind == "default" else part,
                                         f"default/{dag}" if kind == "detail" else None, instance="default",
                                         settings=settings, query=query)  # fmt: skip
        cpu.append(time.process_time() - t)
        assert answer.status == 200, answer.html[:500]
        per_request.append(counts - before)
    keys: Callable[[], list[str]] = lambda: sorted({k for c in per_request for k in c})  # noqa: E731
    return {
        "requests": requests,
        "per_request": {k: statistics.mean(c[k] for c in per_request) for k in keys()},
        "cpu_ms_p50": round(statistics.median(cpu) * 1000, 1),
        "cpu_ms_mean": round(statistics.mean(cpu) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128, help="puts per preload transaction")
    parser.add_argument("--assets", type=int, default=0, help="shared assets to record (events and deliveries)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-page-reads-"))
    deps = workdir / "dependencies.json"
    names, spec = layered_graph(10, 100)
    h.write_deps(deps, spec)
    with h.start_etcd([]) as etcd:
        asyncio.run(preload(etcd.endpoint, names, args.partitions, deps, args.batch))
        if args.assets:
            asyncio.run(preload_assets(etcd.endpoint, names[0], args.assets, args.batch))
        result = asyncio.run(measure(etcd.endpoint, deps, args.partitions, args.requests, names))
    result.update(dags=1000, run_states=1000 * args.partitions, assets=args.assets)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
