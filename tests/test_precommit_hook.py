"""The hooks of ``.pre-commit-hooks.yaml``, run through ``pre-commit try-repo`` on a temporary repository.

try-repo installs this checkout (its working tree, committed or staged) into pre-commit's own environment, exactly
as a team's repository would get it; the first install takes a minute, so the environment is shared by the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INVALID = '{\n  "a": "c",\n  "b": ["a", "bad id"],\n  "c": "b"\n}\n'


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A private cache: the test never reuses (or pollutes) the user's ~/.cache/pre-commit.
    yield tmp_path_factory.mktemp("pre-commit-home")


def team_repo(path: Path, text: str) -> Path:
    """A git repository holding one dependencies.json (staged: pre-commit looks at what git tracks)."""
    path.mkdir()
    (path / "dependencies.json").write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(["git", "add", "dependencies.json"], cwd=path, check=True)
    return path


def try_repo(repo: Path, hook: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), hook, "--all-files", "--color", "never"],
        cwd=repo,
        env=base | identity | {"PRE_COMMIT_HOME": str(home)} | env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_validate_hook_passes_a_valid_file(tmp_path: Path, pre_commit_home: Path) -> None:
    """coordinator-validate passes on a valid dependencies.json."""
    repo = team_repo(tmp_path / "team", (ROOT / "dependencies.json").read_text(encoding="utf-8"))
    result = try_repo(repo, "coordinator-validate", pre_commit_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "coordinator validate (dependencies.json)" in result.stdout
    assert "Passed" in result.stdout


def test_validate_hook_fails_an_invalid_file_and_says_why(tmp_path: Path, pre_commit_home: Path) -> None:
    """coordinator-validate fails the commit on an invalid file and prints the problem with its line."""
    repo = team_repo(tmp_path / "team", INVALID)
    result = try_repo(repo, "coordinator-validate", pre_commit_home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "dependencies.json:2: $.a: cycle a -> b -> c -> a" in result.stdout
    assert "dependencies.json:3: $.b[1]: invalid dag id 'bad id'" in result.stdout


def test_diff_hook_prints_the_change_against_the_store(
    tmp_path: Path, pre_commit_home: Path, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """coordinator-diff (no args: the adopted graph in etcd) prints what the file would change and passes."""
    repo = team_repo(tmp_path / "team", json.dumps({"b": "a"}))
    result = try_repo(
        repo,
        "coordinator-diff",
        pre_commit_home,
        COORDINATOR_ETCD_ENDPOINTS=etcd_endpoint,
        COORDINATOR_PREFIX=etcd_prefix,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing was ever adopted under this prefix" in result.stdout
    assert "2 DAG(s) differ: 2 added" in result.stdout
