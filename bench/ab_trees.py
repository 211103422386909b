"""Two checkouts side by side: the same benchmarks, alternated before/after/before/after, one table of medians.

A refactor is judged against the tree before it on the same machine in the same hour: each round runs every
benchmark once per tree, the order flipped every round so slow drift of the machine spreads over both; each
benchmark runs as its own process from its tree (``bench/X.py`` there imports that tree's ``coordinator``), with its
own etcd, fake Airflow and watcher. Make a checkout with ``git worktree add /tmp/before <commit>``.

Usage: ``.venv/bin/python bench/ab_trees.py --before /tmp/before [--after .] [--rounds 2] [--quick | --estate]``;
``--json FILE`` keeps every run's numbers. A figure that moves between rounds of the same tree as much as between trees
is noise: the table prints every run, not only the median.

``--estate`` runs the estate instead (``cold_start_estate``, ``takeover_estate``: 5,000 DAGs x 365 days with the
ledger, 3,467,500 keys; about 25 minutes for two rounds): run it whenever the watcher's middle changes (the informer,
the view, the planner, the manager, anything on the start-up path), because the small graph's cold start (about a
second) cannot show what costs per key or per DAG. The default set (and ``--quick``) stays the inner loop's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _harness as h

#: benchmark -> (arguments, arguments of a --quick run, [(figure path in its --json, label)])
BENCHMARKS: dict[str, tuple[list[str], list[str], list[tuple[str, str]]]] = {
    "cold_start": (
        [],
        ["--partitions", "20"],
        [
            ("first_reconcile_s", "cold start: start to first full pass (s)"),
            ("first_reconcile_cpu_s", "cold start: CPU to first full pass (s)"),
        ],
    ),
    "takeover": ([], ["--partitions", "20"], [("signal_to_trigger_s", "takeover: kill -9 to first trigger (s)")]),
    "latency": (
        ["--keep-alive"],
        ["--keep-alive", "--duration", "10", "--sweep", "50,100", "--sweep-duration", "6"],
        [
            ("target.latency_ms.50", "latency at 200/s: p50 (ms)"),
            ("target.latency_ms.99", "latency at 200/s: p99 (ms)"),
            ("target.reconcile_passes", "latency at 200/s: reconcile passes"),
            ("target.cpu_cores.watcher", "latency at 200/s: watcher CPU (cores)"),
        ],
    ),
    "asset_round": (
        [],
        ["--events", "100", "10000", "--rounds", "5"],
        [
            ("100000.wall_p50_ms", "asset round, 100,000 events: p50 (ms)"),
            ("10000.wall_p50_ms", "asset round, 10,000 events: p50 (ms)"),
            ("100.wall_p50_ms", "asset round, 100 events: p50 (ms)"),
        ],
    ),
    "page": ([], ["--requests", "60"], [("p50_ms", "page: p50 (ms)"), ("p99_ms", "page: p99 (ms)")]),
}

#: The estate (``--estate``): 5,000 DAGs x 365 days, a run state per DAG and day and a done ledger entry per triggered
#: DAG and day (the size ``docs/benchmarks.md`` promises a start for).
ESTATE = [
    "--layers",
    "10",
    "--width",
    "500",
    "--partitions",
    "365",
    "--ledger",
    "--max-txn-ops",
    "1024",
    "--batch",
    "1000",
]
ESTATE_BENCHMARKS: dict[str, tuple[str, list[str], list[tuple[str, str]]]] = {
    "cold_start_estate": (
        "cold_start",
        [*ESTATE, "--no-breakdown", "--timeout", "1200", "--time-target", "30", "--rss-target", "2000"],
        [
            ("first_reconcile_s", "estate cold start: start to first full pass (s)"),
            ("first_reconcile_cpu_s", "estate cold start: CPU to first full pass (s)"),
            ("first_reconcile_plan_ms", "estate cold start: the full pass's plan (ms)"),
            ("imports_to_start_log_s", "estate cold start: start to watcher.start (s)"),
            ("view_loaded_s", "estate cold start: start to view loaded (s)"),
            ("vmhwm_after_3s_mb", "estate cold start: peak RSS (MB)"),
        ],
    ),
    "takeover_estate": (
        "takeover",
        [*ESTATE, "--timeout", "1200"],
        [("signal_to_trigger_s", "estate takeover: kill -9 to first trigger (s)")],
    ),
}


def figure(data: dict[str, Any], path: str) -> float | None:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node)


def run(tree: Path, name: str, args: list[str], out: Path) -> dict[str, Any]:
    """One benchmark script ``bench/{name}.py`` from ``tree`` (its own interpreter: this one); its --json figures ({}
    when it failed)."""
    done = subprocess.run([sys.executable, f"bench/{name}.py", *args, "--json", str(out)], cwd=tree,
                          capture_output=True, text=True, timeout=3600, check=False)  # fmt: skip
    if done.returncode != 0 or not out.exists():
        print(f"{name} in {tree} failed ({done.returncode}): {done.stderr[-500:]}", file=sys.stderr)
        return {}
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated benchmark names (default: every one of the set)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller estates (a smoke test, not a result)")
    size.add_argument("--estate", action="store_true", help="the 5,000-DAG x 365-day estate: cold start, takeover")
    parser.add_argument("--json")
    args = parser.parse_args()
    # name -> (script, arguments, figures)
    chosen = (
        ESTATE_BENCHMARKS
        if args.estate
        else {name: (name, quick if args.quick else full, shown) for name, (full, quick, shown) in BENCHMARKS.items()}
    )
    names = [n for n in (args.only or ",".join(chosen)).split(",") if n]
    if unknown := [n for n in names if n not in chosen]:
        parser.error(f"--only: unknown {', '.join(unknown)}; this set has {', '.join(chosen)}")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for tree_name, folder in trees.items():
        print(f"{tree_name}: {folder}, reader {h.build_reader(folder)}", flush=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"before": [], "after": []} for n in names}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for name in names:
                script, arguments, _ = chosen[name]
                for side in order:
                    out = Path(scratch) / f"{name}-{side}-{round_}.json"
                    results[name][side].append(run(trees[side], script, arguments, out))
                    print(f"round {round_ + 1}: {name} {side} done", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"| figure | before ({trees['before']}) | after ({trees['after']}) | after / before (medians) |")
    print("|---|---:|---:|---:|")
    for name in names:
        for path, label in chosen[name][2]:
            cols = []
            for side in ("before", "after"):
                values = [v for v in (figure(r, path) for r in results[name][side]) if v is not None]
                cols.append(values)
            shown = [" / ".join(f"{v:.2f}" for v in values) or "-" for values in cols]
            ratio = "-"
            if cols[0] and cols[1] and statistics.median(cols[0]):
                ratio = f"{statistics.median(cols[1]) / statistics.median(cols[0]):.2f}"
            print(f"| {label} | {shown[0]} | {shown[1]} | {ratio} |")


if __name__ == "__main__":
    main()
