"""Start and stop a local Airflow 2.11 (webserver, scheduler) for the end-to-end tests, in a venv of its own.

Airflow 2 and 3 cannot share a virtual environment, so Airflow 2 runs from ``.venv-airflow2/`` in the repository
root, created on demand by :func:`ensure_venv` (the test fixture and ``make venv-airflow2`` call it) with
``apache-airflow==2.11.2``, the PostgreSQL driver (``psycopg2-binary``) and this repository installed in editable
mode: the coordinator's plugin registers through the ``airflow.plugins`` entry point exactly as in a user's deployment.

Rules:
1. The venv is pinned by ``constraints/airflow2.txt`` (a ``pip freeze`` of a working install). It is rebuilt only
   when the constraints file, the requirements installed (:data:`REQUIREMENTS`), the project's ``[project]`` table of
   ``pyproject.toml`` (dependencies, entry points) or the Python minor version changed: a fingerprint of those is kept
   in ``<venv>/.fingerprint``. A file lock beside the venv keeps two processes from building it at once. Refresh the
   pins with ``python -m devtools.airflow2_stack refresh-constraints`` (a fresh unconstrained install, then
   ``pip freeze``).
2. The same launch rules as the Airflow 3 launcher (:mod:`devtools.airflow_stack`): loopback only, the
   environment fully set here (inherited ``AIRFLOW__*``/``COORDINATOR_*`` dropped), each component in its own
   process group, stopped by PID (TERM, TERM, KILL), nothing waits forever.
3. Airflow 2 specifics: the metadata database is ``database_url`` when given (the tests pass a fresh PostgreSQL
   database of ``devtools.postgres_server``, as for Airflow 3) with LocalExecutor, else a SQLite file in the home with
   SequentialExecutor (the only executor Airflow 2 allows on SQLite); the webserver serving REST v1
   with the basic_auth backend (plus session, for the UI), an admin user created with ``airflow users create``, the
   scheduler parsing DAG files itself (no separate dag-processor) with ``--skip-serve-logs``.
4. REST calls use HTTP Basic auth on ``/api/v1``; helper methods mirror the Airflow 3 stack's (``trigger``,
   ``clear``, ``get_run``, ``unpause``, ``wait_for_dags``, ``wait_for_run``) so tests can treat both alike.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from devtools.airflow_stack import SCHEDULING_ENV, AirflowStack, AirflowStackError, AirflowUnreachable
from devtools.procs import free_port

log = logging.getLogger(__name__)

AIRFLOW2_VERSION = "2.11.2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".venv-airflow2"
CONSTRAINTS = REPO / "constraints" / "airflow2.txt"
#: What the venv installs besides this repository (versions from CONSTRAINTS). psycopg2-binary: the driver of the
#: PostgreSQL metadata database (``postgresql+psycopg2://``); Airflow's ``[postgres]`` extra would bring the postgres
#: provider and psycopg 3 too, which nothing here uses.
REQUIREMENTS = (f"apache-airflow=={AIRFLOW2_VERSION}", "psycopg2-binary")
FINGERPRINT_FILE = ".fingerprint"
API = "/api/v1"
COMPONENTS: dict[str, tuple[str, ...]] = {
    "webserver": ("webserver",),  # host, port and workers come from the environment
    # The log server would bind 0.0.0.0:8793 (shared by every stack on the host); task logs are read from the home.
    "scheduler": ("scheduler", "--skip-serve-logs"),
}
# A cold install downloads ~150 packages; a warm pip cache makes it ~1 min. 15 min only fails a hung index.
_INSTALL_TIMEOUT_S = 900.0
_OUTPUT_TAIL_CHARS = 3000


# ----- the venv -----


def venv_python(venv: Path = DEFAULT_VENV) -> Path:
    return venv / "bin" / "python"


def fingerprint(constraints: Path = CONSTRAINTS, pyproject: Path = REPO / "pyproject.toml") -> str:
    """What the venv was built from: the pins, the requirements, the project's metadata (deps, entry points), Python."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    material = {
        "requirements": list(REQUIREMENTS),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "constraints": constraints.read_text(encoding="utf-8"),
        "project": project,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _run_pip(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AirflowStackError(f"{what} timed out after {_INSTALL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-_OUTPUT_TAIL_CHARS:]
        raise AirflowStackError(f"{what} failed with exit code {done.returncode}:\n{output}")


def _install(venv: Path, constraints: Path | None) -> Path:
    """(Re)create ``venv`` with REQUIREMENTS and this repository (editable); pinned by ``constraints`` when given."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    python = venv_python(venv)
    pins = ["--constraint", str(constraints)] if constraints is not None else []
    _run_pip(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *pins,
            *REQUIREMENTS,
            "--editable",
            str(REPO),
        ],
        f"installing {' '.join(REQUIREMENTS)} into {venv}",
    )
    return python


def ensure_venv(venv: Path = DEFAULT_VENV, constraints: Path = CONSTRAINTS) -> Path:
    """The Python of a venv with Airflow 2 and this repository, built now unless its fingerprint is current."""
    venv = venv.resolve()
    wanted = fingerprint(constraints)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with venv.with_name(venv.name + ".lock").open("a") as lock:
        # Two test processes (or make and pytest) must not build the same venv at once: the second waits, then reuses.
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = venv / FINGERPRINT_FILE
        python = venv_python(venv)
        if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
            return python
        begin = time.monotonic()
        log.info("airflow2.venv.build venv=%s constraints=%s", venv, constraints)
        with contextlib.suppress(FileNotFoundError):
            stamp.unlink()  # a half-built venv must never look current
        _install(venv, constraints)
        stamp.write_text(wanted, encoding="utf-8")
        log.info("airflow2.venv.built venv=%s seconds=%.1f", venv, time.monotonic() - begin)
        return python


def refresh_constraints(constraints: Path = CONSTRAINTS) -> None:
    """Install REQUIREMENTS and this repository unpinned into a scratch venv; write its ``pip freeze`` as the pins."""
    with tempfile.TemporaryDirectory(prefix="airflow2-refresh-") as scratch:
        python = _install(Path(scratch) / "venv", constraints=None)
        _run_pip([str(python), "-m", "pip", "check"], "pip check of the fresh install")
        frozen = subprocess.run(
            [str(python), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    header = (
        f"# Pins for the Airflow {AIRFLOW2_VERSION} venv of the end-to-end tests (.venv-airflow2/).\n"
        "# Regenerate: .venv/bin/python -m devtools.airflow2_stack refresh-constraints\n"
    )
    constraints.parent.mkdir(parents=True, exist_ok=True)
    constraints.write_text(header + frozen, encoding="utf-8")


# ----- the stack -----


def users_create_argv(username: str, password: str) -> tuple[str, ...]:
    """``airflow users create`` for the stack's admin.

    Each value is joined to its option with ``=``: a generated password may begin with ``-`` (``token_urlsafe``
    draws from ``-`` and ``_`` too), and argparse reads a separate ``-…`` word as an option, so ``--password -x…``
    failed the start with "expected one argument" about once in 64 fresh homes.
    """
    return (
        "users",
        "create",
        f"--username={username}",
        f"--password={password}",
        "--role=Admin",
        f"--email={username}@example.invalid",
        "--firstname=Ad",
        "--lastname=Min",
    )


@dataclass
class Airflow2Stack(AirflowStack):
    """One local Airflow 2.11. ``start()`` returns when REST v1 answers and the scheduler is healthy."""

    API_ROOT: ClassVar[str] = API
    PARSER: ClassVar[str] = "scheduler"  # Airflow 2 parses DAG files in the scheduler
    HEALTH: ClassVar[str] = f"{API}/health"

    # gunicorn workers of the webserver: two so a slow request (a DAG bag refresh) does not stall the watcher's calls.
    webserver_workers: int = 2

    def environment(self) -> dict[str, str]:
        """The environment of every Airflow process of this stack."""
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith(("AIRFLOW__", "COORDINATOR_")) or k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG"))
        }
        database = self.database_url or f"sqlite:///{self.home}/airflow.db"
        env = {
            **inherited,
            # Airflow spawns `airflow tasks run` and gunicorn by name: this venv's bin must come first.
            "PATH": str(Path(self.python).parent) + os.pathsep + inherited.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            # database_url (the tests: PostgreSQL), else the file Airflow 2 would pick itself, named so that
            # ``database`` reports it.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Airflow 2 refuses any other executor on SQLite; on PostgreSQL LocalExecutor runs up to `parallelism`
            # tasks at once (SequentialExecutor ran one `airflow tasks run` at a time, 5-10 s each here).
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor" if database.startswith("sqlite") else "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session",
            "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",  # binds 0.0.0.0 otherwise
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
            "AIRFLOW__WEBSERVER__BASE_URL": self.url,
            "AIRFLOW__WEBSERVER__WORKERS": str(self.webserver_workers),
            # The generated key changes per process and warns; one per stack, kept in its home.
            "AIRFLOW__WEBSERVER__SECRET_KEY": self._secret("secret_key", 32),
            # As in the Airflow 3 launcher (its PARSING_ENV says why): new DAG files seen within 5 s, a changed file
            # parsed at once (modified_time), an unchanged one again only after 300 s. The scheduler re-parsing the
            # module's DAG file every 5 s burnt 3.6 CPU-seconds a minute of an idle stack's 5.3; 1.2 of 2.5 now
            # (python -m devtools.stack_cpu --airflow 2.11 --dags tests/e2e/dags_af2).
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__FILE_PARSING_SORT_MODE": "modified_time",
            # The Airflow 3 launcher's scheduler idle sleep (SCHEDULING_ENV says why; Airflow 2.11 reads the same
            # option): tests/e2e/test_airflow2_e2e.py took 160.7 s against 173.6 s with Airflow's 1 s (one run each,
            # the shared Airflow 3.3 at 0.5 s in both).
            **SCHEDULING_ENV,
            # The coordinator plugin (installed in this venv) reads these.
            "COORDINATOR_INSTANCE": self.instance,
            "COORDINATOR_PREFIX": self.prefix,
            # Where DAGs may write files (test DAGs look for their release files there), as in the Airflow 3 launcher.
            "PIPELINE_OUTPUT_DIR": str(self.home / "output"),
            # Temporary files of Airflow's processes and the plugin (its coordinator-tasks-*.json cache) go with the
            # stack's home, not into the host's /tmp (made by ``start``).
            "TMPDIR": str(self.home / "tmp"),
        }
        if self.etcd_endpoints:
            env["COORDINATOR_ETCD_ENDPOINTS"] = self.etcd_endpoints
        env.update(self.plugin_settings_the_airflow_way(env))
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 180.0) -> Self:
        """Migrate the database, create the admin user, start webserver and scheduler, wait for REST health."""
        begin = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        (self.home / "tmp").mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.password = self._secret("admin_password", 12)
        env = self.environment()
        try:
            self._run_once(("db", "migrate"), env, "db-migrate", timeout_s=min(timeout_s, 180.0))
            self._run_once(
                users_create_argv(self.username, self.password), env, "users-create", timeout_s=min(timeout_s, 120.0)
            )
            # A triggerer only for deferrable operators (a scheduled dependent's wait); its log server stays off.
            triggerer = {"triggerer": ("triggerer", "--skip-serve-logs")} if self.triggerer else {}
            for component, args in {**COMPONENTS, **triggerer}.items():
                self._spawn(component, args, env)
            self._record()
            self._wait_healthy(begin + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - begin
        log.info("airflow2.stack.up instance=%s url=%s seconds=%.1f", self.instance, self.url, self.started_in_s)
        return self

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
                scheduler = (body.get("scheduler") or {}).get("status") if status == 200 else None
                if scheduler == "healthy":
                    return
                last = f"HTTP {status}, scheduler status {scheduler!r}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise AirflowStackError(
                    f"Airflow 2 REST API at {self.url} not healthy in time ({last}); "
                    f"see {self.log_file('webserver')}:\n"
                    + self._tail("webserver")
                    + f"\nscheduler log: {self.log_file('scheduler')}"
                )
            time.sleep(0.5)

    # ----- REST v1, HTTP Basic auth -----

    def _auth_headers(self, token: str | None) -> dict[str, str]:
        del token  # basic auth: every request carries the credentials
        credentials = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {credentials}"}

    def login(self) -> str:
        """Nothing to log in to: REST v1 takes HTTP Basic credentials on every request."""
        return ""

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One authenticated REST call (``/api/v1/...``). Returns (status, JSON).

        Raises AirflowUnreachable when the API does not answer within ``timeout_s`` (10 s unless given: on SQLite
        this stack keeps the default 5 s wait for the database lock, so a write answers well within it)."""
        try:
            return self._http(method, path, body, None, 10.0 if timeout_s is None else timeout_s)
        except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
            raise AirflowUnreachable(f"{method} {self.url}{path}: {exc}") from exc

    def trigger(
        self,
        dag_id: str,
        run_id: str,
        logical_date: str | None,
        conf: Mapping[str, Any] | None = None,
        partition_key: str | None = None,
    ) -> dict[str, Any]:
        if partition_key is not None:
            raise AirflowStackError(f"{dag_id}: Airflow 2 has no partition keys (asked for {partition_key!r})")
        # v1 refuses a null logical date (400); omitting it means "now".
        body: dict[str, Any] = {"dag_run_id": run_id, "conf": dict(conf or {})}
        if logical_date is not None:
            body["logical_date"] = logical_date
        return self._ok("POST", f"{API}/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)


def main(argv: list[str] | None = None) -> int:
    """``venv``: build or reuse ``.venv-airflow2`` (make venv-airflow2); ``refresh-constraints``: re-pin it."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args == ["venv"]:
        begin = time.monotonic()
        python = ensure_venv()
        log.info("airflow2.venv.ready python=%s seconds=%.1f", python, time.monotonic() - begin)
        return 0
    if args == ["refresh-constraints"]:
        refresh_constraints()
        log.info("airflow2.constraints.written path=%s venv=%s (rebuilt on next use)", CONSTRAINTS, DEFAULT_VENV)
        return 0
    log.error("usage: python -m devtools.airflow2_stack {venv|refresh-constraints}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
