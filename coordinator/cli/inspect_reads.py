"""What the inspect commands (``status``, ``why``, ``reconcile --dry-run``, ``backfill``) read and decide through.

Rules:
- **One read model.** A whole-prefix read is one load of the informer's indexes (``informer.read_model.load``), as
  the watcher and the page read; no command lists a prefix on its own.
- **One decision.** Each decides through ``core.decide.decide`` with the settings the leader would use, at this
  moment: what they print is what a leading watcher would do.
- **A connection per read.** Each read opens the store and closes it when done: a command reads a few times, once each.
"""

from __future__ import annotations

from datetime import UTC, datetime

from coordinator.cli.app import fail
from coordinator.core.adoption import FirstAdoption
from coordinator.core.decide import Decision, decide
from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.core.model import NodeId, any_partition
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.explain.lineage import LineageState, lineage_states, why_lineage_lines
from coordinator.informer.holds import read_holds
from coordinator.informer.read_model import READERS, Family, StoreModel, load
from coordinator.runtime.settings import Settings


def partition_arg(text: str) -> str:
    """A ``--partition`` as given: a logical date, a segment or both (exit 2 with the problem otherwise)."""
    try:
        return any_partition(text)
    except ValueError as exc:
        fail(str(exc))


def decide_now(graph: Graph, view: View, settings: Settings, partitions: list[str] | None = None) -> Decision:
    """The one decision (``core/decide.py``), as the leader would take it with these settings, at this moment."""
    return decide(graph, view, partitions, now=datetime.now(UTC), history=settings.history_choice,
                  limit=settings.first_start_limit)  # fmt: skip


def first_start_lines(first: FirstAdoption | None, settings: Settings) -> list[str]:
    """What a first start would do on this store (semantics `first-adoption`), in lines for status, why and
    --dry-run."""
    if first is None:
        return []
    lines = [
        f"no graph has been adopted under {settings.prefix} yet: no watcher has run here. Start one with "
        "`coordinator watch` (or unpause the 00_watcher DAG); its first pass adopts dependencies.json.",
        first.summary(),
    ]
    if first.paused:
        lines += [f"  - {hint}" for hint in first.how_to_proceed()]
    return lines


async def read_model(settings: Settings, families: frozenset[Family] = READERS) -> StoreModel:
    """One load of the whole prefix (``informer.read_model.load``) into the indexes of ``families``: the view, plus
    by default the leader and the live watchers' presence (status's header) and the leader's recorded deadline
    transitions (causes only the watcher sees: ``explain.deadlines``'s **The leader's causes**); ``status`` adds the
    asset events and deliveries (its streams)."""
    async with await EtcdStore.connect(settings.etcd()) as store:
        return await load(store, settings.keys, families)


async def read_all_holds(settings: Settings) -> list[Hold]:
    """Every hold recorded, read through the informer (``informer/holds.py``)."""
    async with await EtcdStore.connect(settings.etcd()) as store:
        index, _ = await read_holds(store, settings.keys)
    return list(index.holds.values())


async def read_lineage_states(settings: Settings, graph: Graph, partitions: list[str]) -> list[LineageState]:
    async with await EtcdStore.connect(settings.etcd()) as store:
        return await lineage_states(store, settings.keys, graph, partitions)


async def read_lineage_lines(settings: Settings, graph: Graph, node: NodeId, partition: str) -> list[str]:
    async with await EtcdStore.connect(settings.etcd()) as store:
        return await why_lineage_lines(store, settings.keys, graph, node, partition)
