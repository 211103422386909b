"""Cold start: a watcher starting on a store that already holds 100,000 run states (1,000 DAGs x 100 partitions).

Set-up: a layered graph of 1,000 DAGs (10 layers of 100; each DAG below the first layer waits for 1-3 DAGs of the
layer above: chains, fan-outs and fan-ins), written as dependencies.json; a real etcd (fsync on) preloaded with one
run state per (DAG, partition), written layer by layer so every DAG's success comes after its upstreams' (everything
is up to date, as on a healthy system), except the newest partition, still in progress (running / queued at the
bottom of the graph); the graph activation already adopted (a restart, not a first install).

Measured on a real ``coordinator watch`` subprocess: wall time from process start to the log line of the first
reconcile pass (which plans every partition), the watcher's own log stamps for imports -> view loaded, and peak RSS
(VmHWM). Then, in this process, the same work piece by piece: snapshot, View.load, plan over all partitions.

Targets: first reconcile finished <= 3 s after start; peak RSS <= 300 MB.

At scale: ``--partitions 1000 --ledger`` is 1,000,000 run states plus a done ledger entry for every
triggered (non-root) DAG and partition, as after a year of the coordinator running: inputs = the upstreams'
generations, written before the DAG's success, so every partition is up to date. Targets: first pass <= 10 s,
peak RSS < 1 GB, and the watch healthy (no reconnect or relist while loading; a success written after the first pass
triggers its downstream). ``--max-txn-ops`` raises etcd's limit so the preload runs in big transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
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


def with_groups(spec: dict[str, list[str]], fraction: float, seed: int = 11) -> dict[str, Any]:
    """The graph with ``fraction`` of the DAGs that wait for 2+ upstreams waiting on a condition group instead
    (alternately ``any`` and ``at_least`` all but one of them), in the extended form; the rest as they are."""
    rng = random.Random(seed)
    dags: dict[str, Any] = {}
    turn = 0
    for dag, ups in sorted(spec.items()):
        if len(ups) >= 2 and rng.random() < fraction:
            group: dict[str, Any] = {"any": ups} if turn % 2 == 0 or len(ups) < 3 else {"at_least": len(ups) - 1,
                                                                                           "of": ups}  # fmt: skip
            dags[dag] = {"upstreams": [group]}
            turn += 1
        else:
            dags[dag] = {"upstreams": ups}
    return {"version": 1, "dags": dags}


def state_for(layer: int, part_index: int, partitions: int, layers: int) -> str:
    """Every partition is complete except the newest: its bottom layers are still running or queued."""
    if part_index < partitions - 1 or layer < layers - 3:
        return "success"
    return "running" if layer == layers - 3 else "queued"


def ledger_value(ups: list[str], revs: dict[tuple[str, int], int], p: int, intent_rev: int) -> bytes:
    """A done ledger entry like the actuator writes, whose inputs are the upstreams' current generations."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    inputs = {f"default/{up}": revs[(up, p)] for up in ups}
    reason = "all upstreams succeeded: " + ", ".join(f"{up} at revision {revs[(up, p)]}" for up in ups)
    record = {
        "status": "done", "action": "create", "run_id": f"coordinator__{h.partition(p)}", "inputs": inputs,
        "reason": reason, "cause_rev": max(inputs.values()), "intent_rev": intent_rev, "requested_at": now,
        "done_at": now, "watcher": "bench:1", "attempts": 1, "trigger_count": 1,
    }  # fmt: skip
    return json.dumps(record, separators=(",", ":")).encode()


