"""A trigger Airflow refuses, counted at Airflow: how many POSTs one refused (DAG, partition) costs over a window
(semantics `trigger-errors`).

Set-up: a real etcd (``devtools/etcd_server.py``), the fake Airflow (``tests/support/fake_airflow.py``) in this
process, and one real ``coordinator watch`` subprocess run from ``--tree`` (a checkout of the version to measure;
default this one). The graph is ``daily_source`` -> ``daily_rollup``, the rollup declared with a ``key_format`` (so it
is triggered with a ``partition_key``) while its Airflow DAG is not partitioned: Airflow 3.3 answers every trigger
``400: Dag 'daily_rollup' is not a partitioned Dag and does not accept a partition_key``. The source's success for
one day is written to etcd as the plugin would; from the rollup's first POST the window runs ``--seconds`` (600: the
closing note's ten minutes), and the POSTs the fake counted for the rollup in it are printed as one JSON line, with
the ``actuator.error`` lines of the watcher's log. ``COORDINATOR_ERROR_RETRY_S`` is left at its default unless
``--error-retry-s`` is given.

Run: ``python bench/refused_trigger.py --seconds 600 [--tree /path/to/other/checkout]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.etcd_server import EtcdServer
from devtools.procs import stop_child
from tests.support.fake_airflow import FakeAirflow

ROOT = Path(__file__).resolve().parent.parent
SOURCE, ROLLUP = "daily_source", "daily_rollup"
DAY = "2026-01-05T00:00:00Z"
PREFIX = "/bench-refused"
GRAPH = {"version": 1, "dags": {
    SOURCE: {"partitions": {"cron": "0 0 * * *"}},
    ROLLUP: {"partitions": {"cron": "0 0 * * *", "key_format": "%Y-%m-%dT%H:%M:%S"}, "upstreams": [SOURCE]},
}}  # fmt: skip


def _put(endpoint: str, key: str, value: dict[str, object]) -> None:
    """One etcd put over the JSON gateway (what the plugin writes for a run's state)."""
    body = {
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(json.dumps(value).encode()).decode(),
    }
    request = urllib.request.Request(f"{endpoint}/v3/kv/put", json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="the window counted from the first POST")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose watcher is measured")
    parser.add_argument("--error-retry-s", type=float, default=None, help="COORDINATOR_ERROR_RETRY_S (default: unset)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-refused-"))
    deps = work / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    etcd = EtcdServer().start()
    fake = FakeAirflow([SOURCE, ROLLUP], queue_delay_s=0.01, run_duration_s=0.05).start()
    fake.set_partitioned(ROLLUP, False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env.update(COORDINATOR_AIRFLOW_USERNAME="admin", COORDINATOR_AIRFLOW_PASSWORD="admin",
               COORDINATOR_HTTP="127.0.0.1:0", PYTHONPATH=str(args.tree.resolve()), PYTHONUNBUFFERED="1")  # fmt: skip
    if args.error_retry_s is not None:
        env["COORDINATOR_ERROR_RETRY_S"] = str(args.error_retry_s)
    log_path = work / "watcher.log"
    command = [sys.executable, "-m", "coordinator.cli", "watch", "--etcd", etcd.endpoint, "--prefix", PREFIX,
               "--deps", str(deps), "--airflow-url", fake.url, "--id", "bench"]  # fmt: skip
    with log_path.open("w") as log:
        watcher = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        record = {"state": "success", "run_id": f"scheduled__{DAY}", "clear_number": 0, "source": "bench"}
        deadline = time.monotonic() + 120
        _put(etcd.endpoint, f"{PREFIX}/runs/default/{SOURCE}/{DAY}", record)
        while fake.calls("trigger", ROLLUP) == 0:
            if time.monotonic() > deadline or watcher.poll() is not None:
                raise SystemExit(f"no POST of {ROLLUP} within 120 s; see {log_path}")
            time.sleep(0.05)
        started = time.monotonic()
        time.sleep(args.seconds)
        posts = fake.calls("trigger", ROLLUP)
        elapsed = time.monotonic() - started
        statuses = sorted({r.status for r in fake.requests("trigger", ROLLUP)}, key=str)
    finally:
        stop_child(watcher, 30.0, "watcher")
        fake.stop()
        etcd.stop()
    errors = sum("actuator.error" in line for line in log_path.read_text().splitlines())
    print(json.dumps({"tree": str(args.tree), "seconds": round(elapsed, 1), "posts": posts, "statuses": statuses,
                      "actuator_error_lines": errors, "error_retry_s": args.error_retry_s or "default",
                      "log": str(log_path)}))  # fmt: skip


if __name__ == "__main__":
    main()
