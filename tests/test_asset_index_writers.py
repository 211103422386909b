"""Only the informer writes the asset index (``core/asset_index.py``'s **Newer changes only**): the leader's asset round
(``watcher/assets.py``) and the asset streams' reconciler (``watcher/deliveries.py``) call none of its feeding methods,
so their own writes reach the index through the watch like anyone's."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import coordinator

ROOT = Path(coordinator.__file__).resolve().parent
#: What feeds an index (``informer.Index``): only the informer calls these.
FEEDING = {"apply", "reset", "passed", "load_page", "add_items"}


@pytest.mark.parametrize("module", ["watcher/assets.py", "watcher/deliveries.py"], ids=["asset-round", "streams"])
def test_the_asset_reconcilers_never_feed_the_asset_index(module: str) -> None:
    """No call of a feeding method (``apply``, ``reset``, ``passed``, ...) appears in the module."""
    tree = ast.parse((ROOT / module).read_text())
    calls = [
        f"{module}:{node.lineno}: .{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FEEDING
    ]
    assert not calls, calls
