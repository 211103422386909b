"""The shared assets' nodes, edges, legend entries and detail panel of the dependencies page (``page.render``'s
**Assets in the same drawing**): the SVG and HTML for what ``page.assets`` placed. Pure; every value from etcd is
escaped.

Rules:
- **Teal pills.** An asset is a pill (fully rounded ends) in teal, a colour no DAG state uses; each target instance a
  smaller box in the colours of the DAG state it reads like (``TargetState``: delivered, pending like waiting, refused
  like an error). Edges to and from assets are teal.
- **Cut with an ellipsis.** Text that does not fit is cut with an ellipsis; a URI keeps its end
  (``s3://lake/orders/2026`` differ there), and the full values are in the node's title and its detail panel.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from html import escape

from coordinator.core.assets import DeliveryStatus
from coordinator.core.model import NodeId
from coordinator.page.assets import AssetNode, AssetTarget, DrawnAsset, TargetState
from coordinator.page.model import NodeState
from coordinator.page.palette import ASSET_COLOURS, COLOURS, GAP_X, GAP_Y, MARGIN, NODE_H, NODE_W

#: Each target state in the colours of the DAG state it reads like (**Teal pills**).
TARGET_COLOURS: dict[TargetState, tuple[str, str]] = {
    TargetState.DELIVERED: COLOURS[NodeState.SUCCEEDED],
    TargetState.PENDING: COLOURS[NodeState.WAITING],
    TargetState.REFUSED: COLOURS[NodeState.ERROR],
}
#: A target's box is smaller than a DAG's, centred in its cell.
TARGET_H, TARGET_W = 40, 160


def drawing_places(assets: tuple[DrawnAsset, ...]) -> list[tuple[int, int]]:
    """Every (column, row) the assets occupy, for the drawing's size."""
    return [(a.column, a.row) for a in assets] + [(t.column, t.row) for a in assets for t in a.targets]


def _xy(column: int, row: int) -> tuple[int, int]:
    return MARGIN + column * (NODE_W + GAP_X), MARGIN + row * (NODE_H + GAP_Y)


def _cut(text: str, width: int, keep_end: bool = False) -> str:
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if keep_end else text[: width - 1] + "…"


def _edge(x1: int, y1: int, x2: int, y2: int, source: str, target: str) -> str:
    mid = (x1 + x2) / 2
    return (
        f'<path class="edge asset-edge" data-from="{escape(source)}" data-to="{escape(target)}" '
        f'd="M{x1},{y1} C{mid:.0f},{y1} {mid:.0f},{y2} {x2},{y2}" fill="none" stroke-width="1.5" '
        f'stroke="{ASSET_COLOURS[1]}" marker-end="url(#arrow-asset)"/>'
    )


