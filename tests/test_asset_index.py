"""``core/asset_index.py`` against the whole-history functions of ``core/assets.py`` and ``page/assets.py``: on random
sequences of puts and deletes of asset events and delivery entries (some malformed, some replayed late, routes
changing), the index gives exactly the streams, due deliveries, pending counts, retention candidates and the page's
asset nodes those functions compute over the same keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.asset_index import AssetIndex, Problem, index_of
from coordinator.core.assets import (
    AssetEventFact,
    AssetKeys,
    AssetRoute,
    DeliveryRecord,
    DeliveryStatus,
    SkipRequest,
    due_deliveries,
    prunable,
    read_events_and_ledger,
    streams,
)
from coordinator.page.asset_feed import nodes_from
from coordinator.page.assets import asset_nodes
from tests.support.examples import examples

KEYS = AssetKeys("/p")
BASE = datetime(2026, 1, 1, tzinfo=UTC)
SOURCES = ("team_a", "team_b")
TARGETS = ("team_b", "team_c", "team_d")
URIS = ("s3://x/orders", "file:///a b")
ROUTE_SETS: tuple[tuple[AssetRoute, ...], ...] = (
    (AssetRoute("s3://x/*", "team_a", ("team_b", "team_c")),),
    (AssetRoute("s3://x/orders", "team_a", ("team_b",)), AssetRoute("*", "team_b", ("team_c", "team_a"))),
    (AssetRoute("orders", "team_a", ("team_c", "team_d")), AssetRoute("s3://*", "team_a", ("team_d",))),
    (),
)


@dataclass(frozen=True)
class Op:
    """One write to the keys: ``value`` None is a delete."""

    key: str
    value: bytes | None


def fact_bytes(source: str, uri: str, event_id: int, minute: int, named: bool) -> bytes:
    fact = AssetEventFact(event_id=event_id, uri=uri, name="orders" if named else None,
                          timestamp=BASE + timedelta(minutes=minute), source_dag_id=f"dag_{source}")  # fmt: skip
    return fact.model_dump_json().encode()


def record_bytes(source: str, uri: str, event_id: int, status: DeliveryStatus, retry: int | None, skip: bool) -> bytes:
    record = DeliveryRecord(
        status=status, source=source, event_id=event_id, uri=uri, requested_at=BASE,
        retry_at=BASE + timedelta(minutes=retry) if retry is not None else None,
        last_error="refused" if status is DeliveryStatus.ERROR else None,
        skip=SkipRequest(by="op", at=BASE) if skip else None,
    )  # fmt: skip
    return record.model_dump_json().encode()


ids = st.integers(1, 4)
sources = st.sampled_from(("team_a", "team_a", "team_a", "team_b"))
event_ops = st.builds(
    lambda s, u, im, named, delete: Op(
        KEYS.event_key(s, u, im[0]), None if delete else fact_bytes(s, u, im[0], im[1], named)
    ),
    # Often a newer id is a newer event, as in Airflow; not always (ids and timestamps are compared separately).
    sources, st.sampled_from(URIS), st.tuples(ids, st.integers(0, 30)) | ids.map(lambda i: (i, i * 5)),
    st.booleans(), st.integers(0, 5).map(lambda n: n == 0),
)  # fmt: skip
delivery_ops = st.builds(
    lambda t, s, u, i, status, retry, skip, delete: Op(
        KEYS.delivery_key(t, s, u, i), None if delete else record_bytes(s, u, i, status, retry, skip)
    ),
    st.sampled_from(TARGETS), sources, st.sampled_from(URIS), ids, st.sampled_from(DeliveryStatus),
    st.none() | st.integers(0, 30), st.booleans(), st.integers(0, 3).map(lambda n: n == 0),
)  # fmt: skip
# Every other instance's entry of one event settled at once (``done``, or ``skipped`` in one): what retention needs,
# rare otherwise.
settle_ops = st.builds(
    lambda s, u, i, skip_in: [
        Op(KEYS.delivery_key(t, s, u, i),
           record_bytes(s, u, i, DeliveryStatus.SKIPPED if t == skip_in else DeliveryStatus.DONE, None, False))
        for t in ("team_a", *TARGETS) if t != s
    ],
    sources, st.sampled_from(URIS), ids, st.sampled_from(("", "team_c")),
)  # fmt: skip
# Events 1-4 of one asset at once, five minutes apart: a history for retention to work on.
fill_ops = st.builds(
    lambda s, u: [Op(KEYS.event_key(s, u, i), fact_bytes(s, u, i, i * 5, False)) for i in range(1, 5)],
    sources, st.sampled_from(URIS),
)  # fmt: skip
bad_ops = st.sampled_from(
    [
        Op(KEYS.event_key("team_a", URIS[0], 1), b"{not json"),
        Op(f"{KEYS.events}team_a/only-two", b"{}"),
        Op(KEYS.delivery_key("team_b", "team_a", URIS[0], 2), b'{"status": "nonsense"}'),
        Op(KEYS.delivery_key("team_c", "team_a", URIS[0], 1), b"{"),
        Op(f"{KEYS.deliveries}team_b/team_a/x/notanumber", b"{}"),
    ]
)
# A step: a write, a late replay of one or of every write after the feed's last ``passed``, a ``passed`` call, or a
# change of routes.
steps = st.lists(
    st.one_of(
        event_ops.map(lambda op: ("write", [op])),
        event_ops.map(lambda op: ("write", [op])),
        event_ops.map(lambda op: ("write", [op])),
        delivery_ops.map(lambda op: ("write", [op])),
        fill_ops.map(lambda ops: ("write", ops)),
        settle_ops.map(lambda ops: ("write", ops)),
        settle_ops.map(lambda ops: ("write", ops)),
        bad_ops.map(lambda op: ("write", [op])),
        st.integers(0, 1000).map(lambda n: ("replay", n)),
        st.just(("replay_all", 0)),
        st.just(("passed", 0)),
        st.integers(0, len(ROUTE_SETS) - 1).map(lambda n: ("routes", n)),
    ),
    min_size=10,
    max_size=80,
)


def check(index: AssetIndex, store: dict[str, tuple[bytes, int]], routes: tuple[AssetRoute, ...]) -> None:
    events, ledger = read_events_and_ledger(
        KEYS,
        ((k, v) for k, (v, _) in store.items() if k.startswith(KEYS.events)),
        ((k, v, rev) for k, (v, rev) in store.items() if k.startswith(KEYS.deliveries)),
    )
    want = streams(events, ledger, routes)
    assert index.streams(routes) == want
    # The page's nodes, kept as keys change and built at once from the same keys (rule 5).
    nodes = asset_nodes(events, ledger)
    assert nodes_from(index) == nodes
    assert nodes_from(index_of(KEYS, ((k, v, rev) for k, (v, rev) in store.items()))) == nodes
    pending: dict[str, int] = {}
    for stream in want:
        pending[stream.target] = pending.get(stream.target, 0) + stream.pending
    assert index.pending(routes) == pending
    for minute in (0, 10, 40):
        now = BASE + timedelta(minutes=minute)
        assert index.due(routes, now) == due_deliveries(events, ledger, routes, now)
    # Twice the widest: a question must not use up what it found (a failed delete is tried again next round).
    for cutoff_min, overlap_min in ((40, 0), (5, 1), (20, 3), (40, 0)):
        cutoff, overlap = BASE + timedelta(minutes=cutoff_min), timedelta(minutes=overlap_min)
        order = lambda item: (item[0].source, item[0].fact.uri, item[0].fact.event_id)  # noqa: E731
        assert index.prunable(routes, cutoff, overlap) == sorted(
            prunable(events, ledger, routes, cutoff, overlap), key=order
        )


@settings(max_examples=examples(300), deadline=None)
@given(steps)
def test_the_index_answers_as_the_whole_history_functions_after_any_puts_deletes_and_late_replays(
    script: list[tuple[str, object]],
) -> None:
    """After every step of random writes (and stale replays, and route changes), the index's streams, due
    deliveries, pending counts, retention candidates and page nodes equal those computed over the same keys."""
    store: dict[str, tuple[bytes, int]] = {}
    index = AssetIndex(KEYS)
    written: list[tuple[Op, int]] = []
    passed = 0
    revision = 1
    routes: tuple[AssetRoute, ...] = ROUTE_SETS[0]
    for kind, arg in script:
        if kind == "write":
            assert isinstance(arg, list)
            for op in arg:
                revision += 1
                if op.value is None:
                    store.pop(op.key, None)
                else:
                    store[op.key] = (op.value, revision)
                written.append((op, revision))
                index.apply(op.key, op.value, revision)
        elif kind == "replay":
            late = [(op, rev) for op, rev in written if rev > passed]
            if late:
                op, rev = late[int(arg) % len(late)]  # type: ignore[call-overload]
                index.apply(op.key, op.value, rev)  # older than (or as old as) what the index holds: ignored
        elif kind == "replay_all":  # every write since ``passed`` again, newest first (a relist racing the watch)
            for op, rev in reversed([(op, rev) for op, rev in written if rev > passed]):
                index.apply(op.key, op.value, rev)
        elif kind == "passed":
            passed = revision
            index.passed(revision)
        else:
            routes = ROUTE_SETS[int(arg)]  # type: ignore[call-overload]
        check(index, store, routes)


def test_a_put_older_than_an_applied_delete_does_not_bring_the_event_back() -> None:
    """A delete applied at its revision (a relist's difference) makes a later-arriving older put of the same key a
    no-op, until the feed passed that revision."""
    index = AssetIndex(KEYS)
    key = KEYS.event_key("team_a", URIS[0], 1)
    index.apply(key, None, 10)
    index.apply(key, fact_bytes("team_a", URIS[0], 1, 0, False), 7)
    assert not index.has_event("team_a", URIS[0], 1)
    index.passed(10)
    index.apply(key, fact_bytes("team_a", URIS[0], 1, 0, False), 11)
    assert index.has_event("team_a", URIS[0], 1)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        pytest.param(KEYS.event_key("team_a", URIS[0], 1), b"{", Problem.MALFORMED_EVENT, id="event-not-json"),
        pytest.param(
            KEYS.event_key("team_a", URIS[0], 2),
            fact_bytes("team_a", URIS[0], 1, 0, False),
            Problem.MALFORMED_EVENT,
            id="event-names-another-id",
        ),
        pytest.param(
            f"{KEYS.events}team_a/s3:%2f%2fx/1",
            fact_bytes("team_a", "s3://x", 1, 0, False),
            Problem.MALFORMED_EVENT,
            id="event-key-not-canonical",
        ),
        pytest.param(
            KEYS.delivery_key("team_b", "team_a", URIS[0], 1),
            b"[]",
            Problem.MALFORMED_DELIVERY,
            id="delivery-not-a-record",
        ),
    ],
)
def test_malformed_keys_are_reported_held_for_a_relist_and_left_out(key: str, value: bytes, problem: Problem) -> None:
    """A key or value that does not parse is answered as a problem, held at -1 for a relist, and never counted."""
    index = AssetIndex(KEYS)
    assert index.apply(key, value, 5) is problem
    assert index.known() == {key: -1}
    assert index.streams(ROUTE_SETS[0]) == []
    index.apply(key, None, 6)
    assert index.known() == {}


def test_each_key_names_its_streams_an_entry_its_own_an_event_one_per_routed_target() -> None:
    """A delivery entry (a skip request included) names its own stream; a held event names one stream per target of
    the routes last asked about, and none before any question, once deleted, or for a key that does not parse."""
    index = AssetIndex(KEYS)
    event = KEYS.event_key("team_a", URIS[0], 1)
    entry = KEYS.delivery_key("team_b", "team_a", URIS[0], 1)
    index.apply(event, fact_bytes("team_a", URIS[0], 1, 0, False), 5)
    assert index.streams_of(event) == (), "no routes asked about yet"
    index.due(ROUTE_SETS[0], BASE)
    assert set(index.streams_of(event)) == {("team_b", "team_a", URIS[0]), ("team_c", "team_a", URIS[0])}
    index.apply(entry, record_bytes("team_a", URIS[0], 1, DeliveryStatus.ERROR, 30, skip=True), 6)
    assert index.streams_of(entry) == (("team_b", "team_a", URIS[0]),)
    index.apply(event, None, 7)
    assert index.streams_of(event) == ()
    assert index.streams_of(f"{KEYS.deliveries}not-a-key") == ()
    assert KEYS.delivery_key("team_b", "team_a", URIS[0], 12).startswith(
        index.stream_prefix(("team_b", "team_a", URIS[0]))
    )
    assert not KEYS.delivery_key("team_b", "team_a", URIS[0] + "x", 1).startswith(
        index.stream_prefix(("team_b", "team_a", URIS[0]))
    )


def test_a_stream_head_skips_what_the_caller_settled_and_says_when_a_refused_head_is_due_again() -> None:
    """``due_stream`` with ``settled`` answers the oldest unsettled event besides those ids (the index not showing
    the caller's own writes yet); ``waits_until`` is the retry time of a refused head, None for a due one."""
    index = AssetIndex(KEYS)
    routes = ROUTE_SETS[0]
    stream = ("team_b", "team_a", URIS[0])
    for event_id in (1, 2, 3):
        index.apply(KEYS.event_key("team_a", URIS[0], event_id), fact_bytes("team_a", URIS[0], event_id, 0, False),
                    event_id)  # fmt: skip
    head = index.due_stream(stream, routes, BASE)
    assert head is not None and head.event.fact.event_id == 1
    head = index.due_stream(stream, routes, BASE, {1, 2})
    assert head is not None and head.event.fact.event_id == 3
    assert index.due_stream(stream, routes, BASE, {1, 2, 3}) is None
    assert index.waits_until(stream, routes) is None
    index.apply(KEYS.delivery_key(*stream, 1), record_bytes("team_a", URIS[0], 1, DeliveryStatus.ERROR, 30, skip=False),
                10)  # fmt: skip
    assert index.due_stream(stream, routes, BASE) is None
    retry_at = index.waits_until(stream, routes)
    assert retry_at is not None and retry_at > BASE
    assert index.due_stream(stream, routes, retry_at) is not None
