"""Which DAGs one view of the page draws: filters, a neighbourhood around one DAG, and pages of a large graph.

Rules:
- **Pure.** A :class:`PageModel` of the whole graph and a :class:`Selection` in, the model of what is drawn out (the
  states are the whole model's, never recomputed here).
- **Filters combine.** Filters combine (AND): ``q`` (a substring of ``instance/dag_id``, case-insensitive), ``state``
  (one page state), ``instance``, ``around`` (that DAG and every DAG within ``depth`` edges of it, either direction).
- **Pages of PAGE_SIZE.** At most ``PAGE_SIZE`` DAGs are drawn, in graph order; ``page`` (from 1) picks which. A large
  estate's default view is its first page, so a request's HTML stays small whatever the graph's size.
- **Laid out again.** The drawing is laid out again for what is drawn (columns and rows closed up, their order kept),
  with only the edges between drawn DAGs; the legend still counts every DAG of the partition, and the page still
  refreshes while any of them moves.
- **Assets follow the DAGs drawn.** The shared assets drawn are chosen and placed for the DAGs drawn (``page.assets``'s
  **Placement**); the legend counts every one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from coordinator.core.model import NodeId
from coordinator.page.assets import AssetFilter, DrawnAsset, place
from coordinator.page.model import NodeState, PageModel, PageNode, state_counts

#: DAGs drawn at most per page: about 80 KB of HTML; more is not readable in one drawing anyway.
PAGE_SIZE = 120


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters (**Filters combine**) and the page (**Pages of PAGE_SIZE**), from the query string (bad values are
    ignored, never an error)."""

    q: str = ""
    state: NodeState | None = None
    instance: str = ""
    around: NodeId | None = None
    depth: int = 1
    page: int = 1

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Selection:
        state = next((s for s in NodeState if s.value == query.get("state", "")), None)
        try:
            around = NodeId.parse(query["around"]) if query.get("around") else None
        except ValueError:
            around = None
        return cls(
            q=query.get("q", "").strip()[:200],
            state=state,
            instance=query.get("instance", "").strip()[:200],
            around=around,
            depth=_int(query.get("depth"), 1, 1, 10),
            page=_int(query.get("page"), 1, 1, 1_000_000),
        )

    def query(self) -> dict[str, str]:
        """The filters as query parameters (the page number aside), for links that keep them."""
        found = {
            "q": self.q,
            "state": self.state.value if self.state else "",
            "instance": self.instance,
            "around": self.around.qualified if self.around else "",
            "depth": str(self.depth) if self.around else "",
        }
        return {k: v for k, v in found.items() if v}


@dataclass(frozen=True, slots=True)
class Drawn:
    """What one view draws (**Laid out again**), and where it sits among everything that matched."""

    model: PageModel
    matched: int
    total: int
    page: int
    pages: int
    counts: Mapping[NodeState, int]
    moving: bool
    #: The shared assets drawn with these DAGs, placed after them (**Assets follow the DAGs drawn**), and how many
    #: matched the view.
    assets: tuple[DrawnAsset, ...] = ()
    assets_matched: int = 0


def select(model: PageModel, selection: Selection) -> Drawn:
    """**Filters combine**, **Pages of PAGE_SIZE** and **Laid out again**."""
    keep = [n for n in model.nodes if _matches(n, selection)]
    if selection.around is not None:
        near = _neighbourhood(model, selection.around, selection.depth)
        keep = [n for n in keep if n.node in near]
    pages = max(1, -(-len(keep) // PAGE_SIZE))
    page = min(selection.page, pages)
    shown = keep[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    names = {n.node for n in shown}
    relaid = _relaid(shown)
    drawn = replace(model, nodes=relaid, edges=tuple(e for e in model.edges if e.source in names and e.target in names))
    assets: tuple[DrawnAsset, ...] = ()
    matched = 0
    if model.assets:
        view = AssetFilter(selection.q, selection.instance,
                           selection.state is not None or selection.around is not None, page == 1)  # fmt: skip
        places = {n.node: (n.column, n.row) for n in relaid}
        assets, matched = place(model.assets, places, {n.node for n in model.nodes}, view)
    return Drawn(drawn, len(keep), len(model.nodes), page, pages, state_counts(model), model.moving, assets, matched)


def _matches(node: PageNode, selection: Selection) -> bool:
    if selection.q and selection.q.lower() not in node.node.qualified.lower():
        return False
    if selection.state is not None and node.state is not selection.state:
        return False
    return not selection.instance or node.node.instance == selection.instance


def _neighbourhood(model: PageModel, centre: NodeId, depth: int) -> set[NodeId]:
    links: dict[NodeId, set[NodeId]] = {}
    for edge in model.edges:
        links.setdefault(edge.source, set()).add(edge.target)
        links.setdefault(edge.target, set()).add(edge.source)
    found, frontier = {centre}, {centre}
    for _ in range(depth):
        frontier = {m for n in frontier for m in links.get(n, ())} - found
        found |= frontier
    return found


def _relaid(nodes: list[PageNode]) -> tuple[PageNode, ...]:
    """**Laid out again**: columns closed up in their order, rows closed up within each column in their order."""
    columns = {c: i for i, c in enumerate(sorted({n.column for n in nodes}))}
    rows: dict[int, list[PageNode]] = {}
    for n in sorted(nodes, key=lambda n: (n.column, n.row)):
        rows.setdefault(n.column, []).append(n)
    place = {n.node: (columns[c], r) for c, group in rows.items() for r, n in enumerate(group)}
    return tuple(replace(n, column=place[n.node][0], row=place[n.node][1]) for n in nodes)


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(text or default), low), high)
    except ValueError:
        return default
