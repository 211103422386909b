"""Run-state and ledger values in the canonical shape the writers produce, read without building a pydantic record.

A cold start parses every value of the store (millions): pydantic builds a whole record, then the view keeps a slim
fact of it (``facts.RunFact``, ``facts.LedgerFact``) and gives each time the shared UTC tzinfo. Here a value in the
shape the plugin and the actuator write (``model.dump_record``) becomes the fact directly: a msgspec ``Struct``
decoder (C: JSON, strict types, bounds and RFC 3339 times in one pass, no model) reads it; about a fifth of the CPU
of pydantic-core's validation into a dict followed by ``datetime.fromisoformat`` (0.4 against 2.1 us for a run
state, measured with ``bench/view_load.py``). The fact is built here, not handed to the view as fields to unpack and
pack again: that was a tenth of a microsecond per key.

Rules:
- **Exactly equivalent or nothing**: for a value these functions accept, ``parse_run_record`` / ``parse_trigger_record``
  would accept it too and the view would keep the same fact (``RunFact.of`` / ``LedgerFact.of`` of that record).
  Anything else (an unknown field, a wrong type, a value out of range, a time in another zone or without one, a ledger
  entry that is not done, or a done one whose permit a retraction withdrew) returns None and the caller takes the
  pydantic path, which decides (and words) every problem.
  The structs are built from the pydantic models' own fields (``_struct_of``), so a field added to a record reaches this
  path with its type, bounds and default. Declining is always safe; accepting must be exact (``tests/test_canonical.py``
  checks both on random valid and invalid values).
- **UTC times, six digits.** msgspec and pydantic read every RFC 3339 form msgspec accepts to the same instant,
  except a fraction of more than six digits (msgspec rounds it, pydantic truncates): a value holding one anywhere is
  declined (searched per value, or once for a whole snapshot page: ``no_long_fraction``). A time whose zone is not UTC
  (another offset, or none) is declined too: the view keeps pydantic's reading of those.
- **The compiled reader.** Where the package was built with a C compiler (an install from the sdist, the watcher image,
  the test venv), ``core/_native.c`` reads the same values about twice as fast and the view asks it first
  (``native_run_fact``, ``native_done_ledger_fact``). It reads a strict subset of what the msgspec path reads: compact
  JSON, each field of the records at most once, ASCII strings without escapes, integers from 0 to 2**63-1 written
  plainly, times ``YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+00:00)`` that exist; anything else returns None and takes the
  msgspec path, then pydantic's (**Exactly equivalent or nothing** holds for it as for this module: the tests draw
  the same values through both). It knows the records' fields by name: a module built from an older source (a field
  since added) is not used (``native_reader``).
- **Pure**: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from functools import partial
from sys import intern
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from coordinator.core.facts import LedgerFact, RunFact
from coordinator.core.model import BACKFILL_RUN_TYPE, RunRecord, RunState, TriggerAction, TriggerRecord, TriggerStatus

#: Integers of 64 bits at most (msgspec's bounds are int64; beyond them pydantic decides, this path does not guess).
_INT_MAX = (1 << 63) - 1
#: **UTC times, six digits**: a fraction of seconds of seven digits or more, anywhere in the value (msgspec rounds it,
#: pydantic cuts it).
_LONG_FRACTION = re.compile(rb"\.[0-9]{7}")


def _strict(annotation: Any, metadata: Sequence[Any] = ()) -> Any:
    """The msgspec type that reads a JSON value as a pydantic field of ``annotation`` with ``metadata`` does
    (**Exactly equivalent or nothing**): every int bounded to 64 bits, pydantic's ``ge`` and ``min_length`` kept,
    any other type as it is. A constraint this does not know is an error at import, never a silent difference."""
    if get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        found = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else (e,))]
        return _strict(base, [*metadata, *found])
    meta: dict[str, int] = {}
    for m in metadata:
        if isinstance(m, annotated_types.Ge) and isinstance(m.ge, int):
            meta["ge"] = m.ge
        elif isinstance(m, annotated_types.MinLen):
            meta["min_length"] = m.min_length
        else:
            raise TypeError(f"canonical: no msgspec reading of the constraint {m!r}")
    if annotation is int:
        return Annotated[int, msgspec.Meta(ge=meta.get("ge", -_INT_MAX), le=_INT_MAX)]
    if annotation is str and set(meta) <= {"min_length"}:
        return Annotated[str, msgspec.Meta(min_length=meta["min_length"])] if meta else str
    if meta:
        raise TypeError(f"canonical: no msgspec reading of {meta} on {annotation!r}")
    if get_origin(annotation) is dict:
        key, value = get_args(annotation)
        return dict[_strict(key), _strict(value)]  # type: ignore[misc]
    return annotation


def _struct_of(model: type[BaseModel], name: str, **fixed: Any) -> type[msgspec.Struct]:
    """A msgspec ``Struct`` with ``model``'s fields, types and defaults (``fixed`` replaces a field's type), no unknown
    field: the one definition of a value stays the pydantic model, this path only reads it faster."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field_name, info in model.model_fields.items():
        kind = fixed.get(field_name) or _strict(info.annotation, info.metadata)
        if info.is_required():
            fields.append((field_name, kind))
        else:
            fields.append((field_name, kind, info.get_default(call_default_factory=True)))
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False)


