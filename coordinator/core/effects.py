"""The one vocabulary of the exactly-once protocols: the instructions they share, how an attempt ends, and the
executor's answers about a fenced ledger write and an Airflow call. Pure values.

Both sans-IO protocols, the trigger intent (``core/intent.py``) and the asset delivery (``core/delivery.py``), return
these very instructions and take these very answers, so the one driver (``Executor.drive`` in
``watcher/executor.py``) performs every ledger write, records every error and ends every attempt the same way for
both; each protocol keeps only its own Airflow calls and the events they answer, and decides what an outcome means
for it.

Rules:
- **Ledger writes.** Every write of a protocol's ledger entry is a :class:`WriteLedger` (the record, and the revision
  the entry must still have: 0, absent), performed by the driver as a compare-and-swap fenced by the leader key. It
  answers :class:`LedgerWritten` (at its new mod revision) or :class:`LedgerMoved` (the compare failed: another
  writer, or this leader's newer attempt, changed the key). A write refused because the leader key moved is no
  answer: the executor raises ``LeadershipLost`` and the attempt ends where it stands.
- **Failed calls.** An Airflow call that failed answers exactly one of :class:`Transient` (no answer, a timeout, 5xx or
  a transport error, through the bounded retries: it may or may not have happened), :class:`NotFound` (404: the object
  named does not exist there, and nothing was created) or :class:`Refused` (any other refusal: 400, 403, 409 left
  unexplained, 422, no Airflow configured for the instance). ``error`` says what failed, for the ledger and the log.
- **Error records.** A protocol that gives up on a failure for now returns :class:`RecordError`: the ledger write
  that records the error on the entry (its ``last_error``, and its retry time where the record has one) and the delay
  before the next try (the key comes back then). The driver writes it and ends the attempt as :attr:`Ending.FAILED`
  whatever the compare answers (:meth:`RecordError.end`): an entry that moved meanwhile has nothing left to record
  the error on, and the failure still waits out its delay (never a busy loop).
- **Ends.** An attempt ends with one :class:`End`, whose :class:`Ending` says how; the reconcilers map it onto their
  key's next turn in one place (``watcher/executor.py``, **Ends**).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

R = TypeVar("R")


# -- the answers ----------------------------------------------------------------------------------------------------


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
#: **Ledger writes**: what a ledger write answers.
Written = LedgerWritten | LedgerMoved


# -- the shared instructions ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteLedger(Generic[R]):
    """**Ledger writes**: write ``record`` to the protocol's ledger entry with a fenced compare-and-swap on
    ``expected_rev`` (0: the key must not exist); answer :class:`LedgerWritten` or :class:`LedgerMoved`."""

    record: R
    expected_rev: int


class Ending(StrEnum):
    """**Ends**: how an attempt ended."""

    #: The effect reached Airflow (or was found there) and the ledger entry says done.
    CONFIRMED = "confirmed"
    #: Given up on an operator's request: the entry says skipped and nothing more is sent.
    SKIPPED = "skipped"
    #: Nothing to do: the entry was already settled, or is gone.
    SETTLED = "settled"
    #: The entry changed under the attempt (a compare failed): nothing more was done; the watch brings the change.
    MOVED = "moved"
    #: A failure was recorded on the entry (**Error records**): try again in ``retry_in_s``.
    FAILED = "failed"
    #: Nothing was done yet on purpose: try again in ``retry_in_s`` (the delivery's wait for an earlier term).
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class End:
    """**Ends**: the attempt is over, ``how``; ``error`` (FAILED) what failed; ``retry_in_s`` (FAILED, DEFERRED)
    when to try again."""

    how: Ending
    error: str | None = None
    retry_in_s: float | None = None


CONFIRMED = End(Ending.CONFIRMED)
SKIPPED = End(Ending.SKIPPED)
SETTLED = End(Ending.SETTLED)
MOVED = End(Ending.MOVED)


@dataclass(frozen=True, slots=True)
class RecordError(WriteLedger[R]):
    """**Error records**: write ``record`` (the entry with ``error`` recorded on it), then end the attempt as FAILED,
    to be tried again in ``retry_in_s``."""

    error: str
    retry_in_s: float

    def end(self) -> End:
        """The attempt's end once the driver wrote (or failed to write) the record."""
        return End(Ending.FAILED, self.error, self.retry_in_s)


def failed(error: str, retry_in_s: float) -> End:
    """**Error records**: a failure with nothing to record it on (no entry yet): the attempt just ends."""
    return End(Ending.FAILED, error, retry_in_s)


class ProtocolError(AssertionError):
    """An event that cannot happen at a protocol's step: a bug in the caller, never an Airflow or etcd condition."""
