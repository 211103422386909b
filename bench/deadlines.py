"""Expected-by deadlines: what one evaluation pass of ``core.deadline.states.deadline_states`` costs over a big
estate (target: 5,000 DAGs x 30 partitions in <= 50 ms per pass).

Set-up, all in this process (no etcd, no subprocess: the function is pure, its input is the watcher's view):
- ``--layers`` x ``--width`` daily DAGs (default 10 x 500 = 5,000), each below the first layer waiting for 1-3 DAGs
  of the layer above (chains, fan-ins, fan-outs; ``cold_start.layered_graph``), written in the extended form with a
  daily UTC grid (one zone: a dependent on a grid of another zone would need two upstream partitions per day, which
  is another benchmark); every DAG declares ``expected_by``, by thirds ``after_end`` 6h, ``at`` 10:00 with
  ``day_offset`` 1, and ``after_start`` 30h; every other one a fixed duration, the rest ``learned``; warn 30m.
- a View loaded from run-state values as the Airflow plugin writes them (``View.load``: the facts the watcher keeps)
  for ``--partitions`` daily partitions (default 30), every DAG's success after its upstreams' (revisions layer by
  layer): all but the two newest partitions complete, 2% of those successes after their deadline (late); in the
  second newest, 0.5% of the first layer failed (their descendants missed); in the newest (deadline not yet
  passed), the first four layers succeeded, the fifth is running, the sixth queued, the rest not started, and 0.5%
  of the first layer failed (their descendants blocked, the cause two or more hops up).
- ``now``: three hours after the newest partition's window ends; the pass looks back ``--partitions`` grid points
  (``horizon``): the 29 newest partitions of the view and today's, not started yet (the oldest one only feeds the
  learned durations).

Timed with ``time.perf_counter`` (wall) and ``time.process_time`` (CPU): ``--repeat`` passes after one warm-up, the
median and the range.

Then the leader's incremental pass (``coordinator.core.deadline.cache.DeadlineCache``, fed the (DAG, partition) keys the
watch's changes name, as ``watcher/deadlines.py`` is), same estate and horizon: the first (full) pass; a steady pass 15
s later with nothing changed; a pass after a burst of run states applied with ``View.apply`` (the fifth layer's 500
running DAGs succeed today; separately 50 of the sixth layer's queued DAGs fail: their descendants become blocked); a
pass after a clock jump of ``--jump-min`` minutes past many warn points and deadlines. Each burst is reverted (and the
cache caught up, untimed) before the next repeat; each jump starts from a fresh full pass (untimed). One burst pass is
checked against ``deadline_states`` from scratch (equal statuses) before anything is timed.

Prints a markdown block (``--md PATH`` writes it) and the raw numbers as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h
from cold_start import layered_graph

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import PARTITION_FORMAT, KeyLayout
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View

BASE = datetime(2026, 10, 1, tzinfo=UTC)
EXPECTED = (
    {"after_end": "6h", "warn": "30m"},
    {"at": "10:00", "day_offset": 1, "warn": "30m"},
    {"after_start": "30h", "warn": "30m"},
)


def estate(layers: int, width: int) -> tuple[list[list[str]], dict[str, list[str]], str]:
    """The layers, the upstreams and the extended-form dependencies.json text."""
    names, deps = layered_graph(layers, width)
    body: dict[str, dict[str, Any]] = {}
    for i, dag in enumerate(d for layer in names for d in layer):
        expected = dict(EXPECTED[i % 3])
        expected["duration"] = "20m" if i % 2 else "learned"
        entry: dict[str, Any] = {"partitions": {"cron": "0 0 * * *"}, "expected_by": expected}
        if dag in deps:
            entry["upstreams"] = deps[dag]
        body[dag] = entry
    return names, deps, json.dumps({"version": 1, "dags": body})


def record(state: str, start: datetime | None, end: datetime | None) -> bytes:
    """A run-state value like the plugin's."""
    stamp = (end or start or BASE).isoformat()
    value: dict[str, Any] = {"state": state, "run_id": "scheduled__bench", "clear_number": 0, "updated_at": stamp}
    value["source"] = "airflow-plugin:default"
    if start is not None:
        value["start_date"] = start.isoformat()
    if end is not None:
        value["end_date"] = end.isoformat()
    return json.dumps(value, separators=(",", ":")).encode()


