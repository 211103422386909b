"""The structure measurements of the code (``devtools/import_graph.py``, ``devtools/key_path.py``) see what is there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from devtools.import_graph import circles, imports_of, modules

ROOT = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "coordinator" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_import_graph_finds_a_circle_hidden_in_a_function_and_ignores_type_checking(tmp_path: Path) -> None:
    """A function-level import closes a circle; an import under TYPE_CHECKING is not an arrow."""
    root = _tree(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/one.py": "from coordinator.a.two import f\n",
        "a/two.py": "def f():\n    from coordinator.a import one\n",
        "b/__init__.py": "",
        "b/three.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from coordinator.a.one import f\n",
    })  # fmt: skip
    found = modules(root)
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    assert graph["coordinator.a.one"] == {"coordinator.a.two"}
    assert graph["coordinator.a.two"] == {"coordinator.a.one"}
    assert graph["coordinator.b.three"] == set()
    assert circles(graph) == [["coordinator.a.one", "coordinator.a.two"]]
    typed = imports_of("coordinator.b.three", found["coordinator.b.three"], set(found), type_checking=True)
    assert typed == {"coordinator.a.one"}


def test_the_watchers_concerns_import_no_circle_even_through_type_only_imports() -> None:
    """No circle joins modules of ``coordinator/watcher/``, counting imports under TYPE_CHECKING: a concern imports
    only what is set up before it (``watcher/concerns.py``'s **Read through the handles**)."""
    found = modules(ROOT)
    graph = {name: imports_of(name, path, set(found), type_checking=True) for name, path in found.items()}
    assert [c for c in circles(graph) if any(m.startswith("coordinator.watcher.") for m in c)] == []


def test_key_path_follows_a_run_state_from_the_plugin_hook_to_the_rest_call(tmp_path: Path) -> None:
    """The traced path starts at the plugin's hook, passes the watch and a controller, and ends at the REST call."""
    out = tmp_path / "path.json"
    subprocess.run([sys.executable, "-m", "devtools.key_path", "--json", str(out)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    stacks = json.loads(out.read_text())
    frames = [frame for stack in stacks for frame in stack["frames"]]
    assert frames[0] == "airflow_plugin.hooks:record_dag_run"
    assert frames[-1].startswith(("airflow.client:AirflowClient.", "airflow.requests:InstanceRequests."))
    assert any(frame.startswith("airflow.client:AirflowClient.trigger") for frame in stacks[-1]["frames"])
    wheres = [stack["where"] for stack in stacks]
    assert "watch -> view" in wheres and "-> controller queue" in wheres
