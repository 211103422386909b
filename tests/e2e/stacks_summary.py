"""The end of a pytest run names the metadata database of each Airflow stack the end-to-end tests started.

Rules:
1. A fixture calls :func:`record` with the stack's name and its database (``AirflowStack.database``: a SQLAlchemy
   URL, or the SQLite file's path). pytest captures what fixtures print and shows nothing an xdist worker prints, so
   the names travel as data instead.
2. Under xdist a worker hands its list to the controller in ``workeroutput`` at the end of its session; the
   controller collects it when the worker goes down (``pytest_testnodedown``). Without xdist the list stays where it
   was recorded.
3. ``pytest_terminal_summary`` prints one line, nothing when no stack was recorded::

       airflow stacks: airflow 3.3 shared -> postgresql db=airflow_shared_1a2b3c on 127.0.0.1:41234; ...

These hooks are registered by ``tests/conftest.py`` (``pytest_plugins``): under xdist the controller collects no
test, so it never loads ``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

STACKS = pytest.StashKey[list[str]]()
#: The key of a worker's list in ``workeroutput`` (which execnet sends as plain data).
WORKEROUTPUT_KEY = "airflow_stacks"


def describe(database: str) -> str:
    """``postgresql db=NAME on HOST:PORT`` for a PostgreSQL URL, ``sqlite FILE`` for a path, else the URL."""
    if "://" not in database:
        return f"sqlite {database}"
    parts = urllib.parse.urlsplit(database)
    if parts.scheme.split("+", 1)[0] == "postgresql":
        return f"postgresql db={parts.path.lstrip('/')} on {parts.hostname}:{parts.port}"
    return database


def record(config: pytest.Config, name: str, database: str) -> None:
    """Remember that the stack ``name`` keeps its metadata in ``database`` (named at the end of the run)."""
    config.stash.setdefault(STACKS, []).append(f"{name} -> {describe(database)}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand this worker's stacks to the controller (rule 2)."""
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[WORKEROUTPUT_KEY] = session.config.stash.get(STACKS, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the xdist controller: keep the stacks of a worker that finished (a worker that crashed sends none)."""
    del error
    stacks: list[str] = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY, [])
    node.config.stash.setdefault(STACKS, []).extend(stacks)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line naming each stack's database (rule 3)."""
    stacks = config.stash.get(STACKS, [])
    if stacks:
        terminalreporter.write_line("airflow stacks: " + "; ".join(stacks))
