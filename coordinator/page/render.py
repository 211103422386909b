"""The dependencies page as one self-contained HTML document with an inline SVG (no asset from anywhere).

Rules:
- **Pure and escaped.** Pure: a :class:`PageModel` in, a string out. Every value from etcd or the graph is escaped.
- **Air-gapped, no JavaScript needed.** Works air-gapped and without JavaScript: each DAG is a link
  (``?partition=P&node=N``) to the same page with that DAG's details; the partition picker is a GET form (one inline
  ``onchange`` submits it, the button works without).
- **Refresh while moving.** While a cascade moves (something triggered, queued, running or due) the page reloads itself
  every ``refresh_s`` seconds with a meta refresh, which keeps the query string; a settled page does not reload.
- **Links to this Airflow only.** Links to Airflow runs only for DAGs of this Airflow (``instance``), relative to
  ``ui_base``, opened in the top window (the page is shown in an iframe of Airflow's UI).
- **A page at a time.** A large graph is drawn a page at a time, filtered by DAG, state, instance or the neighbourhood
  of one DAG (``page.select``): a GET form and previous/next links that keep the partition and the filters.
- **A group is one joint.** A DAG's condition group is a small diamond in the gap before the DAG, labelled with its
  rule (``any``, ``2 of 3``, ``3 of 3, cutoff 6h``): the members' edges meet there and one arrow goes on to the DAG.
- **Assets in the same drawing.** Shared assets (``page.assets``) are nodes of the same drawing, told apart by shape and
  colour (a teal pill for the asset, a small box per target instance coloured like a succeeded DAG when all is
  delivered, a waiting one while events are pending, an error one while the next event is refused;
  ``page.render_assets``), with legend entries only when there are any: a page without routes is the page it was. Each
  asset links to ``?asset=source:uri`` (keeping the partition, the filters and the page) for its detail panel. When more
  assets match the view than are drawn, the page says how many.
- **The audit trail below.** Under the details, the audit trail's newest entries (``page.history``), escaped
  and scrubbed like the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from urllib.parse import quote, urlencode

from coordinator.core.model import NodeId
from coordinator.page.assets import DrawnAsset
from coordinator.page.history import render_history
from coordinator.page.model import NodeState, PageJoint, PageModel, PageNode, state_counts
from coordinator.page.palette import COLOURS, GAP_X, GAP_Y, MARGIN, NODE_H, NODE_W
from coordinator.page.render_assets import asset_detail, asset_legend, assets_svg, drawing_places
from coordinator.page.select import PAGE_SIZE, Drawn, Selection, select

#: Seconds between reloads while a cascade moves: a DAG run takes tens of seconds; faster only costs etcd reads.
REFRESH_S = 5
#: Badge colours of the deadline states an operator must see (on_time shows nothing).
DEADLINE_COLOURS: dict[str, str] = {"late": "#c86400", "missed": "#d00000", "at_risk": "#e0a000", "blocked": "#800000"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a1a1a}
h1{font-size:20px;margin:0 0 8px} .meta{color:#555;font-size:13px;margin-bottom:10px}
form{display:inline-block;margin-right:16px} .legend span{display:inline-block;margin:2px 10px 2px 0;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;border:2px solid;vertical-align:middle;margin-right:4px}
svg a:hover rect{stroke-width:4} svg text{font-size:12px;pointer-events:none}
.detail{border:1px solid #ccc;border-radius:6px;padding:10px 14px;margin-top:12px;max-width:1000px}
.detail pre{white-space:pre-wrap;background:#f6f6f6;padding:8px;margin:4px 0}
.detail table{border-collapse:collapse;font-size:13px} .detail td{padding:2px 10px 2px 0;vertical-align:top}
.problems{color:#900;font-size:13px}
"""


def _href(
    partition: str | None, node: NodeId | None = None, keep: Mapping[str, str] | None = None, asset: str | None = None
) -> str:
    params = {}
    if partition is not None:
        params["partition"] = partition
    if node is not None:
        params["node"] = node.qualified
    if asset is not None:
        params["asset"] = asset
    params.update(keep or {})  # the filters and the page a link keeps (page.select)
    return "?" + urlencode(params) if params else "?"


