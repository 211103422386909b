"""The reviewable unified diff of ``import-dags --rewrite``: one per changed file, in the form ``git apply`` and
``patch -p1`` read.

Rules:
- **Paths as ``git diff`` writes them.** ``a/PATH`` and ``b/PATH``, PATH relative to the directory the command ran in
  (as the folder was given), so ``patch -p1 -i rewrite.diff`` from that directory applies it (``git apply`` too, from
  the top of a git checkout or outside one: inside a repository it reads the paths from its top).
- **Files in order.** Files in sorted order, so the same folder gives the same diff.
- **Pure**: texts in, text out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unified_diff(changes: Iterable[tuple[str, str, str]]) -> str:
    """The diff of ``(path, old text, new text)`` for every file whose text changed (**Paths as git diff writes them**,
    **Files in order**)."""
    parts: list[str] = []
    for path, old, new in sorted(changes):
        if old == new:
            continue
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
        parts.append(f"diff --git a/{path} b/{path}\n")
        for line in lines:
            parts.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(parts)
