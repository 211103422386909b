"""The index of operators' holds (``{prefix}/holds/...``, docs/keys.md; ``core/holds.py``): every watcher
keeps it warm from the informer; the trigger reconciler (``watcher/triggers.py``) submits nothing a standing hold
covers, and ``status`` and ``why`` name the hold.

Rules:
- **Newest revision wins.** A record older than the one held changes nothing; a delete removes it (a deleted hold is
  a released one).
- **Bad values left out.** A value that does not parse is left out and named (the informer logs it): a hold that
  cannot be read holds nothing, and the last valid record of that key stays.
- **Changes are news.** Every put or delete of a hold is named in the watch batch's changes by its id (``HOLDS``, the
  informer's **Changes name what moved**): the trigger reconciler plans again what the holds kept back (its interest,
  ``watcher/triggers.py``'s ``setup``), so a release starts each held run once.
- **Read through the informer.** The commands read holds and the history through :func:`read_holds` and
  :func:`read_history`, the informer's ``load_parts`` (no reader lists the store on its own).
- **One held set per version.** The held set against a graph (``core.holds.HoldSet``) is built once per version of
  the index, graph and set of standing holds, not per pass (the planner runs hundreds of passes a second).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from coordinator.core.graph import Graph
from coordinator.core.holds import HistoryEntry, Hold, HoldSet, next_expiry, parse_history, parse_hold
from coordinator.core.kinds import Kind, Moves
from coordinator.core.model import KeyLayout
from coordinator.core.view import View
from coordinator.errors import StoreError
from coordinator.informer.index import Need, indexed
from coordinator.informer.informer import Informer, Loaded

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore


@dataclass
class HoldIndex:
    """The recorded holds by id, with the mod revision each was written at (**Newest revision wins**)."""

    name: ClassVar[str] = "holds"
    #: Ids of the holds a watch put or deleted (**Changes are news**).
    HOLDS: ClassVar[Kind[str]] = Kind("holds")

    keys: KeyLayout
    holds: dict[str, Hold] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    #: Bumped on every change (**One held set per version**).
    version: int = 0
    _known: dict[str, int] = field(default_factory=dict, repr=False)
    _cached: tuple[tuple[int, frozenset[str]], HoldSet] | None = field(default=None, repr=False)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.keys.holds,)

    def reset(self) -> None:
        self.holds.clear()
        self.revisions.clear()
        self._known.clear()
        self._bump()

    def passed(self, revision: int) -> None:
        """Nothing waits for a revision here."""

    def known(self) -> dict[str, int]:
        return dict(self._known)

    def _bump(self) -> None:
        self.version += 1

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        """One watched hold record; what is wrong with it, or None."""
        hold_id = self.keys.parse_hold_key(key)
        if hold_id is None:
            return "malformed key: expected holds/{hold id}"
        if value is None:
            if self.holds.pop(hold_id, None) is not None:
                self._bump()
            self.revisions.pop(hold_id, None)
            self._known.pop(key, None)
            return None
        hold, problem = parse_hold(value)
        if hold is None:
            self._known[key] = -1  # a relist hands it out again
            return f"unparsable hold ({problem}); it holds nothing until rewritten"
        if mod_rev < self.revisions.get(hold_id, 0):
            return None
        self.holds[hold_id] = hold
        self.revisions[hold_id] = mod_rev
        self._known[key] = mod_rev
        self._bump()
        return None

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """**Changes are news**: the id of a good hold record put or deleted."""
        if problem is None and (hold_id := self.keys.parse_hold_key(key)) is not None:
            into.add(HoldIndex.HOLDS, hold_id)

    def standing(self, now: datetime) -> list[Hold]:
        return [h for h in self.holds.values() if h.standing(now)]

    def hold_set(self, graph: Graph, now: datetime) -> HoldSet:
        """**One held set per version**: the standing holds at ``now`` against ``graph``."""
        standing = self.standing(now)
        version = (self.version, frozenset(h.id for h in standing))
        if self._cached is None or self._cached[0] != version or self._cached[1].graph is not graph:
            self._cached = (version, HoldSet(graph, standing))
        return self._cached[1]

    def next_expiry(self, now: datetime) -> datetime | None:
        return next_expiry(self.holds.values(), now)


@dataclass
class HistoryIndex:
    """The audit trail's entries by key (time order), for ``coordinator history``; unreadable ones named."""

    name: ClassVar[str] = "history"

    keys: KeyLayout
    entries: dict[str, HistoryEntry] = field(default_factory=dict)
    _known: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.keys.history,)

    def reset(self) -> None:
        self.entries.clear()
        self._known.clear()

    def passed(self, revision: int) -> None:
        """Nothing waits for a revision here."""

    def known(self) -> dict[str, int]:
        return dict(self._known)

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        if value is None:
            self.entries.pop(key, None)
            self._known.pop(key, None)
            return None
        entry, problem = parse_history(value)
        if entry is None:
            self._known[key] = -1
            return f"unparsable history entry ({problem})"
        self.entries[key] = entry
        self._known[key] = mod_rev
        return None

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """Read by the commands only: nothing reacts to the trail."""

    def since(self, at: datetime | None) -> list[HistoryEntry]:
        """The entries at or after ``at`` (all when None), oldest first (the keys sort by time)."""
        floor = self.keys.history_key(at, "") if at is not None else ""
        return [self.entries[k] for k in sorted(self.entries) if k >= floor]


async def read_holds(store: EtcdStore, keys: KeyLayout) -> tuple[HoldIndex, Loaded]:
    """**Read through the informer**: every hold recorded, and what the load found wrong."""
    index = HoldIndex(keys)
    loaded = await Informer(View(keys), [index]).load_parts(store, (keys.holds,))
    return index, loaded


async def read_history(
    store: EtcdStore, keys: KeyLayout, *, newest: int | None = None, skip: Callable[[StoreError], bool] | None = None
) -> tuple[HistoryIndex, Loaded]:
    """**Read through the informer**: the audit trail, and what the load found wrong. ``newest``: only that many
    newest entries, one ranged read (the keys sort by time; the page's panel), however long the trail. ``skip``: as
    ``load_parts``'s, a refusal it accepts leaves the trail out, named in ``Loaded.unread``."""
    index = HistoryIndex(keys)
    informer = Informer(View(keys), [index])
    if newest is None:
        return index, await informer.load_parts(store, (keys.history,), skip=skip)
    try:
        given = await store.newest(keys.history, newest, revision=0)
    except StoreError as exc:
        if skip is None or not skip(exc):
            raise
        return index, Loaded(0, 0, unread=(keys.history,))
    return index, await informer.load_parts(store, given=given)


#: The operators' holds, as a concern asks the informer for them (``informer/index.py``'s **A need lives beside its
#: index**).
HOLD_INDEX: Need[HoldIndex] = Need("holds", lambda view: indexed(HoldIndex(view.keys)))
