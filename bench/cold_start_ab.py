"""Cold starts of several checkouts back to back against ONE preloaded etcd, beside etcd's own read of that store.

The ``cold_start`` bench preloads for minutes at estate size and measures one checkout; this preloads once (the same
graph, run states and ledger as ``cold_start.py --ledger``) and starts ``coordinator watch`` from each checkout in
turn, so all see the same store under the same machine load. Before every start the plan checkpoint is deleted (a
first start: the first pass plans every partition, ``reconcile.first_work ... everything=True``). Between the starts,
the bare read of the same store (``snapshot_read.py``'s ``drop``: the watcher's own paged read into a sink that keeps
nothing) is timed, so each start has a floor measured minutes from it: the ratio of the start to that floor is what
the estate is judged on.

Prints, per start: time to the first reconcile pass (the sweep over every partition ends: ``dirty=all``), when the
process logged ``watcher.start`` and ``view.loaded``, the watcher's and etcd's CPU seconds until the first pass, that
pass's ``plan_ms``, peak RSS, any watch reconnect or relist; per read: wall, client and etcd CPU; etcd's major page
faults over each (its database pages read again from disk). ``--json`` keeps them all.

    .venv/bin/python bench/cold_start_ab.py --tree before=/tmp/before --tree after=. \\
        --layers 10 --width 500 --partitions 365 --ledger --order before,after,after,before

``--tree NAME=DIR``: a checkout (``git archive <commit> | tar -x -C DIR``), run with this venv; ``--before DIR`` is
``--tree before=DIR`` beside ``after`` (this checkout).

``--pin``: etcd on the first core, everything else (this process, the bare read, the watchers, the fake Airflow) on
the second, as where etcd runs on hosts of its own: each start and each read then has one core beside etcd's, and
neither takes CPU from the other. Without it all share the machine's two cores, and a start costs about the sum of
etcd's and the watcher's CPU halved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
import cold_start as cs
import snapshot_read as sr


def first_start(
    etcd: Any,
    deps: Path,
    airflow_url: str,
    tree: Path,
    log_path: Path,
    timeout: float,
    sweep: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``coordinator watch`` from ``tree`` until its first pass (with ``sweep``: until the sweep over every
    partition has ended too); its figures."""
    asyncio.run(_forget_checkpoint(etcd.endpoint))
    h.REPO = tree  # the watcher runs `python -m coordinator.cli` in this directory
    etcd_before, etcd_faults = h.process_cpu_seconds(etcd.pid), h.major_faults(etcd.pid)
    watcher = h.WatcherProcess(etcd.endpoint, deps, airflow_url, log_path, extra_env=dict(env or {})).start()
    swept: dict[str, float] = {}
    try:
        first = watcher.wait_for(lambda w: w.reconciles[:1], timeout, "the first reconcile pass")[0]
        # etcd's CPU over the start: its read varies by a third run to run on one store, so a start that took
        # longer may only have met an etcd that worked harder (compare with the bare reads' ``etcd_cpu_s``).
        etcd_cpu = h.process_cpu_seconds(etcd.pid) - etcd_before
        etcd_major = h.major_faults(etcd.pid) - etcd_faults
        cpu, hwm = watcher.cpu_seconds(), watcher.status("VmHWM") / 1024
        _, system_cpu, faults = watcher.cpu_split()
        stamps = {
            name: (h.log_time(watcher.first_line(needle) or "") or float("nan")) - watcher.started_wall
            for name, needle in (("start", "watcher.start"), ("loaded", "view.loaded"))
        }
        first_work = watcher.first_line("reconcile.first_work") or ""
        if sweep:  # the sweep's line (``watcher/sweep.py``): every partition planned
            line = watcher.wait_for(lambda w: w.first_line(" dirty=all "), timeout, "the sweep's end")
            found = _SWEPT.search(line)
            swept = {
                "sweep_end_s": (h.log_time(line) or float("nan")) - watcher.started_wall,
                "sweep_end_cpu_s": watcher.cpu_seconds(),
                "sweep_plan_ms": float(found.group(1)) if found else float("nan"),
                "sweep_ms": float(found.group(2)) if found else float("nan"),
                "sweep_vmhwm_mb": watcher.status("VmHWM") / 1024,
            }
    finally:
        rc = watcher.stop()
    trouble = [ln for ln in watcher.lines if "etcd.watch_reconnect" in ln or "etcd.watch_relist" in ln]
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    return {
        "first_reconcile_s": first.at - watcher.started_wall,
        "first_reconcile_cpu_s": cpu,
        "first_reconcile_sys_s": system_cpu,
        "etcd_cpu_to_first_s": etcd_cpu,
        "etcd_major_faults": etcd_major,
        "minor_faults": faults,
        "first_reconcile_plan_ms": first.plan_ms,
        "imports_to_start_log_s": stamps["start"],
        "view_loaded_s": stamps["loaded"],
        "vmhwm_mb": hwm,
        "planned_everything": "everything=True" in first_work,
        "watch_reconnects_or_relists": len(trouble),
        "watcher_rc": rc,
        "loadavg": load,
        **swept,
    }


