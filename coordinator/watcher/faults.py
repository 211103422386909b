"""Crash points for tests: a watcher that dies at an exact step of the trigger protocol. TEST-ONLY.

A kill from outside (SIGKILL after a log line appeared) lands some milliseconds after the step it aims at, so a test
of "the intent was recorded and Airflow never called" could not be sure it tested that. ``crash_point(name)`` marks
such a step in the production code; it does nothing unless the environment variable ``COORDINATOR_CRASH_AT`` names
it, and then the process exits at once with :data:`CRASH_EXIT_CODE`, like a power cut: no cleanup, no resignation,
no flushing of anything but the one log line that says where it died.

Rules:
1. ``COORDINATOR_CRASH_AT=<name>`` crashes at the first time ``crash_point(<name>)`` runs; ``<name>:<n>`` at the
   n-th time (n >= 1). Any other name, or no variable, and every crash point is inert (one comparison).
2. The variable is read once, at import: a test sets it in the watcher's environment when it starts the process.
3. Names in use: ``after-intent`` (the intent is committed in the ledger; no Airflow call yet) and
   ``after-airflow-call`` (Airflow answered the create or clear; the ledger still says pending).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: The variable that names the crash point (and optionally which hit of it) to die at.
CRASH_AT_ENV = "COORDINATOR_CRASH_AT"
#: The exit status of a crash point: distinct from a Python error (1), a signal (negative) and a clean stop (0).
CRASH_EXIT_CODE = 86


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, sep, nth = value.partition(":")
    if not sep:
        return name, 1
    if not nth.isdigit() or int(nth) < 1:
        raise ValueError(f"{CRASH_AT_ENV}={value!r}: expected <name> or <name>:<n> with n >= 1")
    return name, int(nth)


_TARGET = _parse(os.environ.get(CRASH_AT_ENV))
_hits = 0


def crash_point(name: str) -> None:
    """Exit the process now (status 86) if ``COORDINATOR_CRASH_AT`` names this point and this is the chosen hit."""
    global _hits
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits += 1
    if _hits == _TARGET[1]:
        log.critical("fault.crash point=%s hit=%d exit_code=%d", name, _hits, CRASH_EXIT_CODE)
        logging.shutdown()  # the line above must reach the log file; nothing else is flushed or closed
        os._exit(CRASH_EXIT_CODE)
