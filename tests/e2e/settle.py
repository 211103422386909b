"""Waiting for a ``coordinator watch`` to have acted on everything up to an etcd revision, read from its own log.

A fixed sleep after a cascade ("a duplicate would show now") guesses how long the watcher needs; the watcher says
when it is done instead: every reconcile pass logs one line with the revision it planned at, its actions and how
many actions are still in flight. A leader's pass at or after ``revision`` that planned nothing while nothing was in
flight has seen every write up to ``revision`` and decided that nothing is due: a duplicate trigger would have been
an action of that pass (or still in flight), and its intent is on the ledger before the line is read. (Only while
etcd takes writes and no budget holds: a pass that cannot record a trigger plans nothing and retries.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tests.e2e.harness import E2E, wait_for

_PASS = re.compile(r"reconcile revision=(\d+) .*\bactions=(\d+) .*\bin_flight=(\d+) .*\bleader=True\b")


def settled_at(log_path: Path, revision: int) -> int | None:
    """The revision of the first idle leader pass at or after ``revision`` in the log, or None."""
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    for match in _PASS.finditer(text):
        seen, actions, in_flight = (int(g) for g in match.groups())
        if seen >= revision and actions == 0 and in_flight == 0:
            return seen
    return None


def wait_settled(log_path: Path, revision: int, timeout_s: float = 60.0) -> int:
    """Until the watcher logging to ``log_path`` has had an idle leader pass at or after ``revision``; fails naming
    the log's last lines."""
    try:
        return wait_for(lambda: settled_at(log_path, revision), timeout_s, f"an idle pass at revision >= {revision}")
    except AssertionError as exc:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:] if log_path.exists() else []
        raise AssertionError(f"{exc}; {log_path.name}:\n" + "\n".join(tail)) from None


def wait_runs_settled(e2e: E2E, log_name: str, runs: Iterable[tuple[str, ...]], timeout_s: float = 60.0) -> int:
    """Until the watcher logging to ``<work dir>/<log_name>.log`` has had an idle leader pass that saw the newest of
    the run-state records ``runs`` names (each ``(dag_id, partition)`` or ``(dag_id, partition, instance)``)."""
    named = list(runs)
    revision = max(e2e.read_run(*run)[1] for run in named)
    assert revision > 0, f"none of these run-state records exists: {named}"
    return wait_settled(e2e.work_dir / f"{log_name}.log", revision, timeout_s)
