"""The one read of the store that readers build on: ``status``, ``why``, ``reconcile --once``'s report, ``diff``,
``doctor`` and the page's whole-prefix view take it from here instead of each reading and loading its own copy.

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
from coordinator.deadline_report import recorded_deadlines
from coordinator.etcd.types import KV
from coordinator.presence import LeaderFact, WatcherPresence, leader_and_watchers

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


def model_of(keys: KeyLayout, revision: int, kvs: Sequence[KV]) -> StoreModel:
    """The model of keys read at ``revision`` (all of the prefix, or the parts a restricted role may read)."""
    view = View(keys)
    view.load(revision, ((kv.key, kv.value, kv.mod_revision) for kv in kvs))
    leader, watchers = leader_and_watchers(keys, ((kv.key, kv.value, kv.create_revision) for kv in kvs))
    return StoreModel(view, leader, watchers, recorded_deadlines(keys, ((kv.key, kv.value) for kv in kvs)))


async def read_model(store: EtcdStore, keys: KeyLayout) -> StoreModel:
    """One snapshot of the whole prefix, as a model."""
    snap = await store.snapshot(keys.root)
    return model_of(keys, snap.revision, snap.kvs)
