"""The informer and the indexes it feeds: one list/watch of the store, one read model of every key family."""

from coordinator.informer.deadlines import DeadlineIndex
from coordinator.informer.index import Fed, Follower, Index, Need
from coordinator.informer.informer import Changes, Informer, Loaded
from coordinator.informer.lineage import LineageIndex
from coordinator.informer.presence import PresenceIndex

__all__ = [
    "Changes",
    "DeadlineIndex",
    "Fed",
    "Follower",
    "Index",
    "Informer",
    "LineageIndex",
    "Loaded",
    "Need",
    "PresenceIndex",
]
