"""The assets how-to's worked example (docs/howto/assets.md), read from the page: the graph it tells a user to write
passes the real `coordinator validate`, and its route carries team_a's orders assets to team_b."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from coordinator.runtime.spec_file import load_spec

PAGE = Path(__file__).resolve().parents[1] / "docs" / "howto" / "assets.md"


def test_the_assets_worked_example_is_a_valid_graph_routing_team_as_orders_to_team_b(tmp_path: Path) -> None:
    """The page's JSON block, saved as dependencies.json, passes `coordinator validate` (exit 0) and loads as one
    route from team_a to team_b for `s3://lake/orders*`."""
    section = PAGE.read_text(encoding="utf-8").split("**Worked example.**", 1)[1]
    found = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert found is not None, f"{PAGE}: the worked example's JSON block is missing"
    path = tmp_path / "dependencies.json"
    path.write_text(found.group(1), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (route,) = load_spec(path).asset_routes
    assert (route.pattern, route.source, route.targets) == ("s3://lake/orders*", "team_a", ("team_b",))
