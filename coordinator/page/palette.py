"""The page's drawing sizes and state colours, shared by the DAG nodes (``page.render``) and the shared assets'
nodes (``page.render_assets``)."""

from __future__ import annotations

from coordinator.page.model import NodeState

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 190, 54, 80, 22, 20

#: Fill and stroke per state: the palette of Airflow's own state colours where one exists.
COLOURS: dict[NodeState, tuple[str, str]] = {
    NodeState.SUCCEEDED: ("#c8efc8", "#008000"),
    NodeState.RUNNING: ("#cdeffd", "#00a0e0"),
    NodeState.QUEUED: ("#e5e5e5", "#808080"),
    NodeState.FAILED: ("#ffd0d0", "#d00000"),
    NodeState.WAITING: ("#ffffff", "#b0b0b0"),
    NodeState.STALE: ("#fff1c2", "#c89a00"),
    NodeState.DUE: ("#ffe0b3", "#ff8c00"),
    NodeState.HELD: ("#e3e8f0", "#3f5170"),
    NodeState.TRIGGERED: ("#e8dcff", "#7b50d0"),
    NodeState.ERROR: ("#ff9e9e", "#800000"),
    NodeState.NOT_RUN: ("#f7f7f7", "#d0d0d0"),
}

#: The shared asset's own colours (fill, stroke): a teal no DAG state uses, so an asset never reads as a DAG.
ASSET_COLOURS = ("#dff3f0", "#00796b")
