"""The canonical fast path of the view's load (``core.canonical``) keeps exactly the facts and problems of pydantic."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from coordinator.core import canonical
from coordinator.core.canonical import (
    done_ledger_fact,
    native_done_ledger_fact,
    native_run_fact,
    no_long_fraction,
    run_fact,
)
from coordinator.core.facts import LedgerFact, RunFact
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.core.view import View
from tests.support.examples import examples

KEYS = KeyLayout()
NODE = NodeId("team", "d")
PARTITION = "2026-01-01T00:00:00Z"

_times = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.sampled_from([UTC, None])
)


@st.composite
def _stamp_in(draw: st.DrawFn, canonical: bool) -> Any:
    """A time as a writer might put it: canonical (``Z``, ``+00:00``, with or without micros) or any other form."""
    moment = draw(_times).replace(tzinfo=UTC)
    text = moment.isoformat()
    forms = [text, text.replace("+00:00", "Z"), moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
             moment.strftime("%Y-%m-%dT%H:%M:%SZ"), None]  # fmt: skip
    if not canonical:
        forms = [
            moment.astimezone(timezone(timedelta(hours=2))).isoformat(),
            moment.strftime("%Y%m%dT%H%M%SZ"),
            moment.strftime("%Y-%m-%dT%H%M%S.%fZ"),
            moment.strftime("%Y-%m-%dT%H:%M:%S%fZ"),
            moment.strftime("%Y-%m-%d"),
            moment.strftime("%Y-%m-%d %H:%M:%SZ"),
            moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            text.replace("T", "t"),
            text[:-6],
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "0000-01-01T00:00:00Z",
            int(moment.timestamp()),
            moment.timestamp(),
            "",
            "now",
        ]
    return draw(st.sampled_from(forms))


_weird = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.text())
_bad_ints = st.one_of(
    st.integers(-5, -1), st.integers(min_value=2**63, max_value=2**65), st.integers(max_value=-(2**63) - 1),
    st.sampled_from([1.0, 2.0, True, False, "1", None]),
)  # fmt: skip
_texts = st.one_of(st.text(max_size=8), st.text(alphabet="\u00e9\u2603\U0001f600ab\ud800", max_size=4))
_STAMP = (_stamp_in(True), _stamp_in(False))
_STRING = (_texts, _weird.filter(lambda v: not isinstance(v, str)))


def _int(least: int) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """Valid ints (at least ``least``, 64 bits) and invalid ones (below it, beyond 64 bits, not an int)."""
    small = st.integers(least, least + 3)
    return st.one_of(small, st.integers(min_value=least, max_value=2**63 - 1)), st.one_of(
        _bad_ints.filter(lambda v: not (type(v) is int and least <= v < 2**63)), st.just(least - 1)
    )


#: field -> (valid values, invalid values, required)
Fields = dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], bool]]
_RUN: Fields = {
    "state": (st.sampled_from([s.value for s in RunState]), st.sampled_from(["SUCCESS", "done", "", 1, None]), True),
    "run_id": (st.text(min_size=1, max_size=8), st.one_of(st.just(""), _STRING[1]), True),
    "clear_number": (*_int(0), False),
    "updated_at": (*_STAMP, False),
    "source": (*_STRING, False),
    "start_date": (*_STAMP, False),
    "end_date": (*_STAMP, False),
    "run_type": (
        st.one_of(st.none(), st.sampled_from(["backfill", "scheduled", "manual", "Backfill", ""]), _texts),
        _weird.filter(lambda v: v is not None and not isinstance(v, str)),
        False,
    ),
    "run_after": (*_STAMP, False),
}
_OPTIONAL_TEXT = (st.one_of(st.none(), _texts), _weird.filter(lambda v: v is not None and not isinstance(v, str)))
_LEDGER: Fields = {
    "status": (st.sampled_from(["done"] * 8 + ["pending", "error"]), st.sampled_from(["DONE", "", 1, None]), True),
    "action": (st.sampled_from([a.value for a in TriggerAction]), st.sampled_from(["CREATE", "", 1, None]), True),
    "run_id": (*_STRING, True),
    "inputs": (
        st.dictionaries(st.text(max_size=6), _int(0)[0], max_size=3),
        st.one_of(st.dictionaries(st.text(max_size=6), _int(0)[1], min_size=1, max_size=2), _weird),
        False,
    ),
    "reason": (*_STRING, False),
    "cause_rev": (*_int(-(2**63)), False),
    "intent_rev": (*_int(-(2**63)), False),
    "requested_at": (*_STAMP, False),
    "done_at": (*_STAMP, False),
    "watcher": (*_STRING, False),
    "attempts": (*_int(-(2**63)), False),
    "last_error": (*_OPTIONAL_TEXT, False),
    "prior_queued_at": (*_OPTIONAL_TEXT, False),
    "trigger_count": (*_int(1), False),
    "errors": (st.one_of(st.none(), _int(-(2**63))[0]), _int(-(2**63))[1], False),
    "retry_at": (*_STAMP, False),
    "tried_under": (st.one_of(st.none(), _int(-(2**63))[0]), _int(-(2**63))[1], False),
    "withdrawn": (*_OPTIONAL_TEXT, False),
}


#: Text the compiled reader reads (printable ASCII, nothing JSON escapes), for the tables below.
_plain = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), max_size=8)


def _plain_fields(fields: Fields) -> Fields:
    """``fields`` with every valid text drawn from :data:`_plain` and every valid int at least 0: the values the
    compiled reader reads (**The compiled reader**), so that its accepting side is drawn as often as its declining."""
    out: Fields = {}
    for name, (valid, invalid, required) in fields.items():
        kind = RunRecord.model_fields.get(name) or TriggerRecord.model_fields[name]
        annotation = str(kind.annotation)
        if name in ("run_id", "source", "reason", "watcher"):
            valid = _plain.filter(lambda v: v != "") if name == "run_id" and fields is _RUN else _plain
        elif name in ("run_type", "last_error", "prior_queued_at", "withdrawn"):
            valid = st.one_of(st.none(), _plain, st.just("backfill"))
        elif name == "inputs":
            valid = st.dictionaries(_plain, _int(0)[0], max_size=4)
        elif annotation in ("<class 'int'>", "int | None") and name not in ("clear_number", "trigger_count"):
            valid = st.one_of(st.none(), _int(0)[0]) if annotation == "int | None" else _int(0)[0]
        out[name] = (valid, invalid, required)
    return out


_PLAIN_RUN, _PLAIN_LEDGER = _plain_fields(_RUN), _plain_fields(_LEDGER)


def test_the_drawn_values_have_every_field_of_the_records() -> None:
    """The values drawn below name every field of ``RunRecord`` and ``TriggerRecord``: a field added to a record is
    drawn too, so the fast path's equivalence is checked on it (one left out let a dropped ``withdrawn`` through)."""
    assert set(_RUN) == set(RunRecord.model_fields)
    assert set(_LEDGER) == set(TriggerRecord.model_fields)


