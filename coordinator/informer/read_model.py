"""The one loader of every reader: ``load(store, keys, families, scope)`` reads what a reader asks for through the
informer (``coordinator/informer``, the watcher's own: the same indexes, fed by the same code) into one typed
:class:`StoreModel`. ``status``, ``why``, ``why asset``, ``reconcile``'s report, ``diff``, ``doctor``, ``prune``,
the page and its asset feed and the OpenLineage receiver's retirer read the store this way; none takes a snapshot of
its own (``tests/test_read_model_load.py`` greps for one).

Rules:
- **Families fill indexes.** Families name the key families of the layout (``docs/keys.md``) and, with them, the
  indexes filled: the view (run states, task states, the ledger, the config keys), the leader's recorded deadline
  transitions, the watchers' presence and the leader key, the asset events with the delivery ledger, the lineage
  records. An index not asked for is not built (None in the model): a reader pays only for what it shows.
- **The scope says what is read.** ``WHOLE``: every key of the families; with the view's, one streamed read of the
  whole prefix at one revision (the watcher's read: the view's facts are never from two moments), without them one
  snapshot per family. Named parts (``Scope``): sub-prefixes (one instance's lineage records), single keys (read
  together at ``Scope.revision``) and keys the reader already read at that revision (``given``: the page's walk
  back through a DAG's runs). Each snapshot is one revision; separate snapshots may differ
  (``StoreModel.revisions``).
- **What the role may read.** ``readable_only``: a reader under a role that may read only parts of the prefix
  (``coordinator roles``) reads each part on its own and leaves out those it may not read, named in
  ``StoreModel.unread``; ``doctor`` lists them.
- **Bad values are kept.** They are the informer's problems, kept in the model (``bad_values``); a reader shows what
  parses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetKeys
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import View
from coordinator.errors import StoreError
from coordinator.etcd.types import KV
from coordinator.informer import DeadlineIndex, Index, Informer, LineageIndex, Loaded, PresenceIndex
from coordinator.informer.presence_value import LeaderFact, WatcherPresence

if TYPE_CHECKING:  # the gRPC client is imported by whoever connects, not by `coordinator --help`
    from coordinator.etcd import EtcdStore


class Family(StrEnum):
    """A key family of the layout (**Families fill indexes**), and so the index it fills."""

    RUNS = "runs"  # {prefix}/runs/: the view's run states
    TASKS = "tasks"  # {prefix}/tasks/: the view's task states
    LEDGER = "ledger"  # {prefix}/triggers/: the view's ledger
    CONFIG = "config"  # {prefix}/config/: the view's graph, floor, checkpoint, backfill requests and budgets
    DEADLINES = "deadlines"  # {prefix}/deadlines/: the leader's recorded deadline transitions
    PRESENCE = "presence"  # {prefix}/watchers/ and {prefix}/leader
    ASSETS = "assets"  # {prefix}/assets/ and {prefix}/deliveries/: one index (a stream needs both)
    LINEAGE = "lineage"  # {prefix}/lineage/: the OpenLineage receiver's records

    def prefixes(self, keys: KeyLayout) -> tuple[str, ...]:
        """The keys of the family: each a prefix (the leader key is a key that is its own prefix)."""
        assets = AssetKeys(keys.prefix)
        return {
            Family.RUNS: (keys.runs,),
            Family.TASKS: (keys.tasks,),
            Family.LEDGER: (keys.triggers,),
            Family.CONFIG: (keys.config,),
            Family.DEADLINES: (keys.deadlines,),
            Family.PRESENCE: (keys.leader, keys.watchers),
            Family.ASSETS: (assets.events, assets.deliveries),
            Family.LINEAGE: (keys.lineage,),
        }[self]


#: Every family: what the watcher holds and ``status`` shows (with the assets and the lineage records).
ALL: frozenset[Family] = frozenset(Family)
#: The view's families: run states, task states, the ledger and the config keys.
VIEW: frozenset[Family] = frozenset({Family.RUNS, Family.TASKS, Family.LEDGER, Family.CONFIG})
#: What the CLI's readers of the whole prefix load (``status`` adds the assets when it shows their streams).
READERS: frozenset[Family] = VIEW | {Family.DEADLINES, Family.PRESENCE}


@dataclass(frozen=True)
class Scope:
    """Which keys of the families a load reads (**The scope says what is read**): none named, all (``WHOLE``)."""

    #: Sub-prefixes, each read as one snapshot.
    prefixes: tuple[str, ...] = ()
    #: Single keys, read together at ``revision``.
    keys: tuple[str, ...] = ()
    #: The revision of ``keys`` (and of ``given``); 0: the current one.
    revision: int = 0

    @property
    def whole(self) -> bool:
        return not self.prefixes and not self.keys


WHOLE = Scope()


@dataclass(frozen=True)
class StoreModel:
    """What a reader knows after one load: the view and the indexes of the families asked for (None: not asked)."""

    view: View
    families: frozenset[Family]
    deadlines: DeadlineIndex | None = None
    presence: PresenceIndex | None = None
    #: The recorded asset events and the delivery ledger.
    assets: AssetIndex | None = None
    lineage: LineageIndex | None = None
    #: The newest revision read (a whole-prefix load: the one revision).
    revision: int = 0
    #: Each snapshot read and its revision, when the load took several (**The scope says what is read**).
    revisions: dict[str, int] = field(default_factory=dict)
    #: Parts the role may not read (**What the role may read**).
    unread: tuple[str, ...] = ()
    #: Keys an index left out, with why: (index, key, problem) (the view's own are in ``view.problems``).
    problems: tuple[tuple[str, str, str], ...] = ()
    #: The informer it was loaded through: a reader that follows the store (the page's asset feed) watches with it.
    informer: Informer | None = field(default=None, compare=False, repr=False)

    @property
    def leader(self) -> LeaderFact | None:
        return self.presence.leader if self.presence is not None else None

    @property
    def watchers(self) -> list[WatcherPresence]:
        return self.presence.watchers if self.presence is not None else []

    @property
    def recorded(self) -> dict[tuple[NodeId, str], DeadlineRecord]:
        """The leader's recorded deadline transitions (``{prefix}/deadlines/...``): causes only the watcher sees."""
        return dict(self.deadlines.records) if self.deadlines is not None else {}

    def bad_values(self) -> dict[str, str]:
        """key -> what is wrong with it, for every key the view or an index left out, sorted by key."""
        found = {**{key: problem for _, key, problem in self.problems}, **self.view.problems}
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class _Reader:
    """The informer a load goes through, and the indexes of the families asked for (**Families fill indexes**)."""

    informer: Informer
    families: frozenset[Family]
    deadlines: DeadlineIndex | None
    presence: PresenceIndex | None
    assets: AssetIndex | None
    lineage: LineageIndex | None

    @classmethod
    def of(cls, keys: KeyLayout, families: Collection[Family]) -> _Reader:
        asked = frozenset(families)
        deadlines = DeadlineIndex(keys) if Family.DEADLINES in asked else None
        presence = PresenceIndex(keys) if Family.PRESENCE in asked else None
        assets = AssetIndex(AssetKeys(keys.prefix)) if Family.ASSETS in asked else None
        lineage = LineageIndex(keys) if Family.LINEAGE in asked else None
        indexes: list[Index] = [i for i in (deadlines, presence, assets, lineage) if i is not None]
        return cls(Informer(View(keys), indexes), asked, deadlines, presence, assets, lineage)

    def model(self, loaded: Loaded) -> StoreModel:
        return StoreModel(
            self.informer.view, self.families, self.deadlines, self.presence, self.assets, self.lineage,
            loaded.revision, dict(loaded.revisions), loaded.unread, loaded.problems, self.informer,
        )  # fmt: skip


