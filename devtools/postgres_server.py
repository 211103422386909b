"""Start and stop a real PostgreSQL server for the end-to-end tests' Airflow metadata databases.

Airflow's documentation calls SQLite a development database; every production deployment runs PostgreSQL (or
MySQL). The shared test Airflow on SQLite once stopped scheduling partway through a CI run and, later, stalled every
writer for 61 s at once; its stacks now keep their metadata here, one fresh database per stack.

Rules:
1. The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``, the newest) unless ``$POSTGRES_BIN_DIR`` names
   another directory; ``make postgresql`` installs them. Nothing else on the machine is used or changed: the cluster
   is made by ``initdb`` in a temp dir of its own, with its own configuration.
2. PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the ``postgres`` user, which owns
   the temp dir. Otherwise they run as the current user.
3. Loopback only: TCP on 127.0.0.1 at a port proven free (``devtools.procs.free_port``), the unix socket in the temp
   dir (so no other server's socket can answer the readiness probe); ``trust`` authentication, which is fine for a
   throw-away test server that only loopback can reach. Durability is off (``fsync``, ``synchronous_commit``,
   ``full_page_writes``): the cluster is deleted at the end anyway.
4. Stopping is by the postmaster's PID, never by name: SIGINT (PostgreSQL's fast shutdown: it ends the backends
   and closes the cluster), a bounded wait, then TERM and KILL (``devtools.procs.stop_child``).
   :meth:`PostgresServer.stop` also removes the temp dir; a server left running is stopped at interpreter exit.
5. Nothing waits forever: initdb, start, probe, database creation and stop all have timeouts; a failed start raises
   with the log's path and its last lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Self

from devtools import reaper
from devtools.procs import free_port, port_is_free, stop_child

log = logging.getLogger(__name__)

#: The cluster's superuser (initdb's ``--username``); every database here is reached as this role.
SUPERUSER = "postgres"
#: The OS user the server runs as when we are root (Debian's package creates it).
OS_USER = "postgres"
#: Each Airflow process keeps a pool of up to 15 connections (pool 5 + overflow 10, Airflow's defaults), and the API
#: server a second one for its async engine; three stacks at once (the shared one and two of a module) stay far below.
MAX_CONNECTIONS = 300
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOG_TAIL_LINES = 15
_INSTALL_HINT = "make postgresql  (or: sudo apt-get install -y postgresql)"


class PostgresServerError(RuntimeError):
    """The binaries are missing, initdb failed, or the server did not become ready in time."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``createdb`` (rule 1); raise PostgresServerError if none."""
    env = os.environ.get("POSTGRES_BIN_DIR")
    if env:
        path = Path(env)
        if not (path / "postgres").is_file():
            raise PostgresServerError(f"POSTGRES_BIN_DIR={env} holds no 'postgres' executable")
        return path
    # Debian keeps its server binaries off PATH, one directory per major version; the newest one wins.
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise PostgresServerError(f"no PostgreSQL server binaries found; install them: {_INSTALL_HINT}")


def _run_as() -> str | None:
    """The OS user to run the server as: ``postgres`` when we are root (rule 2), else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresServerError(
            f"PostgreSQL refuses to run as root and there is no {OS_USER!r} user to run it as; install the "
            f"server (it creates the user): {_INSTALL_HINT}"
        ) from None
    return OS_USER


class _Resources:
    """What must be released even if the owner is garbage-collected or the interpreter exits without stop()."""

    def __init__(self, owned_dir: Path) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.owned_dir: Path | None = owned_dir
        self.stop_timeout_s = 10.0

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _shut_down(proc, self.stop_timeout_s)
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None


def _shut_down(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """PostgreSQL's fast shutdown (SIGINT: backends are ended, the cluster closed cleanly), then TERM/KILL (rule 4).

    Not TERM first: for the postmaster TERM is a "smart" shutdown that waits for every client to disconnect, and a
    stack that failed to stop would hold it to the KILL. The backends lead their own sessions (postgres makes each
    one a group leader), so signalling the postmaster's group would not reach them: the postmaster ends them.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("postgres.stop_timeout pid=%d action=term_then_kill", proc.pid)
        stop_child(proc, timeout_s=5.0, what="postgres")


