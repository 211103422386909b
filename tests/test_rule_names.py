"""Rules are referred to by name (docs/architecture.md, "How rules are named"): every ``semantics `name` `` the package
cites is an anchor of docs/semantics.md, and every anchor there is in its "Rules by name" list."""

from __future__ import annotations

import re
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
