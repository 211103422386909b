"""The hooks of ``.pre-commit-hooks.yaml``, run by ``pre-commit`` in a temporary team repository.

pre-commit installs this checkout (its working tree, committed or not) into its own environment, exactly as a team's
repository gets it: the module copies the working tree into a shadow git repository once, as ``pre-commit try-repo``
does, and each test's repository names that commit in its ``.pre-commit-config.yaml``. (``try-repo`` itself keeps
its environments in a temporary store, so each of its calls installs the package again: about 30 s each.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Builds the package and installs it into fresh environments with pip (minutes): not in `make fast`.
pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
INVALID = '{\n  "a": "c",\n  "b": ["a", "bad id"],\n  "c": "b"\n}\n'
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"} | {
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
}  # fmt: skip


@dataclass(frozen=True)
class HookRepo:
    """This checkout's working tree as one commit of a git repository, and pre-commit's store for the module."""

    path: Path
    rev: str
    home: Path


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=os.environ | IDENTITY, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookRepo]:
    """The working tree's tracked files (changes not yet committed included) committed in a shadow repository, and a
    private pre-commit store (never the user's ~/.cache/pre-commit) that installs it once for the module."""
    base = tmp_path_factory.mktemp("pre-commit")
    shadow = base / "shadow"
    git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(shadow), cwd=base)
    changes = git("diff", "HEAD", "--binary", cwd=ROOT)
    if changes:
        applied = subprocess.run(["git", "apply", "--binary", "-"], cwd=shadow, input=changes, text=True, check=False)
        assert applied.returncode == 0, "the working tree's changes did not apply to the shadow repository"
    git("add", "--all", cwd=shadow)
    git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", "working tree", cwd=shadow)
    yield HookRepo(shadow, git("rev-parse", "HEAD", cwd=shadow).strip(), base / "home")


def team_repo(path: Path, text: str) -> Path:
    """A git repository holding one dependencies.json (staged: pre-commit looks at what git tracks)."""
    path.mkdir()
    (path / "dependencies.json").write_text(text, encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(["git", "add", "dependencies.json"], cwd=path, check=True)
    return path


def run_hook(repo: Path, hook: str, hooks: HookRepo, **env: str) -> subprocess.CompletedProcess[str]:
    """``pre-commit run HOOK --all-files`` in ``repo``, whose config names the shadow repository at its commit."""
    config = repo / ".pre-commit-config.yaml"
    config.write_text(
        f"repos:\n  - repo: {hooks.path}\n    rev: {hooks.rev}\n    hooks:\n      - id: {hook}\n", encoding="utf-8"
    )
    git("add", config.name, cwd=repo)  # pre-commit refuses a configuration with unstaged changes
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", hook, "--all-files", "--color", "never", "--config", str(config)],
        cwd=repo,
        env=base | IDENTITY | {"PRE_COMMIT_HOME": str(hooks.home)} | env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_validate_hook_passes_a_valid_file(tmp_path: Path, hook_repo: HookRepo) -> None:
    """coordinator-validate passes on a valid dependencies.json. Slow by design when it runs first: pre-commit
    installs this checkout into its environment then (the module's other tests reuse it)."""
    repo = team_repo(tmp_path / "team", (ROOT / "dependencies.json").read_text(encoding="utf-8"))
    result = run_hook(repo, "coordinator-validate", hook_repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "coordinator validate (dependencies.json)" in result.stdout
    assert "Passed" in result.stdout


def test_validate_hook_fails_an_invalid_file_and_says_why(tmp_path: Path, hook_repo: HookRepo) -> None:
    """coordinator-validate fails the commit on an invalid file and prints the problem with its line."""
    repo = team_repo(tmp_path / "team", INVALID)
    result = run_hook(repo, "coordinator-validate", hook_repo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "dependencies.json:2: $.a: cycle a -> b -> c -> a" in result.stdout
    assert "dependencies.json:3: $.b[1]: invalid dag id 'bad id'" in result.stdout


def test_diff_hook_prints_the_change_against_the_store(
    tmp_path: Path, hook_repo: HookRepo, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """coordinator-diff (no args: the adopted graph in etcd) prints what the file would change and passes."""
    repo = team_repo(tmp_path / "team", json.dumps({"b": "a"}))
    result = run_hook(
        repo,
        "coordinator-diff",
        hook_repo,
        COORDINATOR_ETCD_ENDPOINTS=etcd_endpoint,
        COORDINATOR_PREFIX=etcd_prefix,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing was ever adopted under this prefix" in result.stdout
    assert "2 DAG(s) differ: 2 added" in result.stdout
