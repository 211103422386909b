"""The shared assets the dependencies page draws as nodes of its graph (semantics `assets-by-route` and
`asset-exactly-once`): producer DAG -> asset -> one small node per target instance, with each target's delivered and
pending counts.

Rules:
- **Pure, from the ledger.** Pure: the recorded events and the delivery ledger in (``{prefix}/assets/...``,
  ``{prefix}/deliveries/...``), :class:`AssetNode` values out. The page's graph is the one the watcher adopted, which
  records DAGs, not routes: a routed asset is one the ledger has a delivery of, and its targets are the instances the
  ledger delivers it to.
- **Counts per target.** Per target: ``delivered`` counts the recorded events of the asset the ledger marks done there;
  ``pending`` the other recorded events of the asset (an intent not confirmed, a refused or failed one, or none yet), as
  ``status`` counts a stream (``core.assets.streams``); a skipped one (semantics `asset-skip`) counts in neither. The
  next pending event is the oldest undelivered one (the one semantics `asset-order` makes due) with its ledger status;
  the last error is the newest (by ledger revision) recorded one.
- **No delivery, nothing drawn.** A recorded event with no delivery at all (an asset no route shares, a copy the
  coordinator made) draws nothing.
- **Producers.** The DAGs of the source instance whose recorded events carry ``source_dag_id``. One that is a DAG of the
  drawn graph gets an edge to the asset node; the others are named in the node as text.
- **Placement.** Placement (:func:`place`): the asset node and its targets are laid out by ``page.layout`` after the
  DAGs drawn, an asset right of its drawn producers, its targets right of it; no DAG moves for them. Drawn with the
  view: an asset whose producer DAG is drawn; one with no producer in the graph when no state or neighbourhood filter is
  set, the text filters match it (``q`` in ``source:uri``, ``instance`` its source or a target) and on the first page
  only. Its place depends on the DAGs drawn, so a filtered view closes up around it as it does for DAGs. At most
  :data:`MAX_DRAWN` assets are drawn per view (in source, URI order); the page says how many more matched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from coordinator.core.assets import DeliveryStatus, Ledger, SourceEvent
from coordinator.core.model import NodeId
from coordinator.page.layout import layered


class TargetState(StrEnum):
    """How a target's small node is drawn (``page.render``'s **Assets in the same drawing**), in the colours of the DAG
    state it reads like."""

    DELIVERED = "delivered"  # nothing pending: like a succeeded DAG
    PENDING = "pending"  # events wait: like a waiting DAG
    REFUSED = "refused"  # the next event was refused or failed (retried later): like an error


@dataclass(frozen=True, slots=True)
class AssetTarget:
    """One target instance of a shared asset and where its deliveries stand (**Counts per target**)."""

    instance: str
    delivered: int
    pending: int
    #: The oldest undelivered event's id (semantics `asset-order`: the one due), and its ledger entry's status (None: no
    #: intent yet).
    next_event: int | None = None
    next_status: DeliveryStatus | None = None
    retry_at: datetime | None = None
    #: The newest error the ledger recorded for this target's deliveries of the asset (also a since-retried one).
    last_error: str | None = None

    @property
    def state(self) -> TargetState:
        if not self.pending:
            return TargetState.DELIVERED
        return TargetState.REFUSED if self.next_status is DeliveryStatus.ERROR else TargetState.PENDING


@dataclass(frozen=True, slots=True)
class AssetNode:
    """One routed asset of one source instance, and the instances it is delivered to (**Pure, from the ledger**)."""

    uri: str
    source: str
    targets: tuple[AssetTarget, ...]
    #: DAG ids of ``source`` that produced its recorded events (**Producers**).
    producers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What ``?asset=`` names: ``source:uri`` (an instance name has no colon)."""
        return f"{self.source}:{self.uri}"

    @property
    def instances(self) -> tuple[str, ...]:
        """Every instance the node names (the page's access check reads these)."""
        return (self.source, *(t.instance for t in self.targets))

    @property
    def producer_nodes(self) -> tuple[NodeId, ...]:
        return tuple(NodeId(self.source, dag) for dag in self.producers)


