"""Run the coordinator CLI with a crash hook installed: the watcher dies at an exact step of the trigger protocol.

``python -m tests.support.crash_watcher NAME[:N] <coordinator arguments...>`` installs a hook on the shipped crash
points (``coordinator/watcher/faults.py``) and runs ``coordinator`` with the remaining arguments. The hook exits the
process at the N-th pass (default 1) of the crash point NAME with status ``CRASH_EXIT_CODE``, like a power cut: no
cleanup, no resignation, no flushing of anything but the one log line that says where it died. The shipped code
never reads such a setting: only this test entry point arms a crash point.

``stop@NAME[:N]`` freezes the process there instead (SIGSTOP to itself, after the log line ``fault.freeze``), like a
long GC pause or a VM stall at exactly that step: the test resumes it with SIGCONT (``WatcherProc.thaw``) and it
goes on from the crash point with every timer overdue.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from coordinator.watcher import faults

log = logging.getLogger("coordinator.watcher.faults")


def parse(value: str) -> tuple[str, int]:
    """``name`` or ``name:n`` (n >= 1) -> (name, n); ValueError naming the value otherwise."""
    name, sep, nth = value.partition(":")
    if not name or (sep and (not nth.isdigit() or int(nth) < 1)):
        raise ValueError(f"crash point {value!r}: expected <name> or <name>:<n> with n >= 1")
    return name, int(nth) if sep else 1


def arm(value: str) -> None:
    """Install the hook that exits (or, with ``stop@``, freezes) at the chosen pass of the named crash point."""
    freeze = value.startswith("stop@")
    target, nth = parse(value.removeprefix("stop@"))
    hits = 0

    def hook(name: str) -> None:
        nonlocal hits
        if name != target:
            return
        hits += 1
        if hits == nth and freeze:
            log.critical("fault.freeze point=%s hit=%d pid=%d", name, hits, os.getpid())
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGSTOP)  # returns once the test sends SIGCONT
            log.warning("fault.thawed point=%s", name)
        elif hits == nth:
            log.critical("fault.crash point=%s hit=%d exit_code=%d", name, hits, faults.CRASH_EXIT_CODE)
            logging.shutdown()  # the line above must reach the log; nothing else is flushed or closed
            os._exit(faults.CRASH_EXIT_CODE)

    faults.install(hook)


def main() -> None:
    arm(sys.argv[1])
    from coordinator.cli import main as cli_main

    sys.argv = ["coordinator", *sys.argv[2:]]
    cli_main()


if __name__ == "__main__":
    main()
