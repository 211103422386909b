"""The index of who is running: the leader key and the watchers' presence keys (``{prefix}/leader``,
``{prefix}/watchers/{id}``, docs/keys.md), for ``status``, ``doctor`` and the page's header.

Rules:
- **The term from the leader key.** The leader key is created only when absent and never rewritten while its lease lives
  (``etcd/election.py``), so its mod revision is its create revision: the revision its term began
  (``LeaderFact.since_revision``).
- **Other versions' values left out.** A presence value another version wrote may not parse: it says nothing this
  version can use and is left out without a complaint (it is not bad input, only someone else's).
- **Counted services.** ``services`` counts the watcher services (``watch``, not the passes of ``reconcile``) with a
  live key: the leader and its warm standbys. An int kept on every change, so a metrics scrape in another thread reads
  it without iterating a dict the event loop changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import ValidationError

from coordinator.core.kinds import Moves
from coordinator.core.model import KeyLayout
from coordinator.informer.index import Need, indexed
from coordinator.informer.presence_value import RECONCILE_ONCE, LeaderFact, WatcherPresence


@dataclass
class PresenceIndex:
    """The leader and the live watchers, as the last applied keys say."""

    name: ClassVar[str] = "presence"

    keys: KeyLayout
    leader: LeaderFact | None = None
    leader_rev: int = 0
    #: **Counted services**.
    services: int = 0
    #: key -> (the parsed presence or None for one of another version (**Other versions' values left out**), mod
    #: revision).
    _watchers: dict[str, tuple[WatcherPresence | None, int]] = field(default_factory=dict)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.keys.leader, self.keys.watchers)

    @property
    def watchers(self) -> list[WatcherPresence]:
        """The live watchers' presence values, in key order."""
        return [presence for _, (presence, _) in sorted(self._watchers.items()) if presence is not None]

    def reset(self) -> None:
        self.leader, self.leader_rev = None, 0
        self._watchers.clear()
        self.services = 0

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        if key == self.keys.leader:
            if value is None:
                self.leader, self.leader_rev = None, 0
            else:
                # **The term from the leader key**.
                self.leader, self.leader_rev = LeaderFact(value.decode("utf-8", "replace"), mod_rev), mod_rev
        elif key.startswith(self.keys.watchers):
            if value is None:
                self._watchers.pop(key, None)
            else:
                try:
                    presence: WatcherPresence | None = WatcherPresence.model_validate_json(value)
                except ValidationError:
                    presence = None  # **Other versions' values left out**
                self._watchers[key] = (presence, mod_rev)
            self.services = sum(p is not None and p.mode != RECONCILE_ONCE for p, _ in self._watchers.values())
        return None

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """Nothing reacts to it as a change: its readers read it whole."""

    def passed(self, revision: int) -> None:
        """Nothing waits for a revision here."""

    def known(self) -> dict[str, int]:
        found = {key: rev for key, (_, rev) in self._watchers.items()}
        if self.leader is not None:
            found[self.keys.leader] = self.leader_rev
        return found


#: The leader and the live watchers, as a reader asks the informer for them (``informer/index.py``'s **A need lives
#: beside its index**).
PRESENCE_INDEX: Need[PresenceIndex] = Need("presence", lambda view: indexed(PresenceIndex(view.keys)))
