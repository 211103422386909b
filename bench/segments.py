"""Segment partitions: the planner's cost when daily upstreams are keyed by region (semantics `segment-partitions`),
against the same estate without segments.

Set-up: ``--pairs`` daily roots ``r_i`` and one dependent ``d_i`` each, ``--days`` days of history, in one of four
shapes:

- ``plain``: no segments (today's estate: one partition a day);
- ``same``: both declare ``--segments`` regions, ``d_i`` for a region needs ``r_i`` for that region;
- ``all``: only ``r_i`` declares them, ``d_i`` (daily) needs every region of its day (a rollup);
- ``count``: as ``all``, with ``"cutoff": "6h", "min": 2`` (the counted edge's path).

Two numbers per shape, in process (no etcd, no HTTP, ``time.process_time``):

- **a full pass**: ``planner.plan`` over every partition of the preloaded view, as a watcher's first pass after a
  start (``explain=False``), with every dependent already fresh (nothing to do: the cost of judging);
- **per event**: the last day's root successes applied one by one, each followed by ``plan_changes`` as the watcher
  does for it; the triggers it yields (one per dependent partition).

Claim checked: segments cost what their partitions are (a region's partition costs what a day does), the mapping
adds no more than a grid's rollup does, and ``plain`` costs what it did before segments existed.
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
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    run_id_for,
)
from coordinator.core.planner import plan, plan_changes
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View

SHAPES = ("plain", "same", "all", "count")
START = datetime(2025, 3, 3, tzinfo=UTC)
DAILY = "0 0 * * *"


def key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_of(shape: str, pairs: int, regions: list[str]) -> str:
    root = {"cron": DAILY} if shape == "plain" else {"cron": DAILY, "segments": regions}
    dependent = {"cron": DAILY, "segments": regions} if shape == "same" else {"cron": DAILY}
    dags: dict[str, object] = {f"r{i:04d}": {"partitions": root} for i in range(pairs)}
    for i in range(pairs):
        edge: object = f"r{i:04d}"
        if shape == "count":
            edge = {"dag": f"r{i:04d}", "cutoff": "6h", "min": 2}
        dags[f"d{i:04d}"] = {"partitions": dependent, "upstreams": [edge]}
    return json.dumps({"version": 1, "dags": dags})


def run(shape: str, pairs: int, days: int, segments: int) -> dict[str, float]:
    regions = [f"region{j:02d}" for j in range(segments)]
    graph = parse_spec(graph_of(shape, pairs, regions))
    keys = KeyLayout()
    view = View(keys)
    view.intern_nodes(graph.dags)
    rev = 1
    view.apply(view.graph_key, dump_activation(adopt(graph.shapes, graph.digest, None, rev)), rev)
    roots = [NodeId("default", f"r{i:04d}") for i in range(pairs)]
    day_keys = [key(START + timedelta(days=d)) for d in range(days)]
    parts = (lambda day: [day]) if shape == "plain" else (lambda day: [f"{day}~{r}" for r in regions])
    success = dump_record(RunRecord(state=RunState.SUCCESS, run_id="scheduled"))
    # History: every root's partitions of the first days, and each dependent's run and done ledger entry for them
    # (planned and run through the same protocol shape the watcher leaves: a done trigger, then a success).
    for day in day_keys[:-1]:
        for node in roots:
            for p in parts(day):
                rev += 1
                view.apply(keys.run_key(node, p), success, rev)
    for action in plan(graph, view, explain=False, now=START + timedelta(days=days + 1)).actions:
        assert isinstance(action, Trigger)
        rev += 1
        ledger = keys.trigger_key(action.node, action.partition)
        value = dump_record(
            TriggerRecord(
                status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id=run_id_for(action.partition),
                inputs=dict(action.inputs), cause_rev=rev - 1, intent_rev=rev, requested_at=START, watcher="bench",
            )
        )  # fmt: skip
        view.apply(ledger, value, rev)
        rev += 1
        view.apply(keys.run_key(action.node, action.partition), success, rev)
    began = time.process_time()
    full = plan(graph, view, explain=False, now=START + timedelta(days=days + 1))
    full_s = time.process_time() - began
    samples: list[float] = []
    triggers = 0
    now = START + timedelta(days=days + 1)
    for node in roots:
        for p in parts(day_keys[-1]):
            rev += 1
            began = time.process_time()
            view.apply(keys.run_key(node, p), success, rev)
            actions = plan_changes(graph, view, {p: [node]}, now=now).actions
            samples.append(time.process_time() - began)
            triggers += sum(isinstance(a, Trigger) for a in actions)
    samples.sort()
    return {
        "partitions": float(len(view.partitions)),
        "keys": float(rev),
        "full_pass_s": full_s,
        "full_pass_actions": float(len(full.actions)),
        "events": float(len(samples)),
        "mean_us": statistics.fmean(samples) * 1e6,
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "triggers": float(triggers),
    }


def markdown(results: dict[str, dict[str, float]], pairs: int, days: int, segments: int) -> str:
    lines = [
        f"### Segment partitions: {2 * pairs:,} DAGs, {days} days, {segments} segments",
        "",
        "| shape | partitions | keys | full pass | per event: mean / p50 / p99 | due actions (last day) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for shape, r in results.items():
        lines.append(
            f"| {shape} | {r['partitions']:,.0f} | {r['keys']:,.0f} | {r['full_pass_s']:.2f} s | "
            f"{r['mean_us']:.0f} / {r['p50_us']:.0f} / {r['p99_us']:.0f} us | {r['triggers']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="daily roots, each with one dependent")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--only", default=",".join(SHAPES), help=",".join(SHAPES))
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    results = {shape: run(shape, args.pairs, args.days, args.segments) for shape in args.only.split(",")}
    print(markdown(results, args.pairs, args.days, args.segments))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
