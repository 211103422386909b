"""What a watcher's start costs before its first read of etcd, by the size of its graph: checkouts side by side.

Until the watcher asks etcd for its first page, etcd waits: the process imports, reads and checks the dependencies
file, and opens its clients. At the estate's 5,000 DAGs that is most of a second; it grows with the DAGs, not with
the store. Each start here is a real ``coordinator watch`` (each checkout's own, from its directory) against a real,
empty etcd (fsync on) and the fake Airflow, on the layered graph of ``cold_start.py`` (``--layers`` x ``--width``
DAGs, the first layer referenced only, as roots); the figures are the times from the process's start to its
``watcher.start`` line (imports, the graph, the clients) and to ``view.loaded`` (an empty read), and the process's CPU
to that line. Nothing else runs in the store, so the etcd read is the same for every checkout.

    .venv/bin/python bench/start_preamble.py --tree before=/tmp/before --tree after=. --width 5000 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import _harness as h
import cold_start as cs


def one_start(etcd: Any, deps: Path, airflow_url: str, tree: Path, log_path: Path, prefix: str) -> dict[str, float]:
    """One ``coordinator watch`` from ``tree`` until its view is loaded; its figures."""
    h.REPO = tree  # the watcher runs `python -m coordinator.cli` in this directory
    watcher = h.WatcherProcess(etcd.endpoint, deps, airflow_url, log_path, extra_args=["--prefix", prefix]).start()
    try:
        loaded = watcher.wait_for(lambda w: w.first_line("view.loaded"), 600, "the view's load")
        cpu = watcher.cpu_seconds()
        start = watcher.first_line("watcher.start") or ""
    finally:
        watcher.stop()
    return {
        "start_log_s": (h.log_time(start) or float("nan")) - watcher.started_wall,
        "view_loaded_s": (h.log_time(loaded) or float("nan")) - watcher.started_wall,
        "cpu_to_loaded_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR", help="a checkout to start")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=500, help="DAGs a layer (the graph has layers x width)")
    parser.add_argument("--rounds", type=int, default=2, help="starts of each checkout, alternating the order")
    parser.add_argument("--json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the watchers' logs)")
    args = parser.parse_args()
    trees: dict[str, Path] = {}
    for given in args.tree:
        name, sep, folder = given.partition("=")
        if not sep or not name or not (Path(folder) / "coordinator" / "__init__.py").is_file():
            sys.exit(f"--tree {given}: expected NAME=DIR with DIR a checkout of this repository")
        trees[name] = Path(folder).resolve()
    if not trees:
        sys.exit("no checkout to start: give --tree NAME=DIR, e.g. --tree this=.")
    for name, folder in trees.items():
        print(f"{name}: {folder}, reader {h.build_reader(folder)}", flush=True)

    info = h.machine()
    names, spec = cs.layered_graph(args.layers, args.width)
    order = [name for r in range(args.rounds) for name in (trees if r % 2 == 0 else reversed(trees))]
    starts: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with h.work_dir("bench-preamble-", keep=args.keep) as workdir:
        deps = workdir / "dependencies.json"
        h.write_deps(deps, spec)
        with h.start_etcd() as etcd, h.recording_fake_airflow([d for layer in names for d in layer]) as fake:
            for i, name in enumerate(order):
                # A prefix of its own: every start is a first start, with nothing adopted before it.
                got = one_start(etcd, deps, fake.url, trees[name], workdir / f"watcher-{i}.log", f"/preamble-{i}")
                starts[name].append(got)
                print(f"{name}: " + " ".join(f"{k}={v:.2f}" for k, v in got.items()), flush=True)

    dags = args.layers * args.width
    print(f"\n{dags:,} DAGs, {h.machine_line(info)}\n")
    print("| figure | " + " | ".join(f"{name}" for name in trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for figure in ("start_log_s", "view_loaded_s", "cpu_to_loaded_s"):
        cells = []
        for name in trees:
            values = [s[figure] for s in starts[name]]
            cells.append(", ".join(f"{v:.2f}" for v in values) + f" (median {statistics.median(values):.2f})")
        print(f"| `{figure}` | " + " | ".join(cells) + " |")
    if args.json:
        h.emit("", {"machine": info, "dags": dags, "trees": {k: str(v) for k, v in trees.items()}, "order": order,
                    "starts": starts}, None, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
