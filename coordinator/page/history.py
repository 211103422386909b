"""The dependencies page's audit trail (docs/howto/incidents.md): every hold, release, rerun and retraction, shown by
``coordinator history`` and on the page.

Rules:
- **The newest, bounded.** The page shows the ``HISTORY_ROWS`` newest entries, newest first, read in one ranged read
  through the informer (``informer.holds.read_history``'s ``newest``): a request costs the same however long the trail
  grows until ``prune`` ages it out. ``coordinator history`` prints all of it; the panel says so.
- **Said, not failed.** A role that may not read ``history/`` gets a line saying so and the rest of the page; entries
  that do not parse are counted, never shown half.
- **Standing holds linked.** An entry that made a hold still standing says "standing"; the panel's first line names
  the standing holds, each linked to the entry that made it (``#history-{entry id}``) when that entry is shown.
- **Pure and escaped.** Values in, HTML out; every text from etcd is escaped (``page.render``'s **Pure and
  escaped**); hidden DAGs are scrubbed by ``page.access`` before rendering, as in every other text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from coordinator.core.holds import HistoryAction, HistoryEntry, Hold
from coordinator.errors import StoreError

#: Entries shown: an incident is a handful of actions (hold, rerun, retract, release); 20 covers the last few
#: incidents, and the page reads no more than that.
HISTORY_ROWS = 20


@dataclass(frozen=True, slots=True)
class TrailRead:
    """What the page read of the audit trail (**The newest, bounded**, **Said, not failed**)."""

    #: Newest first, at most ``HISTORY_ROWS``.
    entries: tuple[HistoryEntry, ...] = ()
    #: The role may not read ``history/``.
    unread: bool = False
    #: Entries read that did not parse.
    unreadable: int = 0


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One entry as the page shows it (text only, so ``page.access`` scrubs it like any other)."""

    id: str
    at: str
    by: str
    action: str
    target: str
    why: str
    affected: tuple[str, ...]
    hold: str | None
    #: It made a hold that still stands (**Standing holds linked**).
    standing: bool


@dataclass(frozen=True, slots=True)
class HistoryPanel:
    rows: tuple[HistoryRow, ...] = ()
    #: The ids of the holds standing now, in creation order.
    standing: tuple[str, ...] = ()
    unread: bool = False
    unreadable: int = 0


def refused(exc: StoreError) -> bool:
    """**Said, not failed**: etcd refused the read for the role (doctor's test of the same words)."""
    text = str(exc).lower()
    return "permission denied" in text or "permission_denied" in text


def history_panel(trail: TrailRead, holds: Sequence[Hold], now: datetime) -> HistoryPanel:
    """The panel for what was read, the standing holds judged at ``now`` (the page's decision clock)."""
    standing = sorted((h for h in holds if h.standing(now)), key=lambda h: (h.created_at, h.id))
    ids = {h.id for h in standing}
    rows = tuple(
        HistoryRow(
            id=e.id,
            at=e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if e.at.tzinfo is not None else e.at.isoformat(),
            by=e.by,
            action=str(e.action),
            target=e.target,
            why=e.why,
            affected=e.affected,
            hold=e.hold,
            standing=e.hold in ids and e.action is not HistoryAction.RELEASE,
        )
        for e in trail.entries
    )
    return HistoryPanel(rows, tuple(h.id for h in standing), trail.unread, trail.unreadable)


def render_history(panel: HistoryPanel | None) -> str:
    """The audit trail's section (every rule of the module); nothing when it was not read."""
    if panel is None:
        return ""
    head = '<div class="detail" id="history"><h2>Audit trail</h2>'
    if panel.unread:
        return (
            f'{head}<p id="history-unread">The page\'s etcd user may not read the audit trail (history/): grant it '
            "read on that prefix (<code>coordinator roles</code>), or run <code>coordinator history</code>.</p></div>"
        )
    lines = [
        f'<div class="meta">the {HISTORY_ROWS} newest incident actions (hold, release, rerun, retract), newest first; '
        "<code>coordinator history</code> prints them all</div>"
    ]
    if panel.standing:
        made: dict[str, str] = {}
        for r in reversed(panel.rows):  # oldest first: the entry that made the hold
            if r.hold is not None and r.standing:
                made.setdefault(r.hold, r.id)
        named = ", ".join(
            f'<a href="#history-{escape(made[h])}">{escape(h)}</a>' if h in made else escape(h) for h in panel.standing
        )
        lines.append(f'<p id="history-standing">standing holds: {named}</p>')
    if panel.unreadable:
        lines.append(f'<div class="problems">{panel.unreadable} entry(ies) could not be read</div>')
    if not panel.rows:
        lines.append('<p id="history-empty">No incident action recorded yet.</p>')
    else:
        header = "".join(f"<td><b>{h}</b></td>" for h in ("when", "who", "action", "target", "why", "affected"))
        body = "".join(_row(r) for r in panel.rows)
        lines.append(f"<table><tr>{header}</tr>{body}</table>")
    return head + "".join(lines) + "</div>"


def _row(row: HistoryRow) -> str:
    action = row.action + (f" [{row.hold}]" if row.hold else "") + (" (standing)" if row.standing else "")
    affected = "<br>".join(escape(line) for line in row.affected) or "-"
    cells = "".join(f"<td>{escape(v)}</td>" for v in (row.at, row.by, action, row.target or "-", row.why or "-"))
    return f'<tr id="history-{escape(row.id)}" data-action="{escape(row.action)}">{cells}<td>{affected}</td></tr>'
