"""Throughput: how many run-state events per second one watcher absorbs while keeping up.

Set-up: a graph of 1,000 DAGs (100 roots, each with 9 dependents); a real etcd (fsync on); the fake Airflow; a real
``coordinator watch`` subprocess. Load: a flood of ``running`` then ``success`` states of the 900 dependents over
many partitions, written by ``--concurrency`` concurrent writers as transactions of ``--batch`` puts (one revision per
transaction, one watch event per key). The roots never run in these partitions, so nothing is due: the watcher only
absorbs (parses, indexes, re-plans the touched partitions). Partitions are written one after the other, the
``success`` of a key only after its ``running`` was acknowledged.

Measured: events written per second (acknowledged by etcd), and events absorbed end to end: from the first write to
the first reconcile pass whose revision (from the watcher's ``reconcile revision=N`` log line) reaches the last
written revision. The lag during the flood is read from the same lines. Before the watcher starts, etcd alone is
measured with the same writers (single puts and transactions) to show what the store can take on this machine.

Target: >= 5,000 state events/s absorbed by one watcher while keeping up.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h


async def etcd_alone(endpoint: str, concurrency: int, batch: int, seconds: float) -> float:
    """Puts per second etcd acknowledges for ``concurrency`` writers of ``batch``-put transactions (outside the
    coordinator's prefix, so a watcher would not see them)."""
    etcd = h.RawEtcd(endpoint)
    value = h.run_value("running")
    done = 0
    stop = time.monotonic() + seconds

    async def writer(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            if batch == 1:
                await etcd.put(f"/bench/alone/{w}/{i}", value)
            else:
                await etcd.put_many((f"/bench/alone/{w}/{i}/{j}", value) for j in range(batch))
            done += batch
            i += 1

    start = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(concurrency)))
    rate = done / (time.monotonic() - start)
    await etcd.close()
    return rate