async def preload(
    endpoint: str,
    names: list[list[str]],
    partitions: int,
    deps_path: Path,
    batch: int,
    deps: dict[str, list[str]] | None = None,
) -> int:
    """Write the activation, then every run state in transactions of ``batch`` puts, one layer after the other.

    With ``deps``, each layer's ledger entries go first (inputs: the upstream run states' revisions), then its run
    states, so every success comes after its DAG's intent (the coordinator triggered it) and consumed its inputs."""
    from coordinator.core.activation import adopt, dump_activation
    from coordinator.runtime.spec_file import load_spec

    graph = load_spec(deps_path)
    etcd = h.RawEtcd(endpoint)
    activation = adopt(graph.shapes, graph.digest, None, revision=1, by="bench")
    assert activation is not None
    await etcd.put(f"{h.PREFIX}/config/graph", dump_activation(activation))
    sem = asyncio.Semaphore(8)

    async def txn(items: list[tuple[str, bytes]]) -> int:
        async with sem:
            return await etcd.put_many(items)

    async def write(items: list[tuple[tuple[str, int], str, bytes]], into: dict[tuple[str, int], int]) -> None:
        """Concurrent transactions of ``batch`` puts; records each (dag, partition)'s revision ``into``."""
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
        got = await asyncio.gather(*(txn([(k, v) for _, k, v in chunk]) for chunk in chunks))
        for chunk, rev in zip(chunks, got, strict=True):
            for at, _, _ in chunk:
                into[at] = rev

    revs: dict[tuple[str, int], int] = {}  # (dag, partition) -> revision of its run state
    for layer, dags in enumerate(names):  # a layer's writes all get revisions after the layer above: up to date
        if deps is not None and layer > 0:
            ledger = [
                ((dag, p), f"{h.PREFIX}/triggers/default/{dag}/{h.partition(p)}", ledger_value(deps[dag], revs, p, 0))
                for p in range(partitions)
                for dag in dags
            ]
            await write(ledger, {})
        items = [
            ((dag, p), h.run_key(dag, h.partition(p)), h.run_value(state_for(layer, p, partitions, len(names))))
            for p in range(partitions)
            for dag in dags
        ]
        await write(items, revs)
    revision = await etcd.revision()
    await etcd.close()
    return revision


class _Sink:
    """Snapshot pages straight into a view (the watcher's own sink is private to its module)."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def reset(self) -> None:
        self.view.load(0, ())

    def add_items(self, items: Any) -> None:  # (key, value, revision) triples, as the watcher's sink takes them
        self.view.load_page(items)


async def in_process(endpoint: str, deps_path: Path) -> dict[str, float]:
    """The watcher's start-up work in this process, piece by piece, done the way the watcher does it (cyclic GC off
    while loading, a full pass without verdicts). CPU seconds (``time.process_time``): on a shared machine they do
    not depend on what else runs. Then, for comparison, the explaining pass that ``status`` makes."""
    from coordinator.core.model import KeyLayout
    from coordinator.core.planner import plan
    from coordinator.core.view import View
    from coordinator.etcd import EtcdStore
    from coordinator.runtime.settings import EtcdSettings, parse_endpoints
    from coordinator.runtime.spec_file import load_spec

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
        keys = KeyLayout()
        cuts = [f"{base}{n.instance}/{n.dag_id}/" for n in graph.dags for base in (keys.runs, keys.triggers)]
        if hasattr(store, "stream_snapshot"):  # streamed into the view, as the watcher does
            sink = _Sink(view)
            t3 = clock()
            revision, count = await store.stream_snapshot(keys.root, sink, cuts=cuts)
            getattr(view, "end_load", lambda: None)()  # a tree whose view stores a load's facts at its end
            view.revision = revision
            t4 = clock()
        else:  # before streaming existed: a snapshot, then View.load
            snap = await store.snapshot(keys.root)
            t3 = clock()
            view.load(snap.revision, ((kv.key, kv.value, kv.mod_revision) for kv in snap.kvs))
            t4 = clock()
            count = len(snap.kvs)
    finally:
        gc.enable()
    result = plan(graph, view, explain=False)
    t5 = clock()
    explained = plan(graph, view)
    t6 = clock()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    await store.close()
    return {
        "keys": count,
        "load_spec_cpu_s": t1 - t0,
        "snapshot_cpu_s": t3 - t2,
        "view_load_cpu_s": t4 - t3,
        "plan_cpu_s": t5 - t4,
        "plan_explained_cpu_s": t6 - t5,
        "actions": len(result.actions),
        "verdicts": len(explained.verdicts),
        "rss_growth_mb": rss1 - rss0,
    }


def watch_probe(
    endpoint: str, names: list[list[str]], deps: dict[str, list[str]], partitions: int, fake: Any
) -> tuple[float, bool]:
    """Write successes of a layer-1 DAG's upstreams (roots) in a partition after every preloaded one; wait (60 s at
    most) for that DAG to be triggered at the fake Airflow: proof that the watch delivers. Returns (seconds, seen)."""
    t = time.monotonic()
    child = write_roots(endpoint, names, deps, h.partition(partitions))
    arrived = fake_arrival(fake, child, t, 60)
    return (arrived - t, True) if arrived is not None else (time.monotonic() - t, False)


def write_roots(endpoint: str, names: list[list[str]], deps: dict[str, list[str]], part: str, which: int = 0) -> str:
    """Successes of a layer-1 DAG's (the ``which``-th) upstreams (roots) in partition ``part``; returns that DAG."""
    child = names[1][which]

    async def put() -> None:
        etcd = h.RawEtcd(endpoint)
        await etcd.put_many([(h.run_key(up, part), h.run_value("success")) for up in deps[child]])
        await etcd.close()

    asyncio.run(put())
    return child


