"""`make dist` and `make image` change nothing on the host: without buildah and debootstrap they stop before building
anything, printing the complete command that installs them (and the way to build the rest without the image), and
they install nothing themselves; only the test suite's own `buildah` target installs them (devtools/dist.py,
devtools/image.py, the Makefile)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import image

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
