"""Partition grids: the watcher's CPU per run-state event when hourly upstreams roll up into daily (or weekly)
dependents, with 30 days of history in the store.

Set-up: 1,000 DAGs = ``--pairs`` hourly roots ``h_i`` (``0 * * * *``), each with one dependent ``d_i`` on a coarser
grid: daily (``0 0 * * *``, a 24-partition window), weekly (``0 0 * * 1``, 168) or, as the baseline, the same
hourly grid (identity, 1). The view is preloaded with ``--days - 1`` days of hourly successes of every root; then
every hourly success of the last day is applied in time order, each followed by the incremental planning the
watcher does for it (``View.apply`` + ``planner.plan_changes`` on the changed DAG and partition), timed with
``time.process_time``. A daily dependent becomes due with the last hour of its day: one trigger per pair. Finally
one hour of the last day is rewritten (a rerun) and planned: one rerun trigger per pair.

This measures the pure planning path in-process (no etcd, no HTTP): that is the part of a watcher's CPU per event
that a window size could change; the rest (watch decoding, the actuator) does not depend on grids.

Claim checked: CPU per event stays flat as the window grows (24 and 168 cost about what 1 costs), because a
rollup is evaluated newest-partition-first and an incomplete window fails on its first check; only the event that
completes a window reads the whole window, once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.planner import plan_changes
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View

GRIDS = {"identity": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 1"}
WINDOW = {"identity": 1, "daily": 24, "weekly": 168}
#: A Monday, so the last day of a 30-day run is inside a weekly window and the daily one completes.
START = datetime(2025, 3, 3, tzinfo=UTC)


def key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(kind: str, pairs: int, days: int) -> dict[str, float]:
    dags = {f"h{i:04d}": {"partitions": {"cron": "0 * * * *"}} for i in range(pairs)}
    dags |= {f"d{i:04d}": {"partitions": {"cron": GRIDS[kind]}, "upstreams": f"h{i:04d}"} for i in range(pairs)}
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}))
    keys = KeyLayout()
    view = View(keys)
    view.intern_nodes(graph.dags)
    rev = 1
    view.apply(view.graph_key, dump_activation(adopt(graph.shapes, graph.digest, None, rev)), rev)
    roots = [NodeId("default", f"h{i:04d}") for i in range(pairs)]
    hours = [key(START + timedelta(hours=h)) for h in range(24 * days)]
    success = dump_record(RunRecord(state=RunState.SUCCESS, run_id="scheduled"))
    loaded = time.process_time()
    for hour in hours[:-24]:
        for node in roots:
            rev += 1
            view.apply(keys.run_key(node, hour), success, rev)
    load_s = time.process_time() - loaded
    samples: list[float] = []
    triggers = 0
    for hour in hours[-24:]:
        for node in roots:
            rev += 1
            began = time.process_time()
            view.apply(keys.run_key(node, hour), success, rev)
            actions = plan_changes(graph, view, {hour: [node]}).actions
            samples.append(time.process_time() - began)
            triggers += sum(isinstance(a, Trigger) for a in actions)
    rerun_hour = hours[-12]
    rerun = dump_record(RunRecord(state=RunState.SUCCESS, run_id="scheduled", clear_number=1))
    rerun_samples: list[float] = []
    rerun_triggers = 0
    for node in roots:
        rev += 1
        began = time.process_time()
        view.apply(keys.run_key(node, rerun_hour), rerun, rev)
        actions = plan_changes(graph, view, {rerun_hour: [node]}).actions
        rerun_samples.append(time.process_time() - began)
        rerun_triggers += sum(isinstance(a, Trigger) for a in actions)
    samples.sort()
    return {
        "window": WINDOW[kind],
        "events": len(samples),
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "max_us": samples[-1] * 1e6,
        "triggers": triggers,
        "rerun_mean_us": statistics.fmean(rerun_samples) * 1e6,
        "rerun_triggers": rerun_triggers,
        "preload_events": len(hours[:-24]) * pairs,
        "preload_s": load_s,
    }


def markdown(results: dict[str, dict[str, float]], pairs: int, days: int) -> str:
    lines = [
        f"### 4. Partition grids: CPU per event, {2 * pairs:,} DAGs, {days} days of hourly history",
        "",
        "| dependents' grid | window | events timed | mean | p50 | p99 | max | triggers | rerun: mean / triggers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        lines.append(
            f"| {kind} | {r['window']:.0f} | {r['events']:,.0f} | {r['mean_us']:.0f} us | {r['p50_us']:.0f} us | "
            f"{r['p99_us']:.0f} us | {r['max_us']:.0f} us | {r['triggers']:.0f} | "
            f"{r['rerun_mean_us']:.0f} us / {r['rerun_triggers']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="hourly roots, each with one dependent")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--only", default=",".join(GRIDS), help="identity,daily,weekly")
    parser.add_argument("--md", type=Path, help="write the markdown block here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    results = {kind: run(kind, args.pairs, args.days) for kind in args.only.split(",")}
    text = markdown(results, args.pairs, args.days)
    print(text)
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
