"""Run in a child process by tests/test_plugin_config.py: resolves the plugin's settings with Airflow's real
configuration object and connection lookup, scenario by scenario, and prints what came out as JSON.

Airflow is imported here, never in the test process. Input on stdin: a JSON list of scenarios
``{"env": {...}, "connections": {...} | null, "write": bool}``. For each: every ``COORDINATOR_*``,
``AIRFLOW__COORDINATOR__*`` and ``AIRFLOW_CONN_*`` variable is removed, the scenario's are set, the connections (if
any) go to a file that Airflow's LocalFilesystemBackend reads (``[secrets] backend``), and the settings are resolved
(``resolve_now``) or, with ``write``, one success is recorded through the listener's own path (``get_writer``:
environment and ``[coordinator]`` first, the connection looked up by the writer's thread) and flushed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import airflow  # noqa: F401  (loaded first, as in every Airflow process: the plugin reads its configuration)

from coordinator.airflow_plugin.check import FakeDagRun
from coordinator.airflow_plugin.config import resolve_now
from coordinator.airflow_plugin.hooks import record_dag_run
from coordinator.airflow_plugin.writer import BackgroundWriter, get_writer, install_writer
from coordinator.core.model import RunState
from coordinator.errors import CoordinatorError

#: The line of stdout that carries the results (Airflow and the plugin log to stdout too).
RESULT = "probe-result: "
BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"


def _apply(scenario: dict[str, Any], work: Path, index: int) -> None:
    for name in list(os.environ):
        if name.startswith(("COORDINATOR_", "AIRFLOW__COORDINATOR__", "AIRFLOW_CONN_", "AIRFLOW__SECRETS__")):
            del os.environ[name]
    os.environ.update(scenario.get("env", {}))
    connections = scenario.get("connections")
    if connections is not None:
        path = work / f"connections-{index}.json"
        path.write_text(json.dumps(connections), encoding="utf-8")
        os.environ["AIRFLOW__SECRETS__BACKEND"] = BACKEND
        os.environ["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps({"connections_file_path": str(path)})


def _resolve() -> dict[str, Any]:
    config = resolve_now(timeout_s=20)
    etcd = config.writer.etcd
    return {
        "origins": {name: origin.where for name, origin in config.origins.items()},
        "endpoints": [f"{'https' if e.tls else 'http'}://{e.host}:{e.port}" for e in etcd.endpoints],
        "username": etcd.username,
        # A test secret: the probe shows it so the test can see which source won; the product never prints it.
        "password": etcd.password.get_secret_value() if etcd.password else None,
        "pem": [etcd.ca_pem is not None, etcd.cert_pem is not None, etcd.key_pem is not None],
        "prefix": config.writer.keys.prefix,
        "instance": config.writer.instance,
        "queue_size": config.writer.queue_size,
    }


def _write() -> dict[str, Any]:
    install_writer(None)  # the next hook creates the process's writer from the settings, as in the scheduler
    run = FakeDagRun(
        dag_id="probe_dag",
        run_id="probe_run",
        logical_date=datetime(2026, 1, 1, tzinfo=UTC),
        start_date=datetime(2026, 1, 2, tzinfo=UTC),
        end_date=datetime(2026, 1, 2, 0, 1, tzinfo=UTC),
    )
    record_dag_run(run, RunState.SUCCESS)
    writer = get_writer()
    assert isinstance(writer, BackgroundWriter), writer
    flushed = writer.flush(20)
    writer.close(1)
    return {"flushed": flushed, "written": writer.last_written, "error": writer.last_error}


def main() -> None:
    scenarios = json.load(sys.stdin)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, scenario in enumerate(scenarios):
            _apply(scenario, Path(tmp), index)
            try:
                results.append(_write() if scenario.get("write") else _resolve())
            except CoordinatorError as exc:
                results.append({"error": f"{type(exc).__name__}: {exc}"})
    print(RESULT + json.dumps(results))


if __name__ == "__main__":
    main()
