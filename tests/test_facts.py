"""The view's facts: the compiled compact types read exactly as the named tuples they stand in for (``core/facts.py``'s
**Compact where compiled**, ``core/_facts.c``'s **The same fact** and **A named tuple's manners**)."""

from __future__ import annotations

import copy
import pickle
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core import canonical, facts
from coordinator.core.facts import LedgerFact, NamedLedgerFact, NamedRunFact, RunFact
from coordinator.core.model import RunState, TriggerAction, TriggerRecord, TriggerStatus, dump_record
from tests.support.examples import examples

ZONES = st.sampled_from([UTC, None, timezone(timedelta(hours=2)), timezone(timedelta(0), "Z0")])
TIMES = st.none() | st.datetimes(timezones=ZONES) | st.datetimes(timezones=st.just(UTC))
#: Integers the layout holds and ones it does not (beyond 64 bits, or 32 for the counts; a bool), and a value that is
#: not an int at all.
WIDTHS = st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, -(2**63)])
INTS = st.integers(-(2**63), 2**63 - 1) | WIDTHS | st.integers() | st.booleans() | st.just("7")
TEXT = st.text(max_size=12)


class _Subclass(datetime):
    """A ``datetime`` subclass (as pendulum's): kept as given, not made a plain ``datetime``."""


def run_fields() -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(
        st.sampled_from(list(RunState)), TEXT, INTS, INTS, TEXT, TIMES, TIMES,
        TIMES | st.just(_Subclass(2026, 1, 1, tzinfo=UTC)), st.booleans() | st.just(1),
    )  # fmt: skip


def ledger_fields() -> st.SearchStrategy[tuple[Any, ...]]:
    names = st.lists(TEXT, max_size=4, unique=True).map(tuple)
    revs = st.lists(INTS, max_size=4).map(tuple) | st.just([1, 2])
    full = st.none() | st.just(TriggerRecord(status=TriggerStatus.PENDING, action=TriggerAction.CREATE, run_id="r"))
    return st.tuples(
        st.sampled_from(list(TriggerStatus)), st.sampled_from(list(TriggerAction)), TEXT, names, revs, INTS,
        INTS, INTS, INTS, st.none() | TEXT, TIMES, full,
    )  # fmt: skip


def same(compact: Any, named: tuple[Any, ...]) -> None:
    """``compact`` reads as ``named`` field by field, value and type, and as a tuple."""
    assert type(compact) is not type(named)
    for name in named._fields:  # type: ignore[attr-defined]
        mine, theirs = getattr(compact, name), getattr(named, name)
        assert mine == theirs and type(mine) is type(theirs), name
        if isinstance(theirs, datetime):
            assert mine.tzinfo is theirs.tzinfo or mine.tzinfo == theirs.tzinfo, name
            assert mine.isoformat() == theirs.isoformat(), name
    assert tuple(compact) == tuple(named) and len(compact) == len(named)
    assert compact[0] == named[0] and compact[-1] == named[-1]
    assert repr(compact) == repr(named)


def test_the_test_environment_holds_the_compact_facts() -> None:
    """Where the package is built with a C compiler (the test venv), the view's facts are the compiled compact types
    and the compiled reader and page loop fill them, so every test of the view checks them."""
    built = "the compiled module is not built: sudo apt-get install -y gcc python3-dev && touch setup.py && make venv"
    assert RunFact is not NamedRunFact and LedgerFact is not NamedLedgerFact, built
    assert canonical.native_run_fact is not None and canonical.native_load is not None


@settings(max_examples=examples(400), deadline=None)
@given(run_fields())
def test_a_run_fact_reads_back_every_field_as_the_named_tuple_does(fields: tuple[Any, ...]) -> None:
    """A compact run fact built from any fields, those it holds compactly and those it keeps as given (huge or
    non-int integers, times in another zone, naive or of a subclass), reads back each field equal and of the same type
    as the named tuple; its properties, repr, equality, hash, copy and pickle agree."""
    compact, named = RunFact(*fields), NamedRunFact(*fields)
    same(compact, named)
    assert compact.started == named.started and compact.finished == named.finished
    assert compact.record == named.record
    assert compact == RunFact(*fields) and hash(compact) == hash(named)
    assert copy.deepcopy(compact) == compact and pickle.loads(pickle.dumps(compact)) == compact
    state, *_ = compact
    assert state is fields[0]


