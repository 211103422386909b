"""The values the etcd adapter hands out: frozen, typed, free of gRPC (callers never see a protobuf message)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class KV:
    """One key as stored, with its revisions (``mod_revision`` is the generation of the value)."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key under a prefix as of exactly ``revision``, sorted by key."""

    revision: int
    kvs: tuple[KV, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one key. For a DELETE ``value`` is empty; in a relisted batch its ``mod_revision`` is the relist
    revision (the real deletion revision was compacted away)."""

    kind: EventKind
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events that arrived together. After applying them the consumer's view is complete up to ``revision``.

    ``relisted`` marks the diff produced by a re-read after compaction: the view is then exactly the prefix at
    ``revision``, though intermediate changes were skipped.
    """

    events: tuple[Event, ...]
    revision: int
    relisted: bool = False


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of leadership: the leader key exists and still has this create revision."""

    key: str
    create_revision: int


@dataclass(frozen=True, slots=True)
class CasResult:
    """Outcome of a compare-and-swap. On a conflict ``current`` is the key as found (None when absent)."""

    succeeded: bool
    revision: int
    current: KV | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """Outcome of a guarded multi-key delete: all deleted, or none (``changed`` and ``gone`` say why)."""

    succeeded: bool
    revision: int
    changed: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease granted by etcd: its id and the TTL etcd actually granted (it may differ from the one asked for)."""

    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm etcd raised on one member: ``name`` is etcd's own (``NOSPACE``, ``CORRUPT``); while any is raised the
    cluster refuses writes."""

    name: str
    member_id: int

    @property
    def member(self) -> str:
        """The member id as etcdctl prints it (hex)."""
        return f"{self.member_id:x}"
