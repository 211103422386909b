"""The reaper: stops the servers a test process started when that process dies without stopping them.

A fixture stops its Airflow, PostgreSQL or etcd in its ``finally``; that never runs when the pytest process is killed
(SIGKILL, or xdist killing a worker after its controller got SIGTERM), and the servers, each in its own session,
live on. Each pytest process therefore starts one reaper (``tests/conftest.py``): a small process that reads a pipe
whose write end only the pytest process holds. The read returns (end of file) the moment that process is gone, however
it died; the reaper then stops whatever the launchers recorded in the registry file and exits. No polling.

Rules:
1. Launchers record what they start with :func:`record`, which does nothing unless ``COORDINATOR_REAPER_REGISTRY``
   names a registry (the test session sets it; the demo and users' commands never do).
2. A ``group`` entry is a process-group leader started in its own session: every live member of that group is ours
   (Linux never hands out a PID still used as a group id), leader or not. A ``pid`` entry is one process, trusted only
   while its command line still holds the recorded needle (``devtools.procs`` rule 3).
3. Stopping is TERM, up to ``TERM_WAIT_S``, then KILL (``devtools.procs`` rule 4). What stopped normally is simply gone.
4. The reaper never outlives its work: it exits when it has stopped what was recorded, and it ignores SIGINT (a Ctrl-C
   to the terminal's group must let the fixtures stop things in order first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from devtools.procs import command_line, group_members, is_alive

#: The variable naming the registry file of the current test process (rule 1).
REGISTRY_ENV = "COORDINATOR_REAPER_REGISTRY"
#: How long stopped processes get between TERM and KILL: Airflow's components shut down in a few seconds.
TERM_WAIT_S = 10.0


@dataclass(frozen=True)
class Entry:
    """One recorded start: a group leader or a single process, and what its command line holds."""

    kind: Literal["group", "pid"]
    pid: int
    needle: str


def record(pid: int, needle: str, *, group: bool) -> None:
    """Record a started process for the reaper of this test process, if there is one (rule 1)."""
    registry = os.environ.get(REGISTRY_ENV)
    if not registry:
        return
    kind = "group" if group else "pid"
    # One short append per line: O_APPEND writes of a line are not interleaved between threads.
    with open(registry, "a", encoding="utf-8") as out:
        out.write(f"{kind}\t{pid}\t{needle}\n")


def read_registry(path: Path) -> list[Entry]:
    """The recorded entries; a line that does not parse (a write cut short by the death) is skipped."""
    entries: list[Entry] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3 and parts[0] in ("group", "pid") and parts[1].isdigit():
                entries.append(Entry("group" if parts[0] == "group" else "pid", int(parts[1]), parts[2]))
    return entries


def targets(entries: list[Entry]) -> list[int]:
    """The live PIDs the entries still own (rule 2)."""
    found: list[int] = []
    for entry in entries:
        if entry.kind == "group":
            found.extend(group_members(entry.pid))
        elif is_alive(entry.pid) and entry.needle.encode() in (command_line(entry.pid) or b""):
            found.append(entry.pid)
    return sorted(set(found))


def reap(entries: list[Entry]) -> list[int]:
    """TERM what the entries own, wait up to ``TERM_WAIT_S``, KILL what is left (rule 3); returns the PIDs TERMed."""
    pids = targets(entries)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_WAIT_S
    while time.monotonic() < deadline and any(is_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in targets(entries):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def start(registry: Path) -> subprocess.Popen[bytes]:
    """Start the reaper for this process; the returned Popen's stdin is the pipe whose end of file wakes it. The caller
    keeps the object (and so the pipe) alive for as long as the process runs, and never writes to it."""
    registry.touch()
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.reaper", str(registry)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the test process's group must not reach it
    )


def main(argv: list[str]) -> int:
    """``python -m devtools.reaper REGISTRY``: wait for end of file on stdin, then stop what REGISTRY records."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rule 4
    registry = Path(argv[0])
    while sys.stdin.buffer.read(65536):
        pass  # nobody writes; a read returns only at end of file
    reap(read_registry(registry))
    with contextlib.suppress(OSError):
        registry.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