@settings(max_examples=examples(400), deadline=None)
@given(ledger_fields())
def test_a_ledger_fact_reads_back_every_field_and_input_as_the_named_tuple_does(fields: tuple[Any, ...]) -> None:
    """A compact ledger fact built from any fields reads back each field as the named tuple does, its input
    generations included; ``input`` answers for every recorded name and an absent one as the named tuple's, and
    its other properties, equality and copies agree."""
    compact, named = LedgerFact(*fields), NamedLedgerFact(*fields)
    same(compact, named)
    for name in (*fields[3], "absent"):
        try:
            expected: Any = named.input(name)
        except IndexError:  # more names than generations: both raise
            with pytest.raises(IndexError):
                compact.input(name)
            continue
        assert compact.input(name) == expected
    assert (compact.withdrawn, compact.permit_granted, compact.intent_rev) == (
        named.withdrawn, named.permit_granted, named.intent_rev,
    )  # fmt: skip
    if len(fields[3]) == len(fields[4]):
        assert compact.inputs == named.inputs and compact.record == named.record
    assert compact == LedgerFact(*fields) and copy.copy(compact) == compact
    assert pickle.loads(pickle.dumps(compact)) == compact
    if isinstance(fields[4], tuple) and fields[11] is None:
        assert hash(compact) == hash(named)
    else:  # a list, a pydantic record: neither is hashable, nor is either fact
        with pytest.raises(TypeError):
            hash(compact)


def test_the_facts_take_the_named_tuples_arguments_defaults_and_errors() -> None:
    """The compact facts take positional and keyword arguments with the named tuples' defaults, refuse a missing,
    unknown or doubled argument with a TypeError naming it, are read-only, and have the named tuples' ``_make``,
    ``_replace`` and ``_asdict``."""
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    compact = RunFact(state=RunState.SUCCESS, run_id="r", clear_number=0, rev=9, end_date=stamp)
    same(compact, NamedRunFact(state=RunState.SUCCESS, run_id="r", clear_number=0, rev=9, end_date=stamp))
    same(LedgerFact(TriggerStatus.DONE, TriggerAction.CREATE, "c", ("a",), (3,), 4, attempts=2),
         NamedLedgerFact(TriggerStatus.DONE, TriggerAction.CREATE, "c", ("a",), (3,), 4, attempts=2))  # fmt: skip
    with pytest.raises(TypeError, match="'rev'"):
        RunFact(RunState.SUCCESS, "r", 0)
    with pytest.raises(TypeError, match="'colour'"):
        RunFact(RunState.SUCCESS, "r", 0, 1, colour=1)
    with pytest.raises(TypeError, match="'run_id'"):
        RunFact(RunState.SUCCESS, "r", run_id="s", clear_number=0, rev=1)
    same(compact._replace(clear_number=1, seen=stamp), NamedRunFact._make(compact)._replace(clear_number=1, seen=stamp))
    assert RunFact._make(compact) == compact and compact._asdict() == NamedRunFact(*compact)._asdict()
    with pytest.raises(TypeError, match="'colour'"):
        compact._replace(colour=1)
    with pytest.raises(AttributeError):
        compact.rev = 10  # type: ignore[misc]
    with pytest.raises(IndexError):
        compact[9]


def test_the_compiled_reader_fills_the_fact_pydantics_record_gives() -> None:
    """A run state and a done ledger entry as the writers write them, read by the compiled reader into compact facts,
    equal the named tuples of the pydantic records (``of``) field by field."""
    stamp = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    record = NamedRunFact(RunState.SUCCESS, "scheduled__x", 2, 0, "plugin:a", stamp, stamp + timedelta(hours=1)).record
    raw = dump_record(record)
    assert canonical.native_run_fact is not None and canonical.native_done_ledger_fact is not None
    same(canonical.native_run_fact(raw, 12345678901), NamedRunFact.of(record, 12345678901))
    entry = TriggerRecord(
        status=TriggerStatus.DONE, action=TriggerAction.CLEAR, run_id="coordinator__x",
        inputs={"default/a": 5, "default/b": 2**40}, intent_rev=3, done_at=stamp, attempts=1,
    )  # fmt: skip
    names: dict[tuple[str, ...], tuple[str, ...]] = {}
    fact = canonical.native_done_ledger_fact(dump_record(entry), 99, names)
    same(fact, NamedLedgerFact.of(entry, 99, {}))
    assert fact is not None and fact.input_names is names[("default/a", "default/b")]


