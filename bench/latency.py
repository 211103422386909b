"""Latency: an upstream success written to etcd -> the trigger request received by (fake) Airflow.

Set-up: a graph of independent pairs ``root_i -> child_i``; a real etcd (fsync on); the fake Airflow in a process of
its own (``--fake-in-process``: in this one, as before), timestamping each ``POST /api/v2/dags/child_i/dagRuns`` on
arrival; a real ``coordinator watch`` subprocess.
Load: ``root_i`` success for partition P at a steady rate (open loop: one write every 1/rate s whatever the previous
write's latency), cycling through the roots and moving to the next partition after each round, so every write makes
exactly one child due. Measured: the time from just before the put to the arrival of the child's trigger request.
The first ``--warmup`` seconds are not counted (first Airflow login, connection set-up).

The target rate is measured for ``--duration`` s; ``--sweep`` rates (shorter runs, each with a fresh etcd and
watcher) show where the latency breaks down on the machine at hand, and the watcher's CPU time per trigger says why.

The trigger budget is off (``trigger_budget=0``) unless ``--setting trigger_budget=N`` sets it: its default
ceiling, 1,000 new runs per instance in 10 minutes, holds the instance a few seconds into a run at these rates.

Targets: p50 <= 10 ms and p99 <= 50 ms at 200 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _harness as h


def canonical(logical_date: str) -> str:
    return datetime.fromisoformat(logical_date.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%SZ")


async def drive(endpoint: str, pairs: int, rate: float, duration: float) -> tuple[dict[tuple[str, str], float], list]:
    """Write root successes at ``rate``/s for ``duration`` s; return (child, partition) -> send time, put latencies."""
    etcd = h.RawEtcd(endpoint)
    sent: dict[tuple[str, str], float] = {}
    put_ms: list[float] = []
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def write(k: int) -> None:
        i, part = k % pairs, h.partition(k // pairs)
        value = h.run_value("success", run_id=f"scheduled__{part}")
        before = time.monotonic()
        sent[(f"child_{i:04d}", part)] = before
        await etcd.put(h.run_key(f"root_{i:04d}", part), value)
        put_ms.append((time.monotonic() - before) * 1000)

    start = time.monotonic()
    for k in range(total):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(write(k))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    achieved = total / (time.monotonic() - start)
    await etcd.close()
    print(f"wrote {total} successes in {time.monotonic() - start:.1f} s ({achieved:.0f}/s)", file=sys.stderr)
    return sent, put_ms


def measure(args: argparse.Namespace, rate: float, duration: float) -> dict[str, Any]:
    """One run at ``rate``: fresh etcd, fake Airflow and watcher; the latency of every counted write."""
    roots = [f"root_{i:04d}" for i in range(args.pairs)]
    children = [f"child_{i:04d}" for i in range(args.pairs)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    deps = workdir / "dependencies.json"
    h.write_deps(deps, {c: [r] for r, c in zip(roots, children, strict=True)})

    if args.fake_in_process:
        fake_cm: Any = h.recording_fake_airflow(roots + children, keep_alive=args.keep_alive)
    else:
        fake_cm = h.FakeAirflowProcess(roots + children, keep_alive=args.keep_alive)
    with h.start_etcd() as etcd, fake_cm as fake:
        # The trigger budget is off unless --setting says otherwise: its default ceiling (1,000 new runs per
        # instance in 10 minutes) would hold the instance after a few seconds at these rates, and this measures the
        # path to Airflow, not the brake.
        settings = {"trigger_budget": "0"} | dict(item.split("=", 1) for item in args.setting)
        env = {f"COORDINATOR_{name.upper()}": value for name, value in settings.items()}
        watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / "watcher.log", extra_env=env).start()
        try:
            watcher.wait_for(lambda w: w.first_line("graph.adopted") and w.reconciles, 30, "graph adoption")
            assert watcher.proc is not None
            pids = {"watcher": watcher.proc.pid, "etcd": etcd.pid}
            if args.fake_in_process:
                pids["load+fake Airflow"] = os.getpid()
            else:
                pids |= {"load": os.getpid(), "fake Airflow": fake.pid}
            meter = h.CpuMeter(pids)
            cpu0 = watcher.cpu_seconds()
            passes0 = len(watcher.reconciles)
            sent, put_ms = asyncio.run(drive(etcd.endpoint, args.pairs, rate, duration))
            cpu = meter.read()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and arrival_count(fake) < len(sent):
                time.sleep(0.05)
            watcher_cpu_s = watcher.cpu_seconds() - cpu0
            arrivals = {(dag, canonical(ld)): at for (dag, ld), at in all_arrivals(fake).items()}
            passes = watcher.reconciles[passes0:]
            fsync = h.fsync_stats(etcd.endpoint)
        finally:
            rc = watcher.stop()
        warnings = watcher.warnings()
    if warnings:
        print(f"watcher warnings ({len(warnings)}), first: {warnings[:3]}", file=sys.stderr)

    counted_from = min(sent.values()) + args.warmup
    latencies = [(arrivals[key] - at) * 1000 for key, at in sent.items() if at >= counted_from and key in arrivals]
    triggered = sum(key in arrivals for key in sent)
    return {
        "rate": rate,
        "duration_s": duration,
        "events_written": len(sent),
        "events_counted": len(latencies),
        "missing_triggers": len(sent) - triggered,
        "latency_ms": {q: h.percentile(latencies, q) for q in (50, 95, 99, 100)},
        "etcd_put_ms": {q: h.percentile(put_ms, q) for q in (50, 99)},
        "reconcile_passes": len(passes),
        "plan_ms": {q: h.percentile([r.plan_ms for r in passes], q) for q in (50, 99, 100)},
        "cpu_cores": cpu,
        "etcd_fsync": fsync,
        "watcher_cpu_ms_per_trigger": watcher_cpu_s * 1000 / max(1, triggered),
        "watcher_rc": rc,
        "watcher_warnings": len(warnings),
    }


def arrival_count(fake: Any) -> int:
    if isinstance(fake, h.FakeAirflowProcess):
        return fake.arrival_count()
    with fake.arrival_lock:
        return len(fake.arrivals)


def all_arrivals(fake: Any) -> dict[tuple[str, str], float]:
    if isinstance(fake, h.FakeAirflowProcess):
        return fake.arrivals()
    with fake.arrival_lock:
        return dict(fake.arrivals)


def ok(run: dict[str, Any]) -> bool:
    lat = run["latency_ms"]
    return bool(lat[50] <= 10 and lat[99] <= 50 and not run["missing_triggers"])


def row(run: dict[str, Any]) -> str:
    lat, cpu = run["latency_ms"], run["cpu_cores"]
    return (
        f"| {run['rate']:.0f}/s | {lat[50]:.1f} ms | {lat[95]:.1f} ms | {lat[99]:.1f} ms | {lat[100]:.1f} ms "
        f"| {run['missing_triggers']} | {run['watcher_cpu_ms_per_trigger']:.1f} ms | {cpu['watcher']:.2f} "
        f"| {cpu['others']:.2f} | {cpu['machine']:.2f} | {h.verdict(ok(run))} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500, help="independent root -> child pairs (2x DAGs)")
    parser.add_argument("--rate", type=float, default=200.0, help="upstream successes per second (the target)")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds of load at --rate")
    parser.add_argument("--sweep", default="50,100,150", help="other rates to measure, comma-separated ('' = none)")
    parser.add_argument("--sweep-duration", type=float, default=12.0, help="seconds of load per sweep rate")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at the start not counted")
    parser.add_argument("--keep-alive", action="store_true", help="fake Airflow keeps connections open (uvicorn does)")
    parser.add_argument(
        "--fake-in-process", action="store_true",
        help="serve the fake Airflow from this process (as before): it then shares a GIL with the load generator",
    )  # fmt: skip
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a watcher setting, e.g. max_concurrent_actions=64 (COORDINATOR_<NAME>)",
    )  # fmt: skip
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    target = measure(args, args.rate, args.duration)
    sweep = [measure(args, float(r), args.sweep_duration) for r in args.sweep.split(",") if r.strip()]
    results: dict[str, Any] = {"machine": info, "pairs": args.pairs, "dags": 2 * args.pairs, "target": target,
                               "sweep": sweep}  # fmt: skip
    lat, cpu = target["latency_ms"], target["cpu_cores"]
    rows = "\n".join(row(run) for run in sorted([target, *sweep], key=lambda r: r["rate"]))
    md = f"""### 1. Latency: upstream success in etcd -> trigger request at Airflow

