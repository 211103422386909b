"""The ``validate``, ``schema`` and ``graph`` commands, run as a user runs them: the first test through a real
``python -m coordinator.cli`` process, the others through the same entry point in the test process
(tests/support/cli_inproc.py: same ``main()``, arguments, environment and working directory; no 0.6 s CPU start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli_inproc import run_cli

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = "dependencies.json: valid — 7 DAGs, 9 edges, 1 root (01_pipeline), 1 instance\n"
INVALID = '{\n  "a": "c",\n  "b": ["a", "bad id"],\n  "c": "b"\n}\n'
TWO_INSTANCES = {
    "version": 1,
    "instances": {"team_a": {}},
    "dags": {"team_a/etl": {}, "load": {"upstreams": "etl"}, "alert": {"on_failure_of": "load"}},
}


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``coordinator <args>`` with COORDINATOR_DEPS unset unless ``env`` sets it; in the test process unless
    ``process`` (then ``python -m coordinator.cli``, a process of its own)."""
    base = {k: v for k, v in os.environ.items() if k != "COORDINATOR_DEPS"} | (env or {})
    if not process:
        return run_cli(args, env=base, cwd=cwd)
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=cwd, env=base, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


@pytest.fixture
def invalid_file(tmp_path: Path) -> Path:
    path = tmp_path / "deps.json"
    path.write_text(INVALID, encoding="utf-8")
    return path


@pytest.fixture
def two_instances(tmp_path: Path) -> Path:
    path = tmp_path / "two.json"
    path.write_text(json.dumps(TWO_INSTANCES), encoding="utf-8")
    return path


def test_validate_defaults_to_dependencies_json_in_the_working_directory() -> None:
    """Without a path, validate checks ./dependencies.json, prints the summary line and exits 0 (in a process of its
    own, as a user runs it)."""
    result = run("validate", process=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, SUMMARY, "")


@pytest.mark.parametrize("how", ["argument", "deps-option", "environment"])
def test_validate_finds_the_file_three_ways(how: str, tmp_path: Path) -> None:
    """The file can be given as an argument, with --deps or with COORDINATOR_DEPS."""
    target = str(ROOT / "dependencies.json")
    args, env = {"argument": ([target], {}), "deps-option": (["--deps", target], {})}.get(
        how, ([], {"COORDINATOR_DEPS": target})
    )
    result = run("validate", *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{target}: valid — 7 DAGs, 9 edges, 1 root (01_pipeline), 1 instance\n"


def test_validate_summary_names_instances_and_failure_edges(two_instances: Path) -> None:
    """The summary counts failure edges and lists the instances when there are several."""
    result = run("validate", str(two_instances))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        ": valid — 3 DAGs, 2 edges (1 on failure), 1 root (team_a/etl), 2 instances (default, team_a)\n"
    )


def test_validate_warns_about_a_misspelled_dag_and_still_exits_0(tmp_path: Path) -> None:
    """A reference one letter away from a declared DAG is one warning line on stderr with "did you mean"; the summary
    stays on stdout and the exit code is 0 (the file is valid)."""
    doc = json.loads((ROOT / "dependencies.json").read_text(encoding="utf-8"))
    doc["06_pipeline"][2] = "04_pipline"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = run("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: valid — 8 DAGs, 9 edges, 2 roots (01_pipeline, 04_pipline), 1 instance\n"
    assert result.stderr == (
        f"{path}: $.06_pipeline[2]: warning: '04_pipline' is declared nowhere in this file, so it is a root that "
        "06_pipeline waits for — did you mean '04_pipeline'?\n"
    )


def test_validate_invalid_file_lists_every_problem_on_stderr(invalid_file: Path) -> None:
    """An invalid file exits 2 with each problem on stderr, nothing on stdout and no traceback."""
    result = run("validate", str(invalid_file))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{invalid_file}:2: $.a: cycle a -> b -> c -> a — a DAG cannot wait for itself; "
        "remove one of these dependencies",
        f"{invalid_file}:3: $.b[1]: invalid dag id 'bad id' — use letters, digits, '_', '.', '-'",
        "2 problems",
    ]


def test_validate_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    """Broken JSON exits 2 with file:line:col and a hint, not a traceback."""
    path = tmp_path / "deps.json"
    path.write_text('{"b": "a",}', encoding="utf-8")
    result = run("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:1:11: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_validate_unreadable_path_exits_2(kind: str, tmp_path: Path) -> None:
    """A missing file or a directory exits 2 with a clear message and no traceback."""
    target = tmp_path / "nope.json" if kind == "missing" else tmp_path
    result = run("validate", str(target))
    assert result.returncode == 2
    assert f"{target}: cannot read the file:" in result.stderr
    assert "--deps / COORDINATOR_DEPS" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_prints_the_committed_schema() -> None:
    """`coordinator schema` prints exactly docs/dependencies.schema.json."""
    result = run("schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "docs" / "dependencies.schema.json").read_text(encoding="utf-8")


def test_graph_text_is_the_default_format() -> None:
    """`coordinator graph` lists each DAG with its upstreams in dependency order."""
    result = run("graph")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "01_pipeline (root)"
    assert "06_pipeline <- 02_pipeline, 03_pipeline, 04_pipeline, 05_pipeline" in lines
    assert lines[-1] == "07_pipeline <- 06_pipeline"


def test_graph_mermaid(two_instances: Path) -> None:
    """`--format mermaid` prints a flowchart with instance subgraphs and a labelled dashed failure edge."""
    result = run("graph", str(two_instances), "--format", "mermaid")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flowchart LR\n")
    assert "subgraph i1 [team_a]" in result.stdout
    assert " -. on failure .-> " in result.stdout


def test_graph_dot(two_instances: Path) -> None:
    """`-f dot` prints a Graphviz digraph with instance clusters and a dashed failure edge."""
    result = run("graph", str(two_instances), "-f", "dot")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("digraph dependencies {\n")
    assert result.stdout.endswith("}\n")
    assert "subgraph cluster_1 {" in result.stdout
    assert '"default/load" -> "default/alert" [style=dashed, label="on failure"];' in result.stdout


def test_graph_of_invalid_file_exits_2(invalid_file: Path) -> None:
    """`graph` refuses an invalid file the same way validate does."""
    result = run("graph", str(invalid_file))
    assert result.returncode == 2
    assert "cycle a -> b -> c -> a" in result.stderr
    assert "Traceback" not in result.stderr


def test_graph_unknown_format_is_a_usage_error() -> None:
    """An unknown --format is refused with exit 2."""
    result = run("graph", "--format", "png")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_validate_checks_several_files_and_fails_if_any_is_invalid(invalid_file: Path, two_instances: Path) -> None:
    """Several paths (as pre-commit passes them): a summary per valid file, every problem of the invalid one, exit 2."""
    result = run("validate", str(two_instances), str(invalid_file))
    assert result.returncode == 2
    assert result.stdout.startswith(f"{two_instances}: valid")
    assert "$.a: cycle a -> b -> c -> a" in result.stderr
