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
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from coordinator.core.model import NodeId

#: A member of a group: the upstream DAG and the task that counts (None: the whole run), as an edge is keyed.
Member = tuple[NodeId, str | None]


class GroupRule(StrEnum):
    """How many members of a group must be satisfied."""

    ANY = "any"
    AT_LEAST = "at_least"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One condition group of a DAG: ``need`` of ``members`` (sorted, distinct, at least two)."""

    rule: GroupRule
    need: int
    members: tuple[Member, ...]

    def item(self) -> list[object]:
        """The group as JSON-able data, for the DAG's shape (**Pure values**)."""
        return [str(self.rule), self.need, [[node.qualified, task] for node, task in self.members]]

    def describe(self) -> str:
        """``any of a, b`` / ``2 of a, b, c`` (the words ``why`` and ``inputs`` can reuse)."""
        names = ", ".join(member_name(m) for m in self.members)
        return f"any of {names}" if self.rule is GroupRule.ANY else f"{self.need} of {names}"


def member_name(member: Member) -> str:
    node, task = member
    return str(node) if task is None else f"{node} task {task}"


def holds(groups: Sequence[GroupSpec], satisfied: Collection[Member]) -> bool:
    """Whether every group has at least ``need`` satisfied members (**Holds by count**; required edges apart)."""
    return all(sum(m in satisfied for m in group.members) >= group.need for group in groups)


def grouped(groups: Sequence[GroupSpec]) -> frozenset[Member]:
    """Every member of every group (the other success edges of the DAG are required)."""
    return frozenset(m for group in groups for m in group.members)
