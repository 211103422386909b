"""The OpenLineage worked example of docs/howto/openlineage.md, read from the page itself so the tests that hold it
(the spec, the receiver's ignored jobs, the scenario) cannot drift from what the docs tell a user to write."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "openlineage.md"
#: The page's worked example section.
SECTION = PAGE.read_text(encoding="utf-8").split("# Waiting for dbt, Spark and other jobs", 1)[1].split("\n## ", 1)[0]


def example() -> dict[str, Any]:
    """The example's dependencies.json (the section's first JSON block), a fresh copy each call."""
    found = re.search(r"```json\n(.*?)\n```", SECTION, re.DOTALL)
    assert found is not None, f"{PAGE}: the worked example's JSON block is missing"
    graph: dict[str, Any] = json.loads(found.group(1))
    return graph


#: The example's `why` line, as a user pastes it (GNU date; `coordinator` is the installed command).
WHY = next(line for line in SECTION.splitlines() if line.startswith("coordinator why team_b/report"))
