"""What ``status`` and ``why`` say about operators' holds (``core/holds.py``).

Rules:
- **The hold by name.** A key a standing hold covers is explained by the first hold that covers it (``HoldSet``'s
  **First hold wins the name**): "held by hold H since T by alice: REASON", and the command that releases it.
- **Pure.** Lines from values; ``now`` is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from coordinator.core.graph import Graph
from coordinator.core.holds import Hold, HoldSet
from coordinator.core.model import NodeId


def status_lines(holds: Iterable[Hold], now: datetime) -> list[str]:
    """One line per standing hold, oldest first, for ``status``'s header."""
    standing = sorted((h for h in holds if h.standing(now)), key=lambda h: (h.created_at, h.id))
    lines = []
    for h in standing:
        below = " and every DAG below" if h.downstream else ""
        lines.append(f"hold {h.id}: {h.selector.text}{below}, {h.span()}: {h.describe()}")
    return lines


def why_line(graph: Graph, holds: Iterable[Hold], node: NodeId, partition: str, now: datetime) -> str | None:
    """**The hold by name**: the line ``why`` prints when a standing hold covers ``node``'s ``partition``."""
    held = HoldSet(graph, [h for h in holds if h.standing(now)]).held_by(node, partition)
    if held is None:
        return None
    return f"hold: nothing is triggered or cleared for {node} {partition}: {held.describe()}"
