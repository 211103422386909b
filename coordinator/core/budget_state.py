"""The trigger budget's state as a value: ``{prefix}/config/budget/{instance}`` (semantics `trigger-budget`).

A record the view keeps like the retention floor (``View.budgets``), so every decision reads it from the same snapshot
as the run states; what it lets pass is ``coordinator.core.budget``'s. One record per instance holds the instance-wide
ceiling's count and stop and, in ``dags``, each DAG's own count and stop (semantics `budget-per-dag`): one
compare-and-swap counts a whole pass of an instance, and a record without ``dags`` (written by a version without
per-DAG stops) decodes as one with none.
"""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class DagBudget(BaseModel):
    """One DAG's part of the instance's record (``dags[dag_id]``, semantics `budget-per-dag`): its count in the window
    and whether its allowance stopped it.

    The stored field names are the key's contract: ``stopped*`` are stored and read as ``held*`` (their aliases)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, serialize_by_alias=True, validate_by_alias=True, validate_by_name=True
    )
    stopped: bool = Field(default=False, alias="held")
    #: The DAG's allowance when the stop was recorded: a larger one (a new graph, a larger floor) lifts the stop.
    allowance: int = Field(default=0, ge=0)
    #: New runs of the DAG let through in the window when it was stopped, and how many were stopped then.
    count: int = Field(default=0, ge=0)
    stopped_count: int = Field(default=0, ge=0, alias="held_count")
    stopped_at: datetime | None = Field(default=None, alias="held_at")
    #: The first and last partition stopped while stopped (widened as more are), so a release can name its range.
    stopped_first: str | None = Field(default=None, alias="held_first")
    stopped_last: str | None = Field(default=None, alias="held_last")
    #: Triggers of this DAG caused at or before this revision pass (``coordinator release INSTANCE --dag DAG``).
    released_through: int = Field(default=0, ge=0)
    #: The range the last release let through (the held range then): its partitions, of this DAG and of every DAG
    #: below it, pass uncounted afterwards (``coordinator.core.budget_allowance``'s **Backfills explain themselves**),
    #: as a backfill's do.
    released_first: str | None = None
    released_last: str | None = None
    #: As :attr:`BudgetState.started`, for this DAG's new runs only.
    started: tuple[tuple[int, int], ...] = ()
    #: As :attr:`started`, for the reruns that passed uncounted against the allowance (semantics `budget-rerun-pass`):
    #: they may not exceed ``started``'s count in the window.
    reran: tuple[tuple[int, int], ...] = ()

    def stops(self, allowance: int) -> bool:
        return self.stopped and allowance > 0 and self.allowance >= allowance

    def plan_fields(self) -> tuple[bool, int, int]:
        return self.stopped, self.allowance, self.released_through

    def describe(self, instance: str, dag: str) -> str:
        """One line for ``status``, ``doctor`` and ``why``: which DAG is held, count against allowance, the fix."""
        since = f" since {self.stopped_at.isoformat(timespec='seconds')}" if self.stopped_at is not None else ""
        span = f" (partitions {self.stopped_first} .. {self.stopped_last})" if self.stopped_first is not None else ""
        return (f"DAG {instance}/{dag} is held by the trigger budget{since}: {self.count} new run(s) of it started in "
                f"the window, reaching its allowance of {self.allowance} (what its partition grids explain, with a "
                f"margin), and {self.stopped_count} more were due when it was held{span}; nothing new of {dag} starts "
                f"until `coordinator release {instance} --dag {dag}` (check its upstreams' successes first); other "
                f"DAGs of {instance} are not held")  # fmt: skip


class BudgetState(BaseModel):
    """Value of ``{prefix}/config/budget/{instance}``: whether the ceiling stopped the instance, and what was released.

    The stored field names are the key's contract: ``stopped*`` are stored and read as ``held*`` (their aliases)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, serialize_by_alias=True, validate_by_alias=True, validate_by_name=True
    )
    stopped: bool = Field(default=False, alias="held")
    #: The limit in force when the stop was recorded: a larger limit lifts it (semantics `budget-holds-stay`).
    limit: int = Field(default=0, ge=0)
    #: How many new triggers were stopped when the stop was recorded.
    stopped_count: int = Field(default=0, ge=0, alias="held_count")
    stopped_at: datetime | None = Field(default=None, alias="held_at")
    #: Triggers caused at or before this revision pass (semantics `budget-explained-pass`); written by
    #: ``coordinator release``.
    released_through: int = Field(default=0, ge=0)
    by: str = ""
    at: datetime | None = None
    #: New runs let through per bucket of the window, ``(bucket start in epoch seconds, count)``, oldest first: the
    #: count that ``coordinator.core.budget.Window`` judges (semantics `budget-order`). Kept here, in etcd, so that it
    #: holds across reconcile passes and a failover; a release empties it.
    started: tuple[tuple[int, int], ...] = ()
    #: Semantics `budget-per-dag`: dag_id -> that DAG's count and stop (absent in a record of a version without them).
    dags: dict[str, DagBudget] = Field(default_factory=dict)

    def stopped_dags(self) -> dict[str, DagBudget]:
        """The DAGs of this instance stopped by their allowance, by dag_id."""
        return {dag: d for dag, d in sorted(self.dags.items()) if d.stopped}

    def stopped_anywhere(self) -> bool:
        """Whether the instance, or any DAG of it, is stopped (what ``coordinator release INSTANCE`` releases)."""
        return self.stopped or any(d.stopped for d in self.dags.values())

    def affects_plans(self, other: BudgetState | None) -> bool:
        """Whether going from ``other`` to this state can change what passes: a hold, its limit or a release. A
        new count in the window alone cannot (it is read when the next trigger is judged), so the view does not
        re-plan every partition for it."""
        was = other if other is not None else BudgetState()
        if (self.stopped, self.limit, self.released_through) != (was.stopped, was.limit, was.released_through):
            return True
        plans = {d: b.plan_fields() for d, b in self.dags.items()}
        before = {d: b.plan_fields() for d, b in was.dags.items()}
        idle = DagBudget().plan_fields()  # a DAG entry appearing with only a count changes nothing
        return any(plans.get(d, idle) != before.get(d, idle) for d in plans.keys() | before.keys())

    def stops(self, limit: int) -> bool:
        return self.stopped and limit > 0 and self.limit >= limit

    def describe(self, instance: str) -> str:
        """One line for ``status`` and ``doctor``: who is held since when, and how to release it."""
        since = f" since {self.stopped_at.isoformat(timespec='seconds')}" if self.stopped_at is not None else ""
        return (f"instance {instance} is held by the trigger budget{since}: {self.stopped_count} new run(s) beyond the "
                f"instance-wide ceiling of {self.limit} new runs in its window wait, and nothing new starts there "
                f"until `coordinator release {instance}` (check the runs first) or a larger "
                f"COORDINATOR_TRIGGER_BUDGET")  # fmt: skip


def parse_budget(raw: bytes) -> tuple[BudgetState | None, str | None]:
    """The state in ``raw``, or (None, why not). Never raises."""
    try:
        return BudgetState.model_validate_json(raw), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


def dump_budget(state: BudgetState) -> bytes:
    """The record's bytes. A DAG entry leaves out its defaults: a midnight cascade counts a few hundred DAGs in one
    record, written on every pass that starts runs, and most entries are one bucket (``{"started": [[t, 1]]}``)."""
    data = state.model_dump(mode="json", exclude_none=True)
    data["dags"] = {dag: entry.model_dump(mode="json", exclude_defaults=True) for dag, entry in state.dags.items()}
    return json.dumps(data, separators=(",", ":")).encode()
