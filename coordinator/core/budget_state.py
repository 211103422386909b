"""The trigger budget's state as a value: ``{prefix}/config/budget/{instance}`` (semantics rule 15).

A fact of the view like the retention floor (``View.budgets``), so every decision reads it from the same snapshot as
the run states; what it lets pass is ``coordinator.core.budget``'s.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class BudgetState(BaseModel):
    """Value of ``{prefix}/config/budget/{instance}``: whether the instance is held, and what was released."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    held: bool = False
    #: The limit in force when the hold was recorded: a larger limit lifts the hold (rule c).
    limit: int = Field(default=0, ge=0)
    #: How many new triggers were held when the hold was recorded.
    held_count: int = Field(default=0, ge=0)
    held_at: datetime | None = None
    #: Triggers caused at or before this revision pass (rule b); written by ``coordinator release``.
    released_through: int = Field(default=0, ge=0)
    by: str = ""
    at: datetime | None = None
    #: New runs let through per bucket of the window, ``(bucket start in epoch seconds, count)``, oldest first: the
    #: count that ``coordinator.core.budget.Window`` judges (rule d). Kept here, in etcd, so that it holds across
    #: reconcile passes and a failover; a release empties it.
    started: tuple[tuple[int, int], ...] = ()

    def affects_plans(self, other: BudgetState | None) -> bool:
        """Whether going from ``other`` to this state can change what passes: a hold, its limit or a release. A
        new count in the window alone cannot (it is read when the next trigger is judged), so the view does not
        re-plan every partition for it."""
        was = other if other is not None else BudgetState()
        return (self.held, self.limit, self.released_through) != (was.held, was.limit, was.released_through)

    def holds(self, limit: int) -> bool:
        return self.held and limit > 0 and self.limit >= limit

    def describe(self, instance: str) -> str:
        """One line for ``status`` and ``doctor``: who is held since when, and how to release it."""
        since = f" since {self.held_at.isoformat(timespec='seconds')}" if self.held_at is not None else ""
        return (f"instance {instance} is held by the trigger budget{since}: {self.held_count} new run(s) beyond the "
                f"limit of {self.limit} new runs in its window wait, and nothing new starts there until `coordinator "
                f"release {instance}` (check the runs first) or a larger COORDINATOR_TRIGGER_BUDGET")  # fmt: skip


def parse_budget(raw: bytes) -> tuple[BudgetState | None, str | None]:
    """The state in ``raw``, or (None, why not). Never raises."""
    try:
        return BudgetState.model_validate_json(raw), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


def dump_budget(state: BudgetState) -> bytes:
    return state.model_dump_json(exclude_none=True).encode()
