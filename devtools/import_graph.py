"""The package's import graph: folders, the arrows between them, and the circles among modules.

``python -m devtools.import_graph [--tree DIR]`` reads every module of ``coordinator/`` (of this checkout, or of
``--tree``, e.g. a tree before a change) and prints:

- each folder (a package directly under ``coordinator/``; ``coordinator/core/deadline`` is its own folder, as every
  sub-package) with its module count, and the folders it imports, with how many module-to-module imports each arrow
  stands for;
- the circles: strongly connected groups of modules that import each other, counting imports inside functions too
  (a function-level import hides a circle from Python's import machinery, not from a reader), and the circles among
  folders.

Imports under ``if TYPE_CHECKING:`` are left out (they exist for the type checker only), unless ``--type-checking``
counts them too: a type-only import is still an arrow a reader follows and a circle the type checker walks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = "coordinator"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    found: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str], *, type_checking: bool = False) -> set[str]:
    """The package's modules ``name`` imports (at module level or in a function), outside TYPE_CHECKING blocks unless
    ``type_checking``."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    if not type_checking:
        skipped = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)
        }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports the module; the package's ``__init__`` runs on any import of
            # one of its modules anyway, so it counts only when a name is taken from the package itself.
            names = [f"{base}.{alias.name}" for alias in node.names]
            targets = names + ([base] if any(n not in known for n in names) else [])
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def folder_of(module: str, packages: set[str]) -> str:
    """The innermost package holding ``module`` (a package's ``__init__`` belongs to the package itself)."""
    if module in packages:
        return module
    return module.rpartition(".")[0]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--type-checking", action="store_true", help="count imports under TYPE_CHECKING too")
    args = parser.parse_args()
    found = modules(args.tree)
    known = set(found)
    packages = {name for name, path in found.items() if path.name == "__init__.py"}
    graph = {name: imports_of(name, path, known, type_checking=args.type_checking) for name, path in found.items()}
    sizes: dict[str, int] = defaultdict(int)
    arrows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, targets in graph.items():
        here = folder_of(name, packages)
        sizes[here] += 1
        for target in targets:
            there = folder_of(target, packages)
            if there != here:
                arrows[here][there] += 1
    out = sys.stdout
    edges = sum(len(t) for t in arrows.values())
    out.write(f"{len(found)} modules in {len(sizes)} folders, {edges} arrows between folders" + "\n")
    for folder in sorted(sizes):
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(arrows[folder].items()))
        out.write(f"- {folder} [{sizes[folder]}] -> {shown or '-'}" + "\n")
    module_circles = circles(graph)
    folder_graph = {folder: set(targets) for folder, targets in arrows.items()}
    folder_circles = circles(folder_graph)
    out.write(f"module circles: {len(module_circles)}" + "\n")
    for group in module_circles:
        out.write("  " + " <-> ".join(group) + "\n")
    out.write(f"folder circles: {len(folder_circles)}" + "\n")
    for group in folder_circles:
        out.write("  " + " <-> ".join(group) + "\n")


if __name__ == "__main__":
    main()