@st.composite
def _record(draw: st.DrawFn, fields: Fields) -> dict[str, Any]:
    """A valid record (optional fields present or not), then usually one change: a field made invalid, a required
    field dropped, or a field no model knows added. One bad field among valid ones is what the fast path must see."""
    data = {name: draw(valid) for name, (valid, _, required) in fields.items() if required or draw(st.booleans())}
    change = draw(st.sampled_from(["none", "invalid", "invalid", "invalid", "drop", "extra"]))
    name = draw(st.sampled_from(sorted(fields)))
    if change == "invalid":
        data[name] = draw(fields[name][1])
    elif change == "drop":
        data.pop(name, None)
    elif change == "extra":
        data[draw(st.sampled_from(["foo", "State", ""]))] = draw(_weird)
    return data


@st.composite
def _raw(draw: st.DrawFn, fields: Fields, plain: bool = False) -> bytes:
    """The record as JSON text, sometimes bent: a duplicate key, whitespace, a cut, NaN, not an object, a BOM.
    ``plain``: compact and ASCII, as the writers write it, and bent less often."""
    data = draw(_record(fields))
    if plain:
        text = json.dumps(data, separators=(",", ":"))
    else:
        text = json.dumps(data, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"), None])))
    bend = draw(st.integers(0, 40 if plain else 20))
    if bend == 1 and data:
        name = draw(st.sampled_from(sorted(data)))
        again = draw(fields[name][draw(st.integers(0, 1))]) if name in fields else 1
        text = "{" + json.dumps(name) + ":" + json.dumps(again) + "," + text[1:]
    elif bend == 2:
        text = " " + text
    elif bend == 3:
        text = text[: draw(st.integers(0, len(text)))]
    elif bend == 4 and data:
        text = text[:-1] + ',"nan":NaN}'
    elif bend == 5:
        text = "[" + text + "]"
    elif bend == 6:
        text = text.replace('"', "'", 1)
    raw = text.encode("utf-8", "surrogatepass")
    if bend == 7:
        raw = b"\xef\xbb\xbf" + raw
    return raw


def _facts(view: View) -> tuple[Any, ...]:
    """What the view keeps, with each time's tzinfo (``==`` of two datetimes ignores which tzinfo object they have)."""
    return (
        view.runs, view.ledger, view.problems, view.partitions, view.revision, view.run_backfills,
        repr(sorted(view.runs.items())), repr(sorted(view.ledger.items())),
    )  # fmt: skip


def _same_as_pydantic(key: str, raw: bytes) -> None:
    """The view after a page with ``raw`` at ``key`` equals the view after ``apply`` of it, both primed with a good
    value at the key first (a page parses a DAG's key once and only then reads its values on the fast path); with the
    compiled reader and without it (an install without a C compiler)."""
    _same_as_pydantic_once(key, raw)
    with (
        mock.patch.object(canonical, "native_run_fact", None),
        mock.patch.object(canonical, "native_done_ledger_fact", None),
    ):
        _same_as_pydantic_once(key, raw)


def _same_as_pydantic_once(key: str, raw: bytes) -> None:
    """``_same_as_pydantic`` with the readers as they are."""
    good = (
        b'{"state":"success","run_id":"r0"}'
        if key.startswith(KEYS.runs)
        else b'{"status":"pending","action":"create","run_id":"r0"}'
    )
    paged, applied = View(KEYS), View(KEYS)
    # Primed with a backfill's state: the value after it must keep or drop the view's index of backfill runs alike.
    good = good.replace(b'"r0"', b'"r0","run_type":"backfill"') if key.startswith(KEYS.runs) else good
    paged.load_page([(key, good, 1)])
    paged.load_page([(key, raw, 7)])
    paged.end_load()
    applied.apply(key, good, 1)
    applied.apply(key, raw, 7)
    assert _facts(paged) == _facts(applied)


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_raw(_RUN))
@example(raw=b'{"state":"success","run_id":"r","start_date":"2026-01-01T000000.5Z"}')
@example(raw=b'{"state":"success","run_id":"r","start_date":"2026-01-01T00:00:00.5Z"}')
@example(raw=b'{"state":"success","run_id":"r","clear_number":18446744073709551616}')
@example(raw=b'{"state":"success","run_id":"r","state":"running"}')
@example(raw=b'{"state":"success","run_id":"r","start_date":"0001-01-01T00:00:00Z","end_date":"0000-01-01T00:00:00Z"}')
@example(raw=b'{"state":"success","run_id":"r","updated_at":"2023-02-29T00:00:00.000000+00:00"}')
@example(raw=b'{"state":"success","run_id":"\\ud800"}')
@example(raw=b'{"state":"success","run_id":"r","end_date":"2026-01-01T12:34:56.9999999Z"}')
@example(raw=b'{"state":"success","run_id":"r","end_date":"2026-01-01T12:34:56.123456789+00:00"}')
@example(raw=b'{"state":"success","run_id":"r","end_date":"2026-01-01T12:34:56-00:00"}')
@example(raw=b'{"state":"queued","run_id":"0","source":"\xed\xa0\x80"}')
def test_a_run_state_loads_the_fact_and_problem_pydantic_gives(raw: bytes) -> None:
    """Any run-state value, valid or not, well-formed JSON or not, loads into the same fact (times with the same
    tzinfo) or the same problem through the snapshot's fast path as through ``apply`` (pydantic); when the fast
    path accepts a value, pydantic accepts it too and ``RunFact.of`` its record is that fact."""
    for read in (run_fact, native_run_fact):
        fact = None if read is None else read(raw, 7)
        if fact is not None:
            assert repr(fact) == repr(RunFact.of(RunRecord.__pydantic_validator__.validate_json(raw), 7))
    _same_as_pydantic(KEYS.run_key(NODE, PARTITION), raw)


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_raw(_LEDGER))
@example(raw=b'{"status":"done","action":"create","run_id":"r","inputs":{"a":1,"a":2}}')
@example(raw=b'{"status":"done","action":"create","run_id":"r","inputs":{"a":-1}}')
@example(raw=b'{"status":"done","action":"create","run_id":"r","trigger_count":0}')
@example(raw=b'{"status":"done","action":"create","run_id":"r","done_at":"2026-01-01T00:00:00.0000005Z"}')
@example(raw=b'{"status":"done","action":"create","run_id":"r","requested_at":"2026-01-01T02:00:00+02:00"}')
@example(raw=b'{"status":"done","action":"create","run_id":"r","withdrawn":"01 is no longer a success"}')
def test_a_ledger_entry_loads_the_fact_and_problem_pydantic_gives(raw: bytes) -> None:
    """Any ledger value, valid or not, loads into the same fact or problem through the snapshot's fast path as
    through ``apply`` (pydantic); when the fast path accepts a value, pydantic accepts it, it is a done intent and
    ``LedgerFact.of`` its record is that fact."""
    for read in (done_ledger_fact, native_done_ledger_fact):
        fact = None if read is None else read(raw, 7, {})
        if fact is not None:
            record = TriggerRecord.__pydantic_validator__.validate_json(raw)
            assert record.status is TriggerStatus.DONE and repr(fact) == repr(LedgerFact.of(record, 7, {}))
    _same_as_pydantic(KEYS.trigger_key(NODE, PARTITION), raw)


