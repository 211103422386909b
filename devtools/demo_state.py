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
   bounded wait, then KILL. Nothing waits forever. The mechanics are ``devtools.procs``, shared with the launchers.
5. Ports are checked on 127.0.0.1 before anything binds them, so "port busy" is reported with the owner (when
   /proc shows it) and the variable that moves the demo to another port, instead of as a crash in a log file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from devtools import procs

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
    #: The watcher's /metrics, /healthz, /readyz listener ("" in a demo.json written before it existed).
    http: str = ""


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


def stop_pid(pid: int, term_wait_s: float = TERM_WAIT_S, kill_wait_s: float = KILL_WAIT_S) -> str:
    """TERM to the process group, wait, then KILL (rule 4); how it ended: ``gone``, ``term``, ``kill`` or ``alive``."""
    return procs.stop_pid(pid, term_wait_s, kill_wait_s)


# ----- ports -----


def port_busy_message(port: int, what: str, variable: str) -> str:
    """The message for a port someone else holds: who holds it and how to move the demo elsewhere."""
    owner = procs.port_owner(port)
    held = f" by {owner}" if owner else ""
    return (
        f"port 127.0.0.1:{port} (for {what}) is already in use{held}.\n"
        f"  Stop that program, or choose another port: {variable}={port + 10} make demo\n"
        f"  (see who holds it: ss -ltnp 'sport = :{port}')"
    )
