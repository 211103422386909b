"""Run-state and ledger values in the canonical shape the writers produce, read without building a pydantic record.

A cold start parses every value of the store (millions): pydantic builds a whole record, then the view keeps a slim
fact of it (``view.RunFact``, ``view.LedgerFact``) and gives each time the shared UTC tzinfo. Here a value in the
shape the plugin and the actuator write (``model.dump_record``) becomes the fact's fields directly: a msgspec
``Struct`` decoder (C: JSON, strict types, bounds and RFC 3339 times in one pass, no model) reads it; about a fifth of
the CPU of pydantic-core's validation into a dict followed by ``datetime.fromisoformat`` (0.4 against 2.1 us for a
run state, measured with ``bench/view_load.py``).

Rules:
1. Exactly equivalent or nothing: for a value these functions accept, ``parse_run_record`` / ``parse_trigger_record``
   would accept it too and the view would keep the same fact. Anything else (an unknown field, a wrong type, a value
   out of range, a time in another zone or without one, a ledger entry that is not done) returns None and the caller
   takes the pydantic path, which decides (and words) every problem. Declining is always safe; accepting must be
   exact (``tests/test_canonical.py`` checks both on random valid and invalid values).
2. Times: msgspec and pydantic read every RFC 3339 form msgspec accepts to the same instant, except a fraction of
   more than six digits (msgspec rounds it, pydantic truncates): a value holding one anywhere is declined. A time
   whose zone is not UTC (another offset, or none) is declined too: the view keeps pydantic's reading of those.
3. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from coordinator.core.model import RunState, TriggerAction

#: Integers of 64 bits at most (msgspec's bounds are int64; beyond them pydantic decides, this path does not guess).
_INT_MAX = (1 << 63) - 1
#: Rule 2: a fraction of seconds of seven digits or more, anywhere in the value (msgspec rounds it, pydantic cuts it).
_LONG_FRACTION = re.compile(rb"\.[0-9]{7}")

_Count = Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)]
_Signed = Annotated[int, msgspec.Meta(ge=-_INT_MAX, le=_INT_MAX)]
_Positive = Annotated[int, msgspec.Meta(ge=1, le=_INT_MAX)]
_RunId = Annotated[str, msgspec.Meta(min_length=1)]


class _Run(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A run-state value as ``RunRecord`` reads it: strict JSON types, no unknown field."""

    state: Literal["queued", "running", "success", "failed"]
    run_id: _RunId
    clear_number: _Count = 0
    updated_at: datetime | None = None
    source: str = "unknown"
    start_date: datetime | None = None
    end_date: datetime | None = None


class _DoneLedger(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A done ledger value as ``TriggerRecord`` reads it: strict JSON types, no unknown field."""

    status: Literal["done"]
    action: Literal["create", "clear"]
    run_id: str
    inputs: dict[str, _Count] = {}
    reason: str = ""
    cause_rev: _Signed = 0
    intent_rev: _Signed = 0
    requested_at: datetime | None = None
    done_at: datetime | None = None
    watcher: str = ""
    attempts: _Signed = 0
    last_error: str | None = None
    prior_queued_at: str | None = None
    trigger_count: _Positive = 1


_RUN = msgspec.json.Decoder(_Run)
_DONE_LEDGER = msgspec.json.Decoder(_DoneLedger)
_STATES = {state.value: state for state in RunState}
_ACTIONS = {action.value: action for action in TriggerAction}
_long_fraction = _LONG_FRACTION.search

RunFields = tuple[RunState, str, int, str, datetime | None, datetime | None, datetime | None]
LedgerFields = tuple[TriggerAction, str, tuple[str, ...], tuple[int, ...], int, int, int, str | None, datetime | None]


def run_fields(raw: bytes) -> RunFields | None:
    """(state, run id, clear number, source, start date, end date, seen) of a canonical run-state value (``seen``:
    ``updated_at`` where a date it stands in for is missing, as ``RunFact.of`` keeps it); None: pydantic's."""
    try:
        data = _RUN.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 (a lone surrogate) is pydantic's to word
        return None
    start, end, seen = data.start_date, data.end_date, data.updated_at
    # Rule 2 (msgspec gives ``Z`` and ``+00:00`` the shared ``datetime.UTC``), tested inline: this runs per key.
    if (
        (start is not None and start.tzinfo is not UTC)
        or (end is not None and end.tzinfo is not UTC)
        or (seen is not None and seen.tzinfo is not UTC)
        or _long_fraction(raw)
    ):
        return None
    state = _STATES[data.state]
    if start is not None and (end is not None or state.active):
        seen = None  # both dates known: kept only where it stands in for one (memory: a million facts)
    return (state, data.run_id, data.clear_number, data.source, start, end, seen)


def done_ledger_fields(raw: bytes) -> LedgerFields | None:
    """(action, run id, input names, input revisions, intent rev, trigger count, attempts, last error, done at) of a
    canonical ledger value whose status is done; None: pydantic's (which also keeps an unfinished intent whole)."""
    try:
        data = _DONE_LEDGER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 (a lone surrogate) is pydantic's to word
        return None
    requested, done_at = data.requested_at, data.done_at
    if (
        (requested is not None and requested.tzinfo is not UTC)
        or (done_at is not None and done_at.tzinfo is not UTC)
        or _long_fraction(raw)
    ):
        return None  # rule 2
    inputs = data.inputs
    return (
        _ACTIONS[data.action], data.run_id, tuple(inputs), tuple(inputs.values()), data.intent_rev,
        data.trigger_count, data.attempts, data.last_error, done_at,
    )  # fmt: skip
