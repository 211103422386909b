"""Read ``dependencies.json`` from disk: the shell around the pure parser
:func:`coordinator.core.spec.loader.parse_spec`.

Rules:
- **The only reader.** The only file reading of the spec: the watcher, the CLI and the dev tools load the file here, so
  every one of them judges it exactly the same way; ``coordinator.core`` gets text and a source name, never a path.
- **Unreadable is a spec error.** An unreadable or non-UTF-8 file is a :class:`~coordinator.errors.SpecError` in the
  same ``<file>: <what> — <how to fix it>`` shape as the parser's problems, never an OSError.
"""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.core.graph import Graph
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import SpecError


def read_spec_text(path: str | os.PathLike[str]) -> str:
    """The file's text; raise SpecError when it cannot be read or is not UTF-8 (a leading BOM is dropped)."""
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = "check the path, or set --deps / COORDINATOR_DEPS"
        raise SpecError([f"{source}: cannot read the file: {reason} — {hint}"]) from exc
    try:
        return raw.decode("utf-8-sig")  # -sig: editors on Windows like to add a BOM
    except UnicodeDecodeError as exc:
        raise SpecError([f"{source}: byte {exc.start}: not UTF-8 text — save the file as UTF-8"]) from exc


def load_spec(path: str | os.PathLike[str]) -> Graph:
    """Read and validate a dependencies file; raise SpecError (also for an unreadable or non-UTF-8 file)."""
    return parse_spec(read_spec_text(path), os.fspath(path))