def assets_svg(
    assets: tuple[DrawnAsset, ...],
    dags: Mapping[NodeId, tuple[int, int]],
    link: Callable[[str], str],
    selected: str | None,
) -> list[str]:
    """The SVG elements of the assets (``dags``: the drawn DAGs' top-left corners; ``link``: an asset key -> its
    ``?asset=`` href keeping the view's parameters)."""
    if not assets:
        return []
    fill, stroke = ASSET_COLOURS
    parts = [
        '<defs><marker id="arrow-asset" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="{stroke}"/></marker></defs>'
    ]
    for drawn in assets:
        asset = drawn.asset
        x, y = _xy(drawn.column, drawn.row)
        for producer in drawn.linked:
            px, py = dags[producer]
            parts.append(_edge(px + NODE_W, py + NODE_H // 2, x, y + NODE_H // 2, producer.qualified, asset.key))
        for target in drawn.targets:
            tx, ty = _xy(target.column, target.row)
            parts.append(_edge(x + NODE_W, y + NODE_H // 2, tx, ty + NODE_H // 2, asset.key,
                               f"{asset.key}>{target.target.instance}"))  # fmt: skip
    for drawn in assets:
        asset = drawn.asset
        href = escape(link(asset.key))
        x, y = _xy(drawn.column, drawn.row)
        width = 4 if asset.key == selected else 2
        origin = asset.source
        if drawn.unlinked:  # a producer not drawn as a node is named here (``page.assets``'s **Producers**)
            more = f" +{len(drawn.unlinked) - 1}" if len(drawn.unlinked) > 1 else ""
            origin = f"{asset.source}/{drawn.unlinked[0]}{more}"
        pending = sum(t.pending for t in asset.targets)
        status = f"{pending} pending" if pending else "all delivered"
        parts.append(
            f'<a class="asset" href="{href}" data-asset="{escape(asset.key)}">'
            f"<title>{escape(_title(asset))}</title>"
            f'<rect class="asset-shape" x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="{NODE_H // 2}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"/>'
            f'<text x="{x + 16}" y="{y + 17}" font-weight="600">{escape(_cut(asset.uri, 24, keep_end=True))}</text>'
            f'<text x="{x + 16}" y="{y + 32}" fill="#555">from {escape(_cut(origin, 20))}</text>'
            f'<text x="{x + 16}" y="{y + 47}" fill="{stroke}">{escape(status)}</text></a>'
        )
        for target in drawn.targets:
            parts.append(_target_svg(asset, target.target, _xy(target.column, target.row), href))
    return parts


def _target_svg(asset: AssetNode, target: AssetTarget, at: tuple[int, int], href: str) -> str:
    x, y = at
    y += (NODE_H - TARGET_H) // 2
    fill, stroke = TARGET_COLOURS[target.state]
    counts = f"delivered {target.delivered} · pending {target.pending}"
    return (
        f'<a class="asset-target" href="{href}" data-asset-of="{escape(asset.key)}" '
        f'data-asset-target="{escape(target.instance)}" data-state="{escape(str(target.state))}">'
        f"<title>{escape(f'{asset.uri} in {target.instance}: {counts}')}</title>"
        f'<rect class="asset-shape" x="{x}" y="{y}" width="{TARGET_W}" height="{TARGET_H}" rx="3" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="2"/>'
        f'<text x="{x + 8}" y="{y + 16}" font-weight="600">{escape(_cut(target.instance, 20))}</text>'
        f'<text x="{x + 8}" y="{y + 32}" fill="{stroke}">{escape(counts)}</text></a>'
    )


def _title(asset: AssetNode) -> str:
    made = f" by {', '.join(asset.producers)}" if asset.producers else ""
    targets = "; ".join(f"{t.instance}: delivered {t.delivered}, pending {t.pending}" for t in asset.targets)
    return f"{asset.uri}, produced in {asset.source}{made} — {targets}"


def asset_legend(assets: tuple[AssetNode, ...]) -> list[str]:
    """The legend's entries for assets and their targets (only on a page that has any)."""
    fill, stroke = ASSET_COLOURS
    items = [f'<span><i style="background:{fill};border-color:{stroke};border-radius:6px"></i>'
             f"shared asset ({len(assets)})</span>"]  # fmt: skip
    for state, (tfill, tstroke) in TARGET_COLOURS.items():
        items.append(f'<span><i style="background:{tfill};border-color:{tstroke}"></i>target: {state}</span>')
    return items


def _next(target: AssetTarget) -> str:
    """The next pending event (the one due, semantics `asset-order`) and where its delivery stands."""
    if target.next_event is None:
        return "-"
    event = f"#{target.next_event}"
    if target.next_status is None:
        return f"{event}: due at the next round"
    if target.next_status is DeliveryStatus.ERROR:
        retry = target.retry_at.isoformat() if target.retry_at else "soon"
        return f"{event}: refused, retried at {retry}"
    return f"{event}: intent recorded, being delivered"


def asset_detail(asset: AssetNode) -> str:
    """An asset's detail panel: per target delivered, pending, the next pending event and the last error, and the
    command that explains the asset."""
    command = f"coordinator why asset {shlex.quote(asset.uri)}"
    about = [("source instance", asset.source), ("produced by", ", ".join(asset.producers) or "-")]
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in about)
    head = "".join(f"<th>{h}</th>" for h in ("target", "delivered", "pending", "next pending event", "last error"))
    targets = "".join(
        f'<tr data-asset-target="{escape(t.instance)}"><td>{escape(t.instance)}</td><td>{t.delivered}</td>'
        f"<td>{t.pending}</td><td>{escape(_next(t))}</td><td>{escape(t.last_error or '-')}</td></tr>"
        for t in asset.targets
    )
    return (
        f'<div class="detail" id="detail" data-asset="{escape(asset.key)}">'
        f"<h2>Shared asset {escape(asset.uri)}</h2><table>{rows}</table>"
        f'<table id="asset-targets"><tr>{head}</tr>{targets}</table>'
        f'<p>Why: <code id="why-command">{escape(command)}</code></p></div>'
    )
