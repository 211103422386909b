"""The one read of the store that readers build on: ``status``, ``why``, ``reconcile --once``'s report, ``diff``,
``doctor`` and the page's whole-prefix view take it from here instead of each reading and loading its own copy, and
it loads through the watcher's own informer (``coordinator/informer``): the same indexes, fed by the same code.

Everything under the prefix at one revision, loaded into the same :class:`~coordinator.core.view.View` the watcher
keeps (so a reader sees the facts the watcher decides on, parsed by the same code, problems included), plus what only
readers need from the same snapshot: the leader key and the live watchers' presence, and the leader's recorded
deadline transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.core.deadline.states import DeadlineRecord
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import View
from coordinator.etcd.types import KV
from coordinator.informer import DeadlineIndex, Informer, PresenceIndex
from coordinator.presence import LeaderFact, WatcherPresence

if TYPE_CHECKING:  # the gRPC client is imported by whoever connects, not by `coordinator --help`
    from coordinator.etcd import EtcdStore


@dataclass(frozen=True)
class StoreModel:
    """What a reader knows after one read of the prefix."""

    view: View
    leader: LeaderFact | None
    watchers: list[WatcherPresence]
    #: The leader's recorded deadline transitions (``{prefix}/deadlines/...``): causes only the watcher sees.
    recorded: dict[tuple[NodeId, str], DeadlineRecord]


def _informer(keys: KeyLayout) -> tuple[Informer, DeadlineIndex, PresenceIndex]:
    deadlines, presence = DeadlineIndex(keys), PresenceIndex(keys)
    return Informer(View(keys), [deadlines, presence]), deadlines, presence


def _model(informer: Informer, deadlines: DeadlineIndex, presence: PresenceIndex) -> StoreModel:
    return StoreModel(informer.view, presence.leader, presence.watchers, dict(deadlines.records))


def model_of(keys: KeyLayout, revision: int, kvs: Sequence[KV]) -> StoreModel:
    """The model of keys read at ``revision`` (all of the prefix, or the parts a restricted role may read), taken in
    as the informer takes a snapshot."""
    informer, deadlines, presence = _informer(keys)
    items = sorted((kv.key, kv.value, kv.mod_revision) for kv in kvs)
    informer.load_items(revision, items)
    return _model(informer, deadlines, presence)


async def read_model(store: EtcdStore, keys: KeyLayout) -> StoreModel:
    """One snapshot of the whole prefix, streamed into the model by the watcher's own informer (``informer.load``)."""
    informer, deadlines, presence = _informer(keys)
    await informer.load(store, keys.root)
    return _model(informer, deadlines, presence)