def states(names: list[list[str]], deps: dict[str, list[str]], partitions: int) -> list[tuple[str, int, str, int]]:
    """(dag, partition index, state, minutes after the window end it finished) for every run state, in write order
    (layer by layer, so each success comes after its upstreams')."""
    failed_roots = {p: set(names[0][::200]) for p in (partitions - 2, partitions - 1)}  # 0.5% of the first layer
    dead: dict[int, set[str]] = {p: set(roots) for p, roots in failed_roots.items()}
    out: list[tuple[str, int, str, int]] = []
    for layer, dags in enumerate(names):
        for p in range(partitions):
            for j, dag in enumerate(dags):
                if p in dead and any(up in dead[p] for up in deps.get(dag, ())):
                    dead[p].add(dag)  # a descendant of a failure: never started
                    continue
                if p in failed_roots and dag in failed_roots[p]:
                    out.append((dag, p, "failed", 30 + layer * 20))
                elif p < partitions - 1:
                    late = (j + p) % 50 == 0  # 2%: finished after its deadline
                    out.append((dag, p, "success", (480 if late else 30) + layer * 20))
                elif layer < 4:
                    out.append((dag, p, "success", 30 + layer * 20))
                elif layer == 4:
                    out.append((dag, p, "running", 0))
                elif layer == 5:
                    out.append((dag, p, "queued", 0))
    return out


