"""Crash points (coordinator/watcher/faults.py): inert unless a test installs a hook, exact when armed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.watcher import faults
from coordinator.watcher.faults import CRASH_EXIT_CODE

ROOT = Path(__file__).resolve().parent.parent
# Passes the points a, b, b, b in that order and prints each one it survived; armed like the scenario watchers.
SCRIPT = """
import sys
from tests.support.crash_watcher import arm
from coordinator.watcher.faults import crash_point
if len(sys.argv) > 1:
    arm(sys.argv[1])
for name in ("a", "b", "b", "b"):
    crash_point(name)
    print("passed", name, flush=True)
"""


def run(crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", SCRIPT, *([crash_at] if crash_at is not None else [])]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    ("crash_at", "survived"),
    [(None, 4), ("other", 4), ("a", 0), ("b", 1), ("b:2", 2), ("b:3", 3), ("b:4", 4)],
    ids=["unarmed", "other-name", "first-point", "first-hit", "second-hit", "third-hit", "never-reached"],
)
def test_crash_point_exits_86_exactly_at_the_named_hit(crash_at: str | None, survived: int) -> None:
    """The process exits 86 at the n-th pass of the armed point, logging where; other points and hits do nothing."""
    result = run(crash_at)
    assert result.stdout.count("passed") == survived, result.stdout
    if survived == 4:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == CRASH_EXIT_CODE, result.stderr
        point = (crash_at or "").split(":")[0]
        assert f"fault.crash point={point} " in result.stderr


def test_a_malformed_crash_point_is_refused_when_armed() -> None:
    """``name:0`` or ``name:x`` is refused when the test arms it, not ignored."""
    result = run("b:0")
    assert result.returncode == 1 and "crash point 'b:0'" in result.stderr, result.stderr


def test_shipped_crash_points_read_no_environment() -> None:
    """The shipped module arms nothing by itself: with the old variable set, a crash point is still inert."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COORDINATOR_CRASH_AT": "a"}
    script = "from coordinator.watcher.faults import crash_point\ncrash_point('a')\nprint('passed')"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "passed"), result.stderr
    assert "os" not in vars(faults)