def _svg(
    model: PageModel,
    selected: NodeId | None,
    keep: Mapping[str, str] | None = None,
    assets: tuple[DrawnAsset, ...] = (),
    selected_asset: str | None = None,
) -> str:
    if not model.nodes and not assets:
        return "<p>The graph is empty.</p>"
    places = [(n.column, n.row) for n in model.nodes] + drawing_places(assets)
    cols = max(c for c, _ in places) + 1
    rows = max(r for _, r in places) + 1
    width = 2 * MARGIN + cols * NODE_W + (cols - 1) * GAP_X
    height = 2 * MARGIN + rows * NODE_H + (rows - 1) * GAP_Y
    at = {n.node: (MARGIN + n.column * (NODE_W + GAP_X), MARGIN + n.row * (NODE_H + GAP_Y)) for n in model.nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#777"/></marker>'
        '<marker id="arrow-fail" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#d00000"/></marker></defs>',
    ]
    joints = _joint_places(model, at)
    for edge in model.edges:
        sx, sy = at[edge.source]
        x2, ty = at[edge.target]
        # From the right middle of the source to the left middle of the target.
        x1, y1, y2 = sx + NODE_W, sy + NODE_H // 2, ty + NODE_H // 2
        joint = joints.get((edge.target, edge.group)) if edge.group is not None else None
        if joint is not None:  # **A group is one joint**: the member's edge ends at the joint, without an arrow
            x2, y2 = joint
        mid = (x1 + x2) / 2
        style = (
            'stroke="#d00000" stroke-dasharray="5,4" marker-end="url(#arrow-fail)"'
            if edge.on_failure
            else ('stroke="#777" marker-end="url(#arrow)"' if joint is None else 'stroke="#777"')
        )
        kind = "on-failure" if edge.on_failure else "upstream"
        parts.append(
            f'<path class="edge {kind}" data-from="{escape(edge.source.qualified)}" '
            f'data-to="{escape(edge.target.qualified)}" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} '
            f'{x2:.0f},{y2:.0f}" fill="none" stroke-width="1.5" {style}/>'
        )
    parts += [_joint_svg(joint, place, at[joint.target]) for joint in model.joints
               if (place := joints.get((joint.target, joint.index))) is not None]  # fmt: skip
    for node in model.nodes:
        parts.append(_node_svg(node, at[node.node], model.partition, node.node == selected, keep))
    parts += assets_svg(assets, at, lambda key: _href(model.partition, None, keep, key), selected_asset)
    parts.append("</svg>")
    return "\n".join(parts)


