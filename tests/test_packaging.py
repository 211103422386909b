"""Packaging promises: the watcher and CLI never import Airflow; the plugin entry point is declared."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points


def test_watcher_and_cli_do_not_import_airflow() -> None:
    """Importing every CLI command and the watcher loads no `airflow` module (Airflow is only an extra)."""
    code = (
        "import sys\n"
        "from coordinator.cli import airflow_cmds, engine_cmds, spec_cmds, state_cmds\n"
        "import coordinator.watcher.service, coordinator.watcher.audit\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_plugin_entry_point_is_registered() -> None:
    """The installed package exposes the Airflow plugin through the `airflow.plugins` entry point."""
    names = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    assert names.get("etcd_coordinator") == "coordinator.airflow_plugin.plugin:EtcdCoordinatorPlugin"


def test_console_script_runs() -> None:
    """`coordinator --help` lists the commands a user needs."""
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    for command in ("watch", "reconcile", "status", "why", "backfill", "mark", "validate", "schema", "graph"):
        assert command in result.stdout, command
