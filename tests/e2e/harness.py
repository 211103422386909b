"""Handles and helpers for the end-to-end tests (the fixtures live in ``conftest.py``); see its docstring."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator.core.model import KeyLayout, NodeId, RunRecord, canonical_partition, parse_run_record
from coordinator.etcd_store import EtcdStore
from coordinator.local.airflow_stack import AirflowStack
from coordinator.settings import EtcdSettings, parse_endpoints

REPO = Path(__file__).resolve().parents[2]
TEST_DAGS = Path(__file__).resolve().parent / "dags"
PIPELINES = [f"0{i}_pipeline" for i in range(1, 8)]
FAILURE_DAGS = ["08_on_failure", "09_flaky"]
TEST_ONLY_DAGS = ["e2e_reported"]
ALL_DAGS = PIPELINES + FAILURE_DAGS + TEST_ONLY_DAGS
# Partitions far in the past: never equal to a scheduled run's logical date, and after the DAGs' start_date.
_FIRST_PARTITION = datetime(2001, 1, 1, tzinfo=UTC)


def _run_coro(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@dataclass
class E2E:
    """Handles on the running Airflow and etcd, and the helpers scenario tests share."""

    stack: AirflowStack
    etcd_endpoint: str
    prefix: str
    work_dir: Path
    _partitions: Iterator[int] = field(default_factory=itertools.count)
    _watchers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.prefix)

    @property
    def etcd_settings(self) -> EtcdSettings:
        return EtcdSettings(endpoints=parse_endpoints(self.etcd_endpoint))

    def new_partition(self) -> str:
        """A partition no other test of the session used (one run per DAG and logical date in Airflow)."""
        return canonical_partition(_FIRST_PARTITION + timedelta(days=next(self._partitions)))

    @staticmethod
    def run_id(label: str) -> str:
        return f"e2e_{label}_{uuid.uuid4().hex[:8]}"

    # ----- etcd -----

    def read_run(self, dag_id: str, partition: str, instance: str | None = None) -> tuple[RunRecord | None, int]:
        """The run-state record of a DAG and partition, and its mod revision (None, 0 when absent)."""
        key = self.keys.run_key(NodeId(instance or self.stack.instance, dag_id), partition)

        async def go() -> tuple[RunRecord | None, int]:
            async with await EtcdStore.connect(self.etcd_settings) as store:
                kv = await store.get(key)
            if kv is None:
                return None, 0
            record, problem = parse_run_record(kv.value)
            assert record is not None, f"{key}: {problem}"
            return record, kv.mod_revision

        result: tuple[RunRecord | None, int] = _run_coro(go())
        return result

    def wait_for_run_record(
        self,
        dag_id: str,
        partition: str,
        predicate: Callable[[RunRecord], bool],
        timeout_s: float = 60.0,
        what: str = "",
    ) -> RunRecord:
        """Poll the run-state key until ``predicate`` holds; the failure names the last record seen."""
        deadline = time.monotonic() + timeout_s
        record: RunRecord | None = None
        while time.monotonic() < deadline:
            record, _ = self.read_run(dag_id, partition)
            if record is not None and predicate(record):
                return record
            time.sleep(0.1)
        raise AssertionError(
            f"{dag_id} {partition}: no record {what} within {timeout_s:.0f} s; last: {record!r}; "
            f"scheduler log: {self.stack.log_file('scheduler')}"
        )

    # ----- watcher (for the cascade scenarios) -----

    def write_dependencies(self, mapping: Mapping[str, Any], name: str = "dependencies.json") -> Path:
        """Write a dependencies file for this test's graph into the session's work dir; returns its path."""
        path = self.work_dir / name
        path.write_text(json.dumps(mapping, indent=2), encoding="utf-8")
        return path

    def watcher_env(self, deps: Path, **extra: str) -> dict[str, str]:
        """Environment for ``coordinator`` commands aimed at this Airflow, etcd and prefix."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
        env.update(
            COORDINATOR_ETCD_ENDPOINTS=self.etcd_endpoint,
            COORDINATOR_PREFIX=self.prefix,
            COORDINATOR_DEPS=str(deps),
            COORDINATOR_AIRFLOW_URL=self.stack.url,
            COORDINATOR_AIRFLOW_USERNAME=self.stack.username,
            COORDINATOR_AIRFLOW_PASSWORD=self.stack.password,
            **extra,
        )
        return env

    def start_watcher(self, deps: Path, *args: str, name: str = "watcher", **env: str) -> subprocess.Popen[bytes]:
        """Start ``coordinator watch`` (logs to ``<work dir>/<name>.log``); stopped at the end of the test."""
        log_path = self.work_dir / f"{name}.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "watch", *args],
                env=self.watcher_env(deps, **env),
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._watchers.append(proc)
        return proc

    def stop_watchers(self, timeout_s: float = 10.0) -> None:
        """TERM every watcher this object started, then KILL what did not exit."""
        for proc in self._watchers:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self._watchers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._watchers.clear()
