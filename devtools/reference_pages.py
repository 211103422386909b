"""The generated reference pages, written into the checkout: ``python -m devtools.reference_pages`` (``make
reference``) rewrites every generated section of ``docs/reference/*.md`` from the code (``docs/_ext/
coordinator_reference.py`` writes them, the same text the site shows), so a reader of the checkout or of the examples
archive in ``dist/`` finds the CLI, the settings, the metrics and the schema without building the site.

``--check`` writes nothing and exits 1 naming each page whose committed text is not what the code writes now (the
command to run is in its message); tests/test_reference_pages.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "docs" / "reference"
#: The command that rewrites the pages, as every message names it.
COMMAND = "python -m devtools.reference_pages (make reference)"


def generator() -> ModuleType:
    """The Sphinx extension that writes the sections (it lives beside the site's configuration, not in a package)."""
    sys.path.insert(0, str(REPO / "docs" / "_ext"))
    try:
        return importlib.import_module("coordinator_reference")
    finally:
        sys.path.pop(0)


def stale(pages: Path = PAGES) -> dict[Path, str]:
    """Every page with a generated section whose committed text differs from what the code writes now: its new text."""
    reference = generator()
    found: dict[Path, str] = {}
    for page in sorted(pages.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new, names = reference.render(text, str(page))
        if names and new != text:
            found[page] = new
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.reference_pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    args = parser.parse_args(argv)
    changed = stale()
    for page, text in changed.items():
        where = page.relative_to(REPO)
        if args.check:
            sys.stdout.write(f"{where}: stale: its generated text is not what the code writes now; run {COMMAND}\n")
        else:
            page.write_text(text, encoding="utf-8")
            sys.stdout.write(f"{where}: rewritten\n")
    if not changed:
        sys.stdout.write("docs/reference: every generated section is up to date\n")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
