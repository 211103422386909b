"""``coordinator why`` against a real etcd on a misspelt upstream: a DAG no key declares, that has not run and whose
name is a near miss of a declared one is named as declared nowhere in the file, with the close names; a root written
only as an upstream (how roots are usually written) gets no such line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `why` on the app
from coordinator.cli.app import app

assert engine_cmds
P = "2026-01-01T00:00:00Z"
DAGS = {"clean_orders": "ingest_orders", "report": "clean_ordrs", "board": "report"}


def test_why_names_a_misspelt_upstream_with_the_close_names(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """why report says 'clean_ordrs is declared nowhere in FILE ... did you mean 'clean_orders'?', so does why board
    (report is in its chain); why clean_orders, waiting on the root ingest_orders, has no such line."""
    deps = tmp_path / "deps.json"
    deps.write_text(json.dumps(DAGS))
    common = ["-p", P, "--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--deps", str(deps)]
    said = (
        f"clean_ordrs is declared nowhere in {deps}, so it is a root that report waits for and that may never run — "
        "did you mean 'clean_orders'?"
    )
    for dag in ("report", "board"):
        why = CliRunner().invoke(app, ["why", dag, *common])
        assert why.exit_code == 0, why.output
        assert said in why.stdout.splitlines(), why.stdout
    root = CliRunner().invoke(app, ["why", "clean_orders", *common])
    assert root.exit_code == 0, root.output
    assert "ingest_orders has not run" in root.stdout and "declared nowhere" not in root.stdout, root.stdout
