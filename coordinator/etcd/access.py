"""What a caller may do with the store, as protocols: read it, or write it by compare-and-swap.

A leader's jobs hold the store as :class:`Reads` and write through a :class:`Writes`: the watcher's executor
(``watcher/executor.py``), whose every write is fenced by the leader key. So ``mypy --strict`` refuses a leader
write that bypasses the fence. The CLI's one-shot writers (``prune``, ``audit``) pass the store itself, which is both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from coordinator.etcd.types import KV, CasResult, DeleteResult, Snapshot


class Reads(Protocol):
    """The store's reads a leader's job uses."""

    async def get(self, key: str) -> KV | None: ...

    async def get_many(self, keys: Sequence[str]) -> tuple[int, list[KV]]: ...

    async def snapshot(self, prefix: str) -> Snapshot: ...


class Writes(Protocol):
    """A compare-and-swap writer: read the key it writes, then write or delete only what did not change."""

    async def get(self, key: str) -> KV | None: ...

    async def cas(
        self, key: str, value: bytes, expected_mod_revision: int, *, also: Sequence[tuple[str, bytes]] = ()
    ) -> CasResult: ...

    async def delete_unchanged(self, items: Sequence[tuple[str, int]]) -> DeleteResult: ...
