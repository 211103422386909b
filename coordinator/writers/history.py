"""The one writer of the audit trail: append an entry to ``{prefix}/history/{time}-{id}`` (docs/keys.md).

Rules:
- **Append only.** An entry is written create-only (a compare-and-swap against "absent"): it is never changed or
  overwritten, and a second write of the same entry (a retried command) is refused by etcd instead of recorded twice.
- **Sortable.** The key starts with the entry's time (``KeyLayout.history_key``), so reading the prefix from a time on
  is the trail since then, in order.
- **Public calls only.** Only ``get`` and ``cas`` (``etcd.Writes``): the store, or the leader's fenced executor.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from coordinator.core.holds import HistoryEntry
from coordinator.core.model import KeyLayout, dump_record
from coordinator.errors import StoreError

if TYPE_CHECKING:
    from coordinator.etcd import Writes


def new_id(prefix: str = "") -> str:
    """A short random id for a hold or an entry (8 hex digits: unique enough among an incident's few writes; the
    create-only write refuses a collision rather than overwrite)."""
    return f"{prefix}{secrets.token_hex(4)}"


async def append_history(store: Writes, keys: KeyLayout, entry: HistoryEntry) -> int:
    """**Append only**: write ``entry`` under its time and id; the revision of the write. Raises StoreError when the key
    exists already (the same entry written before)."""
    key = keys.history_key(entry.at, entry.id)
    result = await store.cas(key, dump_record(entry), 0)
    if not result.succeeded:
        raise StoreError(f"history entry {key} exists already; nothing was overwritten")
    return result.revision
