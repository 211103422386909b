"""Deadlines through condition groups (semantics `deadlines-judged` on `condition-groups`, `group-cutoff`): when a
group lets its DAG start, and when it blocks it.

Rules:
- **Pure.** ETAs (``eta.Eta``) and causes in, one ETA or a verdict out; ``now`` is an argument.
- **The need-th earliest.** A group lets its DAG start when its ``need``-th earliest member finishes: an ``any`` group
  when its earliest member does, ``at_least N`` when the N-th earliest does (:func:`group_eta`). A member already
  done (an ETA of None: finished at an unknown time) is the earliest of all.
- **A cutoff bounds the start.** With a cutoff, the group also lets its DAG start at ``max(cutoff, the min-th earliest
  member)``: at the cutoff when ``min`` members are in by then, else when the ``min``-th lands; the earlier of the
  two readings counts. A cutoff never makes the ETA later.
- **Forms, chosen at now.** An ETA is a form ``max(now + ahead, fixed)`` (``eta.Eta``); the k-th earliest of
  several forms is not one, so the member ranked k-th at ``now`` gives its form (exact at ``now``; the deadline pass
  judges again when an input changes, and a later reading only drifts when two members' predictions cross).
- **Blocked only when the rule cannot hold.** A member with a cause (failed, refused, paused, unreachable) blocks the
  group only when fewer than ``need`` members (``min`` with a cutoff) are left without one (:func:`group_blocked`):
  the fallback feed still runs the report when the primary failed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from coordinator.core.conditions import GroupSpec, Member
from coordinator.core.deadline.eta import Eta


def group_eta(group: GroupSpec, partition: str, etas: Mapping[Member, Eta | None], now: datetime) -> Eta | None:
    """**The need-th earliest** member's ETA, bounded by **A cutoff bounds the start**; None when the group is
    already satisfied by members done (no ETA constrains the DAG)."""
    ranked = sorted((_key(etas.get(m), now), i, etas.get(m)) for i, m in enumerate(group.members))
    chosen = ranked[min(group.need, len(ranked)) - 1][2]
    at = group.cutoff_at(partition)
    if at is None:
        return chosen
    floor = ranked[min(group.minimum, len(ranked)) - 1][2]
    bounded = Eta(floor.ahead, at if floor.fixed is None or floor.fixed < at else floor.fixed, floor.overdue,
                  floor.start) if floor is not None else Eta(None, at)  # fmt: skip
    if chosen is None or (bounded.at(now) or at) >= (chosen.at(now) or at):
        return chosen
    return bounded


def group_blocked(group: GroupSpec, blocked: Collection[Member]) -> bool:
    """**Blocked only when the rule cannot hold**: too few members left without a cause."""
    free = sum(m not in blocked for m in group.members)
    least = group.minimum if group.has_cutoff else group.need
    return free < least


def _key(eta: Eta | None, now: datetime) -> datetime:
    if eta is None:
        return datetime.min.replace(tzinfo=now.tzinfo)
    return eta.at(now) or now
