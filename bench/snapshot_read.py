"""The start-up read's floor: what reading the cold-start store costs etcd and this client, without the view and with.

``cold_start.py`` times a whole ``coordinator watch``; this one splits its load in two, on the same preloaded store
(the cold-start layered graph; ``--ledger`` adds a done ledger entry per non-root DAG and partition), in this
process, each round twice:

- ``drop``: the watcher's own snapshot read (``EtcdStore.stream_snapshot`` with the watcher's cuts, pages and
  read-ahead) into a sink that only counts the keys: the gRPC pages turned into (key, value, revision) triples and
  nothing else. What no decoder, however fast, can save.
- ``informer``: the same read into the informer and its view (``Informer.load``, cyclic GC held off as the watcher
  loads): what the watcher's "view loaded" costs after its imports.

For each: wall time, this process's CPU, and etcd's CPU over the read (``/proc/<pid>/stat`` of the etcd it started).
On a machine where etcd shares the cores with the watcher (the benchmarks' two cores), etcd's CPU for serving the
range is a floor under the load's wall time no client work removes: at best the two overlap on the two cores.

    .venv/bin/python bench/snapshot_read.py --partitions 1000 --max-txn-ops 1024 --batch 1000
    .venv/bin/python bench/snapshot_read.py --partitions 1000 --ledger --max-txn-ops 1024 --batch 1000

``--pin``: etcd on one core and this process on the other (``cold_start_ab.py``'s ``--pin``), so each read's etcd CPU
is etcd's own, whatever the client does beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import _harness as h
import cold_start as cs


@dataclass
class Read:
    """One read of the whole prefix."""

    mode: str
    keys: int
    wall_s: float
    client_cpu_s: float
    etcd_cpu_s: float


class _Count:
    """An ``ItemSink`` that keeps nothing: the read alone."""

    def __init__(self) -> None:
        self.keys = 0

    def reset(self) -> None:
        self.keys = 0

    def add_items(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        self.keys += len(items)


async def read(endpoint: str, deps: Path, etcd_pid: int, mode: str) -> Read:
    """The watcher's read of the whole prefix, into nothing (``drop``) or into the informer (``informer``)."""
    from coordinator.core.model import KeyLayout
    from coordinator.core.view import View
    from coordinator.etcd.client import EtcdStore
    from coordinator.informer.informer import Informer
    from coordinator.runtime.settings import EtcdSettings, parse_endpoints
    from coordinator.runtime.spec_file import load_spec

    store = await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(endpoint)))
    try:
        graph = load_spec(deps)
        keys = KeyLayout(h.PREFIX)
        # The watcher's cuts (``Watcher.cuts``): each DAG's run states and ledger entries.
        cuts = [f"{base}{n.instance}/{n.dag_id}/" for n in graph.dags for base in (keys.runs, keys.triggers)]
        view = View(keys)
        view.intern_nodes(graph.dags)
        gc.collect()
        etcd0, cpu0, wall0 = h.process_cpu_seconds(etcd_pid), time.process_time(), time.monotonic()
        if mode == "drop":
            sink = _Count()
            _, count = await store.stream_snapshot(keys.root, sink, cuts=cuts)
        else:
            count = (await Informer(view).load(store, keys.root, cuts=cuts, long_lived=True)).keys
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        return Read(mode, count, wall, cpu, h.process_cpu_seconds(etcd_pid) - etcd0)
    finally:
        await store.close()
        gc.unfreeze()
        gc.collect()


def per_key(seconds: float, keys: int) -> str:
    return f"{seconds / max(keys, 1) * 1e6:.1f} us/key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cs.estate_arguments(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pin", action="store_true", help="etcd on the first core, this process on the second")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()
    cores = h.take_second_core() if args.pin else None

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-read-"))
    deps = workdir / "dependencies.json"
    names, spec = cs.layered_graph(args.layers, args.width)
    h.write_deps(deps, spec)
    etcd_args = [f"--max-txn-ops={args.max_txn_ops}"] if args.max_txn_ops else []
    reads: list[Read] = []
    with h.start_etcd(etcd_args) as etcd:
        if cores is not None:
            print(h.give_etcd_first_core(etcd.pid, cores), file=sys.stderr)
        t = time.monotonic()
        asyncio.run(cs.preload(etcd.endpoint, names, args.partitions, deps, args.batch, spec if args.ledger else None))
        print(f"preloaded in {time.monotonic() - t:.1f} s", file=sys.stderr)
        for round_ in range(args.rounds):
            for mode in ("drop", "informer") if round_ % 2 == 0 else ("informer", "drop"):
                r = asyncio.run(read(etcd.endpoint, deps, etcd.pid, mode))
                reads.append(r)
                print(
                    f"round {round_} {r.mode:8s} keys={r.keys:,} wall={r.wall_s:.2f}s "
                    f"client_cpu={r.client_cpu_s:.2f}s etcd_cpu={r.etcd_cpu_s:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )

    rows = "\n".join(
        f"| {r.mode} | {r.keys:,} | {r.wall_s:.2f} s | {r.client_cpu_s:.2f} s ({per_key(r.client_cpu_s, r.keys)}) "
        f"| {r.etcd_cpu_s:.2f} s ({per_key(r.etcd_cpu_s, r.keys)}) |"
        for r in reads
    )
    markdown = f"""### The start-up read's floor: {reads[0].keys:,} keys

- Command: `{h.command_line()}` ({h.now_utc()})
- {h.machine_line(info)}

| read | keys | wall | client CPU | etcd CPU |
|---|---:|---:|---:|---:|
{rows}
"""
    h.emit(markdown, {"reads": [r.__dict__ for r in reads], "machine": info}, args.md, args.json)


if __name__ == "__main__":
    main()
