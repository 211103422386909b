"""The one read of the store that readers build on: ``status``, ``why``, ``reconcile``'s report, ``diff``,
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

from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.core.deadline.states import DeadlineRecord
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import View
from coordinator.etcd.types import KV
from coordinator.informer import DeadlineIndex, Index, Informer, Loaded, PresenceIndex
from coordinator.informer.presence_value import LeaderFact, WatcherPresence

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
    #: The recorded asset events and the delivery ledger, when asked for (``status``'s asset streams).
    assets: AssetIndex | None = None
    #: Keys an index left out, with why: (index, key, problem) (the view's own are in ``view.problems``).
    problems: tuple[tuple[str, str, str], ...] = ()

    def bad_values(self) -> dict[str, str]:
        """key -> what is wrong with it, for every key the view or an index left out, sorted by key."""
        found = {**{key: problem for _, key, problem in self.problems}, **self.view.problems}
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class _Reader:
    """The informer a reader loads through, and the indexes it fills."""

    informer: Informer
    deadlines: DeadlineIndex
    presence: PresenceIndex
    assets: AssetIndex | None

    @classmethod
    def of(cls, keys: KeyLayout, *, assets: bool = False) -> _Reader:
        deadlines, presence = DeadlineIndex(keys), PresenceIndex(keys)
        index = AssetIndex(AssetKeys(keys.prefix)) if assets else None
        indexes: list[Index] = [deadlines, presence, *([index] if index is not None else [])]
        return cls(Informer(View(keys), indexes), deadlines, presence, index)

    def model(self, loaded: Loaded) -> StoreModel:
        view, presence = self.informer.view, self.presence
        return StoreModel(view, presence.leader, presence.watchers, dict(self.deadlines.records), self.assets,
                          loaded.problems)  # fmt: skip


def model_of(keys: KeyLayout, revision: int, kvs: Sequence[KV]) -> StoreModel:
    """The model of keys read at ``revision`` (all of the prefix, or the parts a restricted role may read), taken in
    as the informer takes a snapshot."""
    reader = _Reader.of(keys)
    loaded = reader.informer.load_items(revision, sorted((kv.key, kv.value, kv.mod_revision) for kv in kvs))
    return reader.model(loaded)


async def read_model(store: EtcdStore, keys: KeyLayout, *, assets: bool = False) -> StoreModel:
    """One snapshot of the whole prefix, streamed into the model by the watcher's own informer (``informer.load``);
    with ``assets``, the asset index too (its values are validated: only a reader that shows assets pays for it)."""
    reader = _Reader.of(keys, assets=assets)
    return reader.model(await reader.informer.load(store, keys.root))
