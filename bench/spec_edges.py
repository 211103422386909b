"""Extended edges: what loading and checking a converted estate costs (``parse_spec`` with shift/task edges, the
never-lands check of ``coordinator validate``, and ``core.inputs.required_inputs`` per dependent date).

Set-up: ``--dags`` daily DAGs at every hour of the day (every third in Europe/Berlin), ``--edges`` task-level edges
between them, each with the shift that lands on its upstream's hour when both share a time zone (what
``import-dags`` writes for ``execution_delta``), else an exact-date edge; ``--bad`` of the shifts are moved by 30
minutes so they never land (the rejection path, which scans the whole sample). Timed with ``time.perf_counter``,
the median of ``--repeat`` runs, in-process (no etcd, no subprocess).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.core.inputs import required_inputs
from coordinator.core.model import PARTITION_FORMAT, NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError


def estate(dags: int, edges: int, bad: int) -> str:
    rng = random.Random(1)
    body: dict[str, dict[str, object]] = {}
    for i in range(dags):
        zone = "Europe/Berlin" if i % 3 == 0 else "UTC"
        body[f"d{i:03d}"] = {"partitions": {"cron": f"0 {i % 24} * * *", "timezone": zone}}
    made = 0
    for i in range(1, dags):
        ups: list[dict[str, object]] = []
        for j in rng.sample(range(i), min(i, 2)):
            if made >= edges:
                break
            edge: dict[str, object] = {"dag": f"d{j:03d}", "task": "publish"}
            if (i % 3 == 0) == (j % 3 == 0):
                hours = j % 24 - i % 24
                edge["shift"] = f"{hours:+d}h30m" if made < bad else (f"{hours:+d}h" if hours else "0s")
            ups.append(edge)
            made += 1
        if ups:
            body[f"d{i:03d}"]["upstreams"] = ups
    return json.dumps({"version": 1, "dags": body})


def median_s(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=200)
    parser.add_argument("--edges", type=int, default=300)
    parser.add_argument("--bad", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=30, help="dependent dates asked per DAG by inputs")
    args = parser.parse_args()
    text = estate(args.dags, args.edges, args.bad)

    def load() -> None:
        try:
            parse_spec(text)
        except SpecError:
            if not args.bad:
                raise

    parse_s = median_s(load, args.repeat)
    result: dict[str, object] = {"dags": args.dags, "edges": args.edges, "bad": args.bad, "parse_s": round(parse_s, 3)}
    if not args.bad:
        graph = parse_spec(text)
        nodes = [n for n in graph.topo_order if graph.dags[n].upstreams]
        start = datetime(2024, 3, 1, tzinfo=UTC)
        dates: dict[NodeId, list[str]] = {}
        for node in nodes:
            grid = graph.dags[node].grid
            assert grid is not None
            point = grid.next(start)
            dates[node] = []
            for _ in range(args.days):
                dates[node].append(point.strftime(PARTITION_FORMAT))
                point = grid.next(point)

        def ask() -> None:
            for node in nodes:
                for date in dates[node]:
                    required_inputs(graph, node, date)

        calls = len(nodes) * args.days
        result["inputs_calls"] = calls
        result["inputs_us_per_call"] = round(median_s(ask, args.repeat) / calls * 1e6, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
