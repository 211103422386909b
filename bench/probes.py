"""The watcher's probes and metrics: how fast /readyz follows a frozen etcd, and what one scrape costs.

1. A real etcd and a real ``coordinator watch`` (HTTP listener on a free port). ``--rounds`` times: SIGSTOP etcd,
   measure until /readyz answers 503; hold the freeze ``--hold`` seconds; SIGCONT, measure until /readyz answers 200.
   /readyz is polled every 20 ms. etcd is always thawed, even when a round fails.
2. In this process: the state gauges' reading (``watcher_state``) and a whole exposition over a view holding
   ``--ledger`` ledger entries (one in 1,000 pending), the cost a scrape adds in the listener's thread.

Usage: ``.venv/bin/python bench/probes.py [--rounds 5] [--hold 2] [--ledger 500000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import _harness as h

from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import LedgerFact, View
from coordinator.runtime.health import watcher_state
from coordinator.runtime.metrics import Metrics, WatcherState
from devtools.etcd_server import EtcdServer


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def until(cond: Callable[[], bool], limit_s: float = 60.0) -> float:
    """Seconds until ``cond`` holds, polling every 20 ms."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > limit_s:
            raise SystemExit(f"no change within {limit_s:g} s")
        time.sleep(0.02)
    return time.monotonic() - start


def readiness_rounds(rounds: int, hold_s: float) -> tuple[list[float], list[float]]:
    work = Path(tempfile.mkdtemp(prefix="bench-probes-"))
    log_path = work / "watcher.log"
    with EtcdServer(unsafe_no_fsync=True) as etcd:
        assert etcd.pid is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
        env.update(COORDINATOR_HTTP="127.0.0.1:0", PYTHONPATH=str(h.REPO))
        cmd = [sys.executable, "-m", "coordinator.cli", "watch", "--etcd", etcd.endpoint, "--id", "bench-probes",
               "--deps", str(h.REPO / "dependencies.json"), "--airflow-url", "http://127.0.0.1:9"]  # fmt: skip
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work)
        try:
            until(lambda: "http.listening" in log_path.read_text())
            found = re.search(r"http\.listening address=(\S+)", log_path.read_text())
            assert found is not None
            url = f"http://{found.group(1)}/readyz"
            until(lambda: status(url) == 200)
            down: list[float] = []
            up: list[float] = []
            for _ in range(rounds):
                time.sleep(1.5)
                os.kill(etcd.pid, signal.SIGSTOP)
                try:
                    down.append(until(lambda: status(url) == 503))
                    time.sleep(hold_s)
                finally:
                    os.kill(etcd.pid, signal.SIGCONT)
                up.append(until(lambda: status(url) == 200))
            return down, up
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def scrape_cost(entries: int) -> tuple[float, float]:
    """Milliseconds of watcher_state and of a whole exposition over ``entries`` ledger facts (best of 3)."""
    view = View(KeyLayout("/bench"))
    nodes = [NodeId("default", f"dag_{i}") for i in range(5000)]
    done = TriggerRecord.model_construct(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r")
    pending = TriggerRecord.model_construct(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id="r")
    for i in range(entries):
        view.ledger[(nodes[i % 5000], f"p{i // 5000}")] = LedgerFact(pending if i % 1000 == 0 else done, i)
    graph = parse_spec(json.dumps({"b": "a"}))
    metrics = Metrics()

    def read() -> WatcherState:
        return watcher_state(view, leading=True, in_flight=0, graph=graph, graph_invalid=False)

    metrics.bind_state(read)
    state_ms, page_ms = [], []
    for _ in range(3):
        start = time.perf_counter()
        read()
        state_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        list(metrics.registry.collect())
        page_ms.append((time.perf_counter() - start) * 1000)
    return min(state_ms), min(page_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds etcd stays frozen after /readyz said 503")
    parser.add_argument("--ledger", type=int, default=500_000)
    args = parser.parse_args()
    down, up = readiness_rounds(args.rounds, args.hold)
    print(f"SIGSTOP -> /readyz 503: median {statistics.median(down):.2f} s, range {min(down):.2f}-{max(down):.2f} s")
    print(f"SIGCONT -> /readyz 200: median {statistics.median(up):.2f} s, range {min(up):.2f}-{max(up):.2f} s")
    state_ms, page_ms = scrape_cost(args.ledger)
    print(f"scrape over {args.ledger:,} ledger entries: state {state_ms:.0f} ms, whole collection {page_ms:.0f} ms")


if __name__ == "__main__":
    main()
