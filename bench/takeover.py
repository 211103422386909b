"""Takeover: how long after the leader dies (kill -9) or resigns (SIGTERM) the standby triggers the next dependent.

Set-up: the cold-start estate (``bench/cold_start.py``'s layered graph and preload: run states, and with ``--ledger``
a done ledger entry per triggered DAG and partition); a real etcd; the recording fake Airflow; two real
``coordinator watch`` processes, ``a`` (the leader) and ``b`` (a standby with its view loaded and its first pass
done). Then, per round: the leader is killed (``--mode kill``: SIGKILL, the lease runs out after ``--ttl`` s) or
stopped (``--mode term``: SIGTERM, it resigns), and at once the upstreams of a layer-1 DAG succeed in a partition
after every preloaded one. Measured: seconds from the signal to that DAG's trigger request at the fake Airflow, the
new leader's first pass as leader (its ``dirty=`` and plan time), and the runs created for the probe (exactly one).

Targets: kill -9 -> dependent triggered <= TTL + 2 s; SIGTERM -> <= 2 s; exactly one trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h
import cold_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cold_start.estate_arguments(parser)
    parser.add_argument("--mode", choices=("kill", "term"), default="kill")
    parser.add_argument("--ttl", type=int, default=10, help="the leader lease, seconds")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each watcher's first pass")
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    deps = workdir / "dependencies.json"
    names, spec = cold_start.layered_graph(args.layers, args.width)
    h.write_deps(deps, spec)
    dags = [d for layer in names for d in layer]
    etcd_args = [f"--max-txn-ops={args.max_txn_ops}"] if args.max_txn_ops else []
    child = names[1][0]

    with h.start_etcd(etcd_args) as etcd, h.recording_fake_airflow(dags) as fake:
        ledger = spec if args.ledger else None
        asyncio.run(cold_start.preload(etcd.endpoint, names, args.partitions, deps, args.batch, ledger))
        ttl = ["--leader-ttl", str(args.ttl)]
        watchers = {
            name: h.WatcherProcess(
                etcd.endpoint, deps, fake.url, workdir / f"{name}.log", extra_args=["--id", name, *ttl]
            )
            for name in ("a", "b")
        }
        leader, standby = watchers["a"], watchers["b"]
        try:
            leader.start()
            leader.wait_for(lambda w: w.first_line("leader=True"), args.timeout, "the leader's first pass")
            standby.start()
            standby.wait_for(lambda w: w.first_line("leader=False"), args.timeout, "the standby's first pass")
            time.sleep(2.0)  # both idle
            passes_before = len(standby.lines)
            assert leader.proc is not None
            before = {at for at in list(fake.arrivals) if at[0] == child}  # the leader's own first pass may trigger it
            signalled = time.monotonic()
            leader.proc.send_signal(signal.SIGKILL if args.mode == "kill" else signal.SIGTERM)
            asyncio.run(succeed_upstreams(etcd.endpoint, spec[child], h.partition(args.partitions)))
            arrived = wait_arrival(fake, child, before, timeout=args.ttl + 60)
            took = arrived - signalled if arrived else float("nan")
            standby.wait_for(lambda w: w.first_line("leader.acquired"), 60, "the standby to lead")
            time.sleep(3.0)  # a repeat would show by now
            probe_runs = sum(at[0] == child and at not in before for at in list(fake.arrivals))
            acquired = standby.first_line("leader.acquired") or ""
            first_leading = next((ln for ln in standby.lines[passes_before:] if "leader=True" in ln), "")
            hwm = standby.status("VmHWM") / 1024
        finally:
            for watcher in watchers.values():
                watcher.stop()

    target = args.ttl + 2 if args.mode == "kill" else 2
    ok = took <= target and probe_runs == 1
    results: dict[str, Any] = {
        "machine": info,
        "mode": args.mode,
        "dags": len(dags),
        "partitions": args.partitions,
        "ledger": args.ledger,
        "ttl_s": args.ttl,
        "signal_to_trigger_s": took,
        "target_s": target,
        "probe_runs": probe_runs,
        "leader_acquired_line": acquired,
        "first_leading_pass": first_leading,
        "standby_vmhwm_mb": hwm,
    }
    runs = len(dags) * args.partitions
    ledgers = (len(dags) - len(names[0])) * args.partitions if args.ledger else 0
    md = "\n".join([
        f"### Takeover ({args.mode}, {h.now_utc()})",
        "",
        f"- Command: `{h.command_line()}`",
        f"- Machine: {h.machine_line(info)}",
        f"- Estate: {len(dags):,} DAGs x {args.partitions} partitions: {runs:,} run states, {ledgers:,} ledger keys; "
        f"lease TTL {args.ttl} s; standby peak RSS {hwm:.0f} MB",
        f"- {'kill -9' if args.mode == 'kill' else 'SIGTERM'} of the leader -> the dependent triggered by the "
        f"standby: **{took:.2f} s** (target <= {target} s: {h.verdict(ok)}); runs created for it: {probe_runs}",
        f"- The new leader's first pass: `{_fields(first_leading)}`",
    ])  # fmt: skip
    h.emit(md, results, args.md, args.json)


async def succeed_upstreams(endpoint: str, upstreams: list[str], partition: str) -> None:
    etcd = h.RawEtcd(endpoint)
    await etcd.put_many([(h.run_key(up, partition), h.run_value("success")) for up in upstreams])
    await etcd.close()


def wait_arrival(fake: Any, dag: str, before: set[tuple[str, str]], timeout: float) -> float | None:
    """The fake's arrival time (monotonic) of the first trigger of ``dag`` not in ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [at for key, at in list(fake.arrivals.items()) if key[0] == dag and key not in before]
        if seen:
            return min(seen)
        time.sleep(0.01)
    return None


def _fields(line: str) -> str:
    """The reconcile line from ``dirty=`` on (what a reader compares)."""
    return line[line.find("dirty=") :] if "dirty=" in line else line


if __name__ == "__main__":
    main()
