"""The code's size counts for a tree's ``coordinator/`` package, each a fixed definition so two trees compare.

``python -m devtools.code_counts [--tree DIR]`` (default: the current directory) prints:

- **Long functions**: every function or method whose length is over 80 lines. A function's length is its ``def``
  line (decorators not counted) to the last line of its body, both included: ``end_lineno - lineno + 1`` of the
  ``ast`` node. A nested function counts on its own and inside its parent.
- **Stated reasons**: how many of those long functions say why in their docstring: a docstring containing the
  marker ``Long because`` (any case), e.g. "Long because it is one table of cases a test enumerates."
- **Wide imports**: modules importing more than 12 distinct other ``coordinator`` modules, counting module-level and
  function-level imports alike (``from coordinator.x import y`` counts ``coordinator.x``, or ``coordinator.x.y`` when
  that is a module of the tree; a relative import is resolved against the importing module).
- **grep equivalents**, line counts: ``isinstance`` in ``coordinator/informer``, ``datetime.now`` in
  ``coordinator/watcher`` and ``coordinator/manager``, and ``issue [0-9]`` in ``coordinator`` in any case ("Issue 51"
  is the same tag): the lines ``grep -rn`` (``grep -rni`` for the last) finds in ``*.py`` files.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LONG_LINES = 80
WIDE_IMPORTS = 12
REASON_MARKER = "long because"


@dataclass(frozen=True)
class LongFunction:
    """A function over ``LONG_LINES`` lines: its qualified name, where its ``def`` is, its length."""

    name: str
    path: str
    line: int
    length: int
    has_reason: bool


@dataclass(frozen=True)
class WideModule:
    """A module importing more than ``WIDE_IMPORTS`` other coordinator modules."""

    module: str
    imports: int


@dataclass(frozen=True)
class Counts:
    """Every count of one tree."""

    long_functions: tuple[LongFunction, ...]
    wide_modules: tuple[WideModule, ...]
    informer_isinstance: int
    watcher_manager_now: int
    issue_tags: int

    @property
    def with_reason(self) -> int:
        return sum(1 for f in self.long_functions if f.has_reason)


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if p.is_file())


def _module_name(tree: Path, path: Path) -> str:
    parts = list(path.relative_to(tree).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _functions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from _functions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def long_functions(tree: Path) -> list[LongFunction]:
    """Every function of ``tree/coordinator`` longer than ``LONG_LINES``, in file and line order."""
    found: list[LongFunction] = []
    for path in _python_files(tree / "coordinator"):
        parsed = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(parsed, ""):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > LONG_LINES:
                doc = ast.get_docstring(node) or ""
                found.append(
                    LongFunction(
                        name=f"{_module_name(tree, path)}.{name}",
                        path=str(path.relative_to(tree)),
                        line=node.lineno,
                        length=length,
                        has_reason=REASON_MARKER in doc.lower(),
                    )
                )
    return found


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base_parts = package[: len(package) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    names = {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known}
    return names or {base}


def wide_modules(tree: Path) -> list[WideModule]:
    """Modules of ``tree/coordinator`` importing more than ``WIDE_IMPORTS`` distinct other coordinator modules."""
    files = _python_files(tree / "coordinator")
    known = {_module_name(tree, p) for p in files}
    found: list[WideModule] = []
    for path in files:
        module = _module_name(tree, path)
        parsed = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(parsed):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets |= _imported(module, path.name == "__init__.py", node, known)
        others = {t for t in targets if (t == "coordinator" or t.startswith("coordinator.")) and t != module}
        if len(others) > WIDE_IMPORTS:
            found.append(WideModule(module=module, imports=len(others)))
    return sorted(found, key=lambda m: (-m.imports, m.module))


def grep_count(tree: Path, pattern: str, folders: Sequence[str], *, ignore_case: bool = False) -> int:
    """Lines of ``*.py`` files under ``folders`` matching ``pattern``, as ``grep -rn`` (``-i``) counts them."""
    regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    total = 0
    for folder in folders:
        root = tree / folder
        if not root.is_dir():
            continue
        for path in _python_files(root):
            total += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if regex.search(line))
    return total


def counts(tree: Path) -> Counts:
    """Every count of ``tree``."""
    return Counts(
        long_functions=tuple(long_functions(tree)),
        wide_modules=tuple(wide_modules(tree)),
        informer_isinstance=grep_count(tree, r"isinstance", ["coordinator/informer"]),
        watcher_manager_now=grep_count(tree, r"datetime\.now", ["coordinator/watcher", "coordinator/manager"]),
        issue_tags=grep_count(tree, r"issue [0-9]", ["coordinator"], ignore_case=True),
    )


def render(result: Counts) -> str:
    """The report ``main`` prints."""
    lines = [f"functions over {LONG_LINES} lines: {len(result.long_functions)} ({result.with_reason} state a reason)"]
    lines += [
        f"  {f.length:4d}  {f.name}  {f.path}:{f.line}{'  (reason stated)' if f.has_reason else ''}"
        for f in sorted(result.long_functions, key=lambda f: (-f.length, f.name))
    ]
    lines.append(f"modules importing more than {WIDE_IMPORTS} coordinator modules: {len(result.wide_modules)}")
    lines += [f"  {m.imports:4d}  {m.module}" for m in result.wide_modules]
    lines.append(f"isinstance in coordinator/informer: {result.informer_isinstance}")
    lines.append(f"datetime.now in coordinator/watcher coordinator/manager: {result.watcher_manager_now}")
    lines.append(f"'issue [0-9]' (any case) in coordinator: {result.issue_tags}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.code_counts", description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(), help="a checkout holding coordinator/ (default: .)")
    args = parser.parse_args(argv)
    tree: Path = args.tree
    if not (tree / "coordinator").is_dir():
        parser.error(f"{tree} has no coordinator/ package")
    sys.stdout.write(render(counts(tree)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