def test_the_compiled_reader_hands_back_the_interned_run_id_and_source_of_any_bytes() -> None:
    """Run states of thousands of run ids (more than the reader's table of strings it made last), each read twice:
    every fact's run id and source equal its bytes and are the interpreter's interned string, one object however
    often read."""
    assert canonical.native_run_fact is not None
    read = canonical.native_run_fact
    for rnd in range(2):
        for i in range(10_000):
            run_id, source = f"scheduled__{i:05d}", f"plugin:{i % 7}"
            raw = b'{"state":"success","run_id":"%s","source":"%s"}' % (run_id.encode(), source.encode())
            fact = read(raw, i + 1)
            assert fact is not None and (fact.run_id, fact.source) == (run_id, source), (rnd, i)
            assert fact.run_id is sys.intern(run_id) and fact.source is sys.intern(source), (rnd, i)


@pytest.mark.parametrize("wide", [2**31, -(2**31) - 1, 2**40])
def test_a_state_or_status_given_as_a_tuple_and_a_count_beyond_32_bits_read_back_as_given(wide: int) -> None:
    """The compact layout keeps the fields as a tuple in the state's (status's) slot where one does not fit: a state
    or status given as a tuple itself, and a count (``clear_number``, ``trigger_count``, ``attempts``) beyond 32 bits,
    read back equal and of the same type as the named tuple's, and the fact equals and hashes as it does."""
    odd = ("not", "a member")
    runs = [(odd, "r", 1, 5), (RunState.SUCCESS, "r", wide, 5)]
    ledgers = [
        (odd, TriggerAction.CREATE, "c", ("a",), (1,), 9),
        (TriggerStatus.DONE, TriggerAction.CREATE, "c", ("a",), (1,), 9, 0, wide),
        (TriggerStatus.DONE, TriggerAction.CREATE, "c", ("a",), (1,), 9, 0, 1, wide, "boom"),
    ]
    for compact, named in [(RunFact(*f), NamedRunFact(*f)) for f in runs] + [
        (LedgerFact(*f), NamedLedgerFact(*f)) for f in ledgers
    ]:
        same(compact, named)
        assert compact == type(compact)(*named)
        assert hash(compact) == hash(tuple(named))


def test_a_compact_fact_is_one_small_allocation() -> None:
    """A run fact of the reader's kind (UTC times, integers within the layout's widths) is one allocation of 80 bytes,
    a done ledger fact of two inputs one of 112: against about 215 and 320 bytes in four and five objects as named
    tuples."""
    stamp = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    runs = [(RunState.SUCCESS, "r", 0, 10**6 + i, "s", stamp, stamp + timedelta(seconds=i)) for i in range(2000)]
    ledgers = [(TriggerStatus.DONE, TriggerAction.CREATE, "c", ("a", "b"), (10**6 + i, 10**7 + i), 10**8 + i, 0, 1, 1,
                None, stamp + timedelta(seconds=i)) for i in range(2000)]  # fmt: skip
    for make, fields, size in ((RunFact, runs, 80), (LedgerFact, ledgers, 112)):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [make(*f) for f in fields]
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown <= len(kept) * size + 4 * sys.getsizeof(kept), (make, grown / len(kept))


class _Wider(NamedTuple):
    """A fact with one field more than the compiled module knows."""

    state: RunState
    colour: str = ""


def test_a_module_built_for_other_fields_is_not_adopted() -> None:
    """Where the compiled module's fields are not the named tuples' (built from an older source), ``compact`` keeps
    the named tuples and changes nothing in the module's types."""
    before = RunFact(RunState.QUEUED, "q", 0, 1)
    assert facts.compact(_Wider, _Wider) == (_Wider, _Wider)  # type: ignore[arg-type]
    assert RunFact(RunState.QUEUED, "q", 0, 1) == before and not hasattr(RunFact, "colour")
