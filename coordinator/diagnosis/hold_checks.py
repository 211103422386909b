"""``doctor``'s check of operators' holds (``core/holds.py``): an operator must know the graph is partly held.

Rules:
- **Standing holds warn.** Each standing hold is one detail line (id, what it covers, since, by, reason, expiry) and
  the check is ``warn``: the leading watcher triggers and clears nothing the hold covers. The fix is the complete
  command that releases each (``coordinator release-hold ID``).
- **Expired holds inform.** A hold whose ``until`` has passed but which nobody released holds nothing; it is listed
  (so the history reads right) without a warning.
- **Released holds are history.** They are left out (``coordinator holds --all`` lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from coordinator.core.holds import Hold
from coordinator.diagnosis.model import Check, CheckStatus

NAME = "holds"


def covers(hold: Hold) -> str:
    """What a hold covers, in words: its selector, the DAGs below it when ``--downstream``, its range."""
    below = " and every DAG below" if hold.downstream else ""
    return f"{hold.selector.text}{below}, {hold.span()}"


def hold_line(hold: Hold) -> str:
    """**Standing holds warn**: one detail line."""
    since = hold.created_at.isoformat(timespec="seconds")
    until = f" until {hold.until.isoformat(timespec='seconds')}" if hold.until is not None else " until released"
    return f"{hold.id}: {covers(hold)}; since {since} by {hold.by}{until}: {hold.reason}"


def holds_check(holds: Sequence[Hold] | None, now: datetime, problem: str | None = None) -> Check:
    """Every rule above; ``holds`` None: they could not be read (``problem`` says why)."""
    if holds is None:
        return Check(name=NAME, status=CheckStatus.SKIP, summary=f"not checked: {problem or 'holds not read'}")
    order = sorted((h for h in holds if h.released_at is None), key=lambda h: (h.created_at, h.id))
    standing = [h for h in order if h.standing(now)]
    expired = [h for h in order if not h.standing(now)]
    expired_lines = tuple(
        f"{h.id}: {covers(h)}; expired {h.until.isoformat(timespec='seconds') if h.until else '?'} (holds nothing, "
        f"not released) by {h.by}: {h.reason}"
        for h in expired
    )
    if not standing:
        summary = "no standing hold: nothing is held back by an operator"
        if expired:
            summary += f"; {len(expired)} expired hold(s) not released (they hold nothing)"
        return Check(name=NAME, status=CheckStatus.OK, summary=summary, details=expired_lines)
    dags = sorted({n for h in standing for n in h.nodes})
    below = " and the DAGs below them" if any(h.downstream for h in standing) else ""
    return Check(
        name=NAME,
        status=CheckStatus.WARN,
        summary=f"{len(standing)} standing hold(s): the leading watcher triggers and clears nothing of "
        f"{', '.join(dags)}{below} in their ranges",
        details=tuple(hold_line(h) for h in standing) + expired_lines,
        fix="once the cause is fixed: "
        + "; ".join(f"`coordinator release-hold {h.id} --reason 'fixed'`" for h in standing)
        + " (each held run then starts once)",
    )
