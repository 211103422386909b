"""Only the informer writes the read model (issue 49; ``coordinator/informer/expectations.py``'s **Only the informer
writes the model**): outside ``coordinator/informer/`` (the informer, its indexes and followers) and
``coordinator/core/`` (the model's own types), no module calls a mutating method of the view or an index, nor assigns
to one of their attributes. import-linter cannot say "who may call ``View.apply``", so this test reads the code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "coordinator"
#: Where the model is defined (core) and filled (informer).
ALLOWED = (PACKAGE / "informer", PACKAGE / "core")
#: The methods by which the view and the indexes change (``informer.Index``, ``core/view.py``, the followers).
#: (``View.intern_nodes`` is not one: it shares the graph's node objects, the model's content stays the same.)
MUTATORS = frozenset({"apply", "load", "load_page", "end_load", "reset", "passed", "follow", "observe", "forget"})
#: What the read model's parts are called wherever they are held (``self.view``, ``index``, ``job.tracker``...).
MODEL_NAMES = frozenset({"view", "heads_view", "index", "assets", "deadlines", "tracker", "running", "holds"})


def _receiver(node: ast.expr) -> str | None:
    """The last name of a receiver: ``self.view`` -> ``view``, ``job.tracker`` -> ``tracker``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def model_writes(source: str) -> list[tuple[int, str]]:
    """(line, text) of each call of a mutator on, or assignment to an attribute of, a model part in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        call = node.func if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        if call is not None and call.attr in MUTATORS and _receiver(call.value) in MODEL_NAMES:
            found.append((call.lineno, ast.unparse(call)))
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and _receiver(target.value) in MODEL_NAMES:
                found.append((target.lineno, ast.unparse(target)))
    return found


def test_no_module_outside_the_informer_and_core_writes_into_the_read_model() -> None:
    """Every module of the package outside ``informer/`` and ``core/`` is free of model writes (named with path and
    line when one appears)."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path.is_relative_to(allowed) for allowed in ALLOWED)
        for line, text in model_writes(path.read_text())
    ]
    assert not offenders, "model writes outside the informer:\n" + "\n".join(offenders)


def test_the_check_sees_each_kind_of_model_write() -> None:
    """The reader finds a mutator call on a held view, on an index, and an attribute assignment, and nothing in a
    read or in a call of the same name on something that is not the model."""
    source = (
        "self.view.apply(k, v, 1)\n"
        "index.apply(k, None, 2)\n"
        "job.tracker.observe(view, k, v, 3)\n"
        "view.revision = 4\n"
        "x = self.view.activation\n"
        "store.apply(k)\n"
    )
    assert sorted(line for line, _ in model_writes(source)) == [1, 2, 3, 4]
