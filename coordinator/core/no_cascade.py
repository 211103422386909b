"""A rerun that does not cascade: ``{prefix}/config/no_cascade/{instance}/{dag_id}/{partition}`` (semantics
`no-cascade-once`).

``coordinator rerun --no-cascade`` records, BEFORE it clears the run in Airflow, which attempt it clears and which
success generation that attempt had. The planner then treats the next success of that run (the cleared attempt's, the
next ``clear_number``) as consumed by every dependent that had consumed the generation it replaces: dependents stay
as they are. Only that one generation: a later rerun is another attempt and cascades as usual.

Rules:
- **Record first.** The record names the attempt being cleared (``run_id``, ``clear_number``); the clear makes the next
  attempt, ``clear_number + 1``, whose success is the one waived. Written before the clear, so a crash between the two
  leaves a record whose attempt was not cleared yet: repeating the command clears it, and the record means the same.
- **One generation.** A success is waived only when it is of that run, of the next attempt and written after the
  record. Any later success (another clear, a hand mark: each a new attempt) is a generation like any other.
- **Only what was consumed.** The waived success stands for ``replaces``, the success generation the cleared attempt
  had: a dependent that had consumed ``replaces`` counts as having consumed the new one; a dependent that had not
  (stale already, or never ran) decides as it would have. No success to replace (``replaces`` None): nothing waived.
- **Pure.** No I/O, no clock, no logging.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.core.facts import RunFact
from coordinator.core.model import RunState


class NoCascadeRecord(BaseModel):
    """Value of a no-cascade key: the attempt ``rerun --no-cascade`` clears and the generation its success replaces."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(min_length=1)
    #: The attempt being cleared (the run's ``clear_number`` when recorded); its next attempt's success is waived.
    clear_number: int = Field(default=0, ge=0)
    #: The success generation of the attempt being cleared (what the dependents consumed); None: it had no success.
    replaces: int | None = Field(default=None, ge=0)
    #: Who asked and when (``history`` and ``why`` show both).
    by: str = ""
    at: datetime | None = None


class NoCascade(NamedTuple):
    """The view's fact of one record: the record and the revision it was written at."""

    record: NoCascadeRecord
    rev: int

    def waived(self, fact: RunFact | None) -> int | None:
        """**One generation**, **Only what was consumed**: the generation ``fact`` stands for when it is the waived
        success (``replaces``), else None (``fact`` is a generation like any other)."""
        record = self.record
        if (
            fact is None
            or record.replaces is None
            or fact.state is not RunState.SUCCESS
            or fact.rev <= self.rev
            or fact.run_id != record.run_id
            or fact.clear_number != record.clear_number + 1
        ):
            return None
        return record.replaces

    def pending(self, run_id: str, clear_number: int) -> bool:
        """**Record first**: whether the run's attempt (``run_id``, ``clear_number``) is still the recorded one (not
        cleared yet): a repeated command keeps the record as it is and clears that attempt."""
        return (run_id, clear_number) == (self.record.run_id, self.record.clear_number)


def parse_no_cascade(raw: bytes) -> tuple[NoCascadeRecord | None, str | None]:
    """The record in ``raw``, or (None, why not). Never raises."""
    try:
        return NoCascadeRecord.model_validate_json(raw), None
    except ValidationError as exc:
        return None, str(exc.errors()[0]["msg"])


def dump_no_cascade(record: NoCascadeRecord) -> bytes:
    return record.model_dump_json(exclude_none=True).encode()
