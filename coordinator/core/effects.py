"""The executor's answers to any exactly-once protocol: one vocabulary for how a fenced ledger write and an Airflow
call turned out. Pure values.

Both sans-IO protocols, the trigger intent (``core/intent.py``) and the asset delivery (``core/delivery.py``), take
these very classes as events, so the one executor (``watcher/executor.py``) maps etcd's and Airflow's outcomes once
for both, and a protocol decides what each means for it.

Rules:
- **Ledger writes.** A ledger write answers :class:`LedgerWritten` (at its new mod revision) or :class:`LedgerMoved`
  (the compare failed: another writer, or this leader's newer attempt, changed the key). A write refused because the
  leader key moved is no answer: the executor raises ``LeadershipLost`` and the attempt ends where it stands.
- **Failed calls.** An Airflow call that failed answers exactly one of :class:`Transient` (no answer, a timeout, 5xx or
  a transport error, through the bounded retries: it may or may not have happened), :class:`NotFound` (404: the object
  named does not exist there, and nothing was created) or :class:`Refused` (any other refusal: 400, 403, 409 left
  unexplained, 422, no Airflow configured for the instance). ``error`` says what failed, for the ledger and the log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LedgerWritten:
    """**Ledger writes**: the ledger write asked for succeeded at ``mod_rev``."""

    mod_rev: int


@dataclass(frozen=True, slots=True)
class LedgerMoved:
    """**Ledger writes**: the compare-and-swap failed; nothing was written."""


@dataclass(frozen=True, slots=True)
class Transient:
    """**Failed calls**: no answer, or an error that clears by itself, through the bounded retries."""

    error: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """**Failed calls**: 404, the object named does not exist there."""

    error: str


@dataclass(frozen=True, slots=True)
class Refused:
    """**Failed calls**: any other refusal; retrying at once would be refused again."""

    error: str


#: **Failed calls**: what a failed Airflow call answers.
Failure = Transient | NotFound | Refused
