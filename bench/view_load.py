"""The watcher's start-up CPU in process, without etcd: ``View.load_page`` over the cold-start store's values, then
the first full pass (``decide`` without verdicts, as the watcher plans it). CPU seconds (``time.process_time``), so
on a shared machine the numbers depend little on the neighbours; ``--rounds`` repeats the whole measurement.

The values are those ``cold_start.py --ledger`` writes (1,000 DAGs in 10 layers; a run state per DAG and partition,
a done ledger entry per non-root DAG and partition, inputs = the upstreams' generations), fed in pages of 1,000
(key, value, revision) triples in key order, as ``etcd.watch.stream_snapshot`` hands them to the watcher's sink.

    .venv/bin/python bench/view_load.py --partitions 100 --rounds 3
    BENCH_CPROFILE=/tmp/load.prof .venv/bin/python bench/view_load.py --partitions 100 --rounds 1

``--as-sent``: the pages as etcd sends them (a ``RangeResponse``'s bytes, serialized before the clock starts), read by
the checkout's own page reader (``etcd.range_page.read_items``) and loaded: the read and the load of a watcher's
start, without etcd and gRPC.

    .venv/bin/python bench/view_load.py --partitions 73 --width 500 --page 5000 --as-sent --rounds 2 --before DIR

``--before DIR`` runs the same measurement with the code of another checkout (``git archive <commit> | tar -x -C
DIR``) in a subprocess, alternating with this checkout round by round.

``--split`` says where the load's CPU goes, in this process, the variants alternated round by round on the same
values: ``real``; ``stub`` (the two canonical decoders replaced by one that hands back a ready fact: the loop, the key
parsing and the indexing alone); ``decode`` (each value decoded by msgspec, the structure dropped); ``decode-kept``
(decoded and kept alive, as the view keeps its facts: what retaining new objects adds).

    .venv/bin/python bench/view_load.py --partitions 365 --rounds 3 --split

``--mypyc MODULE ...`` compiles those modules of this checkout with mypyc (it ships with mypy, a dev dependency) into
a temporary copy of the package and alternates it with the pure checkout, round by round, as ``--before`` does: what
compiling the per-key path would give, measured before any build is changed.

    .venv/bin/python bench/view_load.py --partitions 365 --rounds 4 --mypyc coordinator/core/view.py \
        coordinator/core/canonical.py coordinator/core/fact_index.py
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _harness as h
import cold_start as cs


def store(partitions: int, width: int = 100) -> tuple[Path, list[tuple[str, bytes, int]]]:
    """dependencies.json and the store's (key, value, revision) triples in key order, revisions as the preload
    gives them (each layer after the one above; a DAG's ledger entry before its run state)."""
    names, deps = cs.layered_graph(10, width)
    path = Path(tempfile.mkdtemp(prefix="bench-view-")) / "dependencies.json"
    h.write_deps(path, deps)
    from coordinator.core.activation import adopt, dump_activation
    from coordinator.runtime.spec_file import load_spec

    graph = load_spec(path)
    activation = adopt(graph.shapes, graph.digest, None, revision=1, by="bench")  # adopted before the preload
    assert activation is not None
    rev = 1
    revs: dict[tuple[str, int], int] = {}
    items: list[tuple[str, bytes, int]] = [(f"{h.PREFIX}/config/graph", dump_activation(activation), rev)]
    for layer, dags in enumerate(names):
        for p in range(partitions):
            for dag in dags:
                if layer:
                    rev += 1
                    items.append((f"{h.PREFIX}/triggers/default/{dag}/{h.partition(p)}",
                                  cs.ledger_value(deps[dag], revs, p, 0), rev))  # fmt: skip
        for p in range(partitions):
            for dag in dags:
                rev += 1
                revs[(dag, p)] = rev
                state = cs.state_for(layer, p, partitions, len(names))
                items.append((h.run_key(dag, h.partition(p)), h.run_value(state), rev))
    items.sort(key=lambda item: item[0])
    return path, items


def as_sent(items: list[tuple[str, bytes, int]], page: int) -> list[bytes]:
    """The pages as etcd sends them: each a ``RangeResponse``'s bytes."""
    from coordinator.etcd.stubs import rpc

    pages = []
    for start in range(0, len(items), page):
        kvs = [rpc.KeyValue(key=key.encode(), value=value, mod_revision=rev, create_revision=rev, version=1)
               for key, value, rev in items[start : start + page]]  # fmt: skip
        pages.append(rpc.RangeResponse(kvs=kvs, more=True, count=len(items) - start).SerializeToString())
    return pages


def measure(deps: Path, items: list[tuple[str, bytes, int]], page: int, sent: bool = False) -> dict[str, float]:
    """One cold start's CPU: the pages into a fresh view (cyclic GC off, as the watcher loads), then the first pass;
    ``sent``: each page read from etcd's bytes first (``--as-sent``)."""
    from coordinator.core.decide import decide
    from coordinator.core.model import KeyLayout
    from coordinator.core.view import View
    from coordinator.etcd.range_page import read_items
    from coordinator.runtime.spec_file import load_spec

    graph = load_spec(deps)
    view = View(KeyLayout())
    view.intern_nodes(graph.dags)
    pages: list[Any] = as_sent(items, page) if sent else [items[s : s + page] for s in range(0, len(items), page)]
    clock = time.process_time
    gc.collect()
    gc.disable()
    try:
        t0 = clock()
        for one in pages:
            view.load_page(read_items(one).items if sent else one)
        getattr(view, "end_load", lambda: None)()  # a tree whose view stores a load's facts at its end
        t1 = clock()
    finally:
        gc.freeze()
        gc.enable()
    decision = decide(graph, view, None, now=datetime.now(UTC), explain=False)
    t2 = clock()
    gc.unfreeze()
    return {
        "keys": len(items),
        "load_cpu_s": t1 - t0,
        "load_us_per_key": (t1 - t0) / len(items) * 1e6,
        "plan_cpu_s": t2 - t1,
        "actions": len(decision.plan.actions),
        "problems": len(view.problems),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def split(deps: Path, items: list[tuple[str, bytes, int]], page: int, rounds: int) -> None:
    """``--split``: the load's CPU per key with the decoders as they are, stubbed, decoding only, decoding kept."""
    from coordinator.core import canonical, view
    from coordinator.core.model import KeyLayout
    from coordinator.core.view import View
    from coordinator.runtime.spec_file import load_spec

    graph = load_spec(deps)
    real = (view.run_fact, view.done_ledger_fact)
    run_value = next(v for k, v, _ in items if k.startswith(KeyLayout().runs))
    ledger_value = next(v for k, v, _ in items if k.startswith(KeyLayout().triggers))
    run, ledger = real[0](run_value, 1, True), real[1](ledger_value, 1, {}, True)
    decode_run, decode_ledger = canonical._RUN.decode, canonical._DONE_LEDGER.decode
    kept: list[Any] = []
    variants: dict[str, tuple[Any, Any]] = {
        "real": real,
        "stub": (lambda v, r, s: run, lambda v, r, n, s: ledger),
        "decode": (lambda v, r, s: (decode_run(v), run)[1], lambda v, r, n, s: (decode_ledger(v), ledger)[1]),
        "decode-kept": (lambda v, r, s: (kept.append(decode_run(v)), run)[1],
                        lambda v, r, n, s: (kept.append(decode_ledger(v)), ledger)[1]),
    }  # fmt: skip
    for round_ in range(rounds):
        cells = []
        for name, (run_fact, ledger_fact) in variants.items():
            view.run_fact, view.done_ledger_fact = run_fact, ledger_fact  # ``load_page`` reads the module's names
            fresh = View(KeyLayout())
            fresh.intern_nodes(graph.dags)
            gc.collect()
            gc.disable()
            try:
                t0 = time.process_time()
                for start in range(0, len(items), page):
                    fresh.load_page(items[start : start + page])
                getattr(fresh, "end_load", lambda: None)()
                cpu = time.process_time() - t0
            finally:
                gc.enable()
                view.run_fact, view.done_ledger_fact = real
            kept.clear()
            del fresh
            cells.append(f"{name} {cpu / len(items) * 1e6:.2f}")
        print(f"round {round_} keys={len(items):,} us/key: {', '.join(cells)} load1={os.getloadavg()[0]:.1f}",
              flush=True)  # fmt: skip


def mypyc_copy(modules: list[str]) -> Path:
    """A temporary copy of this checkout's package with ``modules`` (paths under it) compiled by mypyc in place.

    Built in the copy, not the checkout, with the project's ``[tool.mypy]`` written to a ``mypy.ini`` there and no
    ``pyproject.toml``: mypyc builds through setuptools, which reads a ``pyproject.toml`` in its directory, and the dev
    venv's setuptools (65) rejects the project's SPDX ``license`` (the build itself asks for setuptools >= 77)."""
    copy = Path(tempfile.mkdtemp(prefix="bench-mypyc-"))
    shutil.copytree(h.REPO / "coordinator", copy / "coordinator", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    config = tomllib.loads((h.REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]

    def ini(options: dict[str, Any]) -> list[str]:
        return [f"{k} = {', '.join(v) if isinstance(v, list) else v}" for k, v in options.items()]

    lines = ["[mypy]", *ini({k: v for k, v in config.items() if k not in ("packages", "overrides")})]
    for override in config.get("overrides", []):
        lines += [f"[mypy-{','.join(override['module'])}]", *ini({k: v for k, v in override.items() if k != "module"})]
    (copy / "mypy.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
    build = subprocess.run([sys.executable, "-m", "mypyc", *modules], cwd=copy, capture_output=True, text=True)
    if build.returncode != 0:
        sys.exit(f"mypyc failed on {' '.join(modules)}:\n{build.stdout[-4000:]}{build.stderr[-4000:]}")
    print(f"compiled {' '.join(modules)} with mypyc into {copy}", flush=True)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--width", type=int, default=100, help="DAGs per layer (10 layers); the estate has 500")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--before", type=Path, help="checkout to alternate with (run in a subprocess)")
    parser.add_argument("--mypyc", nargs="+", metavar="MODULE",
                        help="alternate with a copy whose MODULEs (paths) mypyc compiled")  # fmt: skip
    parser.add_argument("--split", action="store_true", help="where the load's CPU goes (decoders stubbed, ...)")
    parser.add_argument("--as-sent", action="store_true", help="pages as etcd's bytes, read by the page reader")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # one round, JSON out (subprocesses)
    args = parser.parse_args()
    if args.split:
        deps, items = store(args.partitions, args.width)
        split(deps, items, args.page, args.rounds)
        return
    if args.one:
        sys.path.insert(0, os.environ.get("BENCH_CODE", str(h.REPO)))  # before _harness's entry: the code measured
        deps, items = store(args.partitions, args.width)
        profile = os.environ.get("BENCH_CPROFILE")
        if profile:
            profiler = cProfile.Profile()
            result = profiler.runcall(measure, deps, items, args.page, args.as_sent)
            profiler.dump_stats(profile)
        else:
            result = measure(deps, items, args.page, args.as_sent)
        import coordinator

        compiled = sorted(
            name
            for name, module in sys.modules.items()
            if name.startswith("coordinator.") and str(getattr(module, "__file__", "")).endswith(".so")
        )
        print(json.dumps(result | {"code": str(Path(coordinator.__file__).parent.parent), "compiled": compiled}))
        return
    checkouts = {"after": h.REPO} | ({"before": args.before.resolve()} if args.before else {})
    if args.mypyc:
        checkouts = {"pure": h.REPO, "mypyc": mypyc_copy(args.mypyc)}
    for round_ in range(args.rounds):
        for name, repo in checkouts.items() if round_ % 2 == 0 else reversed(checkouts.items()):
            env = os.environ | {"BENCH_CODE": str(repo)}
            sent = ["--as-sent"] if args.as_sent else []
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", f"--partitions={args.partitions}",
                   f"--width={args.width}", f"--page={args.page}", *sent]  # fmt: skip
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=repo).stdout
            r: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            print(f"round {round_} {name:6s} keys={r['keys']:,} load={r['load_cpu_s']:.3f}s "
                  f"({r['load_us_per_key']:.2f} us/key)\n    plan={r['plan_cpu_s']:.3f}s actions={r['actions']} "
                  f"problems={r['problems']} maxrss={r['maxrss_mb']:.0f}MB load1={os.getloadavg()[0]:.1f} "
                  f"code={r['code']} compiled={','.join(r['compiled']) or '-'}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