class PostgresServer:
    """One PostgreSQL server on a free 127.0.0.1 port, its cluster in a temp dir; a context manager, or call
    start() / stop(). :meth:`create_database` makes a fresh database and returns its SQLAlchemy URL."""

    def __init__(
        self, *, bin_dir: Path | None = None, start_timeout_s: float = 60.0, stop_timeout_s: float = 10.0
    ) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.run_as = _run_as()
        self.start_timeout_s = start_timeout_s
        self.base = Path(tempfile.mkdtemp(prefix="coordinator-postgres-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "socket"
        self.log_path = self.base / "postgres.log"
        self.port: int | None = None
        self._res = _Resources(owned_dir=self.base)
        self._res.stop_timeout_s = stop_timeout_s
        self._stopped = False
        # Stops the server and removes the dir at garbage collection or interpreter exit if stop() was never called.
        self._finalizer = weakref.finalize(self, self._res.release)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs, else None."""
        proc = self._res.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def version(self) -> str:
        """The major version, from Debian's directory name (``15``), else the binary's own answer."""
        name = self.bin_dir.parent.name
        if name.isdigit():
            return name
        done = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip().rsplit(" ", 1)[-1]

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server, through psycopg2.

        The driver is named: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which Airflow does not need.
        Airflow derives its API server's async URL from this one (``postgresql+asyncpg://``, Airflow's
        ``settings._get_async_conn_uri_from_sync``), so asyncpg must be installed too."""
        if self.port is None:
            raise PostgresServerError("the server was never started")
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """initdb, then start the server and wait until it accepts connections on its socket and its TCP port."""
        if self._stopped:
            raise PostgresServerError("this PostgresServer was stopped and its files removed; create a new one")
        if self.pid is not None:
            raise PostgresServerError(f"postgres is already running (pid {self.pid}) on port {self.port}")
        started = time.monotonic()
        self._initdb()
        # A freshly picked port can be taken between our check and the server's bind: pick again.
        for attempt in range(3):
            self.port = free_port()
            self._launch()
            try:
                self._wait_ready(started)
            except _AddressInUse:
                self._kill_process()
                if attempt == 2:
                    raise PostgresServerError(f"postgres could not bind a port; see {self.log_path}") from None
                log.warning("postgres.port_race port=%d attempt=%d", self.port, attempt + 1)
                continue
            except BaseException:
                self._kill_process()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server (fast shutdown, then TERM and KILL: rule 4) and remove its temp dir. Idempotent; final."""
        if self._stopped:
            return
        self._stopped = True
        self._finalizer()  # stops the server and removes the dir; detaches the finalizer
        log.info("postgres.stopped port=%s", self.port)

    def __enter__(self) -> Self:
        if self.pid is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer(127.0.0.1:{self.port}, pid={self.pid}, dir={self.base})"

    # -- databases -------------------------------------------------------------------------------------------

    def create_database(self, name: str, timeout_s: float = 30.0) -> str:
        """Create the empty database ``name`` (lower case letters, digits, ``_``) and return its URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(
                f"database name {name!r}: use 1-63 lower case letters, digits or '_', not starting with a digit"
            )
        if self.pid is None:
            raise PostgresServerError("the server is not running; start() it first")
        done = subprocess.run(
            [str(self.bin_dir / "createdb"), *self._client_args(), name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresServerError(f"createdb {name} on port {self.port} failed: {done.stderr.strip()}")
        log.info("postgres.database_created name=%s port=%d", name, self.port)
        return self.url(name)

    def databases(self, timeout_s: float = 30.0) -> list[str]:
        """The names of the databases on this server, templates left out."""
        sql = "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname"
        done = subprocess.run(
            [str(self.bin_dir / "psql"), *self._client_args(), "-d", "postgres", "-At", "-c", sql],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresServerError(f"listing the databases on port {self.port} failed: {done.stderr.strip()}")
        return done.stdout.split()

    # -- internals ------------------------------------------------------------------------------------------

    def _client_args(self) -> list[str]:
        # Over TCP, as Airflow connects: the unix socket would be a different path to the same server.
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-w"]

    def _own(self) -> None:
        """Give the temp dir to the server's OS user (rule 2): initdb refuses a data dir it cannot write."""
        self.socket_dir.mkdir(exist_ok=True)
        if self.run_as is None:
            return
        entry = pwd.getpwnam(self.run_as)
        for path in (self.base, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _ids(self) -> tuple[int | None, int | None, list[int] | None]:
        """(user, group, extra groups) for Popen: the server's OS user, without root's supplementary groups."""
        if self.run_as is None:
            return None, None, None
        entry = pwd.getpwnam(self.run_as)
        return entry.pw_uid, entry.pw_gid, []

    def _env(self) -> dict[str, str]:
        # PG* variables of the caller (PGHOST, PGPORT, PGDATA, ...) must not steer initdb, the server or the clients.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["HOME"] = str(self.base)
        return env

    def _initdb(self) -> None:
        self._own()
        command = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # rule 3: nothing here must survive a machine crash
        ]
        user, group, extra_groups = self._ids()
        with self.log_path.open("ab") as out:
            out.write(b"=== initdb\n")
            out.flush()
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.base,
                    env=self._env(),
                    timeout=120,
                    check=False,
                    user=user,
                    group=group,
                    extra_groups=extra_groups,
                )
            except subprocess.TimeoutExpired as exc:
                raise PostgresServerError(f"initdb timed out after 120 s; see {self.log_path}") from exc
        if done.returncode != 0:
            raise PostgresServerError(f"initdb exited with {done.returncode}; log {self.log_path}:\n{self._log_tail()}")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(MAX_CONNECTIONS),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",  # the log goes to our file (stderr), not a directory in the cluster
        }
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")),
        ]

    def _launch(self) -> None:
        assert self.port is not None
        if not port_is_free(self.port):
            raise PostgresServerError(f"port 127.0.0.1:{self.port} is taken")
        user, group, extra_groups = self._ids()
        with self.log_path.open("ab") as out:
            out.write(f"=== starting postgres on 127.0.0.1:{self.port}\n".encode())
            out.flush()
            self._res.proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C aimed at pytest must not reach it: stop() shuts it down in order
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        reaper.record(self._res.proc.pid, "postgres", group=True)

    def _ready(self, host: str) -> bool:
        done = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", host, "-p", str(self.port), "-U", SUPERUSER, "-t", "2"],
            capture_output=True,
            timeout=10,
            check=False,
            env=self._env(),
        )
        return done.returncode == 0

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.start_timeout_s
        proc = self._res.proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                tail = self._log_tail()
                if "Address already in use" in tail:
                    raise _AddressInUse
                raise PostgresServerError(
                    f"postgres exited with code {code} during start; log {self.log_path}:\n{tail}"
                )
            # The socket lives in our own dir, so an answer there is this server's (rule 3); then TCP, as Airflow.
            if self._ready(str(self.socket_dir)) and self._ready("127.0.0.1"):
                break
            if time.monotonic() > deadline:
                raise PostgresServerError(
                    f"postgres on 127.0.0.1:{self.port} not ready after {self.start_timeout_s:.0f} s; log "
                    f"{self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.1)
        log.info(
            "postgres.ready port=%d pid=%d version=%s ready_s=%.2f log=%s",
            self.port,
            proc.pid,
            self.version,
            time.monotonic() - started,
            self.log_path,
        )

    def _kill_process(self) -> None:
        proc, self._res.proc = self._res.proc, None
        if proc is not None:
            _shut_down(proc, timeout_s=5.0)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])


class _AddressInUse(Exception):
    """postgres exited because its port was taken between our check and its bind."""