def _pydantic_fact(raw: bytes, ledger: bool) -> RunFact | LedgerFact | None:
    """The fact the view keeps of ``raw`` through pydantic (a done ledger entry's only), or None where it keeps none."""
    model = TriggerRecord if ledger else RunRecord
    try:
        record = model.__pydantic_validator__.validate_json(raw)
    except ValidationError:
        return None
    if isinstance(record, TriggerRecord):
        return LedgerFact.of(record, 7, {}) if record.status is TriggerStatus.DONE else None
    return RunFact.of(record, 7)


@settings(max_examples=examples(1500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(_raw(_PLAIN_RUN, plain=True), _raw(_PLAIN_LEDGER, plain=True)))
@example(raw=b'{"state":"success","run_id":"r","clear_number":9223372036854775807}')
@example(raw=b'{"state":"success","run_id":"r","clear_number":9223372036854775808}')
@example(raw=b'{"state":"success","run_id":"r","clear_number":2147483647}')
@example(raw=b'{"state":"success","run_id":"r","clear_number":2147483648}')
@example(raw=b'{"status":"done","action":"clear","run_id":"r","attempts":2147483648,"trigger_count":2147483647}')
@example(raw=b'{"state":"success","run_id":"r","start_date":"2024-02-29T23:59:59.5Z"}')
@example(raw=b'{"state":"success","run_id":"r","end_date":"2023-02-29T00:00:00Z"}')
@example(raw=b'{"status":"done","action":"clear","run_id":"r","inputs":{"a":1,"b":2,"a":3}}')
@example(raw=b'{"status":"done","action":"clear","run_id":"r","inputs":{"a}":1},"withdrawn":null}')
def test_the_compiled_reader_keeps_what_pydantic_keeps_of_a_plain_value_and_reads_every_valid_one(raw: bytes) -> None:
    """Where the compiled reader (``core/_native.c``) returns a fact of a compact ASCII value, valid or not, pydantic
    keeps that same fact (times with the same tzinfo); and every such value pydantic keeps a fact of, it reads itself,
    unless the value holds what it leaves to the other paths (a field twice, an unknown one, a time not in UTC)."""
    assert native_run_fact is not None and native_done_ledger_fact is not None
    ledger = raw.startswith(b'{"status"') or b'"action"' in raw
    got = native_done_ledger_fact(raw, 7, {}) if ledger else native_run_fact(raw, 7)
    expected = _pydantic_fact(raw, ledger)
    if got is not None:
        assert repr(got) == repr(expected)
    elif expected is not None:
        assert _left_to_other_paths(raw), raw
    _same_as_pydantic(KEYS.trigger_key(NODE, PARTITION) if ledger else KEYS.run_key(NODE, PARTITION), raw)


#: The one form of a time the compiled reader reads.
_READ_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")


#: The fields a compact fact holds in 32 bits: a wider value makes the fact odd, which the other paths build.
_COUNTS = ("clear_number", "trigger_count", "attempts")


def _left_to_other_paths(raw: bytes) -> bool:
    """Whether ``raw`` holds what the compiled reader declines though pydantic may read it: not compact ASCII JSON, a
    key twice, a field the record does not have (pydantic ignores it), a value of another JSON type than the field's
    (pydantic's lax mode reads ``1.0`` or ``"1"`` as an int), an int beyond 0 to 2**63-1 (2**31-1 for the counts), a
    time in another form, a withdrawn permit, an error's definition (``tried_under``)."""
    try:
        pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    except ValueError:
        return True
    if not isinstance(pairs, list) or json.dumps(dict(pairs), separators=(",", ":")).encode() != raw:
        return True  # not compact, not ASCII, a key twice
    fields = TriggerRecord.model_fields if pairs and pairs[0][0] == "status" else RunRecord.model_fields
    for key, value in pairs:
        if key not in fields or (key in ("withdrawn", "tried_under") and value is not None):
            return True
        annotation = str(fields[key].annotation)
        if value is None:
            continue
        if key == "inputs":
            if not isinstance(value, list) or len({k for k, _ in value}) < len(value):
                return True
            numbers = [v for _, v in value]
        else:
            numbers = [value] if "int" in annotation else []
        if any(type(v) is not int or not 0 <= v < 2**63 for v in numbers):
            return True
        if key in _COUNTS and value >= 2**31:
            return True  # a count the compact fact holds in 32 bits (``core/_facts.h``): wider, it is kept as given
        if "datetime" in annotation and not (isinstance(value, str) and _READ_STAMP.fullmatch(value)):
            return True
        if annotation.startswith(("<class 'str'>", "str")) and not isinstance(value, str):
            return True
    return False


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(_raw(_PLAIN_RUN, plain=True), _raw(_PLAIN_LEDGER, plain=True)), noise=st.binary(max_size=64))
def test_the_compiled_reader_declines_every_cut_of_a_value_and_any_bytes_without_failing(
    raw: bytes, noise: bytes
) -> None:
    """Every prefix of a value (a value cut anywhere, as a torn write or a bad writer leaves it) and arbitrary bytes,
    alone or after a value, are read by the compiled reader without an error: a fact only for a whole value that
    pydantic keeps the same fact of, None otherwise (a reader that read past a value's end would differ here)."""
    assert native_run_fact is not None and native_done_ledger_fact is not None
    for cut in [raw[:i] for i in range(len(raw))] + [noise, raw + noise, noise + raw]:
        for ledger, fact in ((False, native_run_fact(cut, 7)), (True, native_done_ledger_fact(cut, 7, {}))):
            if fact is not None:
                assert repr(fact) == repr(_pydantic_fact(cut, ledger)), cut