- Command: `{h.command_line()}` ({h.now_utc()})
- Graph: {args.pairs} independent pairs `root_i -> child_i` ({2 * args.pairs} DAGs); load: `root_i` success at a
  steady rate (open loop), {args.pairs} roots per partition, then the next partition: every write makes one child due.
  Fake Airflow {"with" if args.keep_alive else "without"} keep-alive (the fake closes each connection by default),
  {"in the load generator's process" if args.fake_in_process else "in a process of its own"};
  watcher settings: {", ".join(args.setting) or "defaults"} (the trigger budget off unless set).
- Target run: {args.rate:.0f}/s for {args.duration:.0f} s, {target["events_counted"]} of {target["events_written"]} writes
  counted (first {args.warmup:.0f} s excluded), triggers missing {target["missing_triggers"]}

| p50 | p95 | p99 | max | target | verdict |
|----:|----:|----:|----:|--------|---------|
| {lat[50]:.1f} ms | {lat[95]:.1f} ms | {lat[99]:.1f} ms | {lat[100]:.1f} ms | p50 <= 10 ms, p99 <= 50 ms at {args.rate:.0f}/s | {h.verdict(ok(target))} |

Context of the target run: etcd put (fsync) p50 {target["etcd_put_ms"][50]:.1f} ms / p99
{target["etcd_put_ms"][99]:.1f} ms from the writer; {target["reconcile_passes"]} reconcile passes (plan p50
{target["plan_ms"][50]:.1f} ms, max {target["plan_ms"][100]:.1f} ms). {h.fsync_line(target["etcd_fsync"])}.
{h.cpu_line(cpu)}.

By rate ({args.sweep_duration:.0f} s each below the target rate; CPU columns in cores, "others" = processes that are
not part of the benchmark):

| rate | p50 | p95 | p99 | max | missing | watcher CPU per trigger | watcher | others | machine | verdict |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
{rows}
"""  # noqa: E501
    h.emit(md, results, args.md, args.json)


if __name__ == "__main__":
    main()
