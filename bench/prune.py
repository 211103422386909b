"""``coordinator prune`` on a large store: how long deleting half of it takes, in how many transactions, at what RSS.

Seeds DAGS x PARTITIONS run-state keys plus as many ledger keys (done) into a fresh etcd with fsync on, then runs
``coordinator prune --before`` the middle partition as a subprocess (the command an operator runs) and reports the
wall time, keys per second, transactions and the command's peak RSS; a second run shows the cost of finding nothing.

    .venv/bin/python bench/prune.py --dags 500 --partitions 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from typing import Any

import _harness as h

LEDGER = json.dumps({"status": "done", "action": "create", "run_id": "coordinator__x",
                     "inputs": {"default/root": 12345}, "reason": "bench"}).encode()  # fmt: skip


async def seed(endpoint: str, dags: int, partitions: int) -> int:
    etcd = h.RawEtcd(endpoint)
    try:
        items: list[tuple[str, bytes]] = []
        for p in range(partitions):
            for d in range(dags):
                items.append((h.run_key(f"dag_{d:05d}", h.partition(p)), h.run_value("success")))
                items.append((f"{h.PREFIX}/triggers/default/dag_{d:05d}/{h.partition(p)}", LEDGER))
        for i in range(0, len(items), 100):
            await etcd.put_many(items[i : i + 100])
        return len(items)
    finally:
        await etcd.close()


def prune(endpoint: str, cutoff: str) -> tuple[float, dict[str, Any], float]:
    """Run the command; (seconds, its JSON report, its peak RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "prune", "--before", cutoff, "--format", "json", "--etcd", endpoint],
        capture_output=True, text=True, timeout=3600, cwd=h.REPO, check=True,
    )  # fmt: skip
    seconds = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, json.loads(done.stdout), max(rss, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()
    info = h.machine()
    with h.start_etcd() as server:
        started = time.monotonic()
        keys = asyncio.run(seed(server.endpoint, args.dags, args.partitions))
        seeded_s = time.monotonic() - started
        cutoff = h.partition(args.partitions // 2)
        first_s, report, rss = prune(server.endpoint, cutoff)
        again_s, again, _ = prune(server.endpoint, cutoff)
    deleted = report["deleted"]
    results = {"keys": keys, "seed_s": seeded_s, "deleted": deleted, "prune_s": first_s,
               "transactions": report["transactions"], "rss_mb": rss, "again_s": again_s,
               "again_deleted": again["deleted"]}  # fmt: skip
    markdown = "\n".join([
        f"### coordinator prune ({h.now_utc()})", "", h.machine_line(info), "", f"`{h.command_line()}`", "",
        "| store | deleted | transactions | wall time | keys/s | peak RSS of the command | second run (nothing left) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {keys:,} keys ({args.dags} DAGs x {args.partitions} partitions x run + ledger) | {deleted:,} | "
        f"{report['transactions']:,} | {first_s:.1f} s | {deleted / first_s:,.0f} | {rss:.0f} MB | {again_s:.1f} s |",
    ])  # fmt: skip
    h.emit(markdown, results, args.md, args.json)


if __name__ == "__main__":
    main()
