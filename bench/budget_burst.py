"""Budget burst: a writer floods one root's successes, one put each, and the trigger budget must hold the excess.

Set-up: one root DAG with ``--fanout`` dependents; a real etcd; the fake Airflow in its own process; a real
``coordinator watch`` with the default budget (each dependent's allowance of 40 new runs in 10 minutes, an
instance-wide ceiling of 1000: semantics rule 15) unless ``--budget`` sets the ceiling. Load: ``--writes`` successes
of the root, each for its own partition, written as fast as one writer can (``--mode puts``: one put each, as a buggy
or hostile writer holding only its instance's role would; ``--mode txn``: all in one transaction). Each success makes
``--fanout`` dependent runs due.

Measured: writes per second acknowledged by etcd; dependent runs the fake Airflow received (``POST .../dagRuns``)
once the watcher has settled; the hold recorded in ``{prefix}/config/budget/default`` (held, held_count) and the
``budget.held`` log line; reconcile passes during the flood. Target: a burst spread over many passes is
held like one in a single pass: at most the budget's runs start, and the hold is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

from coordinator.core.budget import DEFAULT_TRIGGER_BUDGET
from coordinator.core.budget_allowance import DEFAULT_DAG_ALLOWANCE_FLOOR

ROOT = "root"


async def write(endpoint: str, writes: int, mode: str) -> tuple[float, int]:
    """The root's successes for ``writes`` partitions; (seconds, last revision)."""
    etcd = h.RawEtcd(endpoint)
    items = [(h.run_key(ROOT, h.partition(i)), h.run_value("success")) for i in range(writes)]
    start = time.monotonic()
    if mode == "txn":
        revision = await etcd.put_many(items)
    else:
        revision = 0
        for key, value in items:
            revision = await etcd.put(key, value)
    seconds = time.monotonic() - start
    await etcd.close()
    return seconds, revision


async def budget_key(endpoint: str) -> dict[str, Any] | None:
    etcd = h.RawEtcd(endpoint)
    response = await etcd.kv.Range(etcd.rpc.RangeRequest(key=f"{h.PREFIX}/config/budget/default".encode()))
    await etcd.close()
    return json.loads(response.kvs[0].value) if response.kvs else None


def created(fake: h.FakeAirflowProcess) -> int:
    """Runs the fake received, by DAG and logical date (the start check's permission probe posts none: left out)."""
    return sum(logical_date != "None" for _, logical_date in fake.arrivals())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300, help="root successes written (one partition each)")
    parser.add_argument("--fanout", type=int, default=1, help="dependents of the root")
    parser.add_argument("--mode", choices=("puts", "txn"), default="puts")
    parser.add_argument("--budget", type=int, default=None, help="COORDINATOR_TRIGGER_BUDGET (default: the default)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds with no new run that end the count")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.mode == "txn" and args.writes > 128:
        parser.error("--mode txn writes one transaction: at most 128 puts (etcd's default --max-txn-ops)")

    info = h.machine()
    dependents = [f"dep_{i:02d}" for i in range(args.fanout)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    deps = workdir / "dependencies.json"
    h.write_deps(deps, {dep: [ROOT] for dep in dependents})
    env = {} if args.budget is None else {"COORDINATOR_TRIGGER_BUDGET": str(args.budget)}
    with h.start_etcd() as etcd, h.FakeAirflowProcess([ROOT, *dependents]) as fake:
        watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / "watcher.log", extra_env=env).start()
        try:
            watcher.wait_for(lambda w: w.first_line("graph.adopted") and w.reconciles, 60, "graph adoption")
            passes0 = len(watcher.reconciles)
            seconds, last = asyncio.run(write(etcd.endpoint, args.writes, args.mode))
            watcher.wait_for(lambda w: any(r.revision >= last for r in w.reconciles[passes0:]), 120, "the last write")
            runs, quiet_since = created(fake), time.monotonic()
            while time.monotonic() - quiet_since < args.settle:
                time.sleep(0.5)
                now = created(fake)
                if now != runs:
                    runs, quiet_since = now, time.monotonic()
            state = asyncio.run(budget_key(etcd.endpoint))
            passes = len(watcher.reconciles) - passes0
            held_lines = [line for line in watcher.lines if "budget.held" in line or "budget.dag_held" in line]
        finally:
            watcher.stop()

    # Without --budget each dependent stops at its allowance (the floor: the root has no grid), under the ceiling.
    per_dags = args.fanout * DEFAULT_DAG_ALLOWANCE_FLOOR
    limit = min(args.budget, per_dags) if args.budget is not None else min(DEFAULT_TRIGGER_BUDGET, per_dags)
    results: dict[str, Any] = {
        "machine": info,
        "mode": args.mode,
        "writes": args.writes,
        "fanout": args.fanout,
        "due": args.writes * args.fanout,
        "limit": limit,
        "write_s": seconds,
        "writes_per_s": args.writes / seconds if seconds else float("inf"),
        "runs_created": runs,
        "reconcile_passes": passes,
        "held": bool(state and (state.get("held") or any(d.get("held") for d in state.get("dags", {}).values()))),
        "held_count": (state or {}).get("held_count", 0),
        "held_log_lines": len(held_lines),
    }
    ok = results["runs_created"] <= limit and results["held"]
    markdown = "\n".join([
        f"### Budget burst ({args.mode}, {h.now_utc()})",
        "",
        f"- Command: `{h.command_line()}`",
        f"- Machine: {h.machine_line(info)}",
        f"- {args.writes} root successes ({'one put each' if args.mode == 'puts' else 'one transaction'}) at "
        f"{results['writes_per_s']:,.0f} writes/s, {results['due']} dependent runs due, budget {limit}",
        f"- Runs created: {runs}; reconcile passes from the first write to the end of the count: {passes}",
        f"- Hold recorded: {results['held']} (held_count {results['held_count']}, {len(held_lines)} `budget.held` "
        "line(s))",
        f"- Target (at most the budget's runs start and the hold is recorded): {h.verdict(ok)}",
    ])  # fmt: skip
    h.emit(markdown, results, args.md, args.json)


if __name__ == "__main__":
    main()
