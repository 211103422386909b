"""Cold start: a watcher starting on a store that already holds 100,000 run states (1,000 DAGs x 100 partitions).

Set-up: a layered graph of 1,000 DAGs (10 layers of 100; each DAG below the first layer waits for 1-3 DAGs of the
layer above: chains, fan-outs and fan-ins), written as dependencies.json; a real etcd (fsync on) preloaded with one
run state per (DAG, partition), written layer by layer so every DAG's success comes after its upstreams' (everything
is up to date, as on a healthy system), except the newest partition, still in progress (running / queued at the
bottom of the graph); the graph activation already adopted (a restart, not a first install).

Measured on a real ``coordinator watch`` subprocess: wall time from process start to the log line of the first
reconcile pass (which plans every partition), the watcher's own log stamps for imports -> view loaded, and peak RSS
(VmHWM). Then, in this process, the same work piece by piece: snapshot, View.load, plan over all partitions.

Targets (issue): first reconcile finished <= 3 s after start; peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h


def layered_graph(layers: int, width: int, seed: int = 7) -> tuple[list[list[str]], dict[str, list[str]]]:
    """Layers of DAG ids and the shorthand deps: each DAG below layer 0 waits for 1-3 DAGs of the layer above."""
    rng = random.Random(seed)
    names = [[f"l{layer}_d{j:03d}" for j in range(width)] for layer in range(layers)]
    deps: dict[str, list[str]] = {}
    for layer in range(1, layers):
        for j, dag in enumerate(names[layer]):
            ups = {names[layer - 1][j]}  # a chain through every layer, plus random fan-in / fan-out edges
            ups.update(rng.sample(names[layer - 1], rng.randint(0, 2)))
            deps[dag] = sorted(ups)
    return names, deps


def state_for(layer: int, part_index: int, partitions: int, layers: int) -> str:
    """Every partition is complete except the newest: its bottom layers are still running or queued."""
    if part_index < partitions - 1 or layer < layers - 3:
        return "success"
    return "running" if layer == layers - 3 else "queued"


async def preload(endpoint: str, names: list[list[str]], partitions: int, deps_path: Path, batch: int) -> int:
    """Write the activation, then every run state in transactions of ``batch`` puts, one layer after the other."""
    from coordinator.core.view import adopt, dump_activation
    from coordinator.spec_file import load_spec

    graph = load_spec(deps_path)
    etcd = h.RawEtcd(endpoint)
    activation = adopt(graph.shapes, graph.digest, None, revision=1, by="bench")
    assert activation is not None
    await etcd.put(f"{h.PREFIX}/config/graph", dump_activation(activation))
    sem = asyncio.Semaphore(8)

    async def txn(items: list[tuple[str, bytes]]) -> None:
        async with sem:
            await etcd.put_many(items)

    for layer, dags in enumerate(names):  # a layer's writes all get revisions after the layer above: up to date
        items = [
            (h.run_key(dag, h.partition(p)), h.run_value(state_for(layer, p, partitions, len(names))))
            for p in range(partitions)
            for dag in dags
        ]
        await asyncio.gather(*(txn(items[i : i + batch]) for i in range(0, len(items), batch)))
    revision = await etcd.revision()
    await etcd.close()
    return revision


async def in_process(endpoint: str, deps_path: Path) -> dict[str, float]:
    """The watcher's start-up work in this process, piece by piece, done the way the watcher does it (cyclic GC off
    while loading, a full pass without verdicts). CPU seconds (``time.process_time``): on a shared machine they do
    not depend on what else runs. Then, for comparison, the explaining pass that ``status`` makes."""
    from coordinator.core.model import KeyLayout
    from coordinator.core.planner import plan
    from coordinator.core.view import View
    from coordinator.etcd import EtcdStore
    from coordinator.settings import EtcdSettings, parse_endpoints
    from coordinator.spec_file import load_spec

    clock = time.process_time
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = clock()
    graph = load_spec(deps_path)
    t1 = clock()
    store = await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(endpoint)))
    view = View(KeyLayout())
    view.intern_nodes(graph.dags)
    gc.disable()
    try:
        t2 = clock()
        snap = await store.snapshot(KeyLayout().root)
        t3 = clock()
        view.load(snap.revision, ((kv.key, kv.value, kv.mod_revision) for kv in snap.kvs))
        t4 = clock()
    finally:
        gc.enable()
    result = plan(graph, view, explain=False)
    t5 = clock()
    explained = plan(graph, view)
    t6 = clock()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await store.close()
    return {
        "keys": len(snap.kvs),
        "load_spec_cpu_s": t1 - t0,
        "snapshot_cpu_s": t3 - t2,
        "view_load_cpu_s": t4 - t3,
        "plan_cpu_s": t5 - t4,
        "plan_explained_cpu_s": t6 - t5,
        "actions": len(result.actions),
        "verdicts": len(explained.verdicts),
        "rss_growth_mb": rss1 - rss0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=100, help="DAGs per layer")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128, help="puts per preload transaction (etcd --max-txn-ops: 128)")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    deps = workdir / "dependencies.json"
    names, spec = layered_graph(args.layers, args.width)
    h.write_deps(deps, spec)
    dags = [d for layer in names for d in layer]
    keys = len(dags) * args.partitions

    with h.start_etcd() as etcd, h.recording_fake_airflow(dags) as fake:
        t = time.monotonic()
        revision = asyncio.run(preload(etcd.endpoint, names, args.partitions, deps, args.batch))
        load_s = time.monotonic() - t
        print(f"preloaded {keys} keys in {load_s:.1f} s (revision {revision})", file=sys.stderr)

        watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / "watcher.log").start()
        try:
            assert watcher.proc is not None
            meter = h.CpuMeter({"watcher": watcher.proc.pid})
            first = watcher.wait_for(lambda w: w.reconciles[:1], 120, "the first reconcile pass")[0]
            cpu_first = watcher.cpu_seconds()
            busy = meter.read()
            hwm_first = watcher.status("VmHWM")
            time.sleep(3.0)  # a few more seconds of steady state: does memory keep growing?
            hwm_later, rss_later = watcher.status("VmHWM"), watcher.status("VmRSS")
            stamps = {
                name: h.log_time(watcher.first_line(needle) or "")
                for name, needle in (("start", "watcher.start"), ("loaded", "view.loaded"), ("leader", "leader.acq"))
            }
            first_line = watcher.first_line("reconcile revision=") or ""
        finally:
            rc = watcher.stop()
        warnings = watcher.warnings()
        breakdown = asyncio.run(in_process(etcd.endpoint, deps))
        fsync = h.fsync_stats(etcd.endpoint)

    to_first = first.at - watcher.started_wall

    def since_start(name: str) -> float:
        stamp = stamps.get(name)
        return stamp - watcher.started_wall if stamp else float("nan")

    results: dict[str, Any] = {
        "machine": info,
        "dags": len(dags),
        "edges": sum(len(v) for v in spec.values()),
        "partitions": args.partitions,
        "keys": keys,
        "preload_s": load_s,
        "first_reconcile_s": to_first,
        "imports_to_start_log_s": since_start("start"),
        "view_loaded_s": since_start("loaded"),
        "leader_s": since_start("leader"),
        "first_reconcile_cpu_s": cpu_first,
        "cpu_cores_until_first": busy,
        "first_reconcile_plan_ms": first.plan_ms,
        "first_reconcile_actions": first.actions,
        "first_reconcile_line": first_line,
        "vmhwm_first_mb": hwm_first / 1024,
        "vmhwm_after_3s_mb": hwm_later / 1024,
        "vmrss_after_3s_mb": rss_later / 1024,
        "in_process": breakdown,
        "etcd_fsync": fsync,
        "watcher_rc": rc,
        "watcher_warnings": warnings[:5],
    }
    ok_time, ok_mem = to_first <= 3.0, hwm_later / 1024 <= 300
    b = breakdown
    md = f"""### 3. Cold start: {keys:,} run states preloaded

