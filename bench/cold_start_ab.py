"""Cold starts of two checkouts back to back against ONE preloaded etcd: before/after at 1,000,000 keys.

The ``cold_start`` bench preloads for minutes at that size and measures one checkout; this preloads once (the same
graph, run states and ledger as ``cold_start.py --ledger``) and starts ``coordinator watch`` from each checkout in
turn, so both see the same store under the same machine load. Prints, per watcher: time to the first reconcile pass,
when the view was loaded (its log), the watcher's CPU seconds until the first pass (less sensitive to a shared
machine than wall time), the first pass's plan_ms, peak RSS, and any watch reconnect or relist.

    .venv/bin/python bench/cold_start_ab.py --before /tmp/before --partitions 1000 --order before,after,after,before

``--before``: a checkout of the old code (``git archive <commit> | tar -x -C /tmp/before``), run with this venv.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import cold_start as cs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code to compare against")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--order", default="before,after,after,before", help="which checkout starts when")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each first pass")
    args = parser.parse_args()
    repos = {"before": args.before.resolve(), "after": h.REPO}
    order = args.order.split(",")
    if not (args.before / "coordinator" / "__init__.py").is_file():
        sys.exit(f"--before {args.before}: no coordinator package there (expected a checkout of this repository)")
    if unknown := set(order) - set(repos):
        sys.exit(f"--order {args.order}: unknown {sorted(unknown)}; use before and after")

    workdir = Path(tempfile.mkdtemp(prefix="bench-cold-ab-"))
    deps = workdir / "dependencies.json"
    names, spec = cs.layered_graph(10, 100)
    h.write_deps(deps, spec)
    dags = [d for layer in names for d in layer]
    with h.start_etcd(["--max-txn-ops=1024"]) as etcd, h.recording_fake_airflow(dags) as fake:
        started = time.monotonic()
        revision = asyncio.run(cs.preload(etcd.endpoint, names, args.partitions, deps, 1000, spec))
        print(f"preloaded in {time.monotonic() - started:.1f} s (revision {revision})", flush=True)
        for i, label in enumerate(order):
            h.REPO = repos[label]  # the watcher runs `python -m coordinator.cli` in this directory
            watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / f"watcher-{i}.log").start()
            try:
                first = watcher.wait_for(lambda w: w.reconciles[:1], args.timeout, "the first reconcile pass")[0]
                cpu, hwm = watcher.cpu_seconds(), watcher.status("VmHWM") / 1024
                loaded = h.log_time(watcher.first_line("view.loaded") or "") or float("nan")
            finally:
                rc = watcher.stop()
            trouble = [ln for ln in watcher.lines if "etcd.watch_reconnect" in ln or "etcd.watch_relist" in ln]
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print(
                f"{label}: first_pass={first.at - watcher.started_wall:.1f}s "
                f"view_loaded={loaded - watcher.started_wall:.1f}s cpu={cpu:.1f}s plan_ms={first.plan_ms:.0f} "
                f"vmhwm={hwm:.0f}MB watch_reconnects_or_relists={len(trouble)} rc={rc} loadavg={load}",
                flush=True,
            )


if __name__ == "__main__":
    main()
