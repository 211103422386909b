"""A real dbt project on dbt-duckdb, run with ``dbt-ol build`` (openlineage-dbt), for the OpenLineage tests.

dbt, dbt-duckdb and openlineage-dbt do not belong in the project's venv, so they live in ``.venv-dbt/`` in the
repository root, built on demand by :func:`ensure_venv` (the tests, ``make venv-dbt`` and
``python -m devtools.dbt_stack venv`` call it) and pinned by ``constraints/dbt.txt``. This module imports only the
standard library (and :mod:`devtools.procs`): ``make lock-dbt`` and ``make venv-dbt`` run it with any Python 3.11.

Rules:
1. The venv is rebuilt only when its fingerprint (the pins, the top-level requirements, the Python minor version)
   changed: the fingerprint is kept in ``.venv-dbt/.fingerprint``, written last, so a half-built venv never looks
   current. Two processes never build it at once: ``.venv-dbt/.build.lock`` (flock) makes the second wait, then reuse.
   The lock and a ``.gitignore`` (``*``) live inside ``.venv-dbt/`` and survive a rebuild, so git never sees the
   venv. Re-pin with ``make lock-dbt`` (``python -m devtools.dbt_stack lock``: a fresh scratch venv, the requirements
   of :data:`LOCK_REQUIREMENTS` unpinned, ``pip check``, ``pip freeze``), review the diff, run the tests.
2. :func:`dbt_project` copies ``tests/lineage/dbt_project/`` (project ``jaffle``: models ``stg_orders`` -> ``orders``
   -> ``customers``, each a table) into a fresh directory and writes ``profiles.yml`` there (dbt-duckdb, database
   file ``jaffle.duckdb`` in that directory, one thread so models run in a fixed order). ``--vars '{fail_model: X}'``
   makes model X fail at run time in DuckDB (a Conversion Error), via ``macros/fail_on_demand.sql``.
3. :func:`run_dbt_ol` runs ``dbt-ol build`` in a clean environment: every inherited ``OPENLINEAGE*``, ``DBT_*``
   and ``PYTHON*`` variable dropped, ``HOME`` a private directory inside the project (so no
   ``~/.openlineage/openlineage.yml`` or ``~/.dbt`` of the machine is read), ``PATH`` starting with the venv's
   ``bin`` (``dbt-ol`` runs ``dbt`` from PATH), dbt's anonymous usage stats off, loopback excluded from any proxy.
   The OpenLineage client reads ``OPENLINEAGE_URL`` (it posts to ``{url}/api/v1/lineage``), ``OPENLINEAGE_API_KEY``
   (sent as ``Authorization: Bearer <key>``) and ``OPENLINEAGE_NAMESPACE`` (the job namespace; ``dbt`` when unset).
   Anything else (``OPENLINEAGE_CLIENT_LOGGING=DEBUG``, ``OPENLINEAGE_PARENT_ID``...) goes in ``extra_env``.
4. Two receivers at once (tee): :func:`composite_config` writes a client config (``transport: {type: composite,
   transports: {receiver_1: {type: http, url, endpoint, auth: {type: api_key, apiKey}}, ...}}``; JSON, which is
   YAML) and ``run_dbt_ol(..., url=None, api_key=None, openlineage_config=path)`` points ``OPENLINEAGE_CONFIG`` at it.
   Pass ``url=None`` there: the client also turns ``OPENLINEAGE_URL`` into one more transport of the composite
   (``default_http``). The client looks for ``openlineage.yml`` in the working directory (the project) too:
   :func:`dbt_project` ships none.

Observed on this machine (openlineage-dbt 1.54.0 with openlineage-python 1.54.0, dbt-core 1.11.16, dbt-duckdb
1.11.1, DuckDB 2.0.1, Python 3.11.7; ``dbt-ol build`` of the jaffle project; tests/lineage/test_dbt_stack.py asserts
the names, the order, the times, the run ids, the parent facet and the failures; tests/lineage/fixtures/ holds a
captured parent START and a model COMPLETE):

- Transport: one ``POST /api/v1/lineage`` per event (never the batch endpoint), ``Content-Type: application/json``,
  not gzipped, ``Authorization: Bearer <OPENLINEAGE_API_KEY>``, ``User-Agent: python-requests/...``; every event's
  ``job.namespace`` is ``OPENLINEAGE_NAMESPACE``. Events are ``RunEvent`` with ``schemaURL`` spec 2-0-2.
- Job names: the parent ``dbt-run-jaffle`` (``dbt-run-{project}``); the models
  ``jaffle.main.jaffle.stg_orders.build.run``, ``jaffle.main.jaffle.orders.build.run``,
  ``jaffle.main.jaffle.customers.build.run``, i.e. ``{database}.{schema}.{project}.{model}.build.run`` where the
  database is dbt-duckdb's (the file's stem, ``jaffle``: it only looks like the project name) and ``.build.run``
  is there because the command is ``build`` (``dbt-ol run`` names them without it). Seeds and tests would add
  jobs of their own: the project has none.
- When and in which order: ``dbt-ol`` runs ``dbt`` to the end first, then reads ``target/run_results.json`` and
  sends everything in one burst, in this order: parent START; every model's START (in run order); every model's
  COMPLETE or FAIL (same order); parent COMPLETE or FAIL. So for 3 models: 8 events, and NOT START/COMPLETE pairs:
  stg_orders' COMPLETE arrives after customers' START. Nothing arrives while dbt runs (``--consume-structured-logs``
  would stream them; not used here).
- A failing model (``fail_model: customers``): FAIL for it (``outputs`` empty, ``inputs`` kept) and FAIL for
  ``dbt-run-jaffle``; the other models START+COMPLETE; still 8 events; ``dbt-ol`` exits 1. Models dbt SKIPS
  (downstream of a failure: ``fail_model: stg_orders``) send no event at all, not even START: 4 events then.
  No error-message facet on the FAIL events.
- eventTime: a model's START and COMPLETE/FAIL carry the model's own ``execute`` start and end from
  ``run_results.json`` (``...Z``, microseconds), not the emission time; a model without an execute timing would get
  the emission time (read in the code). The parent's START is stamped just before ``dbt`` starts (``...+00:00``)
  but sent after dbt ended (~4 s later here); the parent's COMPLETE/FAIL is stamped at emission. So the order of
  eventTimes is not the order of arrival.
- runIds: UUID version 7 (time-ordered), one per model run (shared by its START and COMPLETE/FAIL), one for the
  parent (its START and its end). The dbt invocation id is elsewhere: ``run.facets.dbt_run.invocation_id`` on every
  event, the parent's too.
- ``parent`` facet (ParentRunFacet 1-2-0) on every model event, none on the parent's own events (no orchestrator
  above it): ``{"run": {"runId": <parent runId>}, "job": {"namespace": <ns>, "name": "dbt-run-jaffle"}, "root":
  {"run": {"runId": <parent runId>}, "job": {"namespace": <ns>, "name": "dbt-run-jaffle"}}}`` (plus ``_producer``,
  ``_schemaURL``). With ``OPENLINEAGE_PARENT_ID``/``OPENLINEAGE_CONTEXT`` set, the parent job would get a parent facet
  and the root would be that orchestrator's run (read in the code, not observed).
- No ``nominalTime`` facet anywhere. Run facets: ``dbt_run`` (invocation_id, project_name, profile_name, ...),
  ``dbt_version``, ``processing_engine``, ``tags``, plus ``parent`` on models; job facets: ``jobType`` (``JOB`` for
  the parent, ``MODEL`` for models), ``dbt_node`` and ``sql`` (compiled SQL) on models. Datasets: namespace
  ``duckdb://<absolute path of jaffle.duckdb>``, names ``jaffle.main.<model>``, with ``columnLineage`` on outputs.
- Timings on this machine (2 cores): building ``.venv-dbt`` ~23 s (also ~21 s with no pip cache), a reuse ~0.1 s;
  one ``dbt-ol build`` of the 3 models ~5-6 s wall clock (dbt's start-up and parse ~4 s, the models ~0.3 s,
  the 8 POSTs to a local server well under 0.1 s).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools import tool_venv
from devtools.procs import stop_groups

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
VENV_NAME = ".venv-dbt"
CONSTRAINTS = REPO / "constraints" / "dbt.txt"
PROJECT_SOURCE = REPO / "tests" / "lineage" / "dbt_project"
#: What the venv installs, pinned by constraints/dbt.txt.
REQUIREMENTS = ("dbt-core", "dbt-duckdb", "openlineage-dbt")
#: What ``make lock-dbt`` resolves: dbt-core 1.12 does not install here (a build step downloads from GitHub).
LOCK_REQUIREMENTS = ("dbt-core>=1.11,<1.12", "dbt-duckdb>=1.11,<1.12", "openlineage-dbt==1.54.0")

#: The project as dbt-ol names it: the parent job of a whole invocation, and each model's job.
PROJECT = "jaffle"
MODELS = ("stg_orders", "orders", "customers")  # in the order dbt builds them (one thread)
DATABASE = "jaffle"  # dbt-duckdb names the database after the file's stem: jaffle.duckdb
SCHEMA = "main"
PARENT_JOB = f"dbt-run-{PROJECT}"

# A cold install downloads ~40 packages (~20 s with a warm pip cache); 15 min only fails a hung index.
_OUTPUT_TAIL_CHARS = 3000
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DbtStackError(RuntimeError):
    """Building the venv or running dbt-ol failed (the message carries the tail of the output)."""


def model_job(model: str, *, command: str = "build") -> str:
    """The OpenLineage job name dbt-ol gives a model: ``{database}.{schema}.{project}.{model}`` (+ ``.build.run``)."""
    return f"{DATABASE}.{SCHEMA}.{PROJECT}.{model}" + (".build.run" if command == "build" else "")


# ----- the venv -----


def venv_dir(root: Path = REPO) -> Path:
    return root / VENV_NAME


def venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


#: The dbt venv as a pinned tool venv (devtools/tool_venv.py: fingerprint, build lock, rebuild rules).
DBT = tool_venv.Tool("dbt", REQUIREMENTS, LOCK_REQUIREMENTS, executables=("dbt", "dbt-ol"))


def ensure_venv(root: Path = REPO, constraints: Path | None = None) -> Path:
    """The venv (``root/.venv-dbt``) with dbt-core, dbt-duckdb and openlineage-dbt, built now unless current."""
    pins = constraints if constraints is not None else DBT.constraints(root)
    try:
        return tool_venv.ensure(root, DBT.name, DBT.requirements, pins, executables=DBT.executables)
    except tool_venv.ToolVenvError as exc:
        raise DbtStackError(str(exc)) from exc


def lock() -> None:
    """Resolve :data:`LOCK_REQUIREMENTS` unpinned in a scratch venv and write its ``pip freeze`` as the pins."""
    tool_venv.lock(DBT, REPO)


# ----- the project -----


def dbt_project(dest: Path) -> Path:
    """Copy the jaffle project into ``dest`` (created; must be empty) with a ``profiles.yml`` for dbt-duckdb whose
    database file is ``dest/jaffle.duckdb``. Returns ``dest``, the project and profiles directory."""
    dest = dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise DbtStackError(f"{dest} is not empty: dbt_project() wants a fresh directory")
    shutil.copytree(
        PROJECT_SOURCE,
        dest,
        dirs_exist_ok=True,
        # What a run in place would have left behind: never copied.
        ignore=shutil.ignore_patterns(
            "target", "logs", "dbt_packages", "*.duckdb*", "profiles.yml", ".user.yml", "openlineage.yml"
        ),
    )
    profile = {
        PROJECT: {
            "target": "dev",
            "outputs": {"dev": {"type": "duckdb", "path": str(dest / f"{DATABASE}.duckdb"), "threads": 1}},
        }
    }
    # JSON is YAML: quoting paths with spaces or colons is then json's job.
    (dest / "profiles.yml").write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    return dest


# ----- the OpenLineage client's configuration -----


def composite_config(path: Path, urls_and_keys: Sequence[tuple[str, str | None]]) -> Path:
    """Write a client config sending every event to each (url, api_key) over HTTP (``receiver_1``, ``receiver_2``...)
    and return ``path``: ``run_dbt_ol(..., url=None, api_key=None, openlineage_config=path)`` tees to all of them.
    Every transport is tried for every event (``continue_on_failure`` and ``continue_on_success``)."""
    if not urls_and_keys:
        raise ValueError("composite_config needs at least one (url, api_key)")
    transports: dict[str, dict[str, Any]] = {}
    for index, (url, api_key) in enumerate(urls_and_keys, start=1):
        http: dict[str, Any] = {"type": "http", "url": url, "endpoint": "api/v1/lineage"}
        if api_key:
            http["auth"] = {"type": "api_key", "apiKey": api_key}
        transports[f"receiver_{index}"] = http
    config = {
        "transport": {
            "type": "composite",
            "continue_on_failure": True,
            "continue_on_success": True,
            "transports": transports,
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


# ----- running dbt-ol -----


def dbt_environment(
    venv: Path,
    project_dir: Path,
    *,
    url: str | None,
    api_key: str | None,
    namespace: str,
    openlineage_config: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of ``dbt-ol``: nothing OpenLineage or dbt inherited (rule 3)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENLINEAGE", "DBT_", "PYTHON"))
        and k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "HOME", "PATH", "TQDM_DISABLE")
    }
    home = project_dir / ".home"
    home.mkdir(exist_ok=True)
    no_proxy = ",".join(filter(None, [inherited.get("NO_PROXY") or inherited.get("no_proxy"), *_LOOPBACK]))
    env = {
        **inherited,
        "PATH": str(venv / "bin") + os.pathsep + os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "VIRTUAL_ENV": str(venv),
        "HOME": str(home),
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "DBT_PROFILES_DIR": str(project_dir),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
        "TQDM_DISABLE": "1",  # dbt-ol's progress bar of the emission, noise in a captured log
        "OPENLINEAGE_NAMESPACE": namespace,
    }
    if url:
        env["OPENLINEAGE_URL"] = url
    if api_key:
        env["OPENLINEAGE_API_KEY"] = api_key
    if openlineage_config is not None:
        env["OPENLINEAGE_CONFIG"] = str(openlineage_config)
    env.update(extra_env or {})
    return env


def run_dbt_ol(
    venv: Path,
    project_dir: Path,
    *,
    url: str | None,
    api_key: str | None,
    namespace: str,
    vars: Mapping[str, Any] | None = None,
    select: str | Sequence[str] | None = None,
    openlineage_config: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = 300.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``dbt-ol build`` on ``project_dir`` (from :func:`dbt_project`) with the venv's dbt, sending OpenLineage
    events to ``url`` (or per ``openlineage_config``). Returns the finished process, whatever its exit code (1 when a
    model failed); raises DbtStackError when it outlives ``timeout_s`` (its whole process group is killed)."""
    project_dir = project_dir.resolve()
    args = [str(venv_bin(venv, "dbt-ol")), "build", "--project-dir", str(project_dir)]
    args += ["--profiles-dir", str(project_dir)]
    if vars:
        args += ["--vars", json.dumps(dict(vars))]
    if select:
        args += ["--select", *([select] if isinstance(select, str) else select)]
    env = dbt_environment(
        venv,
        project_dir,
        url=url,
        api_key=api_key,
        namespace=namespace,
        openlineage_config=openlineage_config,
        extra_env=extra_env,
    )
    begin = time.monotonic()
    # Its own session: on a timeout dbt-ol AND the dbt it started are stopped, as one process group.
    proc = subprocess.Popen(
        args,
        cwd=project_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_groups({proc.pid: proc}, term_wait_s=5.0, second_term_wait_s=2.0, kill_wait_s=5.0, what="dbt-ol")
        out, err = proc.communicate()
        tail = (out + err).decode(errors="replace")[-_OUTPUT_TAIL_CHARS:]
        raise DbtStackError(f"dbt-ol build in {project_dir} did not finish in {timeout_s:.0f} s:\n{tail}") from None
    finally:
        if proc.poll() is None:  # an interrupt (KeyboardInterrupt) while waiting: never leave dbt behind
            stop_groups({proc.pid: proc}, term_wait_s=5.0, second_term_wait_s=2.0, kill_wait_s=5.0, what="dbt-ol")
    log.info("dbt.ol.build project=%s rc=%d seconds=%.1f", project_dir, proc.returncode, time.monotonic() - begin)
    return subprocess.CompletedProcess(
        args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def main(argv: list[str] | None = None) -> int:
    """``venv``: build or reuse ``.venv-dbt`` (make venv-dbt); ``lock``: re-pin constraints/dbt.txt (make lock-dbt)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args == ["venv"]:
        begin = time.monotonic()
        venv = ensure_venv()
        log.info("dbt.venv.ready venv=%s seconds=%.1f", venv, time.monotonic() - begin)
        return 0
    if args == ["lock"]:
        lock()
        log.info("dbt.constraints.written path=%s (review the diff; .venv-dbt is rebuilt on next use)", CONSTRAINTS)
        return 0
    log.error("usage: python -m devtools.dbt_stack {venv|lock}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