- Command: `{h.command_line()}` ({h.now_utc()})
- Graph: {len(dags)} DAGs in {args.layers} layers of {args.width}, {results["edges"]} edges; {args.partitions}
  partitions; {keys:,} run-state keys (+ the graph activation), preloaded in {load_s:.1f} s with transactions of
  {args.batch} puts; the watcher's first pass plans every partition ({first.actions} actions: all up to date)

| measure | value | target | verdict |
|---|---:|---|---|
| process start -> first reconcile pass logged | {to_first:.2f} s | <= 3 s | {h.verdict(ok_time)} |
| CPU time the watcher used until then | {cpu_first:.2f} s | | |
| peak RSS (VmHWM) after the first pass / 3 s later | {hwm_first / 1024:.0f} / {hwm_later / 1024:.0f} MB | <= 300 MB | {h.verdict(ok_mem)} |

Subprocess timeline (its own log stamps, from process start): imports and settings until `watcher.start`
{since_start("start"):.2f} s; snapshot + view loaded {since_start("loaded"):.2f} s; leader
{since_start("leader"):.2f} s; first pass logged {to_first:.2f} s (its plan took {first.plan_ms:.0f} ms).
{h.cpu_line(busy)}.

In-process breakdown (same store, this process, CPU seconds): load_spec {b["load_spec_cpu_s"]:.2f} s, snapshot of
{b["keys"]:,} keys {b["snapshot_cpu_s"]:.2f} s, View.load {b["view_load_cpu_s"]:.2f} s, plan over all partitions
(watcher pass, no verdicts) {b["plan_cpu_s"]:.2f} s ({b["actions"]} actions); the same plan with all
{b["verdicts"]:,} verdicts (what `status` computes) {b["plan_explained_cpu_s"]:.2f} s; resident memory grew by
{b["rss_growth_mb"]:.0f} MB. {h.fsync_line(fsync)} (mostly the preload).
"""  # noqa: E501
    h.emit(md, results, args.md, args.json)
    if warnings:
        print(f"watcher warnings ({len(warnings)}), first: {warnings[:3]}", file=sys.stderr)


if __name__ == "__main__":
    main()
