"""One asset round of the leader (``coordinator/watcher/assets.py``) with a short and a long recorded history.

Set-up, per history size (``--events``, default 100 and 100,000): a fresh etcd with fsync on holds that many recorded
asset events of one source instance, each delivered (``done``) to one target; a watcher in this process loads its
view (and, where the code has one, its asset index) from etcd and follows its watch, and leads. Two fake Airflows
(REST on loopback, in this process) are the source and the target. Each measured round follows ``--new`` new events
in the source (``--rounds`` rounds): it lists and records them and delivers each once, with retention on (30 days:
nothing is old enough, but the candidates are computed). Reported per size: the watcher's load time, and per round
the wall time and the CPU seconds of this process (the job and the fake Airflows) and of etcd, p50 and max. The
load's RSS growth is the view's and the asset index's memory (the old code kept no asset keys between rounds); the
peak growth is the highest RSS over the load and the rounds (the old code built every event and entry each round).

Run it against another checkout (``git worktree add /tmp/before <commit>``) to compare code: ``_harness`` puts the
script's own repository first on ``sys.path``.

    .venv/bin/python bench/asset_round.py
    .venv/bin/python /tmp/before/bench/asset_round.py    # the same on the code of /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

SOURCE, TARGET = "team_a", "team_b"
ORDERS = "s3://lake/orders"  # the new events' asset
HISTORY = "s3://lake/history"  # the delivered past (ids far above the fake's own)
#: How long a measured round may take to see its events delivered before it is cut (and the assertion fails).
ROUND_TIMEOUT_S = 30.0


async def seed(endpoint: str, count: int, at: datetime) -> None:
    """``count`` recorded events of HISTORY, each ``done`` in the target, as the leader writes them."""
    from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus

    keys = AssetKeys(h.PREFIX)
    items: list[tuple[str, bytes]] = []
    for n in range(1, count + 1):
        event_id = 10_000_000 + n
        fact = AssetEventFact(event_id=event_id, uri=HISTORY, timestamp=at + timedelta(milliseconds=n),
                              source_dag_id="producer", recorded_by="audit:bench")  # fmt: skip
        done = DeliveryRecord(status=DeliveryStatus.DONE, source=SOURCE, event_id=event_id, uri=HISTORY,
                              requested_at=at, done_at=at, target_event_id=n, attempts=1, watcher="bench")  # fmt: skip
        items.append((keys.event_key(SOURCE, HISTORY, event_id), fact.model_dump_json().encode()))
        items.append((keys.delivery_key(TARGET, SOURCE, HISTORY, event_id), done.model_dump_json().encode()))
    etcd = h.RawEtcd(endpoint)
    try:
        for start in range(0, len(items), 128):
            await etcd.put_many(items[start : start + 128])
    finally:
        await etcd.close()


async def measure(endpoint: str, etcd_pid: int | None, workdir: Path, new: int, rounds: int) -> dict[str, Any]:
    from pydantic import SecretStr

    from coordinator.airflow.client import AirflowClient
    from coordinator.etcd import EtcdStore
    from coordinator.runtime.graph_source import GraphSource
    from coordinator.runtime.settings import InstanceSettings, Settings
    from coordinator.watcher.assets import AssetJob
    from coordinator.watcher.service import Watcher
    from tests.support.fake_airflow import FakeAirflow  # admin/admin

    deps = workdir / "dependencies.json"
    deps.write_text(json.dumps({
        "version": 1, "instances": {SOURCE: {}, TARGET: {}}, "dags": {},
        "assets": [{"asset": "s3://lake/*", "from": SOURCE, "to": [TARGET]}],
    }))  # fmt: skip
    settings = Settings(etcd_endpoints=endpoint, prefix=h.PREFIX, deps=deps, http="off", retention="30d")
    with FakeAirflow([]) as source, FakeAirflow([]) as target:
        for fake in (source, target):
            fake.add_asset(ORDERS, name="orders")
            fake.add_asset(HISTORY, name="history")
        async with AsyncExitStack() as stack:
            store = await EtcdStore.connect(settings.etcd())
            stack.push_async_callback(store.close)
            clients = {}
            for name, fake in ((SOURCE, source), (TARGET, target)):
                client = AirflowClient(InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin")),
                                       timeout_s=10.0, name=name)  # fmt: skip
                stack.push_async_callback(client.aclose)
                clients[name] = client
            watcher = Watcher(settings, store, GraphSource(deps), clients, watcher_id="bench")
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here: the seeding's peak is not the watcher's
            rss_before, t = rss_mb(), time.perf_counter()
            revision = await watcher.load()
            load_s, load_rss = time.perf_counter() - t, rss_mb() - rss_before
            reflector = asyncio.create_task(watcher.reflect(revision))
            try:
                assert await watcher.election.acquire(timeout=10)
                job = watcher.jobs[AssetJob.name]
                assert isinstance(job, AssetJob)
                await job.run_once(datetime.now(UTC))  # the first round stores the marks; not measured
                await watcher.deliveries.controller.drain_ready()
                await watcher.executor.drain()
                done = len([e for e in target.asset_events(ORDERS) if e["extra"]])

                def delivered() -> int:
                    return len([e for e in target.asset_events(ORDERS) if e["extra"]])

                walls: list[float] = []
                cpus: list[float] = []
                etcd_cpus: list[float] = []
                for _ in range(rounds):
                    for _ in range(new):
                        source.emit_asset_event(ORDERS)
                    await asyncio.sleep(0.3)  # the watch brings the last round's writes; the round then starts clean
                    etcd_before = h.process_cpu_seconds(etcd_pid or 0)
                    cpu_before, t = time.process_time(), time.perf_counter()
                    await job.run_once(datetime.now(UTC))
                    done += new
                    # The stream attempts the round submitted, and any the watch brings back (an attempt that met its
                    # own write not yet seen waits for it): the round ends when the target holds its events.
                    while True:
                        await watcher.deliveries.controller.drain_ready()
                        await watcher.executor.drain()
                        if delivered() >= done or time.perf_counter() - t > ROUND_TIMEOUT_S:
                            break
                        await asyncio.sleep(0.005)
                    walls.append(time.perf_counter() - t)
                    cpus.append(time.process_time() - cpu_before)
                    etcd_cpus.append(h.process_cpu_seconds(etcd_pid or 0) - etcd_before)
                peak = rss_mb("VmHWM") - rss_before
                delivered = [e for e in target.asset_events(ORDERS) if e["extra"]]
                assert len(delivered) == new * rounds, (len(delivered), new * rounds)
            finally:
                reflector.cancel()
                await asyncio.gather(reflector, return_exceptions=True)
                await watcher.election.resign()
    return {
        "load_s": round(load_s, 2),
        "load_rss_mb": round(load_rss, 1),
        "peak_rss_mb": round(peak, 1),
        "wall_p50_ms": round(statistics.median(walls) * 1000, 1),
        "wall_max_ms": round(max(walls) * 1000, 1),
        "cpu_p50_ms": round(statistics.median(cpus) * 1000, 1),
        "cpu_max_ms": round(max(cpus) * 1000, 1),
        "etcd_cpu_p50_ms": round(statistics.median(etcd_cpus) * 1000, 1),
        "delivered": new * rounds,
    }


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100, 100_000], help="recorded (delivered) events")
    parser.add_argument("--new", type=int, default=3, help="new events in the source before each measured round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--md")
    parser.add_argument("--json")
    args = parser.parse_args()
    import coordinator

    info = h.machine()
    results: dict[str, Any] = {"code": str(Path(coordinator.__file__).resolve().parent.parent)}
    for count in args.events:
        with h.start_etcd() as etcd:
            t = time.monotonic()
            asyncio.run(seed(etcd.endpoint, count, datetime.now(UTC) - timedelta(days=2)))
            print(f"seeded {count:,} events in {time.monotonic() - t:.1f} s", file=sys.stderr)
            workdir = Path(tempfile.mkdtemp(prefix="bench-asset-round-"))
            results[str(count)] = asyncio.run(measure(etcd.endpoint, etcd.pid, workdir, args.new, args.rounds))
        print(f"{count:,}: {results[str(count)]}", file=sys.stderr)
    rows = [
        f"| {count:,} | {r['load_s']:.2f} s, +{r['load_rss_mb']:.0f} MB | +{r['peak_rss_mb']:.0f} MB | "
        f"{r['wall_p50_ms']:.0f} ms ({r['wall_max_ms']:.0f}) | {r['cpu_p50_ms']:.0f} ms ({r['cpu_max_ms']:.0f}) | "
        f"{r['etcd_cpu_p50_ms']:.0f} ms |"
        for count in args.events
        for r in [results[str(count)]]
    ]
    markdown = "\n".join([
        f"### asset round ({h.now_utc()}, code {results['code']})", "", h.machine_line(info), "",
        f"`{h.command_line()}`", "",
        "| recorded events (delivered) | watcher load (time, RSS growth) | peak RSS growth (load and rounds) | "
        "round wall p50 (max) | round CPU p50 (max), this process | etcd CPU per round p50 |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        f"Each round: {args.new} new events listed, recorded and delivered once; {args.rounds} rounds per size.",
    ])  # fmt: skip
    h.emit(markdown, results, args.md, args.json)


if __name__ == "__main__":
    main()