def test_the_compiled_reader_is_built_here_and_refused_when_built_for_other_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test environment reads with the compiled reader (so the tests above check it), and ``native_reader`` does
    not use a module built from an older source, whose fields are not the records' (it would read a value without a
    field since added as if the field did not exist)."""
    from coordinator.core import _native

    built = "the compiled reader is not built: sudo apt-get install -y gcc python3-dev && touch setup.py && make venv"
    assert canonical.native_reader() is not None and native_run_fact is not None, built
    monkeypatch.setattr(_native, "LEDGER_FIELDS", _native.LEDGER_FIELDS[:-1])
    assert canonical.native_reader() is None


def test_what_the_writers_write_takes_the_fast_path() -> None:
    """A run state as the plugin writes it and a done ledger entry as the actuator writes it (``dump_record``, with
    and without the optional fields) are read without pydantic: the fast path is the one a cold start takes."""
    now = datetime(2026, 11, 22, 17, 0, 0, 123456, tzinfo=UTC)
    runs = [
        RunRecord(state=RunState.RUNNING, run_id="scheduled__x"),
        RunRecord(
            state=RunState.SUCCESS,
            run_id="r",
            clear_number=2,
            updated_at=now,
            source="airflow-plugin",
            start_date=now,
            end_date=now.replace(microsecond=0),
        ),
        RunRecord(state=RunState.SUCCESS, run_id="backfill__x", run_type="backfill", start_date=now, end_date=now),
    ]
    ledgers = [
        TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r"),
        TriggerRecord(
            status=TriggerStatus.DONE,
            action=TriggerAction.CLEAR,
            run_id="r",
            inputs={"default/u": 3, "x/v@p": 0},
            reason="why",
            cause_rev=3,
            intent_rev=2,
            requested_at=now,
            done_at=now,
            watcher="w:1",
            attempts=1,
            last_error="boom",
            prior_queued_at="q",
            trigger_count=4,
        ),
    ]
    for record in runs:
        fact = run_fact(dump_record(record), 1)
        assert fact is not None and fact.backfill is (record.run_type == "backfill")
        assert native_run_fact is not None and repr(native_run_fact(dump_record(record), 1)) == repr(fact)
        _same_as_pydantic(KEYS.run_key(NODE, PARTITION), dump_record(record))
    for entry in ledgers:
        fact = done_ledger_fact(dump_record(entry), 1, {})
        assert fact is not None
        assert native_done_ledger_fact is not None and repr(native_done_ledger_fact(dump_record(entry), 1, {})) == repr(
            fact
        )
        _same_as_pydantic(KEYS.trigger_key(NODE, PARTITION), dump_record(entry))
    pending = ledgers[1].model_copy(update={"status": TriggerStatus.PENDING})
    assert done_ledger_fact(dump_record(pending), 1, {}) is None  # kept whole: completing it rewrites every field


_fragments = st.sampled_from([b".", b"1234567", b"123456", b"0", b"\n", b"Z", b".123456", b"x"])


@settings(max_examples=examples(500), deadline=None)
@given(values=st.lists(st.one_of(st.binary(max_size=12), st.lists(_fragments, max_size=6).map(b"".join)), max_size=5))
@example(values=[b"a.123", b"4567"])
@example(values=[b"a.123456", b"7"])
def test_one_search_of_a_page_finds_a_long_fraction_exactly_when_one_of_its_values_holds_one(
    values: list[bytes],
) -> None:
    """``no_long_fraction`` of a page's values (one search of them joined) is False exactly when a search of some
    value alone finds a fraction of seven digits or more (rule 2): no match spans two values."""
    alone = re.compile(rb"\.[0-9]{7}")
    assert no_long_fraction(values) == (not any(alone.search(value) for value in values))
