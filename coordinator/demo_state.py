"""What ``make demo`` leaves behind under ``.demo/``, and how its processes are found and stopped again.

Rules:
1. All demo state lives under one folder (``.demo/`` in the repository, ignored by git): etcd's data and log, the
   Airflow home (database, logs, admin password, ``stack.json``), the watcher's log and ``demo.json``.
2. ``demo.json`` records what this module needs to find the processes again (PIDs, ports, the watcher's id) and the
   partitions already triggered. It is written atomically (temp file + rename); an unreadable file counts as empty
   (the worst case is a duplicate start that fails on a busy port and says so).
3. A recorded PID is only trusted while its command line still names what we started (a needle such as etcd's data
   dir or the watcher's id): PIDs are recycled, and the demo must never signal someone else's process.
4. Stopping is by PID, never by name: TERM to the process group (every demo process leads its own session), a
   bounded wait, then KILL. Nothing waits forever.
5. Ports are checked on 127.0.0.1 before anything binds them, so "port busy" is reported with the owner (when
   /proc shows it) and the variable that moves the demo to another port, instead of as a crash in a log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

STATE_FILE = "demo.json"
#: Seconds between TERM and KILL: etcd and the watcher exit within ~1 s of TERM (the watcher drains for up to 10 s).
TERM_WAIT_S = 12.0
KILL_WAIT_S = 3.0


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the demo keeps its files; ``root`` is ``<repository>/.demo``."""

    project: Path

    @property
    def root(self) -> Path:
        return self.project / ".demo"

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd" / "data"

    @property
    def etcd_log(self) -> Path:
        # EtcdServer writes its log beside the data dir, named after it.
        return self.root / "etcd" / "data.log"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def watcher_log(self) -> Path:
        return self.logs / "watcher.log"

    @property
    def dags(self) -> Path:
        return self.project / "dags"

    @property
    def deps(self) -> Path:
        return self.project / "dependencies.json"


@dataclass(frozen=True, slots=True)
class EtcdRecord:
    pid: int
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


@dataclass(frozen=True, slots=True)
class WatcherRecord:
    pid: int
    watcher_id: str


@dataclass(frozen=True, slots=True)
class DemoState:
    """The contents of ``demo.json``. Airflow's PIDs are in ``<airflow home>/stack.json`` (AirflowStack's record)."""

    etcd: EtcdRecord | None = None
    watcher: WatcherRecord | None = None
    airflow_port: int | None = None
    #: The etcd endpoint the running Airflow's plugin writes to; Airflow is restarted if etcd moved.
    airflow_etcd: str | None = None
    partitions: tuple[str, ...] = field(default=())

    def with_partition(self, partition: str) -> DemoState:
        return replace(self, partitions=(*self.partitions, partition))

    @property
    def last_partition(self) -> str | None:
        return self.partitions[-1] if self.partitions else None


def load_state(layout: Layout) -> DemoState:
    """The recorded state; an empty state when the file is missing or unreadable (rule 2)."""
    try:
        data = json.loads(layout.state_file.read_text(encoding="utf-8"))
        etcd, watcher = data.get("etcd"), data.get("watcher")
        return DemoState(
            etcd=EtcdRecord(**etcd) if etcd else None,
            watcher=WatcherRecord(**watcher) if watcher else None,
            airflow_port=data.get("airflow_port"),
            airflow_etcd=data.get("airflow_etcd"),
            partitions=tuple(data.get("partitions", ())),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return DemoState()


def save_state(layout: Layout, state: DemoState) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(state)
    data["partitions"] = list(state.partitions)
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(layout.state_file)


# ----- processes -----


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


def process_matches(pid: int | None, *needles: str) -> bool:
    """True when ``pid`` is alive and its command line contains every needle (rule 3)."""
    if pid is None or not is_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return all(needle.encode() in cmdline for needle in needles)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # Every demo process leads its own session: signalling the group also reaches any children it forked.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid)


def stop_pid(pid: int, term_wait_s: float = TERM_WAIT_S, kill_wait_s: float = KILL_WAIT_S) -> str:
    """TERM, wait, then KILL (rule 4). Returns how it ended: ``gone`` (was not running), ``term``, ``kill``, or
    ``alive`` (survived KILL: only possible for a process stuck in the kernel)."""
    if not is_alive(pid):
        return "gone"
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, term_wait_s):
        return "term"
    _signal(pid, signal.SIGKILL)
    return "kill" if _wait_gone(pid, kill_wait_s) else "alive"


# ----- ports -----


def port_in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:port, or the port cannot be bound there (rule 5)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: connections of a previous run in TIME_WAIT must not count as "busy".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


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


def port_busy_message(port: int, what: str, variable: str) -> str:
    """The message for a port someone else holds: who holds it and how to move the demo elsewhere."""
    owner = port_owner(port)
    held = f" by {owner}" if owner else ""
    return (
        f"port 127.0.0.1:{port} (for {what}) is already in use{held}.\n"
        f"  Stop that program, or choose another port: {variable}={port + 10} make demo\n"
        f"  (see who holds it: ss -ltnp 'sport = :{port}')"
    )
