"""``devtools.code_counts`` counts long functions, their stated reasons, wide imports and the grep lines of a tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devtools.code_counts import counts

ROOT = Path(__file__).resolve().parent.parent


def _body(lines: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(lines))


def _tiny_tree(tmp_path: Path) -> Path:
    pkg = tmp_path / "coordinator"
    for folder in ("", "informer", "watcher", "manager", "wide"):
        (pkg / folder).mkdir(parents=True, exist_ok=True)
        (pkg / folder / "__init__.py").write_text("")
    for i in range(13):
        (pkg / "wide" / f"m{i}.py").write_text("")
    # 80 lines exactly is not long; 81 is; a decorator does not count; a method is named with its class.
    (pkg / "long.py").write_text(
        "def short():\n"
        + _body(79)
        + "\n@staticmethod\ndef long_one():\n"
        + _body(80)
        + "\nclass C:\n    def long_reasoned(self):\n"
        + '        """Long because it is one table of cases."""\n'
        + "".join(f"        y{i} = {i}\n" for i in range(79))
        + "# issue 7 and Issue 8 are history\n"
    )
    imports = "".join(f"from coordinator.wide import m{i}\n" for i in range(12))
    (pkg / "narrow.py").write_text(imports)
    (pkg / "broad.py").write_text(imports + "def f():\n    from .wide import m12\n    import coordinator.long\n")
    (pkg / "informer" / "a.py").write_text("isinstance(1, int)\nisinstance(2, int)\n")
    (pkg / "watcher" / "b.py").write_text("datetime.now(UTC)\n")
    (pkg / "manager" / "c.py").write_text("datetime.now(UTC)\ntime.monotonic()\n")
    return tmp_path


def test_counts_of_a_tiny_tree(tmp_path: Path) -> None:
    """Each count follows its documented definition on a tree built to sit on each boundary."""
    result = counts(_tiny_tree(tmp_path))
    assert [(f.name, f.line, f.length, f.has_reason) for f in result.long_functions] == [
        ("coordinator.long.long_one", 83, 81, False),
        ("coordinator.long.C.long_reasoned", 166, 81, True),
    ]
    assert result.with_reason == 1
    assert [(m.module, m.imports) for m in result.wide_modules] == [("coordinator.broad", 14)]
    assert (result.informer_isinstance, result.watcher_manager_now, result.issue_tags) == (2, 2, 1)


def test_the_command_prints_the_counts(tmp_path: Path) -> None:
    """``python -m devtools.code_counts --tree DIR`` prints the same counts as lines."""
    tree = _tiny_tree(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "devtools.code_counts", "--tree", str(tree)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "functions over 80 lines: 2 (1 state a reason)" in out
    assert "    81  coordinator.long.long_one  coordinator/long.py:83" in out
    assert "    14  coordinator.broad" in out
    assert "isinstance in coordinator/informer: 2" in out