#: A run-state value as ``RunRecord`` reads it: strict JSON types, no unknown field.
_Run = _struct_of(RunRecord, "_Run")
#: A done ledger value as ``TriggerRecord`` reads it: strict JSON types, no unknown field.
_DoneLedger = _struct_of(TriggerRecord, "_DoneLedger", status=Literal["done"])

_RUN: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Run)
_DONE_LEDGER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_DoneLedger)
_long_fraction = _LONG_FRACTION.search
#: The facts are built with ``tuple.__new__`` (C) where they are the named tuples, rather than their Python
#: ``__new__``; the compact facts (``facts``' **Compact where compiled**) take their fields as arguments.
_run: Callable[[tuple[Any, ...]], RunFact] = (
    partial(tuple.__new__, RunFact) if issubclass(RunFact, tuple) else lambda fields: RunFact(*fields)
)
_ledger: Callable[[tuple[Any, ...]], LedgerFact] = (
    partial(tuple.__new__, LedgerFact) if issubclass(LedgerFact, tuple) else lambda fields: LedgerFact(*fields)
)
_DONE = TriggerStatus.DONE


def no_long_fraction(values: Iterable[bytes]) -> bool:
    """True when no value of ``values`` holds a fraction of seven digits or more (**UTC times, six digits**). One search
    of them all, joined by newlines (neither a dot nor a digit: no match spans two values), costs a third less than one
    per value: a snapshot page asks it once and gives the answer to ``run_fact`` / ``done_ledger_fact`` as
    ``scanned``."""
    return _long_fraction(b"\n".join(values)) is None


def run_fact(raw: bytes, rev: int, scanned: bool = False) -> RunFact | None:
    """The fact of a canonical run-state value written at ``rev`` (``seen``: ``updated_at`` where a date it stands in
    for is missing, as ``RunFact.of`` keeps it; run id and source interned); None: pydantic's. ``scanned``:
    **UTC times, six digits**' search of ``raw`` is done (``no_long_fraction`` of values holding it was True)."""
    try:
        data = _RUN.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 (a lone surrogate) is pydantic's to word
        return None
    start, end, seen = data.start_date, data.end_date, data.updated_at
    # **UTC times, six digits** (msgspec gives ``Z`` and ``+00:00`` the shared ``datetime.UTC``), tested inline: this
    # runs per key.
    if (
        (start is not None and start.tzinfo is not UTC)
        or (end is not None and end.tzinfo is not UTC)
        or (seen is not None and seen.tzinfo is not UTC)
        or (not scanned and _long_fraction(raw))
    ):
        return None
    state = data.state
    if start is not None and (end is not None or state.active):
        seen = None  # both dates known: kept only where it stands in for one (memory: a million facts)
    backfill = data.run_type == BACKFILL_RUN_TYPE
    return _run((state, intern(data.run_id), data.clear_number, rev, intern(data.source), start, end, seen,
                 backfill))  # fmt: skip


