"""Retention in the read model: the floor a watcher holds, followed in event order with the view, and what it retires.

Rules (semantics `retention-retires`, ``coordinator.core.retention``):
- **The floor in event order.** :class:`RetentionTracker` follows ``{prefix}/config/retention`` in event order, with the
  view (the informer's follower, :class:`FollowView`): every plan the service makes passes through
  :meth:`RetentionTracker.retirement`, which drops the triggers of retired decisions. An unparsable floor is reported
  and the last valid one stays (a garbage value must not bring retired partitions back); a deleted floor is an explicit
  lowering.
- **Retired partitions forgotten.** Retired partitions are forgotten by the view (memory) as soon as the floor retires
  them or a write reaches them; the keys forgotten but still stored are remembered as small facts, by partition, so the
  leader's retention (``watcher/retention.py``, a key per partition) can delete them
  (:meth:`RetentionTracker.leftovers_of` one partition's, :meth:`RetentionTracker.leftover_partitions` which have some).
- **Only the informer drives it.** Like every part of the read model, it changes only as the informer applies a load or
  a watch event: the leader's own floor comes back through the watch (``informer/expectations.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout
from coordinator.core.retention import KeyFact, RetentionFloor, Retirement, forget_retired, parse_floor
from coordinator.core.view import View
from coordinator.informer.index import Fed, Need

log = logging.getLogger(__name__)


class RetentionTracker:
    """The floor as of the view's revision, the retired keys the view forgot, and the plan filter
    (**The floor in event order** and **Retired partitions forgotten**)."""

    def __init__(self, keys: KeyLayout) -> None:
        self.key = keys.config_key("retention")
        self.floor: RetentionFloor | None = None
        #: mod revision of the floor key (the CAS guard of the next floor write); 0 = absent.
        self.floor_rev = 0
        #: key -> fact: retired keys the view forgot that are still stored (until a delete event arrives).
        self.leftovers: dict[str, KeyFact] = {}
        #: partition -> the keys of ``leftovers`` in it: the leader's retention reconciles one partition at a time.
        self._by_partition: dict[str, set[str]] = {}
        self._retirement: Retirement | None = None

    def load(self, view: View) -> None:
        """After the view is loaded: take the floor it read with the same snapshot (None: no floor) and forget what
        that floor retires."""
        self.floor, self.floor_rev, self.leftovers, self._retirement = view.floor, view.floor_rev, {}, None
        self._by_partition = {}
        if view.floor is not None:
            log.info("retention.floor before=%s by=%s at=%s revision=%d", view.floor.before, view.floor.by,
                     view.floor.at.isoformat() if view.floor.at else "-", view.floor_rev)  # fmt: skip
        self._forget(view, None)

    def observe(self, view: View, key: str, value: bytes | None, mod_rev: int) -> None:
        """After ``view.apply`` of one event: follow the floor, forget a retired partition that was written."""
        if key == self.key:
            if value is None:
                log.warning("retention.floor_removed key=%s was=%s", key, self.floor.before if self.floor else "-")
                self.floor, self.floor_rev, self._retirement = None, 0, None
            else:
                self._set(value, mod_rev)
                self._forget(view, None)
            return
        if value is None:
            self._drop(key)
        if self.floor is not None:
            at = view.node_of(key)
            partition = at[1] if at is not None else key.rsplit("/", 1)[-1]  # a backfill key's, or not a partition
            if self.floor.retires(partition):
                self._forget(view, [partition])  # only a partition the view indexes is forgotten

    def _set(self, value: bytes, mod_rev: int) -> None:
        floor, problem = parse_floor(value)
        if floor is None:
            log.warning("retention.bad_floor key=%s problem=%r kept=%s", self.key, problem,
                        self.floor.before if self.floor else "-")  # fmt: skip
            return
        if self.floor != floor:
            log.info("retention.floor before=%s by=%s at=%s revision=%d", floor.before, floor.by,
                     floor.at.isoformat() if floor.at else "-", mod_rev)  # fmt: skip
        self.floor, self.floor_rev, self._retirement = floor, mod_rev, None

    def _forget(self, view: View, partitions: list[str] | None) -> None:
        before = len(view.partitions)
        dropped = forget_retired(view, self.floor, partitions)
        for fact in dropped:
            self.leftovers[fact.key] = fact
            self._by_partition.setdefault(fact.partition, set()).add(fact.key)
        if partitions is None and dropped:  # a sweep (start, the floor moved); single late writes are not news
            log.info("retention.forgot partitions=%d keys=%d floor=%s", before - len(view.partitions), len(dropped),
                     self.floor.before if self.floor else "-")  # fmt: skip

    def _drop(self, key: str) -> None:
        fact = self.leftovers.pop(key, None)
        if fact is None:
            return
        keys = self._by_partition.get(fact.partition)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_partition[fact.partition]

    def leftovers_of(self, partition: str) -> list[KeyFact]:
        """The retired keys of ``partition`` that the view forgot and etcd still holds
        (**Retired partitions forgotten**)."""
        return [self.leftovers[key] for key in sorted(self._by_partition.get(partition, ()))]

    def leftover_partitions(self) -> set[str]:
        """The partitions that still have keys the view forgot (**Retired partitions forgotten**)."""
        return set(self._by_partition)

    def retirement(self, graph: Graph) -> Retirement:
        """The retired decisions of ``graph`` under the current floor (memoised per graph and floor)."""
        if self._retirement is None or self._retirement.graph is not graph:
            self._retirement = Retirement(graph, self.floor)
        return self._retirement


@dataclass
class FollowView:
    """The tracker as the informer's follower of ``view`` (``informer.Follower``): it sees each key right after the
    view has applied it, so what the floor retires is forgotten in event order."""

    tracker: RetentionTracker
    view: View

    def loaded(self) -> None:
        self.tracker.load(self.view)

    def follow(self, key: str, value: bytes | None, mod_rev: int) -> None:
        self.tracker.observe(self.view, key, value, mod_rev)


def _follow(view: View) -> Fed[RetentionTracker]:
    tracker = RetentionTracker(view.keys)
    return Fed(tracker, follower=FollowView(tracker, view))


#: The floor and what it retires, as a concern asks the informer for them: a follower of the view, not an index of a
#: key family (``informer/index.py``'s **A need lives beside its index**).
RETENTION_TRACKER: Need[RetentionTracker] = Need("retention", _follow)
