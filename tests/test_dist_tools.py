"""`make dist` and `make image` change nothing on the host: without buildah and debootstrap they stop before building
anything, printing the complete command that installs them (and the way to build the rest without the image), and
they install nothing themselves; only the test suite's own `buildah` target installs them (devtools/dist.py,
devtools/image.py, the Makefile). `make dist` runs in its own pinned release venv, never the dev venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import image, tool_venv

ROOT = Path(__file__).resolve().parents[1]


def prerequisites(target: str) -> list[str]:
    """The prerequisites the Makefile gives ``target`` (its rule line)."""
    match = re.search(rf"^{re.escape(target)}:(.*)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"no rule for {target} in the Makefile"
    return match.group(1).split()


@pytest.fixture
def bare_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has no buildah or debootstrap, only an apt-get and a sudo that leave a mark if
    anything calls them; the mark's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mark = tmp_path / "installer-called"
    for name in ("apt-get", "sudo"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {mark}\nexit 0\n', encoding="utf-8")
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(bin_dir)}
    return env, mark


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["-m", "devtools.dist", "--out", "{out}"], "--no-image"),
        (["-m", "devtools.image", "build"], "debootstrap"),
    ],
    ids=["make-dist", "make-image"],
)
def test_without_buildah_the_build_stops_saying_how_to_install_it_and_installs_nothing(
    bare_path: tuple[dict[str, str], Path], tmp_path: Path, command: list[str], says: str
) -> None:
    """With no buildah or debootstrap on PATH, `python -m devtools.dist` and `python -m devtools.image build` exit 1
    before writing anything, print the complete install command, and never call apt-get or sudo."""
    env, mark = bare_path
    out = tmp_path / "dist"
    args = [sys.executable, *(word.format(out=out) for word in command)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert image.INSTALL_COMMAND in output and says in output, output
    assert image.INSTALL_COMMAND == "sudo apt-get update && sudo apt-get install -y buildah debootstrap"
    assert not mark.exists(), mark.read_text()
    assert not out.exists() or not any(out.iterdir())


def test_only_the_test_suites_target_installs_the_image_tools() -> None:
    """`make dist` and `make image` do not depend on the installing `buildah` target; `make pytest` still does, so
    `make test` on a fresh Debian machine installs what the image tests need."""
    assert "buildah" not in prerequisites("dist")
    assert "buildah" not in prerequisites("image")
    assert "buildah" in prerequisites("pytest")


def test_make_dist_builds_and_runs_in_the_release_venv_never_the_dev_venv() -> None:
    """`make -n dist` with the dev venv's inputs marked newer than its stamp (what makes the dev venv reinstall, with
    Airflow) prints only the release venv's build and its interpreter running devtools.dist: nothing installs or runs
    .venv; `make image` does not need it either."""
    newer = ["-W", "pyproject.toml", "-W", "constraints/dev.txt"]
    # Run from `make test` too: without the outer make's variables this make prints no "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    done = subprocess.run(["make", "-n", *newer, "PYTHON=python3", "dist"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.strip() for line in done.stdout.splitlines()] == [
        "python3 -m devtools.tool_venv venv release",
        ".venv-release/bin/python -m devtools.dist",
    ]
    assert "$(STAMP)" not in prerequisites("dist") and "$(STAMP)" not in prerequisites("image")
    pins = tool_venv.RELEASE.constraints(ROOT).read_text(encoding="utf-8").splitlines()
    assert pins[1].startswith("# Regenerate: make lock-release") and "build==1.6.1" in pins and "twine==7.0.0" in pins


def test_devtools_dist_needs_no_installed_package_and_names_the_release_venv_when_its_tools_are_missing(
    tmp_path: Path,
) -> None:
    """devtools.dist run by an interpreter without site-packages (`python -S`: no Airflow, no grafana, no build or
    twine) imports, then exits 1 before writing anything, saying `make dist` builds the release venv with them."""
    out = tmp_path / "dist"
    done = subprocess.run([sys.executable, "-S", "-m", "devtools.dist", "--no-image", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert "build and twine not found" in output and ".venv-release" in output and "make dist" in output, output
    assert not out.exists() or not any(out.iterdir())