def _joint_places(model: PageModel, at: Mapping[NodeId, tuple[int, int]]) -> dict[tuple[NodeId, int], tuple[int, int]]:
    """Where each drawn group's joint sits: in the gap before its DAG, the groups of one DAG one above the other."""
    places: dict[tuple[NodeId, int], tuple[int, int]] = {}
    drawn = {(e.target, e.group) for e in model.edges if e.group is not None}
    by_target: dict[NodeId, list[int]] = {}
    for joint in model.joints:
        if joint.target in at and (joint.target, joint.index) in drawn:
            by_target.setdefault(joint.target, []).append(joint.index)
    for target, indexes in by_target.items():
        tx, ty = at[target]
        for k, index in enumerate(indexes):
            offset = (2 * k - (len(indexes) - 1)) * NODE_H // (2 * len(indexes) + 1)
            places[(target, index)] = (tx - GAP_X // 2, ty + NODE_H // 2 + offset)
    return places


def _joint_svg(joint: PageJoint, place: tuple[int, int], target: tuple[int, int]) -> str:
    """**A group is one joint**: a diamond with its rule, and one arrow on to the dependent."""
    x, y = place
    tx, ty = target[0], target[1] + NODE_H // 2
    return (
        f'<g class="joint" data-to="{escape(joint.target.qualified)}" data-rule="{escape(joint.label)}">'
        f'<path d="M{x},{y} L{tx},{ty}" fill="none" stroke="#777" stroke-width="1.5" marker-end="url(#arrow)"/>'
        f'<path d="M{x - 6},{y} L{x},{y - 6} L{x + 6},{y} L{x},{y + 6}z" fill="#fff" stroke="#555" stroke-width="1.5"/>'
        f'<text x="{x}" y="{y - 9}" text-anchor="middle" font-size="10" fill="#333">{escape(joint.label)}</text></g>'
    )


def _node_svg(
    node: PageNode, at: tuple[int, int], partition: str | None, selected: bool, keep: Mapping[str, str] | None = None
) -> str:
    x, y = at
    fill, stroke = COLOURS[node.state]
    label = node.node.dag_id if len(node.node.dag_id) <= 24 else node.node.dag_id[:23] + "…"
    status = str(node.state)
    if node.state is NodeState.WAITING and node.waiting_on:
        status += " on " + ", ".join(str(n) for n in node.waiting_on)
    elif node.state is NodeState.WAITING and node.failure_sources:
        status += " for " + " or ".join(str(n) for n in node.failure_sources) + " to fail"
    if len(status) > 30:
        status = status[:29] + "…"
    qualified = escape(node.node.qualified)
    deadline = node.deadline
    badge, title, marker = "", node.summary, ""
    if deadline is not None and str(deadline.state) in DEADLINE_COLOURS:
        colour = DEADLINE_COLOURS[str(deadline.state)]
        text = str(deadline.state).replace("_", " ")
        marker = f' data-deadline="{escape(str(deadline.state))}"'
        badge = (
            f'<rect class="deadline" x="{x + NODE_W - 70}" y="{y - 9}" width="66" height="16" rx="8" '
            f'fill="{colour}"/><text x="{x + NODE_W - 64}" y="{y + 3}" fill="#fff" font-size="11">{escape(text)}'
            "</text>"
        )
        if deadline.cause is not None:
            title += f" — {deadline.state}: {deadline.cause.chain_text()}"
    return (
        f'<a class="node" href="{escape(_href(partition, node.node, keep))}" data-dag="{qualified}" '
        f'data-state="{escape(str(node.state))}"{marker}>'
        f"<title>{escape(title)}</title>"
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="{4 if selected else 2}"/>'
        f'<text x="{x + 8}" y="{y + 17}" font-weight="600">{escape(label)}</text>'
        f'<text x="{x + 8}" y="{y + 32}" fill="#555">{escape(node.node.instance)}</text>'
        f'<text x="{x + 8}" y="{y + 47}" fill="{stroke}">{escape(status)}</text>{badge}</a>'
    )


def _picker(model: PageModel) -> str:
    options = "".join(
        f'<option value="{escape(p)}"{" selected" if p == model.partition else ""}>{escape(p)}</option>'
        for p in model.partitions
    )
    if model.partition is not None and model.partition not in model.partitions:
        options = f'<option value="{escape(model.partition)}" selected>{escape(model.partition)}</option>' + options
    return (
        '<form method="get" id="picker"><label>Partition <select name="partition" onchange="this.form.submit()">'
        f'{options}</select></label> <button type="submit">Show</button></form>'
    )


def _legend(model: PageModel, counts: Mapping[NodeState, int] | None = None) -> str:
    counts = counts if counts is not None else state_counts(model)
    items = []
    for state, (fill, stroke) in COLOURS.items():
        items.append(
            f'<span><i style="background:{fill};border-color:{stroke}"></i>{escape(str(state))}'
            f"{f' ({counts[state]})' if state in counts else ''}</span>"
        )
    if model.assets:  # **Assets in the same drawing**: only a page with shared assets has their entries
        items += asset_legend(model.assets)
    return '<div class="legend">' + "".join(items) + "</div>"


def _hidden_assets(model: PageModel) -> str:
    """How many shared assets the user may not see (``page.access``'s **Assets by their instances**): counted, never
    named."""
    if not model.hidden_assets:
        return ""
    return f'<div class="meta">{model.hidden_assets} shared asset(s) of instances you may not read are not shown</div>'


def _run_text(node: PageNode) -> str:
    """The DAG's run for the partition. One counter only: Airflow's attempt of that run (``clear_number`` counts from
    0, the attempt from 1); the coordinator's own trigger count belongs to the "last trigger" row."""
    if not node.run_id:
        return "no run state"
    attempt = "" if node.attempt is None else f", run attempt {node.attempt + 1}, clear_number {node.attempt}"
    return f"{node.run_id} ({node.run_state}{attempt})"


def _detail(node: PageNode, instance: str, ui_base: str) -> str:
    rows = [("state", str(node.state)), ("run", _run_text(node))]
    if node.ledger is not None:
        led = node.ledger
        inputs = ", ".join(f"{k} @ {v}" for k, v in led.inputs) or "-"
        rows += [
            ("last trigger", f"{led.action} {led.run_id} ({led.status}), coordinator trigger #{led.trigger_count}"),
            ("inputs", inputs),
        ]
        if led.attempts > 1:  # calls to Airflow for this trigger: only worth a row when some had to be repeated
            rows.append(("Airflow requests", f"{led.attempts} for this trigger (failed ones were retried)"))
        rows.append(("last error", led.last_error or "-"))
    else:
        rows.append(("last trigger", "the coordinator has not triggered it for this partition"))
    deadline = node.deadline
    if deadline is not None:
        eta = deadline.eta.strftime("%Y-%m-%d %H:%MZ") if deadline.eta is not None else "-"
        rows += [
            ("deadline", f"{deadline.state} — due {deadline.deadline:%Y-%m-%d %H:%M}Z, ETA {eta}"),
            ("cause", deadline.cause.chain_text() if deadline.cause is not None else "-"),
        ]
    table = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    run_id = node.run_id or (node.ledger.run_id if node.ledger is not None else None)
    link = ""
    if node.node.instance == instance and run_id:
        href = f"{ui_base}/dags/{quote(node.node.dag_id, safe='')}/runs/{quote(run_id, safe='')}"
        link = f'<p><a id="run-link" href="{escape(href)}" target="_top">Open the run in Airflow</a></p>'
    why_text = "\n".join(node.why) or node.summary
    return (
        f'<div class="detail" id="detail" data-dag="{escape(node.node.qualified)}">'
        f'<h2>{escape(str(node.node))}</h2><pre id="why">{escape(why_text)}</pre>'
        f"<table>{table}</table>{link}</div>"
    )


def render_page(
    model: PageModel,
    *,
    selected: NodeId | None = None,
    instance: str = "default",
    ui_base: str = "",
    title: str = "Dependencies",
    refresh_s: int = REFRESH_S,
    selection: Selection | None = None,
    selected_asset: str | None = None,
) -> str:
    """The whole page (every rule of the module). ``selected_asset``: ``?asset=`` (``source:uri``) for its detail
    panel."""
    chosen = selection or Selection()
    drawn = select(model, chosen)
    keep = {**chosen.query(), **({"page": str(drawn.page)} if drawn.page > 1 else {})}
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if drawn.moving else ""
    node = model.get(selected) if selected is not None else None
    where = f"partition {model.partition}" if model.partition else "no run state in etcd yet"
    moving = f" · a cascade is running: this page refreshes every {refresh_s} s" if drawn.moving else ""
    problems = (
        '<div class="problems">' + "<br>".join(escape(p) for p in model.problems[:20]) + "</div>"
        if model.problems
        else ""
    )
    if model.hidden:
        problems += (f'<div class="meta">{model.hidden} DAG(s) you may not read in Airflow are not shown '
                     "(their states still count for the DAGs shown)</div>")  # fmt: skip
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"{refresh}<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<div class="meta">{escape(where)} · etcd revision {model.revision} · graph: {escape(model.graph_source)}'
        f"{escape(moving)}</div>"
        f"{_picker(model)}{_filters(model, chosen)}{_legend(model, drawn.counts)}{problems}"
        f"{_pager(drawn, chosen, model.partition)}{_asset_pager(drawn)}"
        f'<div id="graph">{_svg(drawn.model, selected, keep, drawn.assets, selected_asset)}</div>'
        f"{_hidden_assets(model)}{_details(model, node, selected_asset, instance, ui_base)}"
        f"{render_history(model.history)}"
        "</body></html>"
    )


