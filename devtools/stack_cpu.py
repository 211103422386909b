"""Measure the CPU one idle local Airflow burns, per component: what an Airflow stack of the test suite costs the
other tests while they wait on it (``python -m devtools.stack_cpu``, see ``--help``).

The stack is started as the e2e fixtures start theirs (:mod:`devtools.airflow_stack` or, with ``--airflow 2.11``,
:mod:`devtools.airflow2_stack`; an etcd and a PostgreSQL of its own), with the DAG folders given (default: the shared
e2e stack's, ``dags/`` and ``tests/e2e/dags/``), and left idle: no run is triggered, the DAGs stay paused.

Rules:
1. A component's CPU is that of its process and every process descended from it: user and system time of each,
   plus what they reaped of their children (``/proc/<pid>/stat``). Not its process group or session: Airflow 2's
   scheduler moves its DAG file processor into a group of its own, and each PostgreSQL backend (the postmaster's
   children, one per connection the components keep open) into a session of its own.
2. The window starts once the DAG count has stopped growing and ``--settle`` seconds have passed, so the first parse
   of every file is not in it; the load average before and after goes into the result, since a loaded machine slows
   what the window holds.
3. ``--set KEY=VALUE`` overrides one variable of the stack's environment (e.g. the interval the launcher sets), so a
   candidate setting is measured against the launcher's own by two runs, best alternated.
4. Linux only (``/proc``); everything is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from devtools.airflow2_stack import Airflow2Stack, ensure_venv
from devtools.airflow_stack import AirflowStack, AirflowStackError
from devtools.etcd_server import EtcdServer
from devtools.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DAG_FOLDERS = (REPO / "dags", REPO / "tests" / "e2e" / "dags")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: The DAG count must stay the same this long before the first parse counts as done.
_STABLE_S = 15.0


def tree_cpu_s(root: int, proc: Path = Path("/proc")) -> float:
    """CPU seconds of ``root`` and every process descended from it now: utime + stime + cutime + cstime (rule 1)."""
    stats: dict[int, tuple[int, int]] = {}  # pid -> (parent pid, CPU ticks)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:  # exited meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses: the fields after its last ")" are fixed.
        fields = raw[raw.rindex(")") + 2 :].split()
        # field 4: the parent; fields 14-17: utime, stime, cutime, cstime
        stats[int(entry.name)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo.extend(children.get(pid, ()))
    return total / _TICKS


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` words as a mapping; a word without ``=`` is refused, naming it and the form."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(
                f"--set {pair!r}: expected KEY=VALUE, e.g. "
                "python -m devtools.stack_cpu --set AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=5"
            )
        settings[key] = value
    return settings


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text(encoding="ascii").split()[:3]


def _wait_parsed(stack: AirflowStack, timeout_s: float) -> int:
    """Wait until the stack's DAG count is above 0 and stable for ``_STABLE_S`` (rule 2); return it."""
    deadline = time.monotonic() + timeout_s
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        status, body = stack.request("GET", f"{stack.API_ROOT}/dags?limit=1")
        now = int(body.get("total_entries", 0)) if status == 200 else 0
        if now != count:
            count, since = now, time.monotonic()
        elif count > 0 and time.monotonic() - since >= _STABLE_S:
            return count
        time.sleep(1.0)
    raise AirflowStackError(f"the DAG count did not settle within {timeout_s:.0f} s (last {count})")


def measure(
    airflow: str, dag_folders: Sequence[Path], settings: Mapping[str, str], window_s: float, settle_s: float
) -> dict[str, object]:
    """Start one stack with ``dag_folders`` and ``settings``, let it idle, and return its CPU per component."""
    with tempfile.TemporaryDirectory(prefix="stack-cpu-") as scratch:
        base = Path(scratch)
        dags = base / "dags"
        dags.mkdir()
        for folder in dag_folders:
            for source in sorted(folder.glob("*.py")):
                shutil.copy2(source, dags / source.name)
        with EtcdServer(unsafe_no_fsync=True) as etcd, PostgresServer() as postgres:
            settings_env = {"TMPDIR": str(base), **settings}
            database = postgres.create_database(f"airflow_{uuid.uuid4().hex[:6]}")
            prefix = f"/stack-cpu-{uuid.uuid4().hex[:8]}"
            stack = (
                Airflow2Stack(
                    home=base / "airflow", dags_folder=dags, etcd_endpoints=etcd.endpoint, prefix=prefix,
                    database_url=database, triggerer=True, extra_env=settings_env, python=str(ensure_venv()),
                )
                if airflow == "2.11"
                else AirflowStack(
                    home=base / "airflow", dags_folder=dags, etcd_endpoints=etcd.endpoint, prefix=prefix,
                    database_url=database, triggerer=True, extra_env=settings_env,
                )
            )  # fmt: skip
            try:
                stack.start()
                dag_count = _wait_parsed(stack, timeout_s=300.0)
                time.sleep(settle_s)
                roots = stack.pids()
                if postgres.pid is None:
                    raise AirflowStackError(f"PostgreSQL exited; see {postgres.log_path}")
                roots["postgres"] = postgres.pid
                load_before = _load()
                before = {name: tree_cpu_s(pid) for name, pid in roots.items()}
                time.sleep(window_s)
                after = {name: tree_cpu_s(pid) for name, pid in roots.items()}
                load_after = _load()
            finally:
                stack.stop()
    per_min = {name: round((after[name] - before[name]) * 60.0 / window_s, 2) for name in roots}
    return {
        "airflow": airflow,
        "dag_files": sorted(p.name for folder in dag_folders for p in folder.glob("*.py")),
        "dags": dag_count,
        "settings": dict(settings),
        "window_s": window_s,
        "cpu_s_per_min": per_min,
        "total_cpu_s_per_min": round(sum(per_min.values()), 2),
        "load_before": load_before,
        "load_after": load_after,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--airflow", choices=("3.3", "2.11"), default="3.3")
    parser.add_argument("--dags", type=Path, action="append", help="a DAG folder (repeatable; default: the e2e one)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured (default 60)")
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before the window (default 30)")
    args = parser.parse_args(argv)
    folders = tuple(args.dags) if args.dags else DEFAULT_DAG_FOLDERS
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"--dags {folder}: no such folder; e.g. python -m devtools.stack_cpu --dags dags")
    result = measure(args.airflow, folders, parse_settings(args.settings), args.window, args.settle)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
