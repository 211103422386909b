"""The end-to-end tests' wait for audit passes (``tests/e2e/harness.py``): it tolerates slow passes, never a stall."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.e2e.harness import AUDIT_PASS, wait_for_audit_passes


def append_passes(log: Path, count: int, every_s: float, go: threading.Event) -> threading.Thread:
    """A thread that appends ``count`` audit-pass lines to ``log``, one every ``every_s`` after ``go`` is set (just
    before the wait starts counting: a pass written before it would not count as one after it)."""

    def write() -> None:
        go.wait()
        for n in range(count):
            time.sleep(every_s)
            with log.open("a", encoding="utf-8") as out:
                out.write(f"2026-11-29 INFO {AUDIT_PASS}{n} repaired=0 stale=0 errors=0\n")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_passes_slower_than_their_interval_are_waited_for_while_each_arrives_within_the_stall(tmp_path: Path) -> None:
    """Three passes 0.6 s apart, against an interval of 0.1 s and a stall of 1 s (1.8 s in all, past any fixed
    timeout of interval x passes): the wait returns the count once the third lands, counting only passes after it
    started."""
    log = tmp_path / "watcher.log"
    log.write_text(f"{AUDIT_PASS}0\n{AUDIT_PASS}1\n", encoding="utf-8")
    go = threading.Event()
    writer = append_passes(log, 3, 0.6, go)
    go.set()
    assert wait_for_audit_passes(log, 3, 0.1, "three passes", stall_s=1.0) == 5
    writer.join()


def test_a_stalled_audit_fails_naming_what_was_awaited_and_how_far_it_got(tmp_path: Path) -> None:
    """One pass arrives, then none: the wait fails after the interval plus the stall, naming what it waited for and
    that one of two passes was done."""
    log = tmp_path / "watcher.log"
    go = threading.Event()
    writer = append_passes(log, 1, 0.3, go)
    go.set()
    with pytest.raises(AssertionError, match=r"no audit pass for 1 s waiting for two passes \(1 of 2 done\)"):
        wait_for_audit_passes(log, 2, 0.2, "two passes", stall_s=0.8)
    writer.join()