def build_view(text: str, names: list[list[str]], deps: dict[str, list[str]], partitions: int) -> tuple[Any, View]:
    graph = parse_spec(text)
    keys = KeyLayout()
    activation = adopt(graph.shapes, graph.digest, None, revision=1, by="bench")
    assert activation is not None
    items: list[tuple[str, bytes, int]] = [(keys.config_key("graph"), dump_activation(activation), 1)]
    for rev, (dag, p, state, minutes) in enumerate(states(names, deps, partitions), start=2):
        window_end = BASE + timedelta(days=p + 1)
        start = window_end + timedelta(minutes=max(0, minutes - 20))
        end = window_end + timedelta(minutes=minutes) if state in ("success", "failed") else None
        part = (BASE + timedelta(days=p)).strftime(PARTITION_FORMAT)
        items.append((f"{keys.runs}default/{dag}/{part}", record(state, start, end), rev))
    view = View(keys)
    view.intern_nodes(graph.dags)  # as the watcher does before its load: lookups then match by identity
    view.load(len(items) + 1, items)
    assert not view.problems, list(view.problems.items())[:3]
    return graph, view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=500, help="DAGs per layer")
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--target-ms", type=float, default=50.0)
    # 160: past the warn points of today's running and not-started DAGs, and off the instant 150 min later where the
    # running ones' warn points fall exactly (they would all turn at_risk in the pass after, not in the one timed).
    parser.add_argument("--jump-min", type=int, default=160, help="clock jump of the last incremental case")
    parser.add_argument("--skip-full", action="store_true", help="time only the incremental passes")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        from coordinator.core.deadline.learning import learned_durations
        from coordinator.core.deadline.states import deadline_states
    except ImportError as exc:
        sys.exit(f"bench/deadlines.py: {exc}: this checkout has no expected-by deadlines yet")

    info = h.machine()
    t = time.perf_counter()
    names, deps, text = estate(args.layers, args.width)
    graph, view = build_view(text, names, deps, args.partitions)
    setup_s = time.perf_counter() - t
    now = BASE + timedelta(days=args.partitions, hours=3)
    print(f"estate: {len(graph.dags)} DAGs, {len(view.runs):,} run states, built in {setup_s:.1f} s", file=sys.stderr)

    horizon = timedelta(days=args.partitions - 1, hours=3)

    def full_pass() -> Any:
        return deadline_states(graph, view, now, horizon=horizon)

    durations = learned_durations(view, graph.dags)

    def cached_pass() -> Any:
        return deadline_states(graph, view, now, horizon=horizon, durations=durations)

    def default_pass() -> Any:
        return deadline_states(graph, view, now)

    result = full_pass()  # warm-up: caches the function may fill on first use count as set-up, as in the watcher
    if args.skip_full:
        wall = cpu = wall_cached = cpu_cached = wall_default = cpu_default = [0.0]
        default_count = 0
    else:
        wall, cpu = timed(full_pass, args.repeat)
        wall_cached, cpu_cached = timed(cached_pass, args.repeat)
        default_count = len(default_pass())
        wall_default, cpu_default = timed(default_pass, args.repeat)
    incremental = incremental_cases(graph, view, names, args, now, horizon)
    counts = count_states(result)
    evaluated = sum(counts.values())
    med = statistics.median(wall)
    ok = med <= args.target_ms
    results = {
        "machine": info,
        "dags": len(graph.dags),
        "partitions": args.partitions,
        "run_states": len(view.runs),
        "evaluated": evaluated,
        "states": dict(counts),
        "wall_ms_median": med,
        "wall_ms_min": min(wall),
        "wall_ms_max": max(wall),
        "cpu_ms_median": statistics.median(cpu),
        "cached_durations_wall_ms_median": statistics.median(wall_cached),
        "cached_durations_cpu_ms_median": statistics.median(cpu_cached),
        "default_horizon_statuses": default_count,
        "default_horizon_wall_ms_median": statistics.median(wall_default),
        "default_horizon_cpu_ms_median": statistics.median(cpu_default),
        "repeat": args.repeat,
        "signature": str(inspect.signature(deadline_states)),
        "incremental": incremental,
    }
    states_line = ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items()))
    md = f"""### Expected-by deadlines: one evaluation pass over {len(graph.dags):,} DAGs x {args.partitions} partitions

- Command: `{h.command_line()}` ({h.now_utc()})
- Machine: {h.machine_line(info)}
- Estate: {len(graph.dags):,} daily DAGs in {args.layers} layers of {args.width}, every one with `expected_by`;
  {len(view.runs):,} run states in the view; one pass decided {evaluated:,} (DAG, partition) states: {states_line}

| measure | value | target | verdict |
|---|---:|---|---|
| one pass, wall (median of {args.repeat}; range) | {med:.1f} ms ({min(wall):.1f}-{max(wall):.1f}) | <= {args.target_ms:g} ms | {h.verdict(ok)} |
| one pass, CPU (median) | {statistics.median(cpu):.1f} ms | | |
| the same with the learned durations given (computed once per view) | {statistics.median(wall_cached):.1f} ms wall, {statistics.median(cpu_cached):.1f} ms CPU | | |
| the watcher's own pass (default horizon, 2 days: {default_count:,} statuses) | {statistics.median(wall_default):.1f} ms wall, {statistics.median(cpu_default):.1f} ms CPU | | |

"""  # noqa: E501
    md += f"""
Incremental (`DeadlineCache`, the leader's pass since this change), median of {args.repeat}:

| pass | judged / moved by the clock | wall (range) | CPU | target | verdict |
|---|---:|---:|---:|---|---|
"""
    for c in incremental:
        md += (
            f"| {c['name']} | {c['judged']:,} / {c['timed']:,} | {c['wall_ms']:.1f} ms "
            f"({c['wall_min']:.1f}-{c['wall_max']:.1f}) | {c['cpu_ms']:.1f} ms | <= {args.target_ms:g} ms "
            f"| {h.verdict(c['wall_ms'] <= args.target_ms)} |\n"
        )
    h.emit(md, results, args.md, args.json)


