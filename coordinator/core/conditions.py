"""Condition groups: a DAG that runs when ANY of some upstreams, or N OF them, are satisfied (semantics
`condition-groups`).

Rules:
- **Groups hold edges.** A group is a rule (``any``, ``at_least``) over member edges, each keyed (upstream DAG, task)
  like an edge (a DAG may wait for two tasks of one upstream). The DAG's ungrouped success edges stay required (the
  ``upstreams`` list is itself the ``all`` of today); an ``all`` group in the file is flattened into that list by the
  loader, so only ``any`` and ``at_least`` reach here.
- **Holds by count.** A group holds when at least ``need`` of its members are satisfied (``any`` is ``need`` 1);
  a DAG's condition holds when every required edge is satisfied and every group holds (:func:`holds`).
- **Pure values.** Frozen, hashable, JSON-able through :meth:`GroupSpec.item`; the graph's shape carries them only
  when present, so a graph without groups keeps its digest.
- **Cutoff.** A group may carry a cutoff (semantics `group-cutoff`): from ``P + cutoff`` on (``now`` is an input, never
  read here) it holds with ``minimum`` satisfied members instead of ``need``; ``late`` says whether members that
  complete the group after such an early run rerun D once (``rerun``) or not (``ignore``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from coordinator.core.duration import format_shift
from coordinator.core.model import NodeId, partition_datetime

#: A member of a group: the upstream DAG and the task that counts (None: the whole run), as an edge is keyed.
Member = tuple[NodeId, str | None]


class GroupRule(StrEnum):
    """How many members of a group must be satisfied."""

    ANY = "any"
    AT_LEAST = "at_least"


class Late(StrEnum):
    """What members that complete a group after its cutoff run do (semantics `group-cutoff`)."""

    RERUN = "rerun"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One condition group of a DAG: ``need`` of ``members`` (sorted, distinct, at least two)."""

    rule: GroupRule
    need: int
    members: tuple[Member, ...]
    #: Seconds after the partition's start from which ``minimum`` members are enough (**Cutoff**); None: never.
    cutoff: int | None = None
    minimum: int = 1
    late: Late = Late.RERUN

    def item(self) -> list[object]:
        """The group as JSON-able data, for the DAG's shape (**Pure values**; the cutoff only when present)."""
        item: list[object] = [str(self.rule), self.need, [[node.qualified, task] for node, task in self.members]]
        if self.cutoff is not None:
            item += [self.cutoff, self.minimum, str(self.late)]
        return item

    def cutoff_at(self, partition: str) -> datetime | None:
        """When the cutoff of ``partition`` passes (its start plus the cutoff); None without a cutoff."""
        if self.cutoff is None:
            return None
        return partition_datetime(partition) + timedelta(seconds=self.cutoff)

    def holds(self, satisfied: int, partition: str, now: datetime | None) -> bool:
        """**Holds by count**, or with ``minimum`` once the cutoff has passed at ``now`` (None: it never has)."""
        if satisfied >= self.need:
            return True
        at = self.cutoff_at(partition)
        return at is not None and now is not None and now >= at and satisfied >= self.minimum

    def describe(self) -> str:
        """``any of a, b`` / ``2 of a, b, c`` (the words ``why`` and ``inputs`` can reuse)."""
        names = ", ".join(member_name(m) for m in self.members)
        text = f"any of {names}" if self.rule is GroupRule.ANY else f"{self.need} of {names}"
        if self.cutoff is not None:
            text += f" ({self.minimum} from {format_shift(self.cutoff)} after the partition's start, late: {self.late})"
        return text


def member_name(member: Member) -> str:
    node, task = member
    return str(node) if task is None else f"{node} task {task}"


def holds(groups: Sequence[GroupSpec], satisfied: Collection[Member], partition: str, now: datetime | None) -> bool:
    """Whether every group holds (**Holds by count**, **Cutoff**; required edges apart) for ``partition`` at ``now``."""
    return all(group.holds(sum(m in satisfied for m in group.members), partition, now) for group in groups)


def grouped(groups: Sequence[GroupSpec]) -> frozenset[Member]:
    """Every member of every group (the other success edges of the DAG are required)."""
    return frozenset(m for group in groups for m in group.members)
