"""What the dependencies page says about operators' holds (``core/holds.py``).

Rules:
- **The hold by name.** A DAG a standing hold covers for the drawn partition says so first: its summary (the node's
  tooltip) leads with "held by H: REASON", its detail with the line ``why`` prints ("hold: nothing is triggered or
  cleared for D P: held by hold H since T by alice: REASON; ...", ``explain/holds.py``). The first hold by creation
  is named (``HoldSet``'s **First hold wins the name**), as in ``status`` and ``why``. A due DAG it covers is drawn
  *held*, not *due*, as ``status`` says HELD for it (``explain.report.held_status``): the leader starts nothing
  there.
- **Pure.** Values in, a page model out; ``now`` (the decision's clock) is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from coordinator.core.graph import Graph
from coordinator.core.holds import Hold, HoldSet
from coordinator.page.model import NodeState, PageModel


def with_holds(model: PageModel, graph: Graph, holds: Sequence[Hold], now: datetime) -> PageModel:
    """**The hold by name** for each DAG of ``model`` a standing hold covers in the drawn partition."""
    partition = model.partition
    standing = [h for h in holds if h.standing(now)]
    if partition is None or not standing:
        return model
    held = HoldSet(graph, standing)
    nodes = []
    for node in model.nodes:
        hold = held.held_by(node.node, partition)
        if hold is not None:
            line = f"hold: nothing is triggered or cleared for {node.node} {partition}: {hold.describe()}"
            node = replace(node, summary=f"held by {hold.id}: {hold.reason}; {node.summary}", why=(line, *node.why))
            if node.state is NodeState.DUE:  # the run the leader would start now: the hold keeps it back
                node = replace(node, state=NodeState.HELD)
        nodes.append(node)
    return replace(model, nodes=tuple(nodes))