async def flood(
    endpoint: str, leaves: list[str], partitions: int, concurrency: int, batch: int
) -> tuple[float, float, list[tuple[float, int, int]]]:
    """Write running then success for every (leaf, partition); return (start, end, [(ack time, revision, events)])."""
    etcd = h.RawEtcd(endpoint)
    acks: list[tuple[float, int, int]] = []
    sem = asyncio.Semaphore(concurrency)
    running_done: dict[tuple[int, int], asyncio.Future[None]] = {}
    value_running, value_success = h.run_value("running"), h.run_value("success")

    def chunks(p: int) -> list[list[str]]:
        keys = [h.run_key(leaf, h.partition(p)) for leaf in leaves]
        return [keys[i : i + batch] for i in range(0, len(keys), batch)]

    async def write(keys: list[str], value: bytes, after: asyncio.Future[None] | None) -> None:
        if after is not None:
            await after
        async with sem:
            if len(keys) == 1:
                revision = await etcd.put(keys[0], value)
            else:
                revision = await etcd.put_many((k, value) for k in keys)
        acks.append((time.monotonic(), revision, len(keys)))

    async def running(keys: list[str], done: asyncio.Future[None]) -> None:
        await write(keys, value_running, None)
        done.set_result(None)

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    # Partition-major order, each partition's successes queued right behind the next partition's running states.
    for p in range(partitions + 1):
        if p < partitions:
            for c, keys in enumerate(chunks(p)):
                fut = running_done[(p, c)] = loop.create_future()
                tasks.append(asyncio.create_task(running(keys, fut)))
        if p > 0:
            for c, keys in enumerate(chunks(p - 1)):
                tasks.append(asyncio.create_task(write(keys, value_success, running_done[(p - 1, c)])))
        # Keep the task list from racing far ahead of the writers (memory, and realistic arrival order).
        while sum(not t.done() for t in tasks[-4 * concurrency :]) >= 4 * concurrency:
            await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    end = time.monotonic()
    await etcd.close()
    return start, end, acks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=9, help="dependents per root (the DAGs written)")
    parser.add_argument("--partitions", type=int, default=60, help="partitions written (2 x 900 events each)")
    parser.add_argument("--concurrency", type=int, default=32, help="transactions in flight")
    parser.add_argument("--batch", type=int, default=50, help="puts per transaction (1 = single puts)")
    parser.add_argument("--alone-seconds", type=float, default=5.0, help="etcd-alone measurement per mode")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    roots = [f"root_{i:03d}" for i in range(args.roots)]
    leaves = [f"leaf_{i:03d}_{j}" for i in range(args.roots) for j in range(args.fanout)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    deps = workdir / "dependencies.json"
    h.write_deps(deps, {leaf: [roots[int(leaf.split("_")[1])]] for leaf in leaves})
    events = 2 * len(leaves) * args.partitions

    with h.start_etcd() as etcd, h.recording_fake_airflow(roots + leaves) as fake:
        alone = {
            f"{c} x {b}": asyncio.run(etcd_alone(etcd.endpoint, c, b, args.alone_seconds))
            for c, b in ((16, 1), (64, 1), (args.concurrency, args.batch))
        }
        print(f"etcd alone: {alone}", file=sys.stderr)
        watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / "watcher.log").start()
        try:
            watcher.wait_for(lambda w: w.first_line("graph.adopted") and w.reconciles, 60, "graph adoption")
            passes0 = len(watcher.reconciles)
            assert watcher.proc is not None
            meter = h.CpuMeter({"watcher": watcher.proc.pid, "etcd": etcd.pid, "writers+fake Airflow": os.getpid()})
            cpu0, etcd_cpu0 = watcher.cpu_seconds(), h.process_cpu_seconds(etcd.pid)
            wall0 = time.time() - time.monotonic()  # monotonic -> wall clock, to compare with log stamps
            start, end, acks = asyncio.run(flood(etcd.endpoint, leaves, args.partitions, args.concurrency, args.batch))
            last_rev = max(rev for _, rev, _ in acks)
            caught = watcher.wait_for(
                lambda w: next((r for r in w.reconciles[passes0:] if r.revision >= last_rev), None),
                600,
                f"the watcher to reach revision {last_rev}",
            )
            cpu = watcher.cpu_seconds() - cpu0
            cores = meter.read()
            etcd_cpu = h.process_cpu_seconds(etcd.pid) - etcd_cpu0
            hwm = watcher.status("VmHWM")
            passes = [r for r in watcher.reconciles[passes0:] if r.at <= caught.at]
            fsync = h.fsync_stats(etcd.endpoint)
        finally:
            rc = watcher.stop()
        warnings = watcher.warnings()

    start_wall, end_wall = wall0 + start, wall0 + end
    write_s, absorb_s = end - start, caught.at - start_wall
    # Lag during the flood: events acknowledged by etcd but not yet in the watcher's view, at each pass.
    acks.sort(key=lambda a: a[1])
    revs = [rev for _, rev, _ in acks]
    cumulative = []
    total = 0
    for _, _, n in acks:
        total += n
        cumulative.append(total)
    by_time = sorted((t + wall0, n) for t, _, n in acks)
    times = [t for t, _ in by_time]
    written_by = []
    total = 0
    for _, n in by_time:
        total += n
        written_by.append(total)
    lags = []
    for r in passes:
        absorbed = cumulative[bisect.bisect_right(revs, r.revision) - 1] if r.revision >= revs[0] else 0
        i = bisect.bisect_right(times, r.at) - 1
        written = written_by[i] if i >= 0 else 0
        lags.append(max(0, written - absorbed))
    results: dict[str, Any] = {
        "machine": info,
        "dags": len(roots) + len(leaves),
        "partitions": args.partitions,
        "events": events,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "etcd_alone_puts_per_s": alone,
        "write_s": write_s,
        "written_per_s": events / write_s,
        "absorb_s": absorb_s,
        "absorbed_per_s": events / absorb_s,
        "catch_up_after_last_write_s": caught.at - end_wall,
        "max_lag_events": max(lags, default=0),
        "reconcile_passes": len(passes),
        "plan_ms": {q: h.percentile([r.plan_ms for r in passes], q) for q in (50, 99, 100)},
        "watcher_cpu_s": cpu,
        "events_per_watcher_cpu_s": events / cpu if cpu else float("nan"),
        "cpu_cores": cores,
        "etcd_fsync": fsync,
        "etcd_cpu_s": etcd_cpu,
        "watcher_vmhwm_mb": hwm / 1024,
        "watcher_rc": rc,
        "watcher_warnings": warnings[:5],
    }
    ok = results["absorbed_per_s"] >= 5000
    alone_rows = "; ".join(f"{mode}: {rate:,.0f} puts/s" for mode, rate in alone.items())
    md = f"""### 2. Throughput: run-state events absorbed by one watcher

- Command: `{h.command_line()}` ({h.now_utc()})
- Graph: {results["dags"]} DAGs ({args.roots} roots x {args.fanout} dependents); load: `running` then `success` of the
  {len(leaves)} dependents in {args.partitions} partitions = {events:,} events, {args.concurrency} transactions of
  {args.batch} puts in flight (nothing becomes due: the roots never run in these partitions)
- etcd alone on this machine (writers in flight x puts per request): {alone_rows}

| written (etcd acks) | absorbed end to end | caught up after last write | max lag | target | verdict |
|---:|---:|---:|---:|---|---|
| {results["written_per_s"]:,.0f} events/s | {results["absorbed_per_s"]:,.0f} events/s | {results["catch_up_after_last_write_s"]:.2f} s | {results["max_lag_events"]:,} events | >= 5,000 events/s | {h.verdict(ok)} |

Context: the flood took {write_s:.1f} s to write and {absorb_s:.1f} s to absorb; the watcher made {len(passes)}
reconcile passes (plan p50 {results["plan_ms"][50]:.1f} ms, max {results["plan_ms"][100]:.0f} ms) and used
{cpu:.1f} CPU-s: {results["events_per_watcher_cpu_s"]:,.0f} events per CPU-second, the rate one watcher could absorb
with a core to itself. etcd used {etcd_cpu:.1f} CPU-s; watcher peak RSS {hwm / 1024:.0f} MB.
{h.cpu_line(cores)}. {h.fsync_line(fsync)} (whole run, etcd-alone phase included).
"""  # noqa: E501
    h.emit(md, results, args.md, args.json)
    if warnings:
        print(f"watcher warnings ({len(warnings)}), first: {warnings[:3]}", file=sys.stderr)


if __name__ == "__main__":
    main()