def asset_nodes(events: Sequence[SourceEvent], ledger: Ledger) -> tuple[AssetNode, ...]:
    """**Pure, from the ledger**, **Counts per target**, **No delivery, nothing drawn** and **Producers**: one node per
    (source, asset) with a delivery in the ledger, sorted by source then URI."""
    recorded: dict[tuple[str, str], set[int]] = {}
    producers: dict[tuple[str, str], set[str]] = {}
    for event in events:
        recorded.setdefault((event.source, event.fact.uri), set()).add(event.fact.event_id)
        if event.fact.source_dag_id:
            producers.setdefault((event.source, event.fact.uri), set()).add(event.fact.source_dag_id)
    done: dict[tuple[str, str], dict[str, set[int]]] = {}
    errors: dict[tuple[str, str, str], tuple[int, str]] = {}
    skipped: set[tuple[str, str, str, int]] = set()
    for (target, source, uri, event_id), (record, rev) in ledger.entries.items():
        delivered_ids = done.setdefault((source, uri), {}).setdefault(target, set())
        if record.status is DeliveryStatus.DONE:
            delivered_ids.add(event_id)
        elif record.status is DeliveryStatus.SKIPPED:
            skipped.add((target, source, uri, event_id))
        if record.last_error and rev >= errors.get((target, source, uri), (-1, ""))[0]:
            errors[(target, source, uri)] = (rev, record.last_error)
    nodes: list[AssetNode] = []
    for (source, uri), per_target in sorted(done.items()):
        ids = recorded.get((source, uri), set())
        targets = []
        for target, delivered in sorted(per_target.items()):
            # Retention deletes a delivered event with its ledger entries: both counts cover what is still recorded.
            waiting = sorted(i for i in ids - delivered if (target, source, uri, i) not in skipped)
            head = ledger.entries.get((target, source, uri, waiting[0])) if waiting else None
            targets.append(
                AssetTarget(
                    target,
                    len(delivered),
                    len(waiting),
                    next_event=waiting[0] if waiting else None,
                    next_status=head[0].status if head is not None else None,
                    retry_at=head[0].retry_at if head is not None else None,
                    last_error=errors.get((target, source, uri), (0, None))[1],
                )
            )
        nodes.append(AssetNode(uri, source, tuple(targets), tuple(sorted(producers.get((source, uri), ())))))
    return tuple(nodes)


#: Assets drawn at most per view: an asset with two targets is about 2.4 KB of HTML, so 40 keep a page of 120 DAGs
#: (about 66 KB) near 165 KB, under the page's 200 KB budget (bench/page.py --assets); ``?q=`` finds the others.
MAX_DRAWN = 40


@dataclass(frozen=True, order=True, slots=True)
class Slot:
    """A node the drawing adds for a shared asset: the asset itself (``target`` empty) or one of its targets."""

    source: str
    uri: str
    target: str = ""


@dataclass(frozen=True, slots=True)
class DrawnTarget:
    target: AssetTarget
    column: int
    row: int


@dataclass(frozen=True, slots=True)
class DrawnAsset:
    """**Placement**: an asset node where the drawing puts it, its targets' small nodes, and its producers split into
    those drawn (an edge from each) and those named as text."""

    asset: AssetNode
    column: int
    row: int
    targets: tuple[DrawnTarget, ...]
    linked: tuple[NodeId, ...]
    unlinked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AssetFilter:
    """What of the view's selection decides which assets are drawn (**Placement**)."""

    q: str = ""
    instance: str = ""
    narrowed: bool = False  # a state or neighbourhood filter is set
    first_page: bool = True


def place(
    assets: Sequence[AssetNode],
    drawn: Mapping[NodeId, tuple[int, int]],
    in_graph: frozenset[NodeId] | set[NodeId],
    view: AssetFilter,
) -> tuple[tuple[DrawnAsset, ...], int]:
    """**Placement**: the assets this view draws, placed after the drawn DAGs (``drawn``: their places; ``in_graph``:
    every DAG of the whole graph, to tell a producer filtered out from one the graph does not have), and how many
    matched the view (more than drawn past :data:`MAX_DRAWN`)."""
    matched = [a for a in assets if _shown(a, drawn, in_graph, view)]
    chosen = matched[:MAX_DRAWN]
    order: list[Slot] = []
    sources: dict[Slot, tuple[object, ...]] = {}
    for asset in chosen:
        node = Slot(asset.source, asset.uri)
        order.append(node)
        sources[node] = tuple(p for p in asset.producer_nodes if p in drawn)
    for asset in chosen:  # after every asset node: a target's place needs its asset's
        for target in asset.targets:
            slot = Slot(asset.source, asset.uri, target.instance)
            order.append(slot)
            sources[slot] = (Slot(asset.source, asset.uri),)
    places = layered(order, sources, drawn)
    result = []
    for asset in chosen:
        column, row = places[Slot(asset.source, asset.uri)]
        targets = tuple(DrawnTarget(t, *places[Slot(asset.source, asset.uri, t.instance)]) for t in asset.targets)
        linked = tuple(p for p in asset.producer_nodes if p in drawn)
        unlinked = tuple(p.dag_id for p in asset.producer_nodes if p not in drawn)
        result.append(DrawnAsset(asset, column, row, targets, linked, unlinked))
    return tuple(result), len(matched)


def _shown(
    asset: AssetNode, drawn: Mapping[NodeId, tuple[int, int]], in_graph: frozenset[NodeId] | set[NodeId],
    view: AssetFilter,
) -> bool:  # fmt: skip
    if any(p in drawn for p in asset.producer_nodes):
        return True
    if any(p in in_graph for p in asset.producer_nodes) or view.narrowed or not view.first_page:
        return False  # its producer is a DAG this view does not draw: it goes where that DAG goes
    if view.q and view.q.lower() not in asset.key.lower():
        return False
    return not view.instance or view.instance in asset.instances
