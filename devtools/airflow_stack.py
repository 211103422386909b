"""Start and stop a local Airflow 3.3 (api-server, scheduler, dag-processor; a triggerer on request) for the e2e
tests, ``make demo`` and ``bench/side_by_side.py``.

Rules:
1. Loopback only and deterministic: everything that matters is set in the children's environment
   (:meth:`AirflowStack.environment`); inherited ``AIRFLOW__*``/``COORDINATOR_*``/``OPENLINEAGE*`` variables are
   dropped so a developer's own configuration cannot leak in. LocalExecutor, parallelism 4, no examples.
   The metadata database is ``database_url`` when given (the tests pass a fresh PostgreSQL database of
   ``devtools.postgres_server``), else a SQLite file in the home (``make demo``), run in SQLite's write-ahead-log
   mode (:meth:`AirflowStack.use_write_ahead_log`).
2. Each component is a child process in its own session (so its whole process group can be signalled), run with the
   home as working directory and logging to ``<home>/logs/<component>.log``. The PIDs go to ``<home>/stack.json`` so
   :func:`stop_recorded` in another process (``make down``) can stop them later.
3. Stopping is by process group, never by name: TERM, a bounded wait, TERM again (LocalExecutor sometimes hangs on an
   idle worker), then KILL. A recorded PID is only signalled if it still leads its own session and runs airflow.
4. Nothing waits forever: a component that exits early or a REST API that does not come up raises
   :class:`AirflowStackError` naming the log file and its last lines.
5. A stack shared by many tests can be checked (:meth:`AirflowStack.problem`) and revived
   (:meth:`AirflowStack.revive`): a component that died or a scheduler that stopped heartbeating is restarted, so
   one crash of Airflow under load fails the test it hit, not every test after it.
6. Several stacks can run at once (multi-instance tests): each has its own home, database, port and JWT secret.
7. REST calls here use the standard library: this is a launcher and test helper, not the watcher's Airflow client
   (that is ``coordinator.airflow.client``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from coordinator.core.model import DEFAULT_INSTANCE, DEFAULT_PREFIX
from devtools import reaper
from devtools.procs import command_line, free_port, leads_session, stop_groups

log = logging.getLogger(__name__)

COMPONENTS: dict[str, tuple[str, ...]] = {
    "api-server": ("api-server",),  # host and port come from the environment
    # The scheduler's log server would bind 0.0.0.0:8793, shared by every stack on the host: task logs are read
    # from the shared home instead.
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
}
#: Only for deferrable operators (``AirflowStack(triggerer=True)``); its log server would bind 0.0.0.0:8794.
TRIGGERER: tuple[str, ...] = ("triggerer", "--skip-serve-logs")
#: How the dag-processor finds and re-parses DAG files. New files are seen within 5 s (Airflow's default scan: every
#: 300 s), since tests copy DAG files into a running stack. An UNCHANGED file is parsed again only after 300 s: with
#: 5 s, as before, every file of every stack was parsed (the plugin imported) every 5 s, and an idle stack with the
#: e2e DAG folder burnt 28.6-32.1 CPU-seconds a minute in its dag-processor at load 2.5-5.6 (12-16 at load 13-14,
#: where the loop itself is starved), against 0.6-0.7 with 300 s, on the two cores the test suite shares
#: (``python -m devtools.stack_cpu``, with ``--set AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=5`` for the old
#: value). A CHANGED file is still parsed at once: in the modified_time sort mode (Airflow's default, pinned here) a
#: file whose mtime is newer than its last parse skips the interval (tests/e2e/test_shared_stack_e2e.py rewrites a
#: DAG file in place and waits for it).
PARSING_ENV: dict[str, str] = {
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
}
#: How long the scheduler sleeps after a loop that found nothing to do: 0.5 s, not Airflow's 1 s. Each hop of a
#: cascade (a run created, its task queued, the run marked done) may wait one such sleep, and an end-to-end test waits
#: on every hop: one pytest run of the shared stack's cascade, edge and grid modules took 71.6 s against 91.0 and
#: 96.1 s with 1 s, for the same CPU of the machine (54 CPU-seconds against 55). An idle stack pays 4.12 CPU-seconds
#: a minute against 2.75 (8.22 at 0.2 s; ``python -m devtools.stack_cpu --set
#: AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.5``).
SCHEDULING_ENV: dict[str, str] = {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5"}
#: How long a task's supervisor waits for each answer of the API server's execution API: 60 s, not Airflow's 5 s (with
#: five tries). On a loaded machine (load 9 on two cores, a fresh clone's ``make test`` of 2026-11-29) one stack's API
#: server took 44 s to answer its first task's first call (``PATCH /execution/task-instances/<id>/run``): the
#: supervisor gave up after its tries, and the task failed without running. A slow answer now gets through; a dead API
#: server still fails the task.
TASK_ENV: dict[str, str] = {"AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60"}
STATE_FILE = "stack.json"
_LOG_TAIL_LINES = 25
#: How long a test waits for a REST call that writes: a loaded machine's API server may be slow to write to SQLite,
#: and a slow write is not a hang.
WRITE_TIMEOUT_S = 40.0
# Stop: first TERM, then a second TERM, then KILL. Airflow normally exits within 2-5 s of the first TERM.
_TERM_WAIT_S = 10.0
_SECOND_TERM_WAIT_S = 5.0
_KILL_WAIT_S = 3.0


class AirflowStackError(RuntimeError):
    """A component did not start, exited early, or Airflow's REST API refused a call."""