def prefixes_of(keys: KeyLayout, families: Collection[Family]) -> tuple[str, ...]:
    """Every family's prefixes, in key order (one snapshot per family: **The scope says what is read**)."""
    return tuple(sorted({p for family in families for p in family.prefixes(keys)}))


async def load(
    store: EtcdStore,
    keys: KeyLayout,
    families: Collection[Family] = READERS,
    scope: Scope = WHOLE,
    *,
    given: Sequence[KV] = (),
    readable_only: Callable[[StoreError], bool] | None = None,
) -> StoreModel:
    """``families``' indexes filled with the keys of ``scope`` (every rule above), through the informer.

    ``given``: keys already read at ``scope.revision``, taken with the rest. ``readable_only``: the errors
    that mean "this role may not read it" (**What the role may read**): such a part is left out and named instead
    of failing the load."""
    reader = _Reader.of(keys, families)
    informer = reader.informer
    if scope.whole and readable_only is None and reader.families >= VIEW:
        # The view's facts at one revision (``core/view.py``'s **The floor is a fact**): one read of it all.
        scope = Scope((keys.root,))
    elif scope.whole:
        parts = prefixes_of(keys, reader.families)
        # A role may be granted one key (the leader's) and no range over it: read such keys as keys.
        single = tuple(p for p in parts if not p.endswith("/")) if readable_only is not None else ()
        scope = Scope(tuple(p for p in parts if p not in single), single)
    if scope.prefixes == (keys.root,) and not scope.keys and not given and readable_only is None:
        return reader.model(await informer.load(store, keys.root))
    loaded = await informer.load_parts(store, scope.prefixes, scope.keys, revision=scope.revision, given=given,
                                       skip=readable_only)  # fmt: skip
    return reader.model(loaded)


def model_of(keys: KeyLayout, revision: int, kvs: Sequence[KV], families: Collection[Family] = READERS) -> StoreModel:
    """``load`` of keys already read at ``revision``, with no read of its own."""
    reader = _Reader.of(keys, families)
    items = sorted((kv.key, kv.value, kv.mod_revision) for kv in kvs)
    return reader.model(reader.informer.load_items(revision, items))


async def read_model(store: EtcdStore, keys: KeyLayout, *, assets: bool = False) -> StoreModel:
    """``load`` of the whole prefix for the CLI's readers (``READERS``), with the asset index when asked."""
    return await load(store, keys, READERS | {Family.ASSETS} if assets else READERS)
