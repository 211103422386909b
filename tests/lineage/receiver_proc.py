"""A real ``coordinator lineage serve`` process for the tests, and the OpenLineage Python client that talks to it.

The receiver runs as a subprocess (a kill -9 must be a real one), on free ports of 127.0.0.1, with its own tokens
file and dependencies.json; :meth:`ReceiverProc.stop` stops only the process it started, by PID (TERM, then KILL).
Events are sent by the OpenLineage project's own client and HTTP transport, as dbt-ol and every Python producer do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import nominal_time_run, parent_run
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from coordinator.lineage.tokens import hash_token
from devtools.procs import free_port, kill_child, stop_child

PRODUCER = "https://github.com/example/tests"
#: dependencies.json of the receiver tests: one dbt model as a node, a pattern over the others, a nominal mapping.
DEPS: dict[str, Any] = {
    "version": 1,
    "instances": {"default": {}, "analytics": {"description": "dbt, through OpenLineage"}},
    "dags": {
        "analytics/orders": {"partitions": {"cron": "0 0 * * *"}},
        "report": {"upstreams": ["analytics/orders"], "partitions": {"cron": "0 0 * * *"}},
        # Nodes the "jaffle.*" pattern names: only nodes of the graph are written (the mapping's rule 2).
        **{f"analytics/jaffle.{name}": {"partitions": {"cron": "0 0 * * *"}}
           for name in ["invocation", *(f"m{i}" for i in range(20)), *(f"model_{i}" for i in range(3))]},
    },
    "openlineage": [
        {"namespace": "dbt_prod", "job": "jaffle.main.jaffle.orders.build.run", "instance": "analytics",
         "dag": "orders"},
        {"namespace": "dbt_prod", "job": "jaffle.*", "instance": "analytics", "partitions": {"cron": "0 0 * * *"}},
        {"namespace": "spark_prod", "job": "*", "instance": "analytics", "partition": "nominal"},
    ],
}  # fmt: skip
TOKENS = {"dbt": ("dbt-secret-token", ["dbt_prod"]), "spark": ("spark-secret-token", ["spark_*"])}


@dataclass
class ReceiverProc:
    """One receiver process (see the module docstring)."""

    etcd: str
    prefix: str
    workdir: Path
    crash: str | None = None
    port: int = field(default_factory=free_port)
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.http_port = self.http_port or free_port(exclude=[self.port])
        self.log_path = self.workdir / f"receiver-{self.port}.log"
        deps = self.workdir / "dependencies.json"
        if not deps.exists():
            deps.write_text(json.dumps(DEPS, indent=2))
        tokens = self.workdir / "tokens.json"
        if not tokens.exists():
            entries = [{"name": n, "sha256": hash_token(t), "namespaces": ns} for n, (t, ns) in TOKENS.items()]
            tokens.write_text(json.dumps({"tokens": entries}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverProc:
        entry = ["-m", "tests.support.crash_watcher", self.crash] if self.crash else ["-m", "coordinator.cli"]
        command = [
            sys.executable, *entry, "lineage", "serve", "--etcd", self.etcd, "--prefix", self.prefix,
            "--deps", str(self.workdir / "dependencies.json"), "--tokens", str(self.workdir / "tokens.json"),
            "--listen", f"127.0.0.1:{self.port}", "--http", f"127.0.0.1:{self.http_port}",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd())
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"receiver exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"receiver not ready within {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, 15.0, "lineage receiver")

    def kill(self) -> None:
        if self.proc is not None:
            kill_child(self.proc, 10.0)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the receiver's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == (f"{name}{{{want}}}" if want else name):
                return float(value)
        return 0.0


def client(url: str, token: str, *, retry: dict[str, Any] | None = None, timeout: float = 5.0) -> OpenLineageClient:
    """The OpenLineage Python client with its own HTTP transport and api_key auth, as producers configure it."""
    config = HttpConfig(url=url, auth=ApiKeyTokenProvider({"apiKey": token}), timeout=timeout)
    if retry is not None:
        config.retry = {**config.retry, **retry}
    return OpenLineageClient(transport=HttpTransport(config))


def event(
    kind: RunState,
    run_id: str,
    *,
    job: str = "jaffle.main.jaffle.orders.build.run",
    namespace: str = "dbt_prod",
    at: datetime | None = None,
    nominal: datetime | None = None,
    parent: tuple[str, str, str] | None = None,
) -> RunEvent:
    """A RunEvent built with the client's own classes (``parent``: namespace, job name, run id)."""
    facets: dict[str, Any] = {}
    if nominal is not None:
        facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(nominalStartTime=nominal.isoformat())
    if parent is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent[2]), job=parent_run.Job(namespace=parent[0], name=parent[1])
        )
    return RunEvent(
        eventType=kind, eventTime=(at or datetime.now(UTC)).isoformat(), run=Run(runId=run_id, facets=facets),
        job=Job(namespace=namespace, name=job), producer=PRODUCER,
    )  # fmt: skip


def new_run_id() -> str:
    return str(uuid.uuid4())
