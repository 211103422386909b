"""The shared assets the dependencies page draws as nodes (semantics rules 16-17): source instance -> asset ->
target instances, with each target's delivered and pending counts.

Rules:
1. Pure: the recorded events and the delivery ledger in (``{prefix}/assets/...``, ``{prefix}/deliveries/...``),
   :class:`AssetNode` values out. The page's graph is the one the watcher adopted, which records DAGs, not routes:
   a routed asset is one the ledger has a delivery of, and its targets are the instances the ledger delivers it to.
2. Per target: ``delivered`` counts the recorded events of the asset the ledger marks done there; ``pending`` the
   other recorded events of the asset (an intent not confirmed, a refused or failed one, or none yet), as
   ``status`` counts a stream (``core.assets.streams``).
3. A recorded event with no delivery at all (an asset no route shares, a copy the coordinator made) draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core.assets import DeliveryStatus, Ledger, SourceEvent


@dataclass(frozen=True, slots=True)
class AssetTarget:
    """One target instance of a shared asset and where its deliveries stand (rule 2)."""

    instance: str
    delivered: int
    pending: int


@dataclass(frozen=True, slots=True)
class AssetNode:
    """One routed asset of one source instance, and the instances it is delivered to (rule 1)."""

    uri: str
    source: str
    targets: tuple[AssetTarget, ...]

    @property
    def instances(self) -> tuple[str, ...]:
        """Every instance the node names (the page's access check reads these)."""
        return (self.source, *(t.instance for t in self.targets))


def asset_nodes(events: Sequence[SourceEvent], ledger: Ledger) -> tuple[AssetNode, ...]:
    """Rules 1-3: one node per (source, asset) with a delivery in the ledger, sorted by source then URI."""
    recorded: dict[tuple[str, str], set[int]] = {}
    for event in events:
        recorded.setdefault((event.source, event.fact.uri), set()).add(event.fact.event_id)
    done: dict[tuple[str, str], dict[str, set[int]]] = {}
    for (target, source, uri, event_id), (record, _) in ledger.entries.items():
        delivered_ids = done.setdefault((source, uri), {}).setdefault(target, set())
        if record.status is DeliveryStatus.DONE:
            delivered_ids.add(event_id)
    nodes: list[AssetNode] = []
    for (source, uri), per_target in sorted(done.items()):
        ids = recorded.get((source, uri), set())
        targets = tuple(
            # Retention deletes a delivered event with its ledger entries: both counts cover what is still recorded.
            AssetTarget(target, len(delivered), len(ids - delivered))
            for target, delivered in sorted(per_target.items())
        )
        nodes.append(AssetNode(uri, source, targets))
    return tuple(nodes)
