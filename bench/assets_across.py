"""Assets across deployments: producer task end -> consumer run queued, native beside delivered.

Set-up (all on 127.0.0.1, free ports): a real etcd, two real Airflow 3.3 from ``devtools.airflow_stack`` (instances
``default`` and ``team_b``, SQLite + LocalExecutor, Airflow's defaults otherwise, the coordinator plugin in both),
both loading ``bench/assets_across_dags/``, and a real ``coordinator watch`` subprocess routing
``s3://bench/orders`` from ``default`` to ``team_b`` (an instances file, as a deployment would have it).

Rounds: ``--rounds`` N (default 12). Each round runs ``bench_asset_producer`` in ``default`` to success and waits
for two runs of ``bench_asset_consumer`` (``schedule=[Asset]`` in both Airflows): the native one in ``default``
(Airflow's own asset scheduling) and the delivered one in ``team_b`` (only the coordinator creates events there).
A random 1-2 s pause between rounds spreads the rounds over the schedulers' loop phases.

Measured from Airflow's own timestamps (REST, one host clock) and the watcher's log (same clock):
- ``native``: the producer task's ``end_date`` -> the native consumer run's ``queued_at``;
- ``delivered``: the same end -> the delivered consumer run's ``queued_at``;
- where the delivered time goes: end -> the source event's ``timestamp``; -> the watcher's ``asset.recorded`` line
  (the hint and the listing); -> the target event's ``timestamp`` (intent and POST); -> the delivered run's
  ``queued_at`` (the target scheduler's next loop).
Median, min-max and p90 per column; the target is delivered median <= 1.5x native median.

Usage: ``.venv/bin/python bench/assets_across.py [--rounds 12] [--airflow-env NAME=VALUE ...]
[--watcher-env NAME=VALUE ...] [--json out.json] [--md out.md] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import _harness as h
from side_by_side import Rest, env_pairs

from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from devtools.procs import stop_child

DAGS_DIR = Path(__file__).resolve().parent / "assets_across_dags"
PRODUCER, CONSUMER, URI = "bench_asset_producer", "bench_asset_consumer", "s3://bench/orders"
PREFIX = "/assets-across"
ROUND_TIMEOUT_S = 120.0
#: The target: a delivered consumer is queued within this factor of the native consumer's median.
TARGET = 1.5
_RECORDED = re.compile(r"asset\.recorded instance=default uri=\S+ event_id=(\d+)")


@dataclass
class Sample:
    round: int
    native_s: float
    delivered_s: float
    to_source_event_s: float
    to_recorded_s: float | None
    to_target_event_s: float
    to_delivered_queued_s: float


def ts(value: Any) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def wait(probe: Any, what: str) -> Any:
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def consumer_runs(rest: Rest) -> list[dict[str, Any]]:
    return sorted(rest.runs(CONSUMER), key=lambda r: str(r["queued_at"]))


def events(rest: Rest, query: str) -> list[dict[str, Any]]:
    """The newest asset events (``query``: more filters); [] while SQLite answers 500 "database is locked"."""
    path = f"/api/v2/assets/events?limit=100&order_by=-timestamp&{query}"
    status, body = rest.stack.request("GET", path, timeout_s=20.0)
    return list(body.get("asset_events", [])) if status == 200 else []


def recorded_at(log_path: Path, event_id: int) -> float | None:
    for line in log_path.read_text(errors="replace").splitlines():
        match = _RECORDED.search(line)
        if match and int(match.group(1)) == event_id:
            return h.log_time(line)
    return None


def one_round(n: int, source: Rest, target: Rest, log_path: Path) -> Sample:
    native_before, delivered_before = len(consumer_runs(source)), len(consumer_runs(target))
    run_id = f"bench-{n}-{time.time_ns()}"
    source.stack.trigger(PRODUCER, run_id, None)
    source.stack.wait_for_run(PRODUCER, run_id, ["success"], timeout_s=ROUND_TIMEOUT_S)
    end = ts(source.task(PRODUCER, run_id, "publish")["end_date"])
    (event,) = wait(lambda: events(source, f"source_run_id={urllib.parse.quote(run_id)}"), "the source event")
    native = wait(lambda: consumer_runs(source)[native_before:], "the native consumer run")[0]
    delivered = wait(lambda: consumer_runs(target)[delivered_before:], "the delivered consumer run")[0]
    marker = f"default:{event['id']}"
    copy = wait(
        lambda: [e for e in events(target, "") if (e.get("extra") or {}).get("coordinator_delivery") == marker],
        "the delivered event",
    )[0]
    recorded = recorded_at(log_path, int(event["id"]))
    return Sample(
        round=n,
        native_s=ts(native["queued_at"]) - end,
        delivered_s=ts(delivered["queued_at"]) - end,
        to_source_event_s=ts(event["timestamp"]) - end,
        to_recorded_s=None if recorded is None else recorded - end,
        to_target_event_s=ts(copy["timestamp"]) - end,
        to_delivered_queued_s=ts(delivered["queued_at"]) - end,
    )


def column(samples: list[Sample], name: str) -> list[float]:
    return [v for s in samples if (v := getattr(s, name)) is not None]


def line(values: list[float]) -> str:
    if not values:
        return "-"
    median = h.percentile(values, 50)
    return f"{median:.2f} ({min(values):.2f}-{max(values):.2f}; p90 {h.percentile(values, 90):.2f})"


def markdown(samples: list[Sample], info: dict[str, Any]) -> str:
    native, delivered = column(samples, "native_s"), column(samples, "delivered_s")
    ratio = h.percentile(delivered, 50) / h.percentile(native, 50)
    chain = [
        ("the source event's timestamp (Airflow records the outlet)", "to_source_event_s"),
        ("the watcher records it (`asset.recorded`: hint, round, listing)", "to_recorded_s"),
        ("the target event's timestamp (intent, POST)", "to_target_event_s"),
        ("the delivered consumer run queued (the target scheduler's loop)", "to_delivered_queued_s"),
    ]
    rows = [
        f"| native consumer run queued (same Airflow) | {line(native)} | |",
        f"| delivered consumer run queued (other Airflow) | {line(delivered)} | |",
    ]
    previous: str | None = None
    for label, name in chain:
        steps = [
            v - (getattr(s, previous) or 0.0 if previous else 0.0)
            for s in samples
            if (v := getattr(s, name)) is not None
        ]
        rows.append(f"| &nbsp;&nbsp;{label} | {line(column(samples, name))} | {line(steps)} |")
        previous = name
    out = [
        f"### Assets across deployments, {len(samples)} rounds ({h.now_utc()})",
        "",
        f"Command: `{h.command_line()}`",
        f"Machine: {h.machine_line(info['machine'])}; busy cores while measuring {info['busy_cores']:.2f}",
        "",
        "| producer task end -> | median (min-max; p90), s | this step alone, s |",
        "| --- | --- | --- |",
        *rows,
        "",
        f"Delivered / native median: {ratio:.2f} (target <= {TARGET}): {h.verdict(ratio <= TARGET)}",
    ]
    return "\n".join(out)


def start_watcher(etcd: str, deps: Path, instances: Path, work: Path, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
    env.update(
        COORDINATOR_ETCD_ENDPOINTS=etcd,
        COORDINATOR_PREFIX=PREFIX,
        COORDINATOR_DEPS=str(deps),
        COORDINATOR_INSTANCES_FILE=str(instances),
        COORDINATOR_WATCHER_ID="assets-across",
        COORDINATOR_HTTP="off",
        **extra,
    )
    with (work / "watcher.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "watch"],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--airflow-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--watcher-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, Airflow homes)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    for flag, pairs in (("--airflow-env", args.airflow_env), ("--watcher-env", args.watcher_env)):
        for pair in pairs:
            if "=" not in pair or not pair.split("=", 1)[0]:
                p.error(f"{flag} wants NAME=VALUE, got {pair!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with h.work_dir("assets-across-", keep=args.keep) as work:
        (work / "dags").mkdir()
        for source in DAGS_DIR.glob("*.py"):
            shutil.copy2(source, work / "dags" / source.name)
        deps = work / "dependencies.json"
        route = {"asset": URI, "from": "default", "to": ["team_b"]}
        deps.write_text(json.dumps({"version": 1, "instances": {"team_b": {}}, "dags": {}, "assets": [route]}))
        rng = random.Random(25)
        watcher: subprocess.Popen[bytes] | None = None
        with EtcdServer() as etcd:
            stacks = [
                AirflowStack(
                    home=work / name,
                    dags_folder=work / "dags",
                    instance=name,
                    etcd_endpoints=etcd.endpoint,
                    prefix=PREFIX,
                    extra_env={"TMPDIR": str(work), **env_pairs(args.airflow_env)},
                )
                for name in ("default", "team_b")
            ]
            try:
                for stack in stacks:
                    stack.start(timeout_s=180.0)
                    stack.wait_for_dags([PRODUCER, CONSUMER], timeout_s=120.0)
                    stack.unpause([PRODUCER, CONSUMER])
                instances = work / "instances.json"
                instances.write_text(
                    json.dumps(
                        {
                            s.instance: {"url": s.url, "username": s.username, "password_env": f"PW_{s.instance}"}
                            for s in stacks
                        }
                    )
                )
                settings = {**{f"PW_{s.instance}": s.password for s in stacks}, **env_pairs(args.watcher_env)}
                watcher = start_watcher(etcd.endpoint, deps, instances, work, settings)
                log_path = work / "watcher.log"
                wait(lambda: "graph.adopted" in log_path.read_text(errors="replace"), "the watcher to lead")
                source, target = Rest(stacks[0]), Rest(stacks[1])
                meter = h.CpuMeter({})
                samples: list[Sample] = []
                for n in range(args.rounds):
                    time.sleep(rng.uniform(1.0, 2.0))
                    sample = one_round(n, source, target, log_path)
                    samples.append(sample)
                    print(f"round {n}: native {sample.native_s:.2f} s, delivered {sample.delivered_s:.2f} s",
                          file=sys.stderr)  # fmt: skip
                info = {"machine": h.machine(), "busy_cores": meter.read()["machine"]}
                h.emit(markdown(samples, info), {"info": info, "samples": [asdict(s) for s in samples]},
                       args.md, args.json)  # fmt: skip
            finally:
                if watcher is not None:
                    stop_child(watcher, timeout_s=30.0, what="coordinator watch")
                for stack in stacks:
                    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
