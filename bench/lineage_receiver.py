"""OpenLineage receiver: events accepted per second, answer time, and producer COMPLETE -> dependent run queued.

Two parts, each with a fresh etcd (fsync on) and a real ``coordinator lineage serve`` subprocess
(``tests/lineage/receiver_proc.py`` starts it as the receiver tests do), mapping the jobs with ``"partition":
"nominal"`` (each run's ``nominalTime`` is its partition):

1. Throughput. ``--events`` RunEvents, START then COMPLETE of ``--events``/2 runs over ``--jobs`` jobs (one run per
   job and partition), sent by ``--senders`` concurrent httpx.AsyncClient workers as the OpenLineage client
   serialises them (``Serde.to_json``) with the bearer token, one event per ``POST /api/v1/lineage``; then
   ``--solo-events`` by one sender alone (the answer time without concurrency); then ``--events`` again in batches
   of ``--batch-size`` to ``/api/v1/lineage/batch``; then ``--client-events`` emitted back to back by the
   OpenLineage client's own transport (requests, a kept connection), as a producer like dbt-ol sends. Measured:
   events accepted per second, the answer time of each request (p50/p99/max) and the receiver's own mean (its
   request histogram), the receiver process's CPU seconds (``/proc/<pid>/stat``) per 1,000 events. Afterwards etcd
   must hold exactly one run record and one ``success`` run state per run sent, and the receiver must have counted
   every event accepted once: a lost or extra event fails the benchmark (exit 1).
2. Latency. The watcher (``coordinator watch`` subprocess) and the fake Airflow (its own process) beside the
   receiver; ``consumer`` waits for the mapped job ``producer``. For each of ``--partitions`` nominal times the
   OpenLineage Python client (``tests.lineage.receiver_proc.client``/``event``) sends START, then COMPLETE; measured
   is the time from just before sending COMPLETE to the fake Airflow receiving ``POST /dags/consumer/dagRuns`` for
   that partition. Beside it, SIMULATED pollers (asyncio tasks in this process, not Airflow) read the same run-state
   key from etcd every ``--poll`` seconds, each partition's poller from a random phase, as a sensor started before the
   producer finished would: their detection latency over the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _harness as h
import httpx
from openlineage.client.event_v2 import RunEvent, RunState
from openlineage.client.serde import Serde

from coordinator.core.model import KeyLayout, NodeId, canonical_partition
from coordinator.lineage.tokens import hash_token
from tests.lineage.receiver_proc import ReceiverProc, client, event, new_run_id

NAMESPACE = "bench"
INSTANCE = "lineage"
TOKEN = "bench-lineage-token"
KEYS = KeyLayout(h.PREFIX)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
PRODUCER = NodeId(INSTANCE, "producer")
WARMUP_RUNS = 10


def write_config(workdir: Path, jobs: int) -> None:
    """dependencies.json (a pattern over the throughput jobs, each a node of the graph: the receiver writes only
    those; one producer the consumer waits for) and tokens."""
    deps = {
        "version": 1,
        "instances": {"default": {}, INSTANCE: {"description": "bench producers, through OpenLineage"}},
        "dags": {
            f"{INSTANCE}/producer": {},
            "consumer": {"upstreams": [f"{INSTANCE}/producer"]},
            **{f"{INSTANCE}/bench_job_{i:03d}": {} for i in range(jobs)},
        },
        "openlineage": [
            {"namespace": NAMESPACE, "job": "producer", "instance": INSTANCE, "partition": "nominal"},
            {"namespace": NAMESPACE, "job": "bench_job_*", "instance": INSTANCE, "partition": "nominal"},
        ],
    }
    (workdir / "dependencies.json").write_text(json.dumps(deps, indent=1))
    tokens = {"tokens": [{"name": "bench", "sha256": hash_token(TOKEN), "namespaces": [NAMESPACE]}]}
    (workdir / "tokens.json").write_text(json.dumps(tokens))


# ---------------------------------------------------------------------------------------------------- 1. throughput


def run_objects(run: int, jobs: int) -> tuple[RunEvent, RunEvent]:
    """START and COMPLETE of run ``run`` (job run % jobs, partition run // jobs), built with the client's classes."""
    nominal = BASE + timedelta(days=run // jobs)
    job, run_id = f"bench_job_{run % jobs:03d}", new_run_id()
    at = nominal + timedelta(hours=1)
    start = event(RunState.START, run_id, job=job, namespace=NAMESPACE, at=at, nominal=nominal)
    done = event(RunState.COMPLETE, run_id, job=job, namespace=NAMESPACE, at=at + timedelta(minutes=2), nominal=nominal)
    return start, done


def run_events(run: int, jobs: int) -> tuple[str, str]:
    """The same, serialised as the client does."""
    start, done = run_objects(run, jobs)
    return Serde.to_json(start), Serde.to_json(done)


def emit_back_to_back(url: str, pairs: list[tuple[RunEvent, RunEvent]]) -> dict[str, Any]:
    """The OpenLineage client's own transport (requests, one kept connection), each event emitted as soon as the
    previous one was answered: how a producer such as dbt-ol sends a run of quick models."""
    ol = client(url, TOKEN)
    answer_ms: list[float] = []
    accepted = bad = 0
    started = time.monotonic()
    for pair in pairs:
        for ev in pair:
            before = time.perf_counter()
            try:
                ol.emit(ev)
                accepted += 1
            except Exception as exc:  # counted; the benchmark then fails
                bad += 1
                print(f"emit failed: {exc!r}"[:300], file=sys.stderr)
            answer_ms.append((time.perf_counter() - before) * 1000)
    seconds = time.monotonic() - started
    return {"seconds": seconds, "accepted": accepted, "bad_answers": bad, "requests": len(answer_ms),
            "answer_ms": {q: h.percentile(answer_ms, q) for q in (50, 99, 100)}}  # fmt: skip


async def send_all(url: str, requests: list[list[str]], senders: int, path: str) -> dict[str, Any]:
    """POST each request's bodies (single: one event, in order; batch: one JSON array) with ``senders`` workers."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    answer_ms: list[float] = []
    accepted = bad = 0
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal accepted, bad
        while not queue.empty():
            item = queue.get_nowait()
            bodies = item if path.endswith("/lineage") else ["[" + ",".join(item) + "]"]
            for body in bodies:
                before = time.perf_counter()
                response = await http.post(path, content=body, headers=headers)
                answer_ms.append((time.perf_counter() - before) * 1000)
                want = 1 if path.endswith("/lineage") else len(item)
                got = response.json().get("accepted") if response.status_code == 200 else None
                if got == want:
                    accepted += want
                else:
                    bad += 1
                    if bad <= 3:
                        print(f"unexpected answer {response.status_code}: {response.text[:300]}", file=sys.stderr)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        started = time.monotonic()
        await asyncio.gather(*(worker(http) for _ in range(senders)))
        seconds = time.monotonic() - started
    return {"seconds": seconds, "accepted": accepted, "bad_answers": bad, "requests": len(answer_ms),
            "answer_ms": {q: h.percentile(answer_ms, q) for q in (50, 99, 100)}}  # fmt: skip


async def stored(endpoint: str) -> dict[str, int]:
    """Run records and run states of the lineage instance in etcd, and how many of the states are ``success``."""
    etcd = h.RawEtcd(endpoint)
    counts: dict[str, int] = {}
    for name, prefix in (("records", f"{KEYS.lineage}{INSTANCE}/"), ("states", f"{KEYS.runs}{INSTANCE}/")):
        key = prefix.encode()
        end = key[:-1] + bytes([key[-1] + 1])
        response = await etcd.kv.Range(etcd.rpc.RangeRequest(key=key, range_end=end), timeout=60)
        counts[name] = int(response.count)
        if name == "states":
            counts["success"] = sum(json.loads(kv.value).get("state") == "success" for kv in response.kvs)
    await etcd.close()
    return counts


def throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Warm-up, then the phases (one event per request with --senders and with 1, batches): distinct runs each."""
    made = 0

    def runs(n: int) -> list[list[str]]:
        nonlocal made
        block = [list(run_events(made + k, args.jobs)) for k in range(n)]
        made += n
        return block

    single, batch = "/api/v1/lineage", "/api/v1/lineage/batch"
    per_batch = max(1, args.batch_size // 2)
    warm = runs(WARMUP_RUNS)
    pairs = runs(args.events // 2)
    solo = runs(args.solo_events // 2)
    batched = runs(args.events // 2)
    first = made
    client_pairs = [run_objects(first + k, args.jobs) for k in range(args.client_events // 2)]
    made += len(client_pairs)
    batches = [
        [body for pair in batched[i : i + per_batch] for body in pair] for i in range(0, len(batched), per_batch)
    ]
    phases: list[tuple[str, str, list[Any], int, str]] = [
        ("single", f"one event per request, {args.senders} senders", pairs, args.senders, single),
        ("solo", "one event per request, 1 sender", solo, 1, single),
        ("batch", f"batches of {2 * per_batch}, {args.senders} senders", batches, args.senders, batch),
    ]
    print(f"serialised {2 * made} events", file=sys.stderr)

    with h.start_etcd() as etcd:
        receiver = ReceiverProc(etcd.endpoint, h.PREFIX, workdir).start()
        try:
            assert receiver.proc is not None
            pid = receiver.proc.pid
            asyncio.run(send_all(receiver.url, warm, 1, single))
            results: dict[str, Any] = {}
            phases.append(("client", "OpenLineage client, back to back, 1 sender", client_pairs, 1, "client"))
            for name, what, requests, senders, path in phases:
                if not requests:
                    continue
                meter = h.CpuMeter({"receiver": pid, "etcd": etcd.pid, "load": os.getpid()})
                cpu0 = h.process_cpu_seconds(pid)
                served0 = [receiver.metric(f"coordinator_lineage_request_seconds_{m}") for m in ("sum", "count")]
                if path == "client":
                    sent = emit_back_to_back(receiver.url, client_pairs)
                else:
                    sent = asyncio.run(send_all(receiver.url, requests, senders, path))
                cpu_s = h.process_cpu_seconds(pid) - cpu0
                cpu = meter.read()
                served = [receiver.metric(f"coordinator_lineage_request_seconds_{m}") for m in ("sum", "count")]
                events = sum(len(r) for r in requests)
                results[name] = sent | {
                    "what": what,
                    "senders": senders,
                    "events": events,
                    "events_per_s": sent["accepted"] / sent["seconds"],
                    "receiver_cpu_s": cpu_s,
                    "receiver_cpu_s_per_1000": cpu_s / events * 1000,
                    # The receiver's own histogram: arrival at the app -> answer (uvicorn's parsing not included).
                    "served_mean_ms": (served[0] - served0[0]) / max(1.0, served[1] - served0[1]) * 1000,
                    "cpu_cores": cpu,
                }
                print(f"{name}: {events} events in {sent['seconds']:.1f} s", file=sys.stderr)
            metric_accepted = receiver.metric("coordinator_lineage_events_total", outcome="accepted")
            metric_duplicate = receiver.metric("coordinator_lineage_events_total", outcome="duplicate")
            counts = asyncio.run(stored(etcd.endpoint))
            fsync = h.fsync_stats(etcd.endpoint)
        finally:
            receiver.stop()
    lost = (counts["records"] != made or counts["states"] != made or counts["success"] != made
            or metric_accepted != 2 * made or any(r["bad_answers"] for r in results.values()))  # fmt: skip
    return {
        "phases": results,
        "runs_expected": made,
        "stored": counts,
        "metric_accepted": metric_accepted,
        "metric_duplicate": metric_duplicate,
        "etcd_fsync": fsync,
        "lost": lost,
    }


# ---------------------------------------------------------------------------------------------------- 2. latency


class SimulatedPollers:
    """One poller per (interval, partition), as a sensor per dependent run: reads the producer's run-state key every
    ``interval`` s from a random phase and notes when it first reads ``success``. Not Airflow: a loop in this process.
    """

    def __init__(self, endpoint: str, partitions: list[str], intervals: list[float], rng: random.Random) -> None:
        self.endpoint = endpoint
        self.plan = [(iv, p, rng.uniform(0, iv)) for iv in intervals for p in partitions]
        self.seen: dict[tuple[float, str], float] = {}
        self.reads = 0
        self.stop = threading.Event()
        self.t0 = 0.0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="pollers", daemon=True)

    def start(self) -> SimulatedPollers:
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        self.stop.set()
        self.thread.join(5)

    async def _main(self) -> None:
        etcd = h.RawEtcd(self.endpoint)
        await asyncio.gather(*(self._poll(etcd, iv, p, phase) for iv, p, phase in self.plan))
        await etcd.close()

    async def _poll(self, etcd: h.RawEtcd, interval: float, part: str, phase: float) -> None:
        key = KEYS.run_key(PRODUCER, part).encode()
        tick = self.t0 + phase
        while not self.stop.is_set():
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            response = await etcd.kv.Range(etcd.rpc.RangeRequest(key=key), timeout=30)
            self.reads += 1
            if response.kvs and json.loads(response.kvs[0].value).get("state") == "success":
                self.seen[(interval, part)] = time.monotonic()
                return
            tick += interval


def canonical(logical_date: str) -> str:
    return canonical_partition(logical_date.replace("Z", "+00:00"))


def latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    intervals = [float(x) for x in args.poll.split(",") if x.strip()]
    nominals = [BASE + timedelta(days=i) for i in range(args.partitions)]
    parts = [canonical_partition(n) for n in nominals]
    sent: dict[str, float] = {}
    answered_ms: list[float] = []
    latencies: dict[str, float] = {}
    with h.start_etcd() as etcd, h.FakeAirflowProcess(["consumer"]) as fake:
        watcher = h.WatcherProcess(etcd.endpoint, workdir / "dependencies.json", fake.url, workdir / "watcher.log")
        watcher.start()
        receiver = ReceiverProc(etcd.endpoint, h.PREFIX, workdir)
        try:
            watcher.wait_for(lambda w: w.first_line("graph.adopted") and w.reconciles, 60, "graph adoption")
            receiver.start()
            assert watcher.proc is not None and receiver.proc is not None
            ol = client(receiver.url, TOKEN)
            pollers = SimulatedPollers(etcd.endpoint, parts, intervals, rng).start()
            meter = h.CpuMeter({"receiver": receiver.proc.pid, "watcher": watcher.proc.pid, "etcd": etcd.pid,
                                "fake Airflow": fake.pid})  # fmt: skip
            for nominal, part in zip(nominals, parts, strict=True):
                run_id = new_run_id()
                at = datetime.now(UTC)
                ol.emit(event(RunState.START, run_id, job="producer", namespace=NAMESPACE, at=at, nominal=nominal))
                time.sleep(0.3)
                done = event(RunState.COMPLETE, run_id, job="producer", namespace=NAMESPACE,
                             at=datetime.now(UTC), nominal=nominal)  # fmt: skip
                sent[part] = before = time.monotonic()
                ol.emit(done)
                answered_ms.append((time.monotonic() - before) * 1000)
                deadline = before + 30
                while time.monotonic() < deadline:
                    arrivals = {canonical(ld): t for (dag, ld), t in fake.arrivals().items() if ld != "None"}
                    if part in arrivals:
                        latencies[part] = (arrivals[part] - before) * 1000
                        break
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.5, 1.0))
            cpu = meter.read()
            pollers.join(max(intervals, default=0) + 10)
            time.sleep(2)  # a second trigger of one partition would show now
            triggers = sum(ld != "None" for (dag, ld) in fake.arrivals())
        finally:
            receiver.stop()
            watcher.stop()
    warnings = watcher.warnings()
    if warnings:
        print(f"watcher warnings ({len(warnings)}), first: {warnings[:3]}", file=sys.stderr)
    lat = list(latencies.values())
    polled: dict[str, Any] = {}
    for iv in intervals:
        detected = [(pollers.seen[(iv, p)] - sent[p]) * 1000 for p in parts if (iv, p) in pollers.seen and p in sent]
        polled[str(iv)] = {
            "detected": len(detected),
            "ms": {q: h.percentile(detected, q) for q in (50, 95, 100)},
            "mean_ms": sum(detected) / len(detected) if detected else float("nan"),
        }
    return {
        "partitions": len(parts),
        "triggered": len(latencies),
        "trigger_requests": triggers,
        "latency_ms": {q: h.percentile(lat, q) for q in (50, 95, 100)},
        "min_ms": min(lat, default=float("nan")),
        "complete_answered_ms": {q: h.percentile(answered_ms, q) for q in (50, 95, 100)},
        "pollers": polled,
        "poller_reads": pollers.reads,
        "cpu_cores": cpu,
        "watcher_warnings": len(warnings),
    }


# ---------------------------------------------------------------------------------------------------- output


def markdown(args: argparse.Namespace, info: dict[str, str], tp: dict[str, Any], lt: dict[str, Any]) -> str:
    rows = []
    for r in tp["phases"].values():
        a, c = r["answer_ms"], r["cpu_cores"]
        rows.append(
            f"| {r['what']} | {r['events']:,} | {r['events_per_s']:,.0f} | {a[50]:.1f} ms | {a[99]:.1f} ms "
            f"| {a[100]:.1f} ms | {r['served_mean_ms']:.1f} ms | {r['receiver_cpu_s_per_1000']:.2f} s "
            f"| {c['receiver']:.2f} | {c['etcd']:.2f} | {c['load']:.2f} | {c['others']:.2f} |"
        )
    st = tp["stored"]
    lat, ans = lt["latency_ms"], lt["complete_answered_ms"]
    poll_rows = "\n".join(
        f"| simulated poller, every {float(iv):g} s (not Airflow) | {p['detected']} of {lt['partitions']} "
        f"| {p['ms'][50] / 1000:.2f} s | {p['ms'][95] / 1000:.2f} s | {p['ms'][100] / 1000:.2f} s "
        f"| mean {p['mean_ms'] / 1000:.2f} s |"
        for iv, p in lt["pollers"].items()
    )
    verdict = "**FAILED: events lost or answered wrongly**" if tp["lost"] else "nothing lost, nothing twice"
    return f"""### OpenLineage receiver ({h.now_utc()})

- Command: `{h.command_line()}`
- Machine: {h.machine_line(info)}
- Throughput: START + COMPLETE pairs of distinct runs (one per job and nominal time, {args.jobs} jobs), sent by httpx
  async clients with keep-alive, the bodies serialised beforehand by the OpenLineage client's `Serde.to_json`, each
  sender posting a run's START then its COMPLETE (the last row: the OpenLineage client's own transport, serialising
  as it emits); {WARMUP_RUNS} warm-up runs first (not counted). "Served" is the receiver's own
  `coordinator_lineage_request_seconds` (the app's arrival -> answer, mean per request).

| requests | events | accepted/s | answer p50 | answer p99 | answer max | served, mean | receiver CPU per 1,000 events | receiver cores | etcd cores | load cores | others |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

etcd afterwards: {st["records"]:,} run records, {st["states"]:,} run states ({st["success"]:,} `success`), expected
{tp["runs_expected"]:,} each; the receiver's `coordinator_lineage_events_total{{outcome="accepted"}}`
{tp["metric_accepted"]:,.0f}, duplicate {tp["metric_duplicate"]:,.0f}: {verdict}. {h.fsync_line(tp["etcd_fsync"])}.

- Latency: {lt["partitions"]} partitions (nominal times), START then COMPLETE of the mapped job `producer` with the
  OpenLineage Python client (its HTTP transport, one request per event, 0.3 s apart); `consumer` waits for it; the
  watcher as a subprocess, the fake Airflow in its own process. Dependent runs requested: {lt["triggered"]} of
  {lt["partitions"]} within 30 s ({lt["trigger_requests"]} trigger requests in all).

| producer COMPLETE sent -> | detected | p50 | p95 | max | |
|---|---:|---:|---:|---:|---|
| receiver's 2xx (the event durable in etcd) | {lt["partitions"]} | {ans[50]:.1f} ms | {ans[95]:.1f} ms | {ans[100]:.1f} ms | |
| `POST /dags/consumer/dagRuns` at the fake Airflow | {lt["triggered"]} of {lt["partitions"]} | {lat[50]:.1f} ms | {lat[95]:.1f} ms | {lat[100]:.1f} ms | min {lt["min_ms"]:.1f} ms |
{poll_rows}

{h.cpu_line(lt["cpu_cores"])} (while sending the {lt["partitions"]} partitions).
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events of the throughput run (and of the batch run)")
    parser.add_argument("--solo-events", type=int, default=400, help="events sent by one sender alone (0 = none)")
    parser.add_argument("--client-events", type=int, default=200, help="events emitted by the OpenLineage client")
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders")
    parser.add_argument("--jobs", type=int, default=50, help="jobs the runs are spread over")
    parser.add_argument("--batch-size", type=int, default=50, help="events per batch request")
    parser.add_argument("--partitions", type=int, default=20, help="partitions of the latency part")
    parser.add_argument("--poll", default="60,5", help="intervals of the simulated pollers, s ('' = none)")
    parser.add_argument("--seed", type=int, default=36)
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()

    info = h.machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-lineage-"))
    write_config(workdir, args.jobs)
    tp = throughput(args, workdir)
    lt = latency(args, workdir)
    results = {"machine": info, "args": vars(args), "throughput": tp, "latency": lt}
    h.emit(markdown(args, info, tp, lt), results, args.md, args.json)
    if tp["lost"] or lt["triggered"] != lt["partitions"] or lt["trigger_requests"] != lt["partitions"]:
        print("FAILED: events lost, answered wrongly, or dependent runs missing or repeated", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