def _details(model: PageModel, node: PageNode | None, selected_asset: str | None, instance: str, ui_base: str) -> str:
    """The selected DAG's panel, or the selected shared asset's (**Assets in the same drawing**), or how to get one."""
    if node is not None:
        return _detail(node, instance, ui_base)
    if selected_asset is not None:
        asset = next((a for a in model.assets if a.key == selected_asset), None)
        if asset is not None:
            return asset_detail(asset)
        # Never echo the name asked for: it may be an asset the user may not read (``page.access``'s
        # **Assets by their instances**).
        return '<p id="detail-missing">No shared asset by that name is shown here.</p>'
    return "<p>Click a DAG for its details.</p>"


def _filters(model: PageModel, chosen: Selection) -> str:
    """**A page at a time**: a GET form (works without JavaScript) that keeps the partition."""
    states = "".join(
        f'<option value="{escape(s.value)}"{" selected" if s is chosen.state else ""}>{escape(s.value)}</option>'
        for s in NodeState
    )
    part = f'<input type="hidden" name="partition" value="{escape(model.partition)}">' if model.partition else ""
    around = chosen.around.qualified if chosen.around else ""
    return (
        f'<form method="get" id="filters">{part}'
        f'<label>DAG <input name="q" value="{escape(chosen.q)}" size="14"></label> '
        f'<label>state <select name="state"><option value="">any</option>{states}</select></label> '
        f'<label>instance <input name="instance" value="{escape(chosen.instance)}" size="8"></label> '
        f'<label>around <input name="around" value="{escape(around)}" size="14"></label> '
        '<button type="submit">Filter</button></form>'
    )


