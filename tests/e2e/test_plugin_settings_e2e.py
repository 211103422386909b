"""The plugin configured the way managed Airflow services allow, inside a real Airflow 3.3: no ``COORDINATOR_*``
variable anywhere; ``[coordinator]`` options as ``AIRFLOW__COORDINATOR__*`` and the etcd endpoint in the
``coordinator_etcd`` connection of Airflow's LocalFilesystemBackend secrets backend (``[secrets] backend``).

This needs an Airflow of its own (the session's sets ``COORDINATOR_*``): one stack for the module, with only the two
test DAG files, under its own instance name and prefix; stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.core.model import RunState
from devtools.airflow_stack import STATE_FILE, AirflowStack
from devtools.etcd_server import EtcdServer
from tests.e2e.harness import E2E, TEST_DAGS

pytestmark = pytest.mark.e2e

INSTANCE = "managed"


@pytest.fixture(scope="module")
def managed(
    etcd_server: EtcdServer, airflow_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    """An Airflow 3.3 whose plugin settings come only from Airflow's configuration and its secrets backend."""
    base = tmp_path_factory.mktemp("managed")
    dags = base / "dags"
    dags.mkdir()
    for name in ("e2e_plain.py", "e2e_reported.py"):
        shutil.copy2(TEST_DAGS / name, dags / name)
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        instance=INSTANCE,
        etcd_endpoints=etcd_server.endpoint,
        prefix=f"/e2e-managed-{uuid.uuid4().hex[:8]}",
        plugin_settings="airflow",
        database_url=airflow_database("managed"),
    )
    try:
        stack.start()
        stack.wait_for_dags(["e2e_dependent", "e2e_reported"])
        stack.unpause(["e2e_dependent", "e2e_reported"])
        yield E2E(stack=stack, etcd_endpoint=etcd_server.endpoint, prefix=stack.prefix, work_dir=base)
    finally:
        stack.stop()


def process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_listener_records_with_settings_from_airflow_config_and_secrets_backend(managed: E2E) -> None:
    """With no COORDINATOR_* variable in the scheduler, the listener takes instance and prefix from [coordinator]
    and etcd from the coordinator_etcd connection of the secrets backend, and records the run's success."""
    pids = json.loads((managed.stack.home / STATE_FILE).read_text())["pids"]
    scheduler_env = process_environment(pids["scheduler"])
    assert not [k for k in scheduler_env if k.startswith("COORDINATOR_")]
    assert scheduler_env["AIRFLOW__COORDINATOR__INSTANCE"] == INSTANCE
    assert scheduler_env["AIRFLOW__SECRETS__BACKEND"].endswith("LocalFilesystemBackend")
    assert "coordinator_etcd" in managed.stack.connections_file.read_text()

    partition, run_id = managed.new_partition(), managed.run_id("managed")
    managed.stack.trigger("e2e_dependent", run_id, partition)
    record = managed.wait_for_run_record(
        "e2e_dependent", partition, lambda r: r.state is RunState.SUCCESS and r.run_id == run_id, what="success"
    )
    assert record.source == f"airflow-plugin:{INSTANCE}"
    # The writer says once where its settings came from (names of sources, never values).
    log = managed.stack.log_file("scheduler").read_text(errors="replace")
    line = next(line for line in log.splitlines() if "plugin.settings" in line)
    assert f"instance={INSTANCE} prefix={managed.prefix} etcd={managed.etcd_endpoint}" in line, line
    assert "connection=looked-up" in line and "etcd_endpoints:connection" in line, line
    assert "prefix:airflow-config" in line and "instance:airflow-config" in line, line


def test_report_task_reads_the_same_settings_inside_a_task(managed: E2E) -> None:
    """ReportRunStateOperator, inside a task process (connection through the Task SDK and the API server), writes
    to the same etcd and prefix under the instance [coordinator] names."""
    partition, run_id = managed.new_partition(), managed.run_id("managed_task")
    managed.stack.trigger("e2e_reported", run_id, partition)
    state = managed.stack.wait_for_run("e2e_reported", run_id, ["success", "failed"], timeout_s=90)["state"]
    assert state == "success", managed.stack.log_dir
    record = managed.wait_for_run_record("e2e_reported", partition, lambda r: r.state is RunState.SUCCESS)
    assert record.source == f"airflow-task:{INSTANCE}"


def test_dependencies_page_reads_etcd_from_the_connection(managed: E2E) -> None:
    """The plugin's page in the api-server reaches etcd through the same settings: it answers 200 (no graph adopted
    under this prefix yet) rather than 503 "etcd cannot be read"."""
    status, body = managed.stack.request("GET", "/coordinator/")
    assert status == 200, body
    assert "No dependency graph yet" in body["raw"], body
