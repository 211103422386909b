"""A watch batch's changes written by hand, for the tests of one concern's interest (what the informer would name)."""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.core.model import NodeId
from coordinator.core.view import View
from coordinator.informer import Changes, DeadlineIndex


def changes_of(
    revision: int,
    *,
    relisted: bool = False,
    nodes: Iterable[tuple[NodeId, str]] = (),
    partitions: Iterable[str] = (),
    deadlines: Iterable[tuple[NodeId, str]] = (),
) -> Changes:
    """The changes of a batch at ``revision`` that named these keys, each in its kind."""
    changes = Changes(revision, relisted)
    changes.update(View.NODES, nodes)
    changes.update(View.PARTITIONS, partitions)
    changes.update(DeadlineIndex.RECORDS, deadlines)
    return changes
