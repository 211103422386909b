"""The page's layered layout (``page.model``'s **Layered layout**), one function for DAGs and for the shared assets'
nodes.

Rules:
- **Columns by depth.** A node sits one column right of its rightmost source (column 0 without one).
- **Rows by barycentre.** Rows within a column by the mean row of the node's sources (one barycentre pass: few
  crossings), ties broken by the node's own order, so the drawing is deterministic.
- **Placed nodes stay.** Nodes already placed keep their place; new ones go below them in their column. The DAGs are
  laid out first and the shared assets after them (``page.assets``), so a route never moves a DAG.
- **Pure.** No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

    K = TypeVar("K", bound=SupportsRichComparison)
else:
    K = TypeVar("K")


def layered(
    order: Sequence[K],
    sources: Mapping[K, Sequence[object]],
    # Any: the DAGs placed first are keyed by NodeId, the nodes placed after them by their own type.
    placed: Mapping[Any, tuple[int, int]] | None = None,
) -> dict[K, tuple[int, int]]:
    """Node -> (column, row) for every node of ``order`` (sources before the nodes they feed), **Columns by depth**,
    **Rows by barycentre** and **Placed nodes stay**."""
    placed = placed or {}
    depth: dict[object, int] = {node: column for node, (column, _) in placed.items()}
    for node in order:
        depth[node] = 1 + max((depth[s] for s in sources.get(node, ()) if s in depth), default=-1)
    columns: dict[int, list[K]] = {}
    for node in order:
        columns.setdefault(depth[node], []).append(node)
    rows: dict[object, int] = {node: row for node, (_, row) in placed.items()}
    below: dict[int, int] = {}
    for column, row in placed.values():
        below[column] = max(below.get(column, 0), row + 1)
    for col in sorted(columns):

        def barycentre(node: K) -> tuple[float, K]:
            found = [rows[s] for s in sources.get(node, ()) if s in rows]
            return (sum(found) / len(found) if found else 0.0, node)

        for i, node in enumerate(sorted(columns[col], key=barycentre)):
            rows[node] = below.get(col, 0) + i
    return {node: (depth[node], rows[node]) for node in order}
