"""Crash points: named steps of the trigger protocol where a test can make the watcher die. Inert in production.

A kill from outside (SIGKILL after a log line appeared) lands some milliseconds after the step it aims at, so a test
of "the intent was recorded and Airflow never called" could not be sure it tested that. ``crash_point(name)`` marks
such a step in the shipped code, like etcd's gofail failpoints: it calls the hook a test installed with
:func:`install`, and does nothing else. No hook is ever installed by the package itself, nothing here reads the
environment, and the default costs one comparison. The hook that exits like a power cut (status
:data:`CRASH_EXIT_CODE`, no cleanup) lives with the tests, in ``tests/support/crash_watcher.py``.

Rules:
- **A hook or nothing.** ``crash_point(name)`` calls the installed hook with ``name``; without a hook it does nothing.
- **Names in use.** Names in use: ``after-intent`` (the intent is committed in the ledger; no Airflow call yet) and
  ``after-airflow-call`` (Airflow answered the create or clear; the ledger still says pending) and
  ``after-deadline-transition`` (a deadline transition is recorded; its handlers are not triggered yet),
  ``asset-after-intent`` (a delivery's pending entry is committed; nothing posted yet) and ``asset-after-post`` (the
  target created the event; the delivery ledger still says pending), ``lineage-after-write`` (the OpenLineage receiver
  committed an event's transaction; no answer sent yet).
"""

from __future__ import annotations

from collections.abc import Callable

#: The exit status the tests' crash hook uses: distinct from a Python error (1), a signal (negative) and a clean
#: stop (0), so a test knows the process died at the crash point and not of something else.
CRASH_EXIT_CODE = 86
#: The crash points of the trigger protocol (**Names in use**).
POINTS = (
    "after-intent",
    "after-airflow-call",
    "after-deadline-transition",
    "asset-after-intent",
    "asset-after-post",
    "lineage-after-write",
)

Hook = Callable[[str], None]
_hook: Hook | None = None


def install(hook: Hook | None) -> None:
    """Install (or, with None, remove) the hook every crash point calls. Tests only."""
    global _hook
    _hook = hook


def crash_point(name: str) -> None:
    """**A hook or nothing**: hand ``name`` to the installed hook, if any."""
    if _hook is not None:
        _hook(name)
