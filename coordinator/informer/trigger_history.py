"""How many times the coordinator triggered (created or cleared) one DAG's run of one partition lately, read from the
ledger key's own history in etcd: ``status`` says it when it was more than once in the last hour (five clears from
one upstream change are then visible, not only the last one's ``#5``).

The ledger holds the last intent only (its ``trigger_count`` counts them all, since the first); each intent was a
write of its key, and etcd keeps a key's earlier versions until it compacts them. So the intents of the last hour are
read back, newest first: the version written at the newest intent's revision (``intent_rev``: a pending record whose
``requested_at`` says when), then the version just before it (the previous intent's last record, which names that
intent's revision), and so on.

Rules:
- **Read back to the window.** The walk stops at an intent requested before ``since``, at the first intent
  (``trigger_count`` 1), after ``MAX_INTENTS`` intents, or where etcd has compacted the history: the count is then a
  lower bound (``complete`` False), and ``status`` says "at least".
- **Reads only.** Two reads per intent, at fixed revisions; nothing is written, and a read that fails ends the walk
  (the count so far, not complete) rather than the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coordinator.core.model import TriggerRecord, parse_trigger_record
from coordinator.errors import CoordinatorError
from coordinator.etcd import EtcdStore

#: **Read back to the window**: an hour of reruns of one key is a handful; a hundred says enough.
MAX_INTENTS = 100


@dataclass(frozen=True, slots=True)
class RecentTriggers:
    """The intents of one ledger key requested at or after ``since``."""

    count: int
    #: False: older history was compacted, unreadable or beyond ``MAX_INTENTS``: ``count`` is a lower bound.
    complete: bool

    def describe(self) -> str:
        """``5 times in the last hour`` (``at least 3 times ...`` when the history was cut)."""
        return f"{'at least ' if not self.complete else ''}{self.count} times in the last hour"


async def recent_triggers(store: EtcdStore, key: str, intent_rev: int, since: datetime) -> RecentTriggers:
    """**Read back to the window** for the ledger ``key`` whose newest intent was written at ``intent_rev``."""
    count, rev = 0, intent_rev
    while rev > 0:
        if count >= MAX_INTENTS:
            return RecentTriggers(count, complete=False)
        intent = await _version(store, key, rev)
        if intent is None:
            return RecentTriggers(count, complete=False)
        record, _ = intent
        if record.requested_at is None or record.requested_at < since:
            break
        count += 1
        if record.trigger_count <= 1:
            break
        before = await _version(store, key, rev - 1)
        if before is None:
            return RecentTriggers(count, complete=False)
        previous, mod_rev = before
        rev = previous.intent_rev or mod_rev
    return RecentTriggers(count, complete=True)


async def _version(store: EtcdStore, key: str, revision: int) -> tuple[TriggerRecord, int] | None:
    """The ledger record ``key`` held at ``revision`` and its mod revision; None: none then, unparsable, compacted or
    unreadable (**Reads only**)."""
    try:
        _, found = await store.get_many([key], revision=revision)
    except CoordinatorError:
        return None
    if not found:
        return None
    record, _ = parse_trigger_record(found[0].value)
    return None if record is None else (record, found[0].mod_revision)
