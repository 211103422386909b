"""Run-state and ledger values in the canonical shape the writers produce, read without building a pydantic record.

A cold start parses every value of the store (millions): pydantic builds a whole record, then the view keeps a slim
fact of it (``view.RunFact``, ``view.LedgerFact``) and gives each time the shared UTC tzinfo. Here a value in the
exact shape the plugin and the actuator write (``model.dump_record``) becomes the fact's fields directly.

Rules:
1. Exactly equivalent or nothing: for a value these functions accept, ``parse_run_record`` / ``parse_trigger_record``
   would accept it too and the view would keep the same fact. Anything else (an unknown field, a wrong type, a value
   out of range, a time in another form or zone, a ledger entry that is not done) returns None and the caller takes
   the pydantic path, which decides (and words) every problem. Declining is always safe; accepting must be exact
   (``tests/test_canonical.py`` checks both on random valid and invalid values).
2. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from pydantic_core import from_json

from coordinator.core.model import RunState, TriggerAction, TriggerStatus

#: The JSON parser pydantic's ``validate_json`` itself uses, so both read the same text the same way; values are not
#: looked up in its string cache (run ids and sources are interned by the view, and the rest is not kept).
_parse_json = partial(from_json, cache_strings="keys")


#: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` in UTC (``Z`` or ``+00:00``): what ``dump_record`` and the plugin write. Any other
#: form (another zone, a basic ISO form, fewer fraction digits...) is pydantic's to judge: ``datetime.fromisoformat``
#: and pydantic do not accept the same set of strings, but agree on this one.
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?(?:Z|\+00:00)").fullmatch

_RUN_FIELDS = frozenset(("state", "run_id", "clear_number", "updated_at", "source", "start_date", "end_date"))
_LEDGER_FIELDS = frozenset(
    (
        "status", "action", "run_id", "inputs", "reason", "cause_rev", "intent_rev", "requested_at", "done_at",
        "watcher", "attempts", "last_error", "prior_queued_at", "trigger_count",
    )
)  # fmt: skip
_DONE = TriggerStatus.DONE.value
_STATES = {state.value: state for state in RunState}
_ACTIONS = {action.value: action for action in TriggerAction}
#: Reads a canonical time with ``datetime.UTC`` itself as its tzinfo, as the view keeps every UTC time.
_from_iso = datetime.fromisoformat
#: Integers beyond 64 bits are left to pydantic (whatever it answers for them, this path does not guess).
_INT_LIMIT = 1 << 63

RunFields = tuple[RunState, str, int, str, datetime | None, datetime | None]
LedgerFields = tuple[TriggerAction, str, tuple[str, ...], tuple[int, ...], int, int, int, str | None, datetime | None]


def _time(value: Any) -> bool:
    """Whether ``value`` is None or a time in the canonical form (then ``fromisoformat`` reads it as pydantic)."""
    return value is None or (type(value) is str and _STAMP(value) is not None)


def _ints(values: Iterable[Any], least: int) -> bool:
    """Whether every value is an int in [least, 2**63)."""
    for value in values:  # noqa: SIM110 - a plain loop: ``all`` over a generator costs a frame per value
        if type(value) is not int or not least <= value < _INT_LIMIT:
            return False
    return True


def run_fields(raw: bytes) -> RunFields | None:
    """(state, run id, clear number, source, start date, end date) of a canonical run-state value; None: pydantic's."""
    # Inlined checks, not a helper per field: this runs for every run state of a store (a million at start-up).
    if raw[:1] != b"{":
        return None
    try:
        data = _parse_json(raw)
        if not _RUN_FIELDS.issuperset(data):
            return None
        state = _STATES[data["state"]]
        run_id, clear, source = data["run_id"], data.get("clear_number", 0), data.get("source", "unknown")
        start, end, updated = data.get("start_date"), data.get("end_date"), data.get("updated_at")
        if not (
            type(run_id) is str and run_id and type(clear) is int and 0 <= clear < _INT_LIMIT and type(source) is str
        ) or not (_time(start) and _time(end) and _time(updated)):
            return None
        if updated is not None:
            _from_iso(updated)  # validated (a bad date raises), not kept
        return (
            state, run_id, clear, source, None if start is None else _from_iso(start),
            None if end is None else _from_iso(end),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def done_ledger_fields(raw: bytes) -> LedgerFields | None:
    """(action, run id, input names, input revisions, intent rev, trigger count, attempts, last error, done at) of a
    canonical ledger value whose status is done; None: pydantic's (which also keeps an unfinished intent whole)."""
    if raw[:1] != b"{":
        return None
    try:
        data = _parse_json(raw)
        if not _LEDGER_FIELDS.issuperset(data) or data["status"] != _DONE:
            return None
        action = _ACTIONS[data["action"]]
        run_id, inputs = data["run_id"], data.get("inputs", {})
        ints = (data.get("cause_rev", 0), data.get("intent_rev", 0), data.get("attempts", 0))
        count = data.get("trigger_count", 1)
        last_error, queued = data.get("last_error"), data.get("prior_queued_at")
        done_at, requested = data.get("done_at"), data.get("requested_at")
        if not (
            type(run_id) is str
            and type(inputs) is dict
            and _ints(inputs.values(), 0)
            and _ints(ints, -_INT_LIMIT)
            and type(count) is int
            and 1 <= count < _INT_LIMIT
            and type(data.get("reason", "")) is str
            and type(data.get("watcher", "")) is str
            and (last_error is None or type(last_error) is str)
            and (queued is None or type(queued) is str)
            and _time(done_at)
            and _time(requested)
        ):
            return None
        if requested is not None:
            _from_iso(requested)  # validated, not kept
        return (
            action, run_id, tuple(inputs), tuple(inputs.values()), ints[1], count, ints[2], last_error,
            None if done_at is None else _from_iso(done_at),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None
