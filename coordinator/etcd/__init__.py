"""The etcd adapter: consistent snapshots, a resilient watch, fenced compare-and-swap and leader election.

This is the only package that imports the etcd client (``aetcd``) and gRPC. It uses aetcd's generated gRPC stubs and
messages over a channel it builds itself, not ``aetcd.Client``, because the client cannot do what the coordinator
relies on: it has no TLS, cannot page a range at a fixed revision, flattens watch responses (losing their grouping
and fragments), and its lock enters on timeout without holding the lock.

Modules: ``types`` (the values), ``wire`` (channels, TLS, gRPC error mapping), ``tls_hint`` (why a TLS handshake
failed and the setting that fixes it), ``client`` (:class:`EtcdStore`: connection, retries, key-value, CAS, leases),
``watch`` (snapshots, watch, relist), ``election``, ``access`` (what a caller may do: the ``Reads`` and ``Writes``
protocols).

Rules:
- **Mapped errors.** Callers see only this package's frozen values (KV, Snapshot, Event, WatchBatch, Fence, CasResult,
  Lease, Alarm) and the errors of ``coordinator.errors``; every gRPC error is mapped with ``raise ... from exc`` (a
  write etcd refuses under its NOSPACE or CORRUPT alarm is ``WritesRefused``; a TLS mistake is ``StoreTlsError``
  with its fix).
- **Brief unary retry.** Unary calls are retried briefly on UNAVAILABLE only (``client.UNARY_RETRY``): the first call
  after a server restart fails although the server is up. Deadline errors are not retried (a write may have applied).
  With several endpoints each retry moves to the next one, so ``connect`` tries every endpoint in order.
- **One-revision snapshot.** A snapshot is one revision: every page of a prefix is read at the revision of the first
  page. ``stream_snapshot`` hands the pages to a sink instead of holding them, reading the prefix in ranges split at
  given cuts (linear work for etcd on a big prefix).
- **Lossless watch.** ``watch_prefix`` never loses or repeats an event: it resumes from the last revision it handed out
  (+1), and when that revision was compacted it re-reads the prefix and hands out the difference as one ``relisted``
  batch.
- **Fenced leadership.** Leadership is a lease-bound key created only if absent; a leader stops acting before its lease
  can expire, and every leader write carries a Fence that etcd checks in the same transaction.
"""

from coordinator.etcd.access import Reads, Writes
from coordinator.etcd.client import EtcdStore
from coordinator.etcd.election import Election
from coordinator.etcd.types import (
    KV,
    Alarm,
    CasResult,
    DeleteResult,
    Event,
    EventKind,
    Fence,
    Lease,
    Snapshot,
    WatchBatch,
)

__all__ = [
    "KV",
    "Alarm",
    "CasResult",
    "DeleteResult",
    "Election",
    "EtcdStore",
    "Event",
    "EventKind",
    "Fence",
    "Lease",
    "Reads",
    "Snapshot",
    "WatchBatch",
    "Writes",
]
