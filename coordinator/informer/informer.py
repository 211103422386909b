"""The informer: the one consumer of the store's list and watch, feeding every key family's index.

Rules:
- **One read, one way in.** ``load`` streams the whole prefix at one revision into the view and
  every index, page by page as etcd sends it (nothing holds the snapshot); ``load_parts`` reads named parts of it
  (sub-prefixes, single keys, keys a reader already read); ``watch`` follows a prefix from a load's revision, applies
  each batch (``apply``) and yields what changed, relisting after a compaction (**Relists diff every index**). The
  watcher and every reader (``coordinator.informer.read_model.load``: the CLI, the page and its asset feed, prune, the
  lineage retirer) read through this module; none lists or watches the store, or parses keys, of its own.
- **To the indexes that own it.** Each key reaches the indexes that own it: the view (``core/view.py``) every key of the
  families it holds, and each :class:`Index` the keys under its ``prefixes``. During a load a page reaches an index only
  when its key range can hold one of them (etcd answers a range in key order, and nearly every page is run states or
  ledger entries of one DAG), so an index costs nothing on the pages it does not own.
- **Followers after the view.** After the view has applied a key, each :class:`Follower` sees it too: what is derived
  from the view (the retention tracker forgets the partitions its floor retires) follows it in the same event order.
- **Relists diff every index.** A relist after a compaction diffs against every key every index knows (``known``), so a
  key deleted while the watch was away leaves each index, not only the view.
- **Bad values never stop it.** The view keeps its problems (``View.problems``), an index says what was wrong with a key
  and leaves it out; both come back in :class:`Changes` (and :class:`Loaded`) for the caller to log and count.
- **Changes name what moved.** A watch batch's :class:`Changes` is the one "what changed" channel of every family:
  a set of typed keys per :class:`~coordinator.core.kinds.Kind` (``changes.of(View.NODES)``,
  ``changes.of(AssetIndex.STREAMS)``...). The informer knows no kind: right after the view or an index applied a key,
  it asks that owner to name the keys of its own kinds the key touched (``View.moved``, :meth:`Index.moved`; the
  owner parses its own keys; none keeps a change set of its own for a reader to drain), so a reconciler is handed
  what moved by the watch, its own writes come back included, and nobody writes them into an index by hand. A new
  index is one more entry in the informer's list; the informer, :class:`Changes` and their readers stay as they are.
- **Asked for, built once.** A reader asks for an index by its typed :class:`Need` (``informer.index(HOLDS)``,
  controller-runtime's ``GetFieldIndexer``: an index is registered by who needs it, not listed by whoever builds the
  informer): the first ask builds it from the view's key layout and adds it to the list (or, for what follows the
  view, to the followers), every later ask gets the same one. Asks come before the first load or watch batch; an
  index first asked for after that would have missed keys, and is refused.
- **Hints are nudges.** A key under ``hints`` is a nudge, not a fact (the plugin's asset-change keys: semantics
  `asset-facts`): it is named in :class:`Changes` (``Informer.HINTS``) and kept by nobody.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable, KeysView, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from coordinator.core.kinds import Kind
from coordinator.core.view import View
from coordinator.errors import StoreError
from coordinator.informer.expectations import Expectations
from coordinator.informer.index import Follower, Index, Need
from coordinator.runtime.frozen_gc import held_off_then_frozen

if TYPE_CHECKING:  # the gRPC client is imported by whoever connects, not by `coordinator --help`
    from coordinator.etcd import KV, EtcdStore, WatchBatch

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Loaded:
    """What a load read: its revision, how many keys, and the keys an index left out, with why
    (**Bad values never stop it**)."""

    revision: int
    keys: int
    problems: tuple[tuple[str, str, str], ...] = ()
    #: ``load_parts``: each sub-prefix read and the revision of its snapshot (each part is one revision; the
    #: parts' may differ, ``revision`` is the newest), and the parts left out because the role may not read them.
    revisions: Mapping[str, int] = field(default_factory=dict)
    unread: tuple[str, ...] = ()


@dataclass
class Changes:
    """What one watch batch changed, for the caller to queue (**One read, one way in**, **Changes name what moved**)."""

    revision: int
    relisted: bool
    #: How many events the batch held.
    events: int = 0
    #: The view's new problems: (key, problem).
    view_problems: list[tuple[str, str]] = field(default_factory=list)
    #: An index's: (index name, key, problem).
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    #: kind -> the keys of it the batch touched, in the order first named (a dict as an ordered set). Private: read
    #: through ``of``, which gives each kind's keys their type back.
    _moved: dict[Kind[Any], dict[Any, None]] = field(default_factory=dict, repr=False)

    def add(self, kind: Kind[K], key: K) -> None:
        found = self._moved.get(kind)
        if found is None:
            found = self._moved[kind] = {}
        found[key] = None

    def update(self, kind: Kind[K], keys: Iterable[K]) -> None:
        found = self._moved.get(kind)
        if found is None:
            found = self._moved[kind] = {}
        found.update(dict.fromkeys(keys))

    def of(self, kind: Kind[K]) -> KeysView[K]:
        """The keys of ``kind`` the batch touched, each once, in the order they were first named (empty: none)."""
        found = self._moved.get(kind)
        return (found if found is not None else _NONE).keys()


#: ``Changes.of`` for a kind the batch did not touch.
_NONE: dict[Any, None] = {}


class Informer:
    """The view and ``indexes``, fed from one list/watch (every rule of the module)."""

    #: The keys under ``hints`` a watch batch put or deleted (**Hints are nudges**).
    HINTS: ClassVar[Kind[str]] = Kind("hints")

    def __init__(
        self,
        view: View,
        indexes: Sequence[Index] = (),
        followers: Sequence[Follower] = (),
        *,
        hints: str | None = None,
    ) -> None:
        self.view = view
        self.indexes = tuple(indexes)
        self.followers = tuple(followers)
        self.hints = hints
        self._others: tuple[str, ...] = ()
        self._prefixes()
        #: **Asked for, built once**: each need asked for so far, and what it built.
        self._needed: dict[Need[Any], Any] = {}
        #: A load or a watch batch has been applied: no index may join any more (**Asked for, built once**).
        self._started = False
        #: Per prefix read, the revision the model holds it at: its load's, then its watch's (``watch``).
        self._passed: dict[str, int] = {}
        #: The leader's own writes not seen back yet (``informer/expectations.py``): the executor records them, each
        #: load and watch batch meets them.
        self.expectations = Expectations()

    def _prefixes(self) -> None:
        # Every prefix that is not the view's, tested once per watch event (str.startswith takes a tuple).
        hints = self.hints
        self._others = tuple(p for index in self.indexes for p in index.prefixes) + ((hints,) if hints else ())

    def index(self, need: Need[T]) -> T:
        """What ``need`` names, built and fed from now on at its first ask (**Asked for, built once**)."""
        if need in self._needed:
            found: T = self._needed[need]
            return found
        if self._started:
            raise RuntimeError(f"{need!r} asked for after the informer started: ask for it before the first load")
        fed = need.build(self.view)
        self._needed[need] = fed.value
        if fed.index is not None:
            self.indexes += (fed.index,)
            self._prefixes()
        if fed.follower is not None:
            self.followers += (fed.follower,)
        return fed.value

    # -- the list ------------------------------------------------------------------------------------------------

    async def load(
        self, store: EtcdStore, prefix: str, *, cuts: Sequence[str] = (), long_lived: bool = False
    ) -> Loaded:
        """The whole of ``prefix`` at one revision into the view and every index, streamed (**One read, one way in**).

        ``long_lived``: the process keeps what it loads (the watcher), so the cyclic GC is held off while loading and
        what was loaded is frozen out of its later collections. A reader inside another long-lived process (the
        page inside Airflow's api-server) must not: a freeze there would keep that process's cyclic garbage for
        ever."""
        if not long_lived:
            return await self._load(store, prefix, cuts)
        # Loading creates a few objects per key and frees none, and nothing here makes cycles: the collector held off
        # while it runs, and the loaded view kept out of every later collection (``runtime.frozen_gc``).
        with held_off_then_frozen():
            return await self._load(store, prefix, cuts)

    async def _load(self, store: EtcdStore, prefix: str, cuts: Sequence[str]) -> Loaded:
        sink = _Sink(self)
        revision, keys = await store.stream_snapshot(prefix, sink, cuts=cuts)
        self._loaded(revision)
        self._passed = {prefix: revision}
        return Loaded(revision, keys, tuple(sink.problems))

    def load_items(self, revision: int, items: Sequence[tuple[str, bytes, int]]) -> Loaded:
        """Keys already read at ``revision`` (sorted by key), as a load would take them."""
        sink = _Sink(self)
        sink.reset()
        if items:
            sink.add_items(list(items))
        self._loaded(revision)
        return Loaded(revision, len(items), tuple(sink.problems))

    async def load_parts(
        self,
        store: EtcdStore,
        prefixes: Sequence[str] = (),
        keys: Sequence[str] = (),
        *,
        revision: int = 0,
        given: Sequence[KV] = (),
        skip: Callable[[StoreError], bool] | None = None,
    ) -> Loaded:
        """Named parts of the prefix into the view and every index, replacing what they held (**One read, one way in**):
        each of ``prefixes`` streamed as one snapshot, ``keys`` read together at ``revision`` (0: the current one), and
        ``given``, keys the caller read itself at that revision (the page's walk back through a DAG's runs).

        ``skip``: a read that fails with an error it accepts (a role that may not read that part) leaves the part out
        and names it in ``Loaded.unread``; then each key is read on its own, so one key refused leaves only itself
        out. A snapshot restarted by a compaction while paging starts the whole load over."""
        for _ in range(_PARTS_ATTEMPTS):
            try:
                return await self._load_parts(store, prefixes, keys, revision, given, skip)
            except _Restarted:
                continue
        raise StoreError(f"a load of {', '.join(prefixes)} kept being compacted away while paging")

    async def _load_parts(
        self,
        store: EtcdStore,
        prefixes: Sequence[str],
        keys: Sequence[str],
        revision: int,
        given: Sequence[KV],
        skip: Callable[[StoreError], bool] | None,
    ) -> Loaded:
        sink = _Sink(self)
        sink.reset()
        revisions: dict[str, int] = {}
        unread: list[str] = []
        count = 0
        for prefix in prefixes:
            try:
                revisions[prefix], read = await store.stream_snapshot(prefix, _Part(sink))
            except StoreError as exc:
                if skip is None or not skip(exc):
                    raise
                unread.append(prefix)
                continue
            count += read
        found = list(given)
        if keys and skip is None:
            revision, point = await store.get_many(keys, revision=revision)
            found += point
        elif keys and skip is not None:
            revision = revision or await store.current_revision(retry=False)
            for key in keys:
                try:
                    kv = await store.get(key, retry=False)
                except StoreError as exc:
                    if not skip(exc):
                        raise
                    unread.append(key)
                    continue
                if kv is not None:
                    found.append(kv)
        if found:
            sink.add_items(sorted((kv.key, kv.value, kv.mod_revision) for kv in found))
            count += len(found)
        newest = max([revision, *revisions.values()])
        # An index forgets a deletion once every part has passed it: the oldest part's revision.
        self._loaded(newest, passed=min([newest, *revisions.values()]))
        self._passed = dict(revisions)
        return Loaded(newest, count, tuple(sink.problems), revisions, tuple(unread))

    def _loaded(self, revision: int, *, passed: int | None = None) -> None:
        self.view.end_load()  # the pages' facts the view keeps by partition (``View.load_page``)
        self._started = True
        self.view.revision = revision
        self.expectations.observe(revision if passed is None else passed)
        for index in self.indexes:
            index.passed(revision if passed is None else passed)
        for follower in self.followers:
            follower.loaded()

    # -- the watch -----------------------------------------------------------------------------------------------

    async def watch(
        self,
        store: EtcdStore,
        prefix: str,
        revision: int,
        *,
        cuts: Sequence[str] = (),
        lock: AbstractAsyncContextManager[object] | None = None,
        then: Callable[[Changes], None] | None = None,
    ) -> AsyncIterator[Changes]:
        """Every change under ``prefix`` after ``revision`` (a load's), applied, then yielded, forever
        (**One read, one way in**).

        A compaction relists ``prefix`` and diffs it against the keys under it alone (**Relists diff every index**),
        so watches of several prefixes into one informer (the page's asset feed) never delete each other's keys; an
        index forgets a deletion once every prefix read has passed it (its load's revision, then its watch's). ``lock``
        (reusable, e.g. ``asyncio.Lock``) is held around each apply and ``then``, which sees the batch's changes before
        any other holder of the lock sees the model."""
        self._passed[prefix] = revision

        def known() -> dict[str, int]:
            return {key: rev for key, rev in self.known().items() if key.startswith(prefix)}

        async for batch in store.watch_prefix(prefix, revision, known, cuts):
            async with lock if lock is not None else nullcontext():
                changes = self._apply(batch)
                self._passed[prefix] = batch.revision
                passed = min(self._passed.values())
                for index in self.indexes:
                    index.passed(passed)
                self.expectations.observe(passed)
                if then is not None:
                    then(changes)
            yield changes

    async def run(
        self,
        store: EtcdStore,
        prefix: str,
        revision: int,
        *,
        cuts: Sequence[str] = (),
        lock: AbstractAsyncContextManager[object] | None = None,
        then: Callable[[Changes], None] | None = None,
    ) -> None:
        """``watch``, for a caller that takes each batch's changes in ``then``: returns only on an error."""
        async for _ in self.watch(store, prefix, revision, cuts=cuts, lock=lock, then=then):
            pass

    def apply(self, batch: WatchBatch) -> Changes:
        """One watch batch into the view, the indexes and the followers; what it changed
        (**To the indexes that own it**, **Followers after the view**, **Relists diff every index**,
        **Bad values never stop it**, **Changes name what moved** and **Hints are nudges**)."""
        changes = self._apply(batch)
        for index in self.indexes:
            index.passed(batch.revision)
        self.expectations.observe(batch.revision)
        return changes

    def _apply(self, batch: WatchBatch) -> Changes:
        self._started = True
        view = self.view
        changes = Changes(batch.revision, batch.relisted, len(batch.events))
        others = self._others
        for event in batch.events:
            key = event.key
            value = event.value if event.kind == "put" else None
            if others and key.startswith(others):
                self._apply_other(key, value, event.mod_revision, changes)
                continue
            touched = view.apply(key, value, event.mod_revision)
            for follower in self.followers:
                follower.follow(key, value, event.mod_revision)
            if view.problems and key in view.problems:
                changes.view_problems.append((key, view.problems[key]))
            if touched:
                view.moved(key, touched, changes)
        view.revision = max(view.revision, batch.revision)
        return changes

    def _apply_other(self, key: str, value: bytes | None, mod_rev: int, changes: Changes) -> None:
        if self.hints is not None and key.startswith(self.hints):
            changes.add(Informer.HINTS, key)
            return
        for index in self.indexes:
            if key.startswith(index.prefixes):
                problem = index.apply(key, value, mod_rev)
                if problem is not None:
                    changes.problems.append((index.name, key, problem))
                index.moved(key, problem, changes)

    def known(self) -> dict[str, int]:
        """Every key the view and the indexes hold, with its mod revision (**Relists diff every index**)."""
        found = self.view.known()
        for index in self.indexes:
            found.update(index.known())
        return found


@dataclass
class _Sink:
    """Snapshot pages into the view and, where a page can hold their keys, the indexes (``etcd.watch.ItemSink``)."""

    informer: Informer
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.informer.view.load(0, ())
        for index in self.informer.indexes:
            index.reset()
        self.problems.clear()

    def add_items(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        self.informer.view.load_page(items)
        if not items:
            return
        first, last = items[0][0], items[-1][0]
        for index in self.informer.indexes:
            prefixes = index.prefixes
            if not any(_may_hold(first, last, p) for p in prefixes):
                continue
            for key, value, mod_rev in items:
                if key.startswith(prefixes):
                    problem = index.apply(key, value, mod_rev)
                    if problem is not None:
                        self.problems.append((index.name, key, problem))


#: Attempts of ``load_parts`` when a part's snapshot restarts (a compaction while paging, ``etcd.watch``'s
#: **One-revision snapshot**): as many as a snapshot's own (``SNAPSHOT_RETRY``).
_PARTS_ATTEMPTS = 3


class _Restarted(Exception):
    """A part's snapshot started over: what the load took of it is mixed with what came before (``load_parts``)."""


@dataclass
class _Part:
    """One part of ``load_parts`` into the shared sink: its first ``reset`` is the load's; another means the
    snapshot restarted, and the load starts over."""

    sink: _Sink
    started: bool = False

    def reset(self) -> None:
        if self.started:
            raise _Restarted
        self.started = True

    def add_items(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        self.sink.add_items(items)


def _may_hold(first: str, last: str, prefix: str) -> bool:
    """Whether keys ``first``..``last`` (sorted) can hold a key starting with ``prefix``
    (**To the indexes that own it**)."""
    # Every key that starts with ``prefix`` sorts below ``prefix`` with its last character's successor.
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""
    return last >= prefix and (not end or first < end)