def _asset_pager(drawn: Drawn) -> str:
    """**Assets in the same drawing**: how many shared assets matched this view when not all of them are drawn
    (``page.assets``'s **Placement**)."""
    if drawn.assets_matched <= len(drawn.assets):
        return ""
    return (f'<div class="meta" id="asset-pager">shared assets: {len(drawn.assets)} of {drawn.assets_matched} drawn '
            "with these DAGs; filter by name (q) to see the others</div>")  # fmt: skip


def _pager(drawn: Drawn, chosen: Selection, partition: str | None) -> str:
    """**A page at a time**: which DAGs are drawn out of how many, and links to the other pages."""
    if drawn.matched == drawn.total and drawn.pages == 1:
        return ""
    first = (drawn.page - 1) * PAGE_SIZE + 1 if drawn.matched else 0
    last = min(drawn.page * PAGE_SIZE, drawn.matched)
    links = []
    for label, page in (("previous", drawn.page - 1), ("next", drawn.page + 1)):
        if 1 <= page <= drawn.pages:
            href = _href(partition, None, {**chosen.query(), "page": str(page)})
            links.append(f'<a id="page-{label}" href="{escape(href)}">{label}</a>')
    return (
        f'<div class="meta" id="pager">DAGs {first}-{last} of {drawn.matched} shown'
        f"{f' ({drawn.total} in the graph)' if drawn.matched != drawn.total else ''} · page {drawn.page} of "
        f"{drawn.pages} {' '.join(links)}</div>"
    )


def render_message(title: str, message: str) -> str:
    """A page that only says something (no graph yet, etcd unreachable): the same look, no refresh."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<style>{CSS}</style></head><body><h1>{escape(title)}</h1><p id="message">{escape(message)}</p>'
        "</body></html>"
    )