def fake_arrival(fake: Any, dag: str, since: float, timeout: float) -> float | None:
    """When (``time.monotonic``) the fake Airflow first received a trigger of ``dag`` after ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [at for (name, _), at in list(fake.arrivals.items()) if name == dag and at >= since]
        if found:
            return min(found)
        time.sleep(0.02)
    return None


def previous_leader(endpoint: str, deps: Path, airflow_url: str, log_path: Path, timeout: float) -> tuple[float, float]:
    """``--restart``: a watcher that leads until it has recorded a plan checkpoint (semantics rule 19), then stops
    (SIGTERM), as before a restart. It starts without a checkpoint (its first pass plans every partition): returns
    (seconds from its start to that first pass, its whole run time)."""
    watcher = h.WatcherProcess(endpoint, deps, airflow_url, log_path,
                               extra_env={"COORDINATOR_CHECKPOINT_INTERVAL_S": "1"}).start()  # fmt: skip
    try:
        first = watcher.wait_for(lambda w: w.reconciles[:1], timeout, "the previous leader's first pass")[0]
        watcher.wait_for(lambda w: w.first_line("checkpoint.recorded"), timeout, "the previous leader's checkpoint")
    finally:
        watcher.stop()
    return first.at - watcher.started_wall, time.monotonic() - watcher.started_mono


def estate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that size the preloaded estate (this benchmark's, ``takeover.py``'s and ``snapshot_read.py``'s)."""
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=100, help="DAGs per layer")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128, help="puts per preload transaction (etcd --max-txn-ops: 128)")
    parser.add_argument("--ledger", action="store_true", help="also a done ledger entry per non-root DAG/partition")
    parser.add_argument("--max-txn-ops", type=int, default=0, help="etcd --max-txn-ops (0: etcd's default, 128)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    estate_arguments(parser)
    parser.add_argument("--no-breakdown", action="store_true", help="skip the in-process breakdown (slow at 1M)")
    parser.add_argument("--restart", action="store_true",
                        help="measure a restart: a previous leader records its plan checkpoint and stops, a root "
                             "succeeds meanwhile, then the measured watcher starts")  # fmt: skip
    parser.add_argument("--due-at-start", action="store_true",
                        help="a first start with work due: a layer-1 DAG's roots succeed in a new partition before "
                             "the watcher starts (no checkpoint); measures when that DAG is triggered")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the first pass")
    parser.add_argument("--time-target", type=float, default=3.0, help="target: s from start to the first pass")
    parser.add_argument("--rss-target", type=float, default=300, help="target: peak RSS in MB")
    parser.add_argument("--md")
    parser.add_argument("--json")
    parser.add_argument(
        "--groups",
        type=float,
        default=0.0,
        help="fraction of the DAGs with 2+ upstreams that wait on a condition group (0.2: 20%%)",
    )
    args = parser.parse_args()

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    deps = workdir / "dependencies.json"
    names, spec = layered_graph(args.layers, args.width)
    if args.groups:
        deps.write_text(json.dumps(with_groups(spec, args.groups), indent=1, sort_keys=True))
    else:
        h.write_deps(deps, spec)
    dags = [d for layer in names for d in layer]
    runs = len(dags) * args.partitions
    ledgers = (len(dags) - len(names[0])) * args.partitions if args.ledger else 0
    keys = runs + ledgers
    etcd_args = [f"--max-txn-ops={args.max_txn_ops}"] if args.max_txn_ops else []

    with h.start_etcd(etcd_args) as etcd, h.recording_fake_airflow(dags) as fake:
        t = time.monotonic()
        ledger_deps = spec if args.ledger else None
        revision = asyncio.run(preload(etcd.endpoint, names, args.partitions, deps, args.batch, ledger_deps))
        load_s = time.monotonic() - t
        print(f"preloaded {keys} keys in {load_s:.1f} s (revision {revision})", file=sys.stderr)

        previous_first, previous_s, down_child = float("nan"), 0.0, None
        if args.restart:
            previous_first, previous_s = previous_leader(etcd.endpoint, deps, fake.url, workdir / "previous.log",
                                                         args.timeout + 120)  # fmt: skip
            down_child = write_roots(etcd.endpoint, names, spec, h.partition(args.partitions + 1))
            print(f"previous leader ran {previous_s:.1f} s; a root succeeded while down", file=sys.stderr)
        elif args.due_at_start:
            down_child = write_roots(etcd.endpoint, names, spec, h.partition(args.partitions + 1))
        watcher = h.WatcherProcess(etcd.endpoint, deps, fake.url, workdir / "watcher.log").start()
        try:
            assert watcher.proc is not None
            meter = h.CpuMeter({"watcher": watcher.proc.pid})
            first = watcher.wait_for(lambda w: w.reconciles[:1], args.timeout, "the first reconcile pass")[0]
            cpu_first = watcher.cpu_seconds()
            down_trigger = float("nan")
            if down_child is not None:  # the change made while no watcher ran: when was it acted on?
                arrived = fake_arrival(fake, down_child, watcher.started_mono, args.timeout)
                down_trigger = arrived - watcher.started_mono if arrived is not None else float("nan")
            # An event while the sweep over every partition is still under way: how long does it wait?
            during, during_ended = float("nan"), None
            if watcher.first_line("dirty=all") is None:
                t = time.monotonic()
                child = write_roots(etcd.endpoint, names, spec, h.partition(args.partitions + 2), which=1)
                arrived = fake_arrival(fake, child, t, args.timeout)
                during = arrived - t if arrived is not None else float("nan")
                during_ended = watcher.first_line("dirty=all") is not None
            full_line = watcher.wait_for(lambda w: w.first_line("dirty=all"), args.timeout, "the full pass")
            busy = meter.read()
            hwm_first = watcher.status("VmHWM")
            # The watch is live: a root's success in a new partition must trigger its downstreams (fake Airflow).
            probe_at, probe_ok = watch_probe(etcd.endpoint, names, spec, args.partitions, fake)
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
        watch_trouble = [ln for ln in watcher.lines if "etcd.watch_reconnect" in ln or "etcd.watch_relist" in ln]
        breakdown = {} if args.no_breakdown else asyncio.run(in_process(etcd.endpoint, deps))
        fsync = h.fsync_stats(etcd.endpoint)

    to_first = first.at - watcher.started_wall
    to_full = (h.log_time(full_line) or float("nan")) - watcher.started_wall
    first_work = watcher.first_line("reconcile.first_work") or "no reconcile.first_work line"
    first_work = first_work[first_work.find("reconcile.first_work") :]

    def since_start(name: str) -> float:
        stamp = stamps.get(name)
        return stamp - watcher.started_wall if stamp else float("nan")

    results: dict[str, Any] = {
        "machine": info,
        "dags": len(dags),
        "edges": sum(len(v) for v in spec.values()),
        "partitions": args.partitions,
        "keys": keys,
        "run_states": runs,
        "ledger_keys": ledgers,
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
        "restart": args.restart,
        "due_at_start": args.due_at_start,
        "previous_leader_s": previous_s,
        "previous_leader_first_pass_s": previous_first,
        "first_work_line": first_work,
        "changed_while_down_triggered_s": down_trigger,
        "full_pass_s": to_full,
        "event_during_sweep_triggered_s": during,
        "sweep_ended_before_that_trigger": during_ended,
        "vmhwm_first_mb": hwm_first / 1024,
        "vmhwm_after_3s_mb": hwm_later / 1024,
        "vmrss_after_3s_mb": rss_later / 1024,
        "in_process": breakdown,
        "etcd_fsync": fsync,
        "watch_probe_s": probe_at,
        "watch_probe_ok": probe_ok,
        "watch_reconnects_or_relists": len(watch_trouble),
        "watcher_rc": rc,
        "watcher_warnings": warnings[:5],
    }
    ok_time, ok_mem = to_first <= args.time_target, hwm_later / 1024 <= args.rss_target
    ok_watch = probe_ok and not watch_trouble
    b = breakdown
    breakdown_md = (
        ""
        if not b
        else f"""
In-process breakdown (same store, this process, CPU seconds): load_spec {b["load_spec_cpu_s"]:.2f} s, snapshot of
{b["keys"]:,} keys {b["snapshot_cpu_s"]:.2f} s, View.load {b["view_load_cpu_s"]:.2f} s (streamed: the snapshot's
pages go straight into the view, so both are in the second figure), plan over all partitions
(watcher pass, no verdicts) {b["plan_cpu_s"]:.2f} s ({b["actions"]} actions); the same plan with all
{b["verdicts"]:,} verdicts (what `status` computes) {b["plan_explained_cpu_s"]:.2f} s; resident memory grew by
{b["rss_growth_mb"]:.0f} MB."""
    )
    restart_md = (
        ""
        if not args.restart
        else f"""
Restart (`--restart`): a previous leader, started on the same store without a checkpoint, logged its first pass
(every partition) {previous_first:.2f} s after its start and ran {previous_s:.1f} s until it recorded its plan
checkpoint, then stopped;
while no watcher ran, a layer-1 DAG's roots succeeded in a new partition. The measured watcher's start:
`{first_work}`; that DAG triggered
{down_trigger:.2f} s after the process started; the full pass (every partition) logged at {to_full:.2f} s."""
    )
    if args.due_at_start:
        restart_md = f"""
First start with work due (`--due-at-start`): no plan checkpoint (`{first_work}`); a layer-1 DAG's roots had
succeeded in a new partition before the watcher started. That DAG triggered {down_trigger:.2f} s after the process
started (the sweep's first slice: newest partitions first); the sweep over every partition ended at {to_full:.2f} s."""
    if during_ended is not None:
        restart_md += f"""
An event while the sweep was under way (another layer-1 DAG's roots succeeded in a newer partition right after the
first pass): triggered {during:.3f} s after the write; the sweep had {"" if during_ended else "not "}ended by then."""
    md = f"""### 3. Cold start: {runs:,} run states and {ledgers:,} ledger keys preloaded

- Command: `{h.command_line()}` ({h.now_utc()})
- Graph: {len(dags)} DAGs in {args.layers} layers of {args.width}, {results["edges"]} edges; {args.partitions}
  partitions; {runs:,} run-state keys, {ledgers:,} ledger keys (+ the graph activation), preloaded in {load_s:.1f} s
  with transactions of
  {args.batch} puts; the watcher's first pass: {first.actions} actions{"" if args.restart or args.due_at_start else " (all up to date)"}

| measure | value | target | verdict |
|---|---:|---|---|
| process start -> first reconcile pass logged | {to_first:.2f} s | <= {args.time_target:g} s | {h.verdict(ok_time)} |
| CPU time the watcher used until then | {cpu_first:.2f} s | | |
| peak RSS (VmHWM) after the first pass / 3 s later | {hwm_first / 1024:.0f} / {hwm_later / 1024:.0f} MB | < {args.rss_target:g} MB | {h.verdict(ok_mem)} |
| watch healthy: reconnects/relists; probe success -> downstream triggered | {len(watch_trouble)}; {probe_at:.2f} s | 0; triggered | {h.verdict(ok_watch)} |

Subprocess timeline (its own log stamps, from process start): imports and settings until `watcher.start`
{since_start("start"):.2f} s; snapshot + view loaded {since_start("loaded"):.2f} s; leader
{since_start("leader"):.2f} s; first pass logged {to_first:.2f} s (its plan took {first.plan_ms:.0f} ms).
{h.cpu_line(busy)}.
{restart_md}
{breakdown_md}
{h.fsync_line(fsync)} (mostly the preload).
"""  # noqa: E501
    h.emit(md, results, args.md, args.json)
    if warnings:
        print(f"watcher warnings ({len(warnings)}), first: {warnings[:3]}", file=sys.stderr)


if __name__ == "__main__":
    main()
