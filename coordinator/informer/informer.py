"""The informer: the one consumer of the store's list and watch, feeding every key family's index.

Rules:
1. One read, one way in. ``load`` streams the whole prefix at one revision into the view and every index, page by
   page as etcd sends it (nothing holds the snapshot); ``apply`` takes one watch batch into them and says what
   changed. The watcher and every reader of the whole prefix (``coordinator.informer.read_model``: ``status``, ``why``,
   ``diff``, ``doctor``, ``reconcile``, the page) load through this module; none parses keys of its own.
2. Each key reaches the indexes that own it: the view (``core/view.py``) every key of the families it holds, and
   each :class:`Index` the keys under its ``prefixes``. During a load a page reaches an index only when its key
   range can hold one of them (etcd answers a range in key order, and nearly every page is run states or ledger
   entries of one DAG), so an index costs nothing on the pages it does not own.
3. After the view has applied a key, each :class:`Follower` sees it too: what is derived from the view (the
   retention tracker forgets the partitions its floor retires) follows it in the same event order.
4. A relist after a compaction diffs against every key every index holds (``held``), so a key deleted while the
   watch was away leaves each index, not only the view.
5. Bad values never stop it: the view keeps its problems (``View.problems``), an index says what was wrong with a key
   and leaves it out; both come back in :class:`Changes` (and :class:`Loaded`) for the caller to log and count.
6. A key under ``hints`` is a nudge, not a fact (the plugin's asset-change keys: semantics rule 16b): it is counted
   in :class:`Changes` and held by nobody.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from coordinator.core.model import NodeId
from coordinator.core.view import View

if TYPE_CHECKING:  # the gRPC client is imported by whoever connects, not by `coordinator --help`
    from coordinator.etcd import EtcdStore, WatchBatch


class Index(Protocol):
    """One key family's read model, fed key by key (newest revision wins) from the snapshot and the watch."""

    @property
    def name(self) -> str:
        """Short name for log lines (``{name}.bad_value``)."""
        ...

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The keys it owns: those that start with one of these (an exact key is its own prefix)."""
        ...

    def reset(self) -> None:
        """Forget everything: a snapshot is about to be read."""

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        """One put (``value``) or delete (None); what is wrong with the key or its value (it is left out), or None."""

    def passed(self, revision: int) -> None:
        """Every key up to ``revision`` has been applied (the end of a load or of a watch batch)."""

    def held(self) -> Mapping[str, int]:
        """key -> mod revision of every key it holds: what a relist diffs against (rule 4)."""
        ...


class Follower(Protocol):
    """Derived from the view: sees each key after the view has applied it (rule 3)."""

    def loaded(self) -> None:
        """The view holds a whole snapshot now."""

    def follow(self, key: str, value: bytes | None, mod_rev: int) -> None:
        """One watch event, after ``View.apply``."""


@dataclass(frozen=True)
class Loaded:
    """What a load read: its revision, how many keys, and the keys an index left out, with why (rule 5)."""

    revision: int
    keys: int
    problems: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Changes:
    """What one watch batch changed, for the caller to queue (rule 1)."""

    revision: int
    relisted: bool
    #: How many events the batch held.
    events: int = 0
    #: (DAG, partition) whose run state or ledger entry changed: only it and what depends on it need re-planning.
    nodes: list[tuple[NodeId, str]] = field(default_factory=list)
    #: Other partitions the view says to re-plan (``core.view.ALL``: every one).
    partitions: set[str] = field(default_factory=set)
    #: Keys under ``hints`` put or deleted (rule 6).
    hints: int = 0
    #: The view's new problems: (key, problem).
    view_problems: list[tuple[str, str]] = field(default_factory=list)
    #: An index's: (index name, key, problem).
    problems: list[tuple[str, str, str]] = field(default_factory=list)


class Informer:
    """The view and ``indexes``, fed from one list/watch (rules 1-6)."""

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
        # Every prefix that is not the view's, tested once per watch event (str.startswith takes a tuple).
        self._others = tuple(p for index in self.indexes for p in index.prefixes) + ((hints,) if hints else ())

    # -- the list ------------------------------------------------------------------------------------------------

    async def load(
        self, store: EtcdStore, prefix: str, *, cuts: Sequence[str] = (), long_lived: bool = False
    ) -> Loaded:
        """The whole of ``prefix`` at one revision into the view and every index, streamed (rule 1).

        ``long_lived``: the process keeps what it loads (the watcher), so the cyclic GC is held off while loading and
        what was loaded is frozen out of its later collections. A reader inside another long-lived process (the
        page inside Airflow's api-server) must not: a freeze there would keep that process's cyclic garbage for
        ever."""
        if not long_lived:
            return await self._load(store, prefix, cuts)
        # Loading creates a few objects per key and frees none: with the cyclic GC on, its collections rescan the
        # growing heap again and again (half the load time at 100,000 keys). Nothing here makes cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._load(store, prefix, cuts)
        finally:
            if gc_was_enabled:
                # What exists now (the loaded view above all) lives long and is acyclic: keep it out of every later
                # collection, or the first ones would walk it all (during the first pass: ~0.15 s at 100,000 keys)
                # and each later full one again. Frozen objects are still freed by reference counting when the view
                # replaces them; only cyclic garbage left over from start-up (a few call objects) is never collected.
                gc.freeze()
                gc.enable()

    async def _load(self, store: EtcdStore, prefix: str, cuts: Sequence[str]) -> Loaded:
        sink = _Sink(self)
        revision, keys = await store.stream_snapshot(prefix, sink, cuts=cuts)
        self._loaded(revision)
        return Loaded(revision, keys, tuple(sink.problems))

    def load_items(self, revision: int, items: Sequence[tuple[str, bytes, int]]) -> Loaded:
        """Keys already read at ``revision`` (sorted by key), as a load would take them: for a reader that may read
        only parts of the prefix (a restricted role) and so reads them itself."""
        sink = _Sink(self)
        sink.reset()
        if items:
            sink.add_items(list(items))
        self._loaded(revision)
        return Loaded(revision, len(items), tuple(sink.problems))

    def _loaded(self, revision: int) -> None:
        self.view.revision = revision
        for index in self.indexes:
            index.passed(revision)
        for follower in self.followers:
            follower.loaded()

    # -- the watch -----------------------------------------------------------------------------------------------

    def apply(self, batch: WatchBatch) -> Changes:
        """One watch batch into the view, the indexes and the followers; what it changed (rules 2-6)."""
        view = self.view
        changes = Changes(batch.revision, batch.relisted, len(batch.events))
        if batch.relisted:
            view.journal.reset()  # incremental readers (the deadline pass) start over after a relist
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
            if not touched:
                continue
            at = view.node_of(key)
            if at is not None:
                changes.nodes.append(at)
            else:
                changes.partitions |= touched
        view.revision = max(view.revision, batch.revision)
        for index in self.indexes:
            index.passed(batch.revision)
        return changes

    def _apply_other(self, key: str, value: bytes | None, mod_rev: int, changes: Changes) -> None:
        if self.hints is not None and key.startswith(self.hints):
            changes.hints += 1
            return
        for index in self.indexes:
            if key.startswith(index.prefixes):
                problem = index.apply(key, value, mod_rev)
                if problem is not None:
                    changes.problems.append((index.name, key, problem))

    def held(self) -> dict[str, int]:
        """Every key the view and the indexes hold, with its mod revision (rule 4)."""
        found = self.view.held()
        for index in self.indexes:
            found.update(index.held())
        return found


async def load_prefixes(store: EtcdStore, index: Index) -> dict[str, int]:
    """Each of ``index``'s prefixes read whole (one snapshot each) into it, for a reader that needs one key family and
    must not read the whole store (``why asset``, the page's asset feed); each prefix's snapshot revision. A key the
    index leaves out stays out (rule 5); these readers show what parses."""
    revisions: dict[str, int] = {}
    for prefix in index.prefixes:
        snapshot = await store.snapshot(prefix)
        for kv in snapshot.kvs:
            index.apply(kv.key, kv.value, kv.mod_revision)
        revisions[prefix] = snapshot.revision
    return revisions


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

    def add_items(self, items: list[tuple[str, bytes, int]]) -> None:
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


def _may_hold(first: str, last: str, prefix: str) -> bool:
    """Whether keys ``first``..``last`` (sorted) can hold a key starting with ``prefix`` (rule 2)."""
    # Every key that starts with ``prefix`` sorts below ``prefix`` with its last character's successor.
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""
    return last >= prefix and (not end or first < end)
