"""Run-state and ledger values in the canonical shape the writers produce, read without building a pydantic record.

A cold start parses every value of the store (millions): pydantic builds a whole record, then the view keeps a slim
fact of it (``view.RunFact``, ``view.LedgerFact``) and gives each time the shared UTC tzinfo. Here a value in the
exact shape the plugin and the actuator write (``model.dump_record``) becomes the fact's fields directly: a strict
pydantic-core schema (a dict out, no model, times kept as text) checks it, then ``datetime.fromisoformat`` reads the
times (about a third less CPU per key than the record and the slim fact together).

Rules:
1. Exactly equivalent or nothing: for a value these functions accept, ``parse_run_record`` / ``parse_trigger_record``
   would accept it too and the view would keep the same fact. Anything else (an unknown field, a wrong type, a value
   out of range, a time in another form or zone, a ledger entry that is not done) returns None and the caller takes
   the pydantic path, which decides (and words) every problem. Declining is always safe; accepting must be exact
   (``tests/test_canonical.py`` checks both on random valid and invalid values).
2. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from coordinator.core.model import RunState, TriggerAction, TriggerStatus

#: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` in UTC (``Z`` or ``+00:00``): what ``dump_record`` and the plugin write. Any other
#: form (another zone, a basic ISO form, fewer fraction digits...) is pydantic's to judge: ``datetime.fromisoformat``
#: and pydantic do not accept the same set of strings, but agree on this one.
_STAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?(?:Z|\+00:00)$"
#: Integers beyond 64 bits are left to pydantic (whatever it answers for them, this path does not guess).
_INT_LIMIT = 1 << 63


def _field(schema: cs.CoreSchema, *, required: bool = False) -> cs.TypedDictField:
    return cs.typed_dict_field(schema, required=required)


def _int(least: int) -> cs.IntSchema:
    return cs.int_schema(ge=least, lt=_INT_LIMIT, strict=True)


_TEXT = cs.str_schema(strict=True)
_TIME = cs.nullable_schema(cs.str_schema(pattern=_STAMP, strict=True))
_OPTIONAL_TEXT = cs.nullable_schema(_TEXT)

#: The canonical shapes, checked by pydantic-core itself (its JSON parser, in Rust): strict types (no coercion at
#: all: a JSON integer for an int, a string for a str), no unknown field, times in the one form above. What passes
#: is also valid for ``RunRecord`` / ``TriggerRecord``; times are then read by ``datetime.fromisoformat``, which
#: gives UTC times the shared ``datetime.UTC`` tzinfo the view keeps (pydantic gives each its own).
_RUN = SchemaValidator(
    cs.typed_dict_schema(
        {
            "state": _field(cs.literal_schema([state.value for state in RunState]), required=True),
            "run_id": _field(cs.str_schema(min_length=1, strict=True), required=True),
            "clear_number": _field(_int(0)),
            "updated_at": _field(_TIME),
            "source": _field(_TEXT),
            "start_date": _field(_TIME),
            "end_date": _field(_TIME),
        },
        extra_behavior="forbid",
    )
)
_DONE_LEDGER = SchemaValidator(
    cs.typed_dict_schema(
        {
            "status": _field(cs.literal_schema([TriggerStatus.DONE.value]), required=True),
            "action": _field(cs.literal_schema([action.value for action in TriggerAction]), required=True),
            "run_id": _field(_TEXT, required=True),
            "inputs": _field(cs.dict_schema(_TEXT, _int(0), strict=True)),
            "reason": _field(_TEXT),
            "cause_rev": _field(_int(-_INT_LIMIT)),
            "intent_rev": _field(_int(-_INT_LIMIT)),
            "requested_at": _field(_TIME),
            "done_at": _field(_TIME),
            "watcher": _field(_TEXT),
            "attempts": _field(_int(-_INT_LIMIT)),
            "last_error": _field(_OPTIONAL_TEXT),
            "prior_queued_at": _field(_OPTIONAL_TEXT),
            "trigger_count": _field(_int(1)),
        },
        extra_behavior="forbid",
    )
)
_STATES = {state.value: state for state in RunState}
_ACTIONS = {action.value: action for action in TriggerAction}
_from_iso = datetime.fromisoformat

RunFields = tuple[RunState, str, int, str, datetime | None, datetime | None, datetime | None]
LedgerFields = tuple[TriggerAction, str, tuple[str, ...], tuple[int, ...], int, int, int, str | None, datetime | None]


def run_fields(raw: bytes) -> RunFields | None:
    """(state, run id, clear number, source, start date, end date, seen) of a canonical run-state value (``seen``:
    ``updated_at`` where a date it stands in for is missing, as ``RunFact.of`` keeps it); None: pydantic's."""
    try:
        data: dict[str, Any] = _RUN.validate_json(raw)
        start, end, updated = data.get("start_date"), data.get("end_date"), data.get("updated_at")
        state = _STATES[data["state"]]
        seen = None if updated is None else _from_iso(updated)  # validated (a day out of range raises)
        if start is not None and (end is not None or state.active):
            seen = None  # both dates known: kept only where it stands in for one (memory: a million facts)
        return (
            state, data["run_id"], data.get("clear_number", 0), data.get("source", "unknown"),
            None if start is None else _from_iso(start), None if end is None else _from_iso(end), seen,
        )  # fmt: skip
    except (ValidationError, ValueError):
        return None


def done_ledger_fields(raw: bytes) -> LedgerFields | None:
    """(action, run id, input names, input revisions, intent rev, trigger count, attempts, last error, done at) of a
    canonical ledger value whose status is done; None: pydantic's (which also keeps an unfinished intent whole)."""
    try:
        data: dict[str, Any] = _DONE_LEDGER.validate_json(raw)
        requested, done_at = data.get("requested_at"), data.get("done_at")
        if requested is not None:
            _from_iso(requested)  # validated, not kept
        inputs = data.get("inputs", {})
        return (
            _ACTIONS[data["action"]], data["run_id"], tuple(inputs), tuple(inputs.values()), data.get("intent_rev", 0),
            data.get("trigger_count", 1), data.get("attempts", 0), data.get("last_error"),
            None if done_at is None else _from_iso(done_at),
        )  # fmt: skip
    except (ValidationError, ValueError):
        return None
