"""Which keys of the view changed since a reader last looked: a bounded journal the view keeps
(semantics `deadlines-judged`).

Rules:
- **Every applied key.** ``View.apply`` adds every key it is given (one list append); a snapshot (``View.load``,
  ``View.load_page``) or a relist resets the journal (:meth:`ChangeJournal.reset`, once per page, never per key): what
  changed is then unknown and every reader starts over.
- **Cursors.** A reader keeps a :class:`Cursor`; :meth:`ChangeJournal.since` gives the keys added after it, or None when
  they are not all known any more: a reset happened, or the journal grew past :data:`JOURNAL_LIMIT` and was cleared
  (bounded memory on a watcher whose reader does not run, a standby). None means "everything may have changed".
- **Pure**: no clock, no I/O; the reader decides what a key means (``View.changed_since``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Keys kept before the journal is cleared (about 3 MB of key strings). A burst bigger than this between two reader
#: passes is a catch-up, where one pass over everything costs about what judging every change would.
JOURNAL_LIMIT = 32_768


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a reader is: the journal's epoch and how many of its keys it has read."""

    epoch: int = -1
    position: int = 0


@dataclass
class ChangeJournal:
    """**Every applied key** and **Cursors**."""

    limit: int = JOURNAL_LIMIT
    epoch: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        if len(self.keys) >= self.limit:
            self.reset()
        self.keys.append(key)

    def reset(self) -> None:
        self.keys = []
        self.epoch += 1

    def cursor(self) -> Cursor:
        """A cursor after every key now held."""
        return Cursor(self.epoch, len(self.keys))

    def since(self, cursor: Cursor) -> list[str] | None:
        """The keys added after ``cursor``; None when not all of them are known (**Cursors**)."""
        if cursor.epoch != self.epoch or cursor.position > len(self.keys):
            return None
        return self.keys[cursor.position :]
