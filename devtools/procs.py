"""Ports and processes on this machine: the one set of helpers the launchers, the demo and the tests share.

Rules:
1. Loopback only: every port here is a 127.0.0.1 port.
2. A port is free when it can be bound the way the servers bind it (with SO_REUSEADDR, so connections of a previous
   run in TIME_WAIT do not count) AND nothing accepts a connection on it. A leftover server answering on a port that
   a bind alone called free once made a test talk to the wrong etcd.
3. Processes are signalled by PID or process group, never by name. A recorded PID is trusted only while its command
   line still names what was started (:func:`process_matches`): PIDs are recycled.
4. Stopping is TERM, a bounded wait, then KILL (:func:`stop_pid`, :func:`stop_child`); process groups get a second
   TERM before the KILL (:func:`stop_groups`). Nothing waits forever.
5. Reading ``/proc`` is Linux only: where it is missing, a PID's command line is unknown (None) and the callers decide.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: How often the waits below look again: cheap (a kill(0) or a /proc read), and short next to the waits themselves.
_POLL_S = 0.05


# ----- ports -----


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound (with SO_REUSEADDR) and nothing accepts connections there (rule 2)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # etcd (Go) and uvicorn listen with SO_REUSEADDR: mirror that, so a restart on the same port is not refused
        # because of a previous run's connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:port, or the port cannot be bound there."""
    return not port_is_free(port)


def free_port(exclude: Collection[int] = ()) -> int:
    """A port on 127.0.0.1 the OS offered, not in ``exclude`` and proven free (rule 2).

    Someone else may still take it before the caller binds it: servers started on it report a failed start.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in exclude and port_is_free(port):
            return port
    raise RuntimeError("could not find a free port on 127.0.0.1 after 100 tries")


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address), from /proc/net/tcp{,6}; empty where /proc is missing."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> str | None:
    """``pid 1234 (etcd)`` for the process listening on ``port`` when /proc lets us see it, else None."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue  # another user's process, or it just exited
        for fd in fds:
            with contextlib.suppress(OSError):
                if str(fd.readlink()) in wanted:
                    comm = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({comm})"
    return None


# ----- looking at processes -----


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc (``Z`` for a zombie), None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie has exited; only its parent has not reaped it yet)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return _proc_state(pid) not in ("Z", "X")


def command_line(pid: int) -> bytes | None:
    """The process's command line with arguments separated by spaces; None when it is not visible (rule 5)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return None


def process_matches(pid: int | None, *needles: str) -> bool:
    """True when ``pid`` is alive and its command line contains every needle (rule 3)."""
    if pid is None or not is_alive(pid):
        return False
    cmdline = command_line(pid)
    return cmdline is not None and all(needle.encode() in cmdline for needle in needles)


def leads_session(pid: int) -> bool:
    """The process exists and leads its own session (every launcher here starts its children that way)."""
    try:
        return os.getsid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group; without /proc, the leader when the group still exists."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


# ----- stopping -----


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group; a group that is gone (or not ours) is ignored."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Signal the process's group when it leads one (so its children get it too), else the process alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(_POLL_S)
    return not is_alive(pid)


def stop_pid(pid: int, term_wait_s: float, kill_wait_s: float) -> str:
    """TERM, wait, then KILL (rule 4). Returns how it ended: ``gone`` (was not running), ``term``, ``kill``, or
    ``alive`` (survived KILL: only possible for a process stuck in the kernel)."""
    if not is_alive(pid):
        return "gone"
    signal_pid(pid, signal.SIGTERM)
    if _wait_gone(pid, term_wait_s):
        return "term"
    signal_pid(pid, signal.SIGKILL)
    return "kill" if _wait_gone(pid, kill_wait_s) else "alive"


def stop_groups(
    groups: Mapping[int, subprocess.Popen[bytes] | None],
    *,
    term_wait_s: float,
    second_term_wait_s: float,
    kill_wait_s: float,
    what: str = "processes",
) -> None:
    """TERM every group, wait; TERM the rest again, wait; KILL what is left (rule 4).

    ``groups`` maps a group id (its leader's PID) to the leader's Popen when it is our child (reaped here, since a
    zombie leader would look alive to killpg), or None for a group another process started.
    """

    def remaining() -> list[int]:
        for proc in groups.values():
            if proc is not None:
                proc.poll()
        return [pgid for pgid in groups if group_members(pgid)]

    for sig, wait_s in (
        (signal.SIGTERM, term_wait_s),
        (signal.SIGTERM, second_term_wait_s),
        (signal.SIGKILL, kill_wait_s),
    ):
        alive = remaining()
        if not alive:
            return
        if sig is signal.SIGKILL:
            log.warning("procs.kill what=%s groups=%s reason=ignored_term", what, alive)
        for pgid in alive:
            signal_group(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and remaining():
            time.sleep(0.1)
    if left := remaining():
        log.error("procs.still_alive what=%s groups=%s", what, left)


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float, what: str = "process") -> None:
    """Stop a child we started: TERM, wait up to ``timeout_s``, then KILL and reap it (rule 4)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("procs.stop_timeout what=%s pid=%d action=kill", what, proc.pid)
        kill_child(proc, timeout_s)


def kill_child(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGKILL a child we started and reap it (a crash, for tests; or the last step of :func:`stop_child`)."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