def done_ledger_fact(
    raw: bytes, mod_rev: int, names: dict[tuple[str, ...], tuple[str, ...]], scanned: bool = False
) -> LedgerFact | None:
    """The fact of a canonical ledger value whose status is done, written at ``mod_rev`` (``names`` interns the input
    names, as ``LedgerFact.of``); None: pydantic's (which also keeps an unfinished intent whole). ``scanned``: as for
    ``run_fact``."""
    try:
        data = _DONE_LEDGER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 (a lone surrogate) is pydantic's to word
        return None
    requested, done_at = data.requested_at, data.done_at
    if (
        (requested is not None and requested.tzinfo is not UTC)
        or (done_at is not None and done_at.tzinfo is not UTC)
        or (not scanned and _long_fraction(raw))
    ):
        return None  # **UTC times, six digits**
    if data.withdrawn is not None:
        return None  # a withdrawn permit: ``LedgerFact.of`` keeps the whole record (semantics `permit-retracted`)
    inputs = data.inputs
    keys = tuple(inputs)
    return _ledger((
        _DONE, data.action, intern(data.run_id), names.setdefault(keys, keys), tuple(inputs.values()),
        mod_rev, data.intent_rev, data.trigger_count, data.attempts, data.last_error, done_at, None,
    ))  # fmt: skip


#: ``run_fact`` / ``done_ledger_fact`` as the compiled reader has them (**The compiled reader**).
NativeRunFact = Callable[[bytes, int], "RunFact | None"]
NativeLedgerFact = Callable[[bytes, int, dict[tuple[str, ...], tuple[str, ...]]], "LedgerFact | None"]
#: ``View.load_page``'s loop over a page's common keys, compiled (``core/_load.c``): (page: its triples, or its bytes
#: and table of rows; at, top, the view's state) -> (the first item it left, the page's highest revision so far).
NativeLoad = Callable[[list[tuple[str, bytes, int]] | tuple[bytes, bytes], int, int, tuple[Any, ...]], tuple[int, int]]


def native_reader() -> tuple[NativeRunFact, NativeLedgerFact, NativeLoad] | None:
    """The compiled reader's two functions and the page's loop (``core/_load.c``), configured with the enums' members,
    when it is built, knows exactly the records' fields and its compact facts are the view's (**The compiled
    reader**, ``facts``' **Compact where compiled**); None: this module's msgspec path alone."""
    try:
        from coordinator.core import _native
    except ImportError:
        return None
    known = (_native.RUN_FIELDS, _native.LEDGER_FIELDS)
    if known != (tuple(RunRecord.model_fields), tuple(TriggerRecord.model_fields)):
        return None  # built from an older source: it would read a value without a field since added as before it
    if not hasattr(_native, "Slots"):
        return None  # built from a source before the partitions' slots: its loop fills dicts, the view makes Slots
    compiled: tuple[object, object] = (_native.RunFact, _native.LedgerFact)
    if compiled != (RunFact, LedgerFact):
        return None  # the facts are the named tuples: the reader fills only the compact ones
    _native.configure(
        {s.value: s for s in RunState}, {a.value: a for a in TriggerAction},
        frozenset(s for s in RunState if s.active), _DONE,
    )  # fmt: skip
    return _native.run_fact, _native.done_ledger_fact, _native.load_fast


_NATIVE = native_reader()
#: The compiled ``run_fact`` (no ``scanned``: it reads every time itself), or None where it is not built.
native_run_fact: NativeRunFact | None = None if _NATIVE is None else _NATIVE[0]
#: The compiled ``done_ledger_fact``, or None where it is not built.
native_done_ledger_fact: NativeLedgerFact | None = None if _NATIVE is None else _NATIVE[1]
#: The compiled loop of a snapshot page (``View.load_page``), or None where it is not built.
native_load: NativeLoad | None = None if _NATIVE is None else _NATIVE[2]


def native_pending() -> Any:
    """A new store of the facts the compiled loop keeps by partition (``core/_load.c``'s **Stored by partition**):
    ``flush()`` stores them, ``drop()`` forgets them, ``len()`` counts them. Only where the loop is built."""
    from coordinator.core import _native

    return _native.Pending()