def incremental_cases(
    graph: Any, view: View, names: list[list[str]], args: argparse.Namespace, now: datetime, horizon: timedelta
) -> list[dict[str, Any]]:
    """The incremental passes (see the module docstring): name, statuses judged and moved by the clock, times."""
    from coordinator.core.deadline.cache import DeadlineCache
    from coordinator.core.deadline.states import deadline_states

    keys = view.keys
    today = (BASE + timedelta(days=args.partitions - 1)).strftime(PARTITION_FORMAT)
    started = BASE + timedelta(days=args.partitions)
    rev = [view.revision]

    def write(dags: list[str], value: bytes) -> None:
        """The writes, and the (DAG, partition) keys the informer's changes name for them (the pass's change set)."""
        for dag in dags:
            rev[0] += 1
            key = f"{keys.runs}default/{dag}/{today}"
            view.apply(key, value, rev[0])
            at = view.node_of(key)
            if at is not None:
                state["changed"].add(at)

    succeed = names[4] if len(names) > 4 else names[-1]
    fail = (names[5] if len(names) > 5 else names[-1])[::10][:50]
    running = record("running", started, None)
    queued = record("queued", started, None)
    done = record("success", started, started + timedelta(minutes=50))
    failed = record("failed", started, started + timedelta(minutes=5))
    cases: list[dict[str, Any]] = []

    state: dict[str, Any] = {"changed": set()}

    def case(name: str, run: Any, prepare: Any = None) -> None:
        """``run`` timed ``--repeat`` times, ``prepare`` (untimed) before each."""
        walls, cpus, update = [], [], None
        for _ in range(args.repeat):
            if prepare is not None:
                prepare()
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            update = run()
            cpus.append((time.process_time() - c) * 1000)
            walls.append((time.perf_counter() - w) * 1000)
        assert update is not None
        cases.append({"name": name, "judged": update.judged, "timed": update.timed, "full": update.full,
                      "wall_ms": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
                      "cpu_ms": statistics.median(cpus)})  # fmt: skip

    # The horizon of the timed passes starts four hours before the oldest grid point (the full pass's starts exactly
    # on one), so no timed pass also drops the oldest day: that happens once a day, not every pass. Same 30 points.
    horizon = horizon + timedelta(hours=4)

    def first(at: datetime = now) -> Any:
        cache = DeadlineCache(graph, horizon=horizon)
        state["changed"] = set()
        state["cache"], state["now"] = cache, at
        return cache.rebuild(view, at)

    def settled() -> None:
        """A full pass, untimed, then its objects out of the cyclic GC's reach, as the leader does (gc.freeze)."""
        first()
        gc.freeze()

    def step(dags: list[str] | None = None, value: bytes = b"", advance: timedelta = timedelta(seconds=15)) -> Any:
        if dags is not None:
            write(dags, value)
        state["now"] += advance
        changed, state["changed"] = state["changed"], set()
        return state["cache"].update(view, state["now"], changed)

    case("first pass (full: every status judged)", first)
    gc.freeze()  # as the leader does after a full pass (``watcher/deadlines.py``'s **Incremental**)
    case("steady: 15 s later, nothing changed", step)
    # Correctness before speed: a burst pass equals a full pass from scratch.
    step(succeed, done)
    assert state["cache"].statuses() == deadline_states(graph, view, state["now"], horizon=horizon)
    step(succeed, running)
    case(f"after {len(succeed)} DAGs of one layer succeed today", lambda: step(succeed, done),
         lambda: step(succeed, running))  # fmt: skip
    step(succeed, running)
    case(f"after {len(fail)} DAGs fail today", lambda: step(fail, failed), lambda: step(fail, queued))
    step(fail, queued)
    jump = timedelta(minutes=args.jump_min)
    case(f"clock jump of {args.jump_min} min past warn points and deadlines", lambda: step(advance=jump), settled)
    return cases


def timed(fn: Any, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of ``repeat`` calls (cyclic GC collected before, as between watcher passes)."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        gc.collect()
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return wall, cpu


def count_states(result: Any) -> Counter[str]:
    """State -> how many (DAG, partition) pairs a pass decided, whatever mapping or sequence it returns."""
    values = result.values() if hasattr(result, "values") else result
    return Counter(str(getattr(v, "state", v)) for v in values)


if __name__ == "__main__":
    main()
