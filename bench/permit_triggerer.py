"""1,000 waits of scheduled dependents deferred in a REAL Airflow 3.3 triggerer: its CPU and memory while they wait,
and the time from the last permit granted to the last task instance leaving ``deferred``.

``bench/permit_waits.py`` runs the wait's own code in one asyncio loop without Airflow; this one runs it where it
runs in production: ``WaitForPermitOperator`` task instances that a real scheduler started, a real worker deferred,
and a real triggerer (Airflow's default capacity, 1,000 triggers) holds.

The estate (why this shape): ``--dags`` scheduled dependents (default 100) on ``@daily`` with ``catchup=True``, each
catching up ``--days`` days (default 10) while its upstreams in another deployment have not run: 1,000 scheduled runs
that Airflow's own scheduler creates, each with one ``WaitForPermitOperator`` waiting for its own day's permit, all
keys different, as the morning of an estate whose upstream deployment was down for ten days looks. Not one run
mapped over 1,000 partitions: the wait waits for the partition of its run (``core/run_partition.py``), so mapped
instances of one run would all watch one key, which no estate does; not 1,000 runs of one DAG: Airflow's default
``max_active_runs_per_dag`` (16) holds the rest back. The DAG file builds only the DAG a task process asks for
(Airflow's parsing context), as large generated estates do.

Set-up (127.0.0.1, free ports): a real etcd, PostgreSQL for Airflow's metadata (as every production Airflow), one
Airflow 3.3 from ``devtools.airflow_stack`` with a triggerer, all at Airflow's defaults except the launcher's own
(LocalExecutor, parallelism 4, loopback). No watcher: the benchmark writes each permit as the watcher's grant writes
it (the same key and value, ``core/permit.py``), one put each from one client.

Measured:
- the triggerer's process tree (its PID from the launcher's state file and its children: Airflow 3 runs the
  triggers in a child process): CPU seconds and RSS over ``--idle`` seconds (default 60) with all waits deferred,
  and over the same window before any wait (the triggerer's own heartbeat and queries), RSS before any wait, its
  TCP connections to etcd;
- from the last grant's write to the last trigger firing its event (the triggerer's per-trigger logs: the wait's own
  latency inside the triggerer) and to the last task instance leaving ``deferred`` (Airflow's REST API, polled every
  0.25 s: the figure includes up to one poll interval and one REST answer, and the triggerer writing each event to
  the metadata database), and from the first grant.

Usage: ``.venv/bin/python bench/permit_triggerer.py [--dags 100] [--days 10] [--idle 60] [--json out.json]
[--md out.md] [--keep]``. Takes about 15-40 minutes on a small machine (starting 1,000 tasks dominates). Everything
it starts is stopped by PID, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.parse
from datetime import datetime
from typing import Any

import _harness as h
import psutil

from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.permit import dump_permit, permit_key, permit_of
from coordinator.core.run_partition import AirflowRun, run_partitions
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.airflow_stack import AirflowStack, AirflowUnreachable
from devtools.etcd_server import EtcdServer
from devtools.postgres_server import PostgresServer

PREFIX = "/bench-triggerer"
INSTANCE = "default"
POLL_S = 0.25

DAG_FILE = '''"""Scheduled dependents of bench/permit_triggerer.py: each waits for its day's permit."""
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, get_parsing_context

from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator

DAGS, DAYS = int(os.environ["PTB_DAGS"]), int(os.environ["PTB_DAYS"])
FIRST = datetime(2025, 1, 1, tzinfo=timezone.utc)
wanted = get_parsing_context().dag_id  # a task process builds only its own DAG
for i in range(DAGS):
    dag_id = f"ptb_sched_{i:03d}"
    if wanted is not None and wanted != dag_id:
        continue
    with DAG(dag_id, schedule="@daily", start_date=FIRST, end_date=FIRST + timedelta(days=DAYS - 1), catchup=True,
             default_args={"retries": 0}, tags=["permit-triggerer-bench"]):
        WaitForPermitOperator(task_id="wait")
