"""Rules are referred to by name (docs/architecture.md, "How rules are named"): every ``semantics `name` `` the package
cites is an anchor of docs/semantics.md, and every anchor there is in its "Rules by name" list."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEMANTICS = ROOT / "docs" / "semantics.md"
#: A MyST target on a line of its own, possibly as the first line of a list item: ``(dag-due)=``, ``5. (dag-due)=``.
ANCHOR_RE = re.compile(r"^\s*(?:\d+\.\s+|-\s+)?\(([a-z0-9-]+)\)=\s*$", re.MULTILINE)
#: ``semantics `a` `` and ``semantics `a`, `b` and `c` ``: the word, then one or more backticked names.
CITATION_RE = re.compile(r"[Ss]emantics((?:,? (?:and |or |to )?`[a-z0-9-]+`)+)")


def anchors() -> set[str]:
    return set(ANCHOR_RE.findall(SEMANTICS.read_text(encoding="utf-8")))


def citations() -> dict[str, list[str]]:
    """Each name cited as ``semantics `name` `` in the package, with the files that cite it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "coordinator").rglob("*.py")):
        for match in CITATION_RE.finditer(path.read_text(encoding="utf-8")):
            for name in re.findall(r"`([a-z0-9-]+)`", match.group(1)):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_rule_the_package_cites_by_name_is_an_anchor_of_the_semantics() -> None:
    """No ``semantics `name` `` in coordinator/ names a rule that docs/semantics.md does not anchor."""
    known = anchors()
    cited = citations()
    assert cited, "no semantics citation found at all: the pattern no longer matches the code"
    unknown = {name: files for name, files in cited.items() if name not in known}
    assert not unknown, f"cited but not anchored in {SEMANTICS.name}: {unknown}"


def test_every_anchor_of_the_semantics_is_in_its_rules_by_name_list() -> None:
    """The "Rules by name" list links every anchor the page defines, so a name is found in one place."""
    text = SEMANTICS.read_text(encoding="utf-8")
    listed = set(re.findall(r"\(#([a-z0-9-]+)\)", text.split("## Rules by name", 1)[1].split("\n## ", 1)[0]))
    missing = anchors() - listed
    assert len(anchors()) > 50, "the anchors were not found: the target pattern no longer matches the page"
    assert not missing, f"anchored in {SEMANTICS.name} but not in its 'Rules by name' list: {sorted(missing)}"


#: A bare number: "rule 5", "Rule 1a", "rules 1-4", "rules 2 and 3" (also "semantics rule 13"), never a name.
BARE_NUMBER_RE = re.compile(r"\b[Rr]ules? \d+[a-z]?\b")
#: Modules other helpers of issue 49 are still converting; each leaves this list once it cites by name. Text a
#: command prints (``cli/engine_cmds.py``'s backfill refusals, the JSON Schema's descriptions in
#: ``core/spec/schema.py``) is output, not a citation: only docstrings and comments are read.
NOT_YET_NAMED = frozenset({
    "coordinator/watcher/actuator.py",
    "coordinator/watcher/deliveries.py",
    "coordinator/watcher/executor.py",
})  # fmt: skip


def prose(source: str) -> list[tuple[int, str]]:
    """Every comment and every string that stands as a statement (module, class, function and attribute
    docstrings) of ``source``, with its first line: what cites a rule, as opposed to what the code prints."""
    found = [
        (node.lineno, node.value.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    ]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    found += [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]
    return sorted(found)


def bare_numbers(root: Path) -> list[str]:
    """``path:line: rule N`` for every bare rule number cited in the docstrings and comments under ``root``."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name in NOT_YET_NAMED:
            continue
        for line, text in prose(path.read_text(encoding="utf-8")):
            hits += [f"{name}:{line}: {match}" for match in BARE_NUMBER_RE.findall(text)]
    return hits


def test_no_module_cites_a_rule_by_a_bare_number() -> None:
    """No docstring or comment in coordinator/ cites "rule N" or "rules N-M": a rule is named (docs/architecture.md,
    "How rules are named"), so a reader finds it in one list and a renumbering breaks nothing."""
    assert prose('"""rule 1"""\n# rule 2\nprint("rule 3")\n') == [(1, "rule 1"), (2, "# rule 2")]
    hits = bare_numbers(ROOT / "coordinator")
    assert not hits, "cite the rule's name instead of its number:\n" + "\n".join(hits)
