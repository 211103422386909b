"""The index of the leader's recorded deadline transitions (``{prefix}/deadlines/...``, docs/keys.md; semantics
`deadlines-judged`): every watcher keeps it warm from the informer, the leader's deadline pass
(``watcher/deadlines.py``, recording through ``watcher/deadline_alerts.py``) reads it (its own writes come back through
the watch like anyone's: it never writes here), and ``status`` and ``why`` read the leader's causes from it.

Rules:
- **Newest revision wins.** A record older than the one held changes nothing; a delete removes it.
- **Bad values left out.** A value that does not parse is left out and named (the informer logs it); the last valid
  record stays.
- **No change set of its own.** Which records moved is the watch's to say: the index names each (DAG, partition)
  whose record a watch put or deleted in the batch's changes (``RECORDS``; not an escalation level's, the informer's
  **Changes name what moved**), and the deadline pass takes them from the changes its controller was handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, TypeVar

from pydantic import ValidationError

from coordinator.core.deadline.levels import LevelKey
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.kinds import Kind, Moves
from coordinator.core.model import KeyLayout, NodeId
from coordinator.informer.index import Need, indexed

K = TypeVar("K", tuple[NodeId, str], LevelKey)


@dataclass
class DeadlineIndex:
    """The recorded transitions, by (DAG, partition), with the mod revision each was written at
    (**Newest revision wins**)."""

    name: ClassVar[str] = "deadline"
    #: (DAG, partition) whose recorded transition a watch put or deleted (**No change set of its own**).
    RECORDS: ClassVar[Kind[tuple[NodeId, str]]] = Kind("deadlines")

    keys: KeyLayout
    records: dict[tuple[NodeId, str], DeadlineRecord] = field(default_factory=dict)
    revisions: dict[tuple[NodeId, str], int] = field(default_factory=dict)
    #: The latest handler logical date recorded (``core.deadline.alerts.next_handler_date``).
    last_date: datetime | None = None
    #: The keys whose record is not ``alerted`` (``alert_pending`` reads only these, not every record).
    unalerted: set[tuple[NodeId, str]] = field(default_factory=set)
    #: Escalation levels' records (``core.deadline.levels``'s **A record per level**), their revisions and the unalerted
    #: ones.
    levels: dict[LevelKey, DeadlineRecord] = field(default_factory=dict)
    level_revisions: dict[LevelKey, int] = field(default_factory=dict)
    levels_unalerted: set[LevelKey] = field(default_factory=set)
    #: key -> mod revision of every key known (a bad value: -1, so a relist hands it out again).
    _known: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.keys.deadlines,)

    def reset(self) -> None:
        """Forget every record (a snapshot is about to be read)."""
        self.records.clear()
        self.revisions.clear()
        self.unalerted.clear()
        self.levels.clear()
        self.level_revisions.clear()
        self.levels_unalerted.clear()
        self._known.clear()

    def passed(self, revision: int) -> None:
        """Nothing waits for a revision here: a delete removes its record at once."""

    def known(self) -> dict[str, int]:
        return dict(self._known)

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        """One watched record, a DAG's or a level's; what is wrong with it, or None."""
        at = self.keys.parse_deadline_key(key)
        if at is not None:
            return self._store(self.records, self.revisions, self.unalerted, key, at, value, mod_rev)
        level = self.keys.parse_deadline_level_key(key)
        if level is None:
            return "malformed key: not a deadline record's or an escalation level's"
        return self._store(self.levels, self.level_revisions, self.levels_unalerted, key, level, value, mod_rev)

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """**No change set of its own**: the (DAG, partition) of a good DAG record (a level's names nothing)."""
        if problem is None and (at := self.keys.parse_deadline_key(key)) is not None:
            into.add(DeadlineIndex.RECORDS, at)

    def _store(
        self, records: dict[K, DeadlineRecord], revisions: dict[K, int], unalerted: set[K], key: str, at: K,
        value: bytes | None, mod_rev: int,
    ) -> str | None:  # fmt: skip
        """One record into its maps (**Newest revision wins**); what is wrong with it (**Bad values left out**)."""
        if value is None:
            records.pop(at, None)
            revisions.pop(at, None)
            unalerted.discard(at)
            self._known.pop(key, None)
            return None
        try:
            record = DeadlineRecord.model_validate_json(value)
        except ValidationError as exc:
            self._known[key] = -1  # a relist hands it out again
            return f"unparsable deadline record ({exc.error_count()} errors); the last valid one stays"
        if mod_rev < revisions.get(at, 0):
            return None
        records[at] = record
        revisions[at] = mod_rev
        self._known[key] = mod_rev
        if record.alerted:
            unalerted.discard(at)
        else:
            unalerted.add(at)
        if record.handler_date is not None and (self.last_date is None or record.handler_date > self.last_date):
            self.last_date = record.handler_date
        return None


#: The recorded deadline transitions, as a concern asks the informer for them (``informer/index.py``'s **A need lives
#: beside its index**).
DEADLINE_INDEX: Need[DeadlineIndex] = Need("deadline", lambda view: indexed(DeadlineIndex(view.keys)))