'''


def dag_ids(dags: int) -> list[str]:
    return [f"ptb_sched_{i:03d}" for i in range(dags)]


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def tree_rss_mib(pid: int) -> float:
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def etcd_connections(pid: int, etcd_port: int) -> int:
    found = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            found += sum(1 for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == etcd_port)
    return found


def get(stack: AirflowStack, path: str) -> dict[str, Any]:
    for attempt in range(10):
        try:
            status, body = stack.request("GET", path, timeout_s=30.0)
        except AirflowUnreachable:
            if attempt == 9:
                raise
            time.sleep(1.0)
            continue
        if status == 200:
            return body
        raise RuntimeError(f"GET {path} -> HTTP {status}: {body}")
    raise AssertionError("unreachable")  # pragma: no cover


def count(stack: AirflowStack, state: str) -> int:
    body = get(stack, f"/api/v2/dags/~/dagRuns/~/taskInstances?state={state}&limit=1")
    return int(body["total_entries"])


def runs(stack: AirflowStack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        body = get(stack, f"/api/v2/dags/~/dagRuns?limit=100&offset={len(found)}&order_by=id")
        page = list(body["dag_runs"])
        found += page
        if not page or len(found) >= int(body["total_entries"]):
            return found


def wait_all_deferred(stack: AirflowStack, total: int, timeout_s: float) -> float:
    """Seconds until ``total`` task instances are deferred; fails fast on a failed one."""
    began = time.monotonic()
    last = -1
    while time.monotonic() - began < timeout_s:
        deferred = count(stack, "deferred")
        if deferred != last:
            print(f"{time.monotonic() - began:7.1f} s: {deferred} deferred", file=sys.stderr, flush=True)
            last = deferred
        if deferred >= total:
            return time.monotonic() - began
        if failed := count(stack, "failed") + count(stack, "upstream_failed"):
            raise RuntimeError(f"{failed} task instances failed before deferring; see {stack.log_dir}")
        time.sleep(5.0)
    raise RuntimeError(f"only {last} of {total} deferred within {timeout_s:.0f} s; see {stack.log_dir}")


async def grant(endpoint: str, pairs: list[tuple[NodeId, str]]) -> tuple[float, float, float]:
    """Every permit, written as the watcher's grant writes it; (first, last) write send times (monotonic) and the
    last one's wall-clock time (to compare with the triggerer's log)."""
    keys = KeyLayout(PREFIX)
    record = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="bench")
    value = dump_permit(permit_of(record))
    first = last = wall = 0.0
    async with await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(endpoint))) as writer:
        first = time.monotonic()
        for node, partition in pairs:
            last, wall = time.monotonic(), time.time()
            await writer.put(permit_key(keys, node, partition), value)
    return first, last, wall


def fired(stack: AirflowStack) -> list[float]:
    """When each trigger fired its event (wall clock), from the triggerer's per-trigger logs
    (``...attempt=1.log.trigger.N.log``, JSON lines with Airflow's ``Trigger fired event``)."""
    found = []
    for path in stack.log_dir.rglob("*.log.trigger.*.log"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"Trigger fired event"' in line:
                found.append(datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp())
    return found


def partitions(stack: AirflowStack) -> list[tuple[NodeId, str]]:
    """Each run's partition by the plugin's own rule, from its logical date."""
    pairs = []
    for run in runs(stack):
        found = run_partitions(AirflowRun(logical_date=datetime.fromisoformat(run["logical_date"])))
        assert len(found.partitions) == 1, (run, found)
        pairs.append((NodeId(INSTANCE, run["dag_id"]), found.partitions[0]))
    return pairs


def markdown(r: dict[str, Any], args: argparse.Namespace) -> str:
    return (
        "\n".join(
            [
                f"#### {r['waits']} deferred waits in one Airflow {r['airflow']} triggerer ({h.now_utc()})",
                "",
                f"Machine: {h.machine_line(r['machine'])}; load average at the start {r['load_start']}, while idle "
                f"{r['load_idle']}, at the end {r['load_end']} (the machine is shared).",
                f"Command: `{h.command_line()}`",
                f"Estate: {args.dags} scheduled dependents (`@daily`, catch-up) x {args.days} days, one "
                "`WaitForPermitOperator` each; PostgreSQL metadata; LocalExecutor, parallelism 4; "
                "triggerer at defaults "
                "(capacity 1000).",
                "",
                "| measure | value |",
                "|---|---|",
                f"| task instances deferred at once | {r['waits']} (all deferred {r['to_deferred_s']:.0f} s after "
                "unpausing) |",
                f"| triggerer processes (PID and children) | {r['triggerer_processes']} |",
                f"| triggerer's TCP connections to etcd while waiting | {r['etcd_connections']} |",
                f"| triggerer RSS before any wait / while {r['waits']} wait | {r['rss_mib_before']:.0f} MiB / "
                f"{r['rss_mib_waiting']:.0f} MiB |",
                f"| triggerer CPU over {r['idle_s']:.0f} s with no trigger (before unpausing) | "
                f"{r['cpu_s_no_trigger']:.2f} s |",
                f"| triggerer CPU over {r['idle_s']:.0f} s with {r['waits']} waiting | {r['cpu_s_idle']:.2f} s "
                f"({100 * r['cpu_s_idle'] / r['idle_s']:.2f} % of one core; the whole machine meanwhile "
                f"{r['machine_busy_cores_idle']:.2f} busy cores of {r['machine']['cores']}) |",
                f"| last grant -> first / median / last trigger fired (the triggerer's log, {r['events_logged']} "
                f"events) | {r['last_grant_to_first_fired_s']:.2f} / {r['last_grant_to_median_fired_s']:.2f} / "
                f"{r['last_grant_to_last_fired_s']:.2f} s |",
                f"| last grant -> last task instance out of `deferred` | {r['last_grant_to_none_deferred_s']:.2f} s "
                f"(REST polled every {POLL_S:g} s) |",
                f"| first grant -> last out of `deferred` ({r['waits']} puts from one client) | "
                f"{r['first_grant_to_none_deferred_s']:.2f} s |",
            ]
        )
        + "\n"
    )


def measure(stack: AirflowStack, etcd: EtcdServer, args: argparse.Namespace) -> dict[str, Any]:
    state = json.loads((stack.home / "stack.json").read_text(encoding="utf-8"))
    triggerer = int(state["pids"]["triggerer"])
    etcd_port = int(urllib.parse.urlsplit(etcd.endpoint).port or 0)
    total = args.dags * args.days
    stack.wait_for_dags(dag_ids(args.dags), timeout_s=300.0)
    rss_before = tree_rss_mib(triggerer)
    # The triggerer's own cost with no trigger (its heartbeat and trigger queries), over the same window.
    base0 = tree_cpu_s(triggerer)
    time.sleep(args.idle)
    cpu_base = tree_cpu_s(triggerer) - base0
    load_start = os.getloadavg()
    stack.unpause(dag_ids(args.dags))
    to_deferred = wait_all_deferred(stack, total, timeout_s=args.deferred_timeout)
    pairs = partitions(stack)
    assert len(pairs) == total, f"{len(pairs)} runs, expected {total}"
    time.sleep(5.0)  # the last deferrals settle in the triggerer before the idle window
    processes = len(tree(triggerer))
    connections = etcd_connections(triggerer, etcd_port)
    cpu0, wall0 = tree_cpu_s(triggerer), time.monotonic()
    machine_meter = h.CpuMeter({})
    time.sleep(args.idle)
    cpu_idle = tree_cpu_s(triggerer) - cpu0
    idle_s = time.monotonic() - wall0
    machine_busy = machine_meter.read()["machine"]
    rss_waiting = tree_rss_mib(triggerer)
    load_idle = os.getloadavg()
    still = count(stack, "deferred")
    assert still == total, f"{still} deferred after the idle window, expected {total}"
    first, last, last_wall = asyncio.run(grant(etcd.endpoint, pairs))
    while count(stack, "deferred"):
        time.sleep(POLL_S)
    none_deferred = time.monotonic()
    time.sleep(15.0)  # the triggerer's logs are written after the events
    events = fired(stack)
    return {
        "machine": h.machine(),
        "airflow": get(stack, "/api/v2/version").get("version", "3"),
        "waits": total,
        "to_deferred_s": to_deferred,
        "triggerer_processes": processes,
        "etcd_connections": connections,
        "rss_mib_before": rss_before,
        "rss_mib_waiting": rss_waiting,
        "cpu_s_idle": cpu_idle,
        "cpu_s_no_trigger": cpu_base,
        "idle_s": idle_s,
        "machine_busy_cores_idle": machine_busy,
        "last_grant_to_none_deferred_s": none_deferred - last,
        "events_logged": len(events),
        "last_grant_to_last_fired_s": max(events) - last_wall if events else None,
        "last_grant_to_first_fired_s": min(events) - last_wall if events else None,
        "last_grant_to_median_fired_s": sorted(events)[len(events) // 2] - last_wall if events else None,
        "first_grant_to_none_deferred_s": none_deferred - first,
        "load_start": " ".join(f"{v:.2f}" for v in load_start),
        "load_idle": " ".join(f"{v:.2f}" for v in load_idle),
        "load_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dags", type=int, default=100)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--idle", type=float, default=60.0)
    p.add_argument("--deferred-timeout", type=float, default=3600.0)
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, Airflow home)")
    args = p.parse_args()
    if args.dags < 1 or args.days < 1 or args.dags > 1000:
        p.error(f"--dags (1-1000) and --days (>= 1) must be positive, got {args.dags}, {args.days}")
    if args.dags * args.days > 1000:
        p.error(f"{args.dags * args.days} waits exceed the triggerer's default capacity (1000): lower --dags/--days")
    if args.days > 16:
        p.error(f"--days {args.days}: Airflow's default max_active_runs_per_dag (16) would hold runs back")
    with h.work_dir("permit-triggerer-", keep=args.keep) as work:
        (work / "dags").mkdir()
        (work / "dags" / "ptb_scheduled.py").write_text(DAG_FILE)
        with EtcdServer() as etcd, PostgresServer() as pg:
            stack = AirflowStack(
                home=work / "airflow",
                dags_folder=work / "dags",
                instance=INSTANCE,
                etcd_endpoints=etcd.endpoint,
                prefix=PREFIX,
                triggerer=True,
                database_url=pg.create_database("airflow_permit_bench"),
                extra_env={"PTB_DAGS": str(args.dags), "PTB_DAYS": str(args.days)},
            )
            try:  # stopped (by PID) before PostgreSQL and etcd, also on failure
                stack.start(timeout_s=300.0)
                print(f"airflow up in {stack.started_in_s:.1f} s at {stack.url} (work dir {work})", file=sys.stderr)
                result = measure(stack, etcd, args)
            finally:
                stack.stop()
            h.emit(markdown(result, args), result, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