class AirflowUnreachable(AirflowStackError):
    """The REST API did not answer (connection refused, timeout): polling loops retry these until their deadline."""


@dataclass
class AirflowStack:
    """One local Airflow. ``start()`` returns when the REST API answers and the scheduler is healthy."""

    #: REST root and the component that parses DAG files (the Airflow 2 launcher overrides these three).
    API_ROOT: ClassVar[str] = "/api/v2"
    PARSER: ClassVar[str] = "dag-processor"
    #: Where the REST API reports the scheduler's heartbeat, without a login.
    HEALTH: ClassVar[str] = "/api/v2/monitor/health"

    home: Path
    dags_folder: Path
    instance: str = DEFAULT_INSTANCE
    etcd_endpoints: str = ""
    prefix: str = DEFAULT_PREFIX
    port: int = 0  # 0: pick a free one
    username: str = "admin"
    #: More users of the simple auth manager besides the admin: name -> role (viewer, user, op, admin), each with a
    #: password kept in the home (:meth:`user_password`), e.g. a watcher's own user with the role it needs.
    users: Mapping[str, str] = field(default_factory=dict)
    # 4 workers: the example pipelines are tiny; Airflow's default (32) pre-forks 32 processes.
    parallelism: int = 4
    #: The metadata database as a SQLAlchemy URL (``postgresql+psycopg2://...``; Airflow derives its API server's
    #: async URL from it). Empty: ``<home>/airflow.db``, SQLite, for ``make demo``. Its database must exist and be
    #: this stack's alone: ``start()`` migrates it.
    database_url: str = ""
    triggerer: bool = False  # start a triggerer too (deferrable operators need one)
    #: How the plugin gets its settings: "env" (``COORDINATOR_*`` variables) or "airflow", the way managed services
    #: configure it (:meth:`plugin_settings_the_airflow_way`): no ``COORDINATOR_*`` variable at all.
    plugin_settings: str = "env"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable

    def __post_init__(self) -> None:
        self.home = self.home.resolve()
        self.dags_folder = self.dags_folder.resolve()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._args: dict[str, tuple[str, ...]] = {}
        self._token: str | None = None
        self.password = ""
        self.started_in_s: float | None = None

    # ----- configuration -----

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def environment(self) -> dict[str, str]:
        """The environment of every Airflow process of this stack (also what a watcher needs: COORDINATOR_*)."""
        inherited = {
            k: v
            for k, v in os.environ.items()
            # OPENLINEAGE*: the OpenLineage provider (installed for tests/e2e/test_lineage_provider_e2e.py) stays
            # disabled unless a stack's extra_env configures it, whatever the shell that started the tests holds.
            if not (
                k.startswith(("AIRFLOW__", "COORDINATOR_", "OPENLINEAGE")) or k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
            )
        }
        bin_dir = str(Path(self.python).parent)
        env = {
            **inherited,
            # Airflow spawns helpers by name; the venv's bin must come first.
            "PATH": bin_dir + os.pathsep + inherited.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            # database_url (the tests: PostgreSQL, as in every production Airflow), else Airflow's default database,
            # named so the stack can switch it to SQLite's write-ahead log. A SQLite writer waits Python's default
            # 5 s for the lock: with 30 s, CI saw every writer stall for 61 s at once (the DAG
            # processor's heartbeat "recovered after 61.35 seconds"; tasks killed, the API's writes timing out), as
            # if a process waited twice on a lock it held through another connection. A scheduler that dies of
            # "database is locked" is revived instead (``revive``).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url or f"sqlite:///{self.home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__API__HOST": "127.0.0.1",  # binds 0.0.0.0 otherwise
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",  # one uvicorn worker is plenty locally and saves ~150 MiB per worker
            "AIRFLOW__API__BASE_URL": self.url,
            # Tasks call back here; without it they look for localhost:8080.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                [f"{self.username}:admin", *(f"{name}:{role}" for name, role in self.users.items())]
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            **PARSING_ENV,
            **SCHEDULING_ENV,
            **TASK_ENV,
            # The generated secret is short and makes Airflow warn; one per stack so tokens never cross stacks.
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret", 48),
            # The coordinator plugin (installed in this environment) reads these.
            "COORDINATOR_INSTANCE": self.instance,
            "COORDINATOR_PREFIX": self.prefix,
            "PIPELINE_OUTPUT_DIR": str(self.home / "output"),
            # Every temporary file Airflow's processes and the plugin make (e.g. the plugin's named-tasks cache,
            # coordinator-tasks-*.json) stays in the stack's home and goes with it, not into the host's /tmp.
            "TMPDIR": str(self.temp_dir),
        }
        if self.etcd_endpoints:
            env["COORDINATOR_ETCD_ENDPOINTS"] = self.etcd_endpoints
        env.update(self.plugin_settings_the_airflow_way(env))
        env.update(self.extra_env)
        return env

    @property
    def temp_dir(self) -> Path:
        """The stack's TMPDIR (made here: a process fails on a TMPDIR that does not exist)."""
        path = self.home / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def connections_file(self) -> Path:
        return self.home / "connections.json"

    def plugin_settings_the_airflow_way(self, env: dict[str, str]) -> dict[str, str]:
        """With ``plugin_settings="airflow"``: take the plugin's ``COORDINATOR_*`` variables out of ``env`` and
        return their replacements as MWAA allows them: ``[coordinator]`` options (``AIRFLOW__COORDINATOR__*``) and
        the etcd endpoint in the ``coordinator_etcd`` connection of a LocalFilesystemBackend secrets backend (its
        file is written into the home). Nothing with the default "env"."""
        if self.plugin_settings == "env":
            return {}
        if self.plugin_settings != "airflow":
            raise ValueError(f"plugin_settings must be 'env' or 'airflow', not {self.plugin_settings!r}")
        for name in [k for k in env if k.startswith("COORDINATOR_")]:
            del env[name]
        extra: dict[str, str] = {
            "AIRFLOW__COORDINATOR__INSTANCE": self.instance,
            "AIRFLOW__COORDINATOR__PREFIX": self.prefix,
        }
        if self.etcd_endpoints:
            endpoint = urllib.parse.urlsplit(self.etcd_endpoints.split(",")[0])
            connection = {"conn_type": "generic", "host": endpoint.hostname, "port": endpoint.port}
            self.home.mkdir(parents=True, exist_ok=True)
            self.connections_file.write_text(json.dumps({"coordinator_etcd": connection}), encoding="utf-8")
            extra["AIRFLOW__SECRETS__BACKEND"] = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
            kwargs = {"connections_file_path": str(self.connections_file)}
            extra["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps(kwargs)
        return extra

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def user_password(self, name: str) -> str:
        """The password of one of :attr:`users` (generated once per home)."""
        return self._secret(f"password_{name}", 12)

    def _secret(self, name: str, nbytes: int) -> str:
        """A per-home secret kept in a file, so a restarted stack keeps its tokens and password."""
        path = self.home / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(nbytes), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    # ----- start / stop -----

    def start(self, timeout_s: float = 120.0) -> Self:
        """Migrate the database, start the three components and wait for REST health; stop everything on failure."""
        begin = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if running := _recorded_alive(self.home):
            raise AirflowStackError(
                f"an Airflow from {self.home} is still running (pids {running}): stop it first (make down)"
            )
        if not self.port:
            self.port = free_port()
        self.password = self._secret("admin_password", 12)
        # Written beforehand: Airflow generates passwords only for users missing from this file.
        passwords = {self.username: self.password, **{name: self.user_password(name) for name in self.users}}
        self.passwords_file.write_text(json.dumps(passwords), encoding="utf-8")
        self.passwords_file.chmod(0o600)
        env = self.environment()
        try:
            self._run_once(("db", "migrate"), env, "db-migrate", timeout_s=min(timeout_s, 180.0))
            self.use_write_ahead_log()
            components = {**COMPONENTS, "triggerer": TRIGGERER} if self.triggerer else COMPONENTS
            for component, args in components.items():
                self._spawn(component, args, env)
            self._record()
            self._wait_healthy(begin + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - begin
        log.info("airflow_stack.up instance=%s url=%s seconds=%.1f", self.instance, self.url, self.started_in_s)
        return self

    @property
    def database(self) -> str:
        """What the suite's output names: the metadata database's SQLite file, or its URL with any password masked."""
        if (database_file := self.database_file) is not None:
            return str(database_file)
        parts = urllib.parse.urlsplit(self.environment().get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ""))
        if parts.password is None:
            return parts.geturl()
        userinfo, _, host = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}").geturl()

    @property
    def database_file(self) -> Path | None:
        """The SQLite file of this stack's metadata database (None when ``extra_env`` points it elsewhere)."""
        url = self.environment().get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
        if not url.startswith("sqlite:///"):
            return None
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])

    def use_write_ahead_log(self) -> None:
        """Switch the migrated SQLite database to write-ahead logging (the mode is stored in the file).

        Why: in SQLite's default mode a writer waits until no reader holds the file, and a stack shared by a test
        session has many readers (the API server answering polls every 0.2 s, the DAG processor, the scheduler's
        own queries). On a loaded CI machine the scheduler's writes then waited past any timeout and its loop died
        ("database is locked"), leaving every later run queued. With the log, readers never block the one writer.
        """
        database = self.database_file
        if database is None:
            return
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            (mode,) = connection.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode != "wal":
            raise AirflowStackError(f"SQLite refused write-ahead logging for {database}: journal mode is {mode!r}")

    def _run_once(self, args: tuple[str, ...], env: dict[str, str], name: str, timeout_s: float) -> None:
        with self.log_file(name).open("wb") as out:
            try:
                done = subprocess.run(
                    [self.python, "-m", "airflow", *args],
                    env=env,
                    cwd=self.home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise AirflowStackError(f"airflow {' '.join(args)} timed out after {timeout_s:.0f} s") from exc
        if done.returncode != 0:
            raise AirflowStackError(
                f"airflow {' '.join(args)} exited with {done.returncode}; see {self.log_file(name)}:\n"
                + self._tail(name)
            )

    def _spawn(self, component: str, args: tuple[str, ...], env: dict[str, str]) -> None:
        self._args[component] = args  # revive() starts it again the same way
        with self.log_file(component).open("ab") as out:
            self._procs[component] = subprocess.Popen(
                [self.python, "-m", "airflow", *args],
                env=env,
                # The home, not the caller's directory: a stray *.egg-info there makes Airflow load plugins twice.
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals workers too
            )
        reaper.record(self._procs[component].pid, "airflow", group=True)

    def _record(self) -> None:
        state = {
            "instance": self.instance,
            "url": self.url,
            "username": self.username,
            "password_file": str(self.home / "admin_password"),
            "pids": {name: proc.pid for name, proc in self._procs.items()},
        }
        tmp = self.home / f"{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(self.home / STATE_FILE)

    def _wait_healthy(self, deadline: float) -> None:
        last = "no answer yet"
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise AirflowStackError(
                        f"airflow {name} exited with {proc.returncode} during start; see {self.log_file(name)}:\n"
                        + self._tail(name)
                    )
            try:
                status, body = self._http("GET", self.HEALTH, None, token=None, timeout_s=2.0)
                if status == 200:
                    scheduler = (body.get("scheduler") or {}).get("status")
                    if scheduler == "healthy":
                        return
                    last = f"scheduler status {scheduler!r}"
                else:
                    last = f"HTTP {status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise AirflowStackError(
                    f"Airflow REST API at {self.url} not healthy in time ({last}); see {self.log_file('api-server')}:\n"
                    + self._tail("api-server")
                    + f"\nscheduler log: {self.log_file('scheduler')}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop every component this object started (by process group). Safe to call twice."""
        groups = {proc.pid: proc for proc in self._procs.values()}
        _stop_groups(groups)
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.home / STATE_FILE).unlink()
        self._token = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """The PID of each component started, by name; each leads a session of its own (rule 2)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def _scheduler_status(self) -> str:
        """The scheduler's health as the REST API reports it ("healthy", "unhealthy", or why it is unknown)."""
        try:
            status, body = self._http("GET", self.HEALTH, None, token=None, timeout_s=5.0)
        except OSError as exc:
            return f"unknown ({type(exc).__name__}: {exc})"
        if status != 200:
            return f"unknown (HTTP {status})"
        return str((body.get("scheduler") or {}).get("status"))

    def problem(self) -> str | None:
        """What is wrong with a started stack (components that exited, a scheduler that is not healthy), else None."""
        dead = [
            f"{name} exited with {proc.returncode}" for name, proc in self._procs.items() if proc.poll() is not None
        ]
        if dead:
            return "; ".join(dead)
        scheduler = self._scheduler_status()
        return None if scheduler == "healthy" else f"scheduler status {scheduler!r}"

    def diagnosis(self) -> str:
        """One paragraph for a failing test: each component alive or not, and the end of the scheduler's log."""
        states = ", ".join(
            f"{name} {'alive' if proc.poll() is None else f'exited {proc.returncode}'}"
            for name, proc in self._procs.items()
        )
        return f"components: {states}; scheduler log {self.log_file('scheduler')} ends:\n{self._tail('scheduler')}"

    def revive(self, timeout_s: float = 120.0) -> list[str]:
        """Restart the components that exited, and the scheduler if it stopped heartbeating; wait until healthy.

        Returns the names restarted. A hung scheduler is stopped by its process group first (rule 3).
        """
        begin = time.monotonic()
        restart = [name for name, proc in self._procs.items() if proc.poll() is not None]
        if "scheduler" not in restart and self._scheduler_status() == "unhealthy":
            restart.append("scheduler")
        if not restart:
            return []
        _stop_groups({self._procs[name].pid: self._procs[name] for name in restart})
        env = self.environment()
        for name in restart:
            log.warning("airflow_stack.revive instance=%s component=%s", self.instance, name)
            self._spawn(name, self._args[name], env)
        self._record()
        self._token = None
        self._wait_healthy(begin + timeout_s)
        return restart

    def _tail(self, component: str) -> str:
        try:
            lines = self.log_file(component).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    # ----- REST -----

    def _http(
        self, method: str, path: str, body: Any, token: str | None, timeout_s: float
    ) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", **self._auth_headers(token)}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310  # http://127.0.0.1
                raw = response.read()
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return status, parsed if isinstance(parsed, dict) else {"items": parsed}

    def _auth_headers(self, token: str | None) -> dict[str, str]:
        """Airflow 3: the JWT from /auth/token (the Airflow 2 launcher sends HTTP Basic credentials instead)."""
        return {"Authorization": f"Bearer {token}"} if token else {}

    def login(self) -> str:
        status, body = self._http(
            "POST", "/auth/token", {"username": self.username, "password": self.password}, None, 10.0
        )
        if status not in (200, 201) or "access_token" not in body:
            raise AirflowStackError(f"login to {self.url} as {self.username} failed: HTTP {status} {body}")
        self._token = str(body["access_token"])
        return self._token

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One authenticated REST call (``/api/v2/...``); logs in again once on 401/403. Returns (status, JSON).

        Raises AirflowUnreachable when the API does not answer within ``timeout_s`` (10 s for a read,
        ``WRITE_TIMEOUT_S`` for a write)."""
        if timeout_s is None:
            timeout_s = 10.0 if method == "GET" else WRITE_TIMEOUT_S
        try:
            token = self._token or self.login()
            status, parsed = self._http(method, path, body, token, timeout_s)
            if status in (401, 403):
                status, parsed = self._http(method, path, body, self.login(), timeout_s)
        except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
            raise AirflowUnreachable(f"{method} {self.url}{path}: {exc}") from exc
        return status, parsed

    def _ok(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, parsed = self.request(method, path, body)
        if status >= 300:
            raise AirflowStackError(f"{method} {path} -> HTTP {status}: {parsed}")
        return parsed

    def wait_for_dags(self, dag_ids: Iterable[str], timeout_s: float = 90.0) -> None:
        """Wait until the DAG files are parsed; the error lists missing DAGs and import errors."""
        missing = set(dag_ids)
        deadline = time.monotonic() + timeout_s
        while missing:
            for dag_id in sorted(missing):
                with contextlib.suppress(AirflowUnreachable):  # a loaded machine: keep polling until the deadline
                    status, _ = self.request("GET", f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}")
                    if status == 200:
                        missing.discard(dag_id)
            if not missing:
                return
            if time.monotonic() > deadline:
                _, errors = self.request("GET", f"{self.API_ROOT}/importErrors")
                found = [
                    f"{e.get('filename')}: {e.get('stack_trace', '')[-300:]}" for e in errors.get("import_errors", [])
                ]
                raise AirflowStackError(
                    f"DAGs not parsed within {timeout_s:.0f} s: {', '.join(sorted(missing))}; import errors: "
                    + ("; ".join(found) or "none")
                    + f"; see {self.log_file(self.PARSER)}"
                )
            time.sleep(0.5)

    def unpause(self, dag_ids: Iterable[str]) -> None:
        for dag_id in dag_ids:
            self._ok("PATCH", f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}", {"is_paused": False})

    def trigger(
        self,
        dag_id: str,
        run_id: str,
        logical_date: str | None,
        conf: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
    ) -> dict[str, Any]:
        """Create run ``run_id`` (``partition_key``: Airflow 3.2+'s key of a partitioned DAG's run)."""
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": logical_date, "conf": dict(conf or {})}
        if partition_key is not None:
            body["partition_key"] = partition_key
        path = f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns"
        for attempt in range(5):
            try:
                status, parsed = self.request("POST", path, body)
            except AirflowUnreachable:
                if attempt == 4:
                    raise
                time.sleep(1.0)
                continue
            if status < 300:
                return parsed
            # SQLite (the local stacks' database) answers 500 "database is locked" when the scheduler holds its one
            # writer lock past the wait, and a loaded machine may not answer in time at all; the run id is ours, so a
            # retry is safe and a 409 after one means an earlier try committed.
            if status == 409 and attempt > 0 and (run := self.get_run(dag_id, run_id)) is not None:
                return run
            if status != 500 or attempt == 4:
                raise AirflowStackError(f"POST {path} -> HTTP {status}: {parsed}")
            time.sleep(1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def clear(self, dag_id: str, run_id: str) -> dict[str, Any]:
        self.wait_for_executor_reports(dag_id, run_id)
        # dry_run defaults to TRUE on this endpoint (v1 and v2): without it nothing is cleared.
        path = f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/clear"
        return self._ok("POST", path, {"dry_run": False})

    def wait_for_executor_reports(self, dag_id: str, run_id: str, timeout_s: float = 60.0) -> None:
        """Wait until the scheduler handled its executor's report of each finished task of the run that ran in a
        process (its log's "TaskInstance Finished" line for that try; Airflow 2.11 and 3.3 alike).

        Airflow marks a task, and then its run, done from the task's own report, seconds (under load) before the
        scheduler handles the executor's report of the process's exit. A clear of the run in between was once lost
        (Airflow 3.3.2, loaded machine: the cleared run never ran again and the scheduler logged nothing more). A user
        clears later than that; the tests clear at once, so they wait for it first. Gives up after ``timeout_s`` and
        lets the clear go."""
        path = f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        status, body = self.request("GET", path)
        if status >= 300:
            return
        expected = {
            f"TaskInstance Finished: dag_id={dag_id}, task_id={ti['task_id']}, run_id={run_id}, ": (
                f"try_number={ti['try_number']},"
            )
            for ti in body.get("task_instances", [])
            if ti.get("state") in {"success", "failed", "skipped", "upstream_failed"} and ti.get("pid")
        }
        deadline = time.monotonic() + timeout_s
        while expected and time.monotonic() < deadline:
            try:
                text = self.log_file("scheduler").read_text(encoding="utf-8", errors="replace")
            except OSError:
                return
            lines = [line for line in text.splitlines() if "TaskInstance Finished: " in line]
            expected = {
                head: tail for head, tail in expected.items() if not any(head in ln and tail in ln for ln in lines)
            }
            if expected:
                time.sleep(0.2)

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """Clear ONE task instance of one run (nothing up- or downstream of it), as a user reruns a single task;
        the run goes back to running while that task reruns. Same body on v1 and v2."""
        body = {
            "dry_run": False,  # defaults to TRUE here too
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "only_failed": False,  # defaults to TRUE: a successful task would not be cleared
            "include_upstream": False,
            "include_downstream": False,
            "include_future": False,
            "include_past": False,
            "reset_dag_runs": True,
        }
        return self._ok("POST", f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}/clearTaskInstances", body)

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        path = f"{self.API_ROOT}/dags/{urllib.parse.quote(dag_id)}/dagRuns/{urllib.parse.quote(run_id)}"
        status, body = self.request("GET", path)
        if status == 404:
            return None
        if status >= 300:
            raise AirflowStackError(f"GET {path} -> HTTP {status}: {body}")
        return body

    def wait_for_run(self, dag_id: str, run_id: str, states: Iterable[str], timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll a run until its state is one of ``states``; raise with the last state seen."""
        wanted = set(states)
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(AirflowUnreachable):
                last = self.get_run(dag_id, run_id)
                if last is not None and last.get("state") in wanted:
                    return last
            time.sleep(0.2)
        raise AirflowStackError(
            f"run {dag_id}/{run_id} not in {sorted(wanted)} after {timeout_s:.0f} s: last seen "
            f"{last.get('state') if last else 'missing'}"
        )


# ----- stopping by PID, also from another process -----


def _stop_groups(groups: Mapping[int, subprocess.Popen[bytes] | None]) -> None:
    """TERM every group, wait; TERM the rest again, wait; KILL what is left (rule 3). Reaps our own children."""
    # The waits are read at call time, so a test can shorten them.
    stop_groups(
        groups,
        term_wait_s=_TERM_WAIT_S,
        second_term_wait_s=_SECOND_TERM_WAIT_S,
        kill_wait_s=_KILL_WAIT_S,
        what="airflow",
    )


def _is_our_airflow(pid: int) -> bool:
    """A recorded PID is only ours if it still leads its own session and (where visible) runs airflow."""
    if not leads_session(pid):
        return False
    if not Path("/proc").is_dir():
        return True  # no way to read the command line here: a session leader at a recorded PID has to do
    cmdline = command_line(pid)
    return cmdline is not None and b"airflow" in cmdline


def _recorded_alive(home: Path) -> list[int]:
    try:
        state = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [int(pid) for pid in state.get("pids", {}).values() if _is_our_airflow(int(pid))]


def stop_recorded(home: Path) -> list[int]:
    """Stop the components recorded in ``<home>/stack.json`` by another process (``make down``); returns the PIDs."""
    pids = _recorded_alive(home)
    _stop_groups(dict.fromkeys(pids))
    with contextlib.suppress(FileNotFoundError):
        (home / STATE_FILE).unlink()
    return pids
