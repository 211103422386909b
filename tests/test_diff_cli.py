"""``coordinator diff`` as a user runs it: against a file, against a real etcd, and on bad input. The first test runs
a real ``python -m coordinator.cli`` process, the others the same entry point in the test process
(tests/support/cli_inproc.py: same ``main()``, arguments, environment and working directory; no 0.6 s CPU start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from tests.support.cli_inproc import run_cli

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "dependencies.json"
#: The example graph with 07 removed, 03 moved behind 02 and a failure handler added.
CHANGED = {
    "version": 1,
    "dags": {
        "01_pipeline": {},
        "02_pipeline": {"upstreams": "01_pipeline"},
        "03_pipeline": {"upstreams": "02_pipeline"},
        "04_pipeline": {"upstreams": "01_pipeline"},
        "05_pipeline": {"upstreams": "01_pipeline"},
        "06_pipeline": {"upstreams": ["02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"]},
        "alert": {"on_failure_of": "06_pipeline"},
    },
}


def run(*args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    """``coordinator diff <args>`` with no COORDINATOR_* variable set; in the test process unless ``process``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    if not process:
        return run_cli(["diff", *args], env=env, cwd=ROOT)
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "diff", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@pytest.fixture
def changed(tmp_path: Path) -> Path:
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(CHANGED), encoding="utf-8")
    return path


def adopt_example(arun: Callable[..., Any], settings: EtcdSettings, prefix: str, *, busy_07: bool) -> None:
    """Write the activation a watcher writes for dependencies.json; with ``busy_07``, 07 has unfinished work."""
    graph = parse_spec(DEPS.read_text(encoding="utf-8"), "dependencies.json")
    keys = KeyLayout(prefix)

    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            activation = adopt(graph.shapes, graph.digest, None, await store.current_revision(), sources=graph.dags)
            assert activation is not None
            await store.put(keys.config_key("graph"), dump_activation(activation))
            if busy_07:
                node = NodeId("default", "07_pipeline")
                running = RunRecord(state=RunState.RUNNING, run_id="coordinator__2026-01-01T00:00:00Z")
                await store.put(keys.run_key(node, "2026-01-01T00:00:00Z"), dump_record(running))
                intent = TriggerRecord(
                    status=TriggerStatus.PENDING,
                    action=TriggerAction.CREATE,
                    run_id="coordinator__2026-01-02T00:00:00Z",
                )
                await store.put(keys.trigger_key(node, "2026-01-02T00:00:00Z"), dump_record(intent))

    arun(write())


def test_against_a_file_text_lists_changes_backfill_and_warnings(changed: Path) -> None:
    """Text output names each changed DAG and edge, the backfill commands and the new failure handler; exit 0."""
    result = run(str(changed), "--against", str(DEPS), process=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{changed} against {DEPS}:" in out
    assert "changed  03_pipeline" in out
    assert "removed 01_pipeline -> 03_pipeline" in out and "added 02_pipeline -> 03_pipeline" in out
    assert "removed  07_pipeline" in out
    assert "added    alert" in out and "added 06_pipeline -(on failure)-> alert" in out
    assert "coordinator backfill 03_pipeline --from" in out
    assert "new failure handler: alert" in out
    assert out.rstrip().endswith("3 DAG(s) differ: 1 added, 1 removed, 1 changed")


def test_json_and_exit_code_for_ci(changed: Path) -> None:
    """--format json is machine-readable; --exit-code exits 1 on changes and 0 when there are none."""
    result = run(str(changed), "--against", str(DEPS), "--format", "json", "--exit-code")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["changed"] is True
    assert [(d["dag"], d["change"]) for d in payload["dags"]] == [
        ("default/03_pipeline", "changed"),
        ("default/07_pipeline", "removed"),
        ("default/alert", "added"),
    ]
    assert payload["backfill"] == ["default/03_pipeline", "default/alert"]
    same = run(str(DEPS), "--against", str(DEPS), "--exit-code")
    assert (same.returncode, same.stdout) == (0, f"{DEPS} against {DEPS}: no changes\n")


def test_against_the_adopted_graph_in_etcd_warns_about_a_busy_removed_dag(
    changed: Path, arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """Against the live store: edges come from the adopted value, and a removed DAG's unfinished work is a warning."""
    adopt_example(arun, etcd_settings, etcd_prefix, busy_07=True)
    result = run(str(changed), "--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--format", "json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["old"].startswith(f"the adopted graph ({etcd_prefix}/config/graph, revision ")
    assert payload["first_adoption"] is False
    dags = {d["dag"]: d for d in payload["dags"]}
    assert dags["default/03_pipeline"]["edges"] == [
        {"change": "removed", "kind": "upstream", "from": "default/01_pipeline", "to": "default/03_pipeline"},
        {"change": "added", "kind": "upstream", "from": "default/02_pipeline", "to": "default/03_pipeline"},
    ]
    assert dags["default/03_pipeline"]["old_since_revision"] > 0
    (removal,) = [w for w in payload["warnings"] if w.startswith("removed DAG")]
    assert "1 queued/running run(s) (2026-01-01T00:00:00Z)" in removal
    assert "1 pending trigger intent(s) (2026-01-02T00:00:00Z)" in removal


def test_against_etcd_with_the_same_graph_and_with_nothing_adopted(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """Nothing adopted yet: every DAG is added by a first adoption; once adopted, the same file shows no changes."""
    first = run(str(DEPS), "--etcd", etcd_endpoint, "--prefix", etcd_prefix)
    assert first.returncode == 0, first.stderr
    assert "nothing was ever adopted under this prefix" in first.stdout
    assert "backfill" not in first.stdout
    adopt_example(arun, etcd_settings, etcd_prefix, busy_07=False)
    again = run("--deps", str(DEPS), "--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--exit-code")
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(": no changes\n")


def test_unreadable_adopted_value_exits_1(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """A graph value that cannot be parsed is not "nothing adopted": diff refuses to guess and exits 1."""

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(KeyLayout(etcd_prefix).config_key("graph"), b"not json")

    arun(write())
    result = run(str(DEPS), "--etcd", etcd_endpoint, "--prefix", etcd_prefix)
    assert result.returncode == 1
    assert "cannot compare with the adopted graph" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.json", "--against", str(DEPS)], 2, "missing.json: cannot read the file"),
        ([str(DEPS), "--against", "missing.json"], 2, "missing.json is not a valid dependencies file"),
        (["{bad}", "--against", str(DEPS)], 2, "is not a valid dependencies file"),
        ([str(DEPS), "--etcd", "http://127.0.0.1:9"], 1, "error: etcd: cannot reach http://127.0.0.1:9"),
        ([str(DEPS), "--against", str(DEPS), "--format", "xml"], 2, "--format must be text or json"),
    ],
    ids=["missing-new", "missing-old", "invalid-json", "etcd-unreachable", "bad-format"],
)
def test_bad_input_fails_clearly(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    """Missing or invalid files exit 2, an unreachable etcd exits 1; each with a message and no traceback."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"b": "a",', encoding="utf-8")
    result = run(*[str(bad) if a == "{bad}" else a for a in args])
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
