"""``coordinator <args>`` run inside the test process: the console script's own ``main()`` (so an escaped error is
still ``error: ...`` and exit 2), with stdout, stderr, stdin, ``sys.argv``, the environment and the working directory
swapped for the call (click's ``CliRunner.isolation``), answered as the ``subprocess.CompletedProcess`` a subprocess
run would give.

Why: a ``python -m coordinator.cli`` subprocess costs about 0.6 s of CPU (the interpreter and the imports) before
the command does anything; the fast test set starts hundreds. Tests whose claim is about a command's answer, not
about a process, call this instead. What differs from a subprocess, so a test that depends on it keeps its
subprocess: no timeout of its own (pytest-timeout still applies); log lines go to pytest's log capture, not to
stderr (the root logger already has pytest's handlers, so the commands' ``logging.basicConfig`` adds none); a child
process the command starts with inherited output (``import-dags --verbose``'s loader) writes to the test process's
file descriptors, not to the captured streams; the command shares the test's process (its threads, its imported
modules, and an interpreter already started: ``sitecustomize`` or ``PYTHONPATH`` in ``env`` reach only the
command's own children); and the call is not thread-safe (it swaps ``sys.stdout``, ``os.environ`` and the working
directory); the cyclic GC is off for the call (a process start's imports freeze what is alive, ``runtime.frozen_gc``:
here that would be the test's objects). What a command changes in the logging module (``doctor`` sets the
``coordinator`` logger to CRITICAL, ``reconcile`` quiets ``httpx``) is put back after the call, so it cannot silence a
later test's ``caplog``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner

from coordinator.cli import main


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``coordinator <args>`` in this process. ``env`` is the whole environment, as ``subprocess.run`` takes
    it (variables of ``os.environ`` it lacks are unset for the call); ``None`` keeps ``os.environ``."""
    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {key: None for key in os.environ if key not in env}
        overrides.update(env)
    argv = sys.argv
    code: int | str | None = 0
    isolation = CliRunner().isolation(input=input, env=overrides)
    with _logging_restored(), _environment_restored(), _collector_held_off(), isolation as (stdout, stderr, _):
        sys.argv = ["coordinator", *args]
        try:
            with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
                main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = argv
            sys.stdout.flush()
            sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    if code is None:
        code = 0
    elif isinstance(code, str):  # sys.exit("message"): the message goes to stderr and the code is 1, as in Python
        err, code = err + code + "\n", 1
    return subprocess.CompletedProcess(["coordinator", *args], code, out, err)


@contextlib.contextmanager
def _collector_held_off() -> Iterator[None]:
    """The cyclic GC off for the call, as it was after: ``main()`` then leaves it alone (``runtime.frozen_gc``'s
    **Not a process that manages its own**) instead of freezing the test process's objects alive at that moment."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def _environment_restored() -> Iterator[None]:
    """``os.environ`` as it was before, what the call itself set included (``main()`` sets ``GRPC_VERBOSITY``): click's
    isolation restores only the variables it was given, and a variable the first call of a process set stayed."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in os.environ.keys() - saved.keys():
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Every logger's level, ``disabled`` and ``propagate`` and the root logger's handlers as they were before."""
    root = logging.getLogger()
    before = {name: (lg.level, lg.disabled, lg.propagate) for name, lg in _loggers().items()}
    root_state, handlers = (root.level, root.disabled), list(root.handlers)
    try:
        yield
    finally:
        for name, logger in _loggers().items():
            level, logger.disabled, logger.propagate = before.get(name, (logging.NOTSET, False, True))
            logger.setLevel(level)  # setLevel, not the attribute: it clears the loggers' cached levels
        root.disabled = root_state[1]
        root.setLevel(root_state[0])
        root.handlers[:] = handlers


def _loggers() -> dict[str, logging.Logger]:
    return {name: lg for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
