"""Crash points (coordinator/watcher/faults.py): inert unless named, exact when named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.watcher.faults import CRASH_AT_ENV, CRASH_EXIT_CODE

ROOT = Path(__file__).resolve().parent.parent
# Passes the points a, b, b, b in that order and prints each one it survived.
SCRIPT = """
from coordinator.watcher.faults import crash_point
for name in ("a", "b", "b", "b"):
    crash_point(name)
    print("passed", name, flush=True)
"""


def run(crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    if crash_at is not None:
        env[CRASH_AT_ENV] = crash_at
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    ("crash_at", "survived"),
    [(None, 4), ("other", 4), ("a", 0), ("b", 1), ("b:2", 2), ("b:3", 3), ("b:4", 4)],
    ids=["unset", "other-name", "first-point", "first-hit", "second-hit", "third-hit", "never-reached"],
)
def test_crash_point_exits_86_exactly_at_the_named_hit(crash_at: str | None, survived: int) -> None:
    """The process exits 86 at the n-th pass of the named point, logging where; other points and hits do nothing."""
    result = run(crash_at)
    assert result.stdout.count("passed") == survived, result.stdout
    if survived == 4:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == CRASH_EXIT_CODE, result.stderr
        point = (crash_at or "").split(":")[0]
        assert f"fault.crash point={point} " in result.stderr


def test_a_malformed_crash_point_fails_at_import() -> None:
    """``name:0`` or ``name:x`` is refused when the module loads, not ignored."""
    result = run("b:0")
    assert result.returncode == 1 and "COORDINATOR_CRASH_AT='b:0'" in result.stderr, result.stderr