#: The sweep's end line's plan and duration (``watcher/sweep.py``: ``plan_ms=... slices=... sweep_ms=...``).
_SWEPT = re.compile(r"\bplan_ms=([\d.]+) slices=\d+ sweep_ms=([\d.]+)")


async def _forget_checkpoint(endpoint: str) -> None:
    """Delete the plan checkpoint an earlier start recorded: every start here is a first one (semantics
    `checkpoint-first`: with a checkpoint the first pass plans only what changed since)."""
    from aetcd import rpc

    etcd = h.RawEtcd(endpoint)
    await etcd.kv.DeleteRange(rpc.DeleteRangeRequest(key=f"{h.PREFIX}/config/checkpoint".encode()), timeout=30)
    await etcd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cs.estate_arguments(parser)
    parser.set_defaults(ledger=True, max_txn_ops=1024, batch=1000)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR", help="a checkout to start")
    parser.add_argument("--before", type=Path, help="same as --tree before=DIR (with after = this checkout)")
    parser.add_argument("--order", help="which checkout starts when (default: each tree, then in reverse)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for each first pass")
    parser.add_argument("--json")
    parser.add_argument("--sweep", action="store_true",
                        help="also wait for the sweep over every partition to end (the whole first plan)")  # fmt: skip
    parser.add_argument("--env", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="an environment variable for checkout NAME's watchers only")  # fmt: skip
    parser.add_argument("--pin", action="store_true",
                        help="etcd on the first core, this process and the watchers on the second")  # fmt: skip
    parser.add_argument("--pyspy", type=Path, metavar="DIR",
                        help="sample each watcher with py-spy into DIR/<start>-<tree>.txt (raw stacks)")  # fmt: skip
    args = parser.parse_args()
    trees: dict[str, Path] = {}
    for given in args.tree:
        name, sep, folder = given.partition("=")
        if not sep or not name:
            sys.exit(f"--tree {given}: expected NAME=DIR, e.g. --tree before=/tmp/before")
        trees[name] = Path(folder).resolve()
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
        trees.setdefault("after", h.REPO)
    envs: dict[str, dict[str, str]] = {}
    for given in args.env:
        name, _, assignment = given.partition(":")
        key, sep, value = assignment.partition("=")
        if not sep or not key or name not in trees:
            sys.exit(f"--env {given}: expected NAME:KEY=VALUE with NAME one of the --tree names")
        envs.setdefault(name, {})[key] = value
    if not trees:
        sys.exit("no checkout to start: give --tree NAME=DIR (one or more) or --before DIR")
    for name, folder in trees.items():
        if not (folder / "coordinator" / "__init__.py").is_file():
            sys.exit(f"--tree {name}={folder}: no coordinator package there (expected a checkout of this repository)")
    for name, folder in trees.items():
        print(f"{name}: {folder}, reader {h.build_reader(folder)}", flush=True)
    order = args.order.split(",") if args.order else [*trees, *reversed(trees)]
    if unknown := set(order) - set(trees):
        sys.exit(f"--order {args.order}: unknown {sorted(unknown)}; use {', '.join(trees)}")

    # Before any child starts: the watchers and the fake Airflow inherit the second core.
    cores = h.take_second_core() if args.pin else None
    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cold-ab-"))
    deps = workdir / "dependencies.json"
    names, spec = cs.layered_graph(args.layers, args.width)
    h.write_deps(deps, spec)
    dags = [d for layer in names for d in layer]
    etcd_args = [f"--max-txn-ops={args.max_txn_ops}"] if args.max_txn_ops else []
    starts: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    reads: list[dict[str, Any]] = []

    def bare_read() -> None:
        faults = h.major_faults(etcd.pid)
        r = asyncio.run(sr.read(etcd.endpoint, deps, etcd.pid, "drop"))
        major = h.major_faults(etcd.pid) - faults
        reads.append({**r.__dict__, "etcd_major_faults": major})
        print(f"read: keys={r.keys:,} wall={r.wall_s:.2f}s client_cpu={r.client_cpu_s:.2f}s "
              f"etcd_cpu={r.etcd_cpu_s:.2f}s etcd_major_faults={major}", flush=True)  # fmt: skip

    with h.start_etcd(etcd_args) as etcd, h.recording_fake_airflow(dags) as fake:
        if cores is not None:
            print(h.give_etcd_first_core(etcd.pid, cores), flush=True)
        started = time.monotonic()
        ledger = spec if args.ledger else None
        revision = asyncio.run(cs.preload(etcd.endpoint, names, args.partitions, deps, args.batch, ledger))
        print(f"preloaded in {time.monotonic() - started:.1f} s (revision {revision})", flush=True)
        bare_read()
        for i, name in enumerate(order):
            if args.pyspy is not None:  # read by ``WatcherProcess.start`` (``_harness``)
                args.pyspy.mkdir(parents=True, exist_ok=True)
                os.environ["BENCH_PYSPY"] = str(args.pyspy / f"{i}-{name}.txt")
            got = first_start(etcd, deps, fake.url, trees[name], workdir / f"watcher-{i}.log", args.timeout,
                              args.sweep, envs.get(name, {}))  # fmt: skip
            starts[name].append(got)
            print(f"{name}: " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in got.items()), flush=True)  # fmt: skip
            bare_read()

    floor = statistics.median(r["wall_s"] for r in reads)
    print(f"\n{reads[0]['keys']:,} keys; etcd's bare read (drop) {min(r['wall_s'] for r in reads):.1f}-"
          f"{max(r['wall_s'] for r in reads):.1f} s, median {floor:.1f} s ({len(reads)} reads)\n")  # fmt: skip
    figures = ("first_reconcile_s", "first_reconcile_cpu_s", "first_reconcile_plan_ms", "imports_to_start_log_s",
               "view_loaded_s", "vmhwm_mb", "first_reconcile_sys_s", "minor_faults", "etcd_cpu_to_first_s",
               "etcd_major_faults")  # fmt: skip
    if args.sweep:
        figures += ("sweep_end_s", "sweep_end_cpu_s", "sweep_plan_ms", "sweep_vmhwm_mb")
    print("| figure | " + " | ".join(f"{name} ({trees[name]})" for name in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for figure in figures:
        cells = [", ".join(f"{s[figure]:,.1f}" for s in starts[name]) for name in trees]
        print(f"| `{figure}` | " + " | ".join(cells) + " |")
    ratios = [", ".join(f"{s['first_reconcile_s'] / floor:.2f}" for s in starts[name]) for name in trees]
    print("| first pass / bare read | " + " | ".join(ratios) + " |")
    if args.sweep:
        swept = [", ".join(f"{s['sweep_end_s'] / floor:.2f}" for s in starts[name]) for name in trees]
        print("| sweep's end / bare read | " + " | ".join(swept) + " |")
    if args.json:
        paths = {k: str(v) for k, v in trees.items()}
        raw = {"machine": info, "trees": paths, "order": order, "pinned": args.pin, "starts": starts, "reads": reads}
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
