"""Holds as values (``coordinator/core/holds.py``, issue 51): selectors, ranges, downstream through grids, standing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.graph import Graph
from coordinator.core.holds import (
    HistoryAction,
    HistoryEntry,
    Hold,
    HoldSet,
    Selector,
    SelectorKind,
    next_expiry,
    parse_history,
    parse_hold,
    parse_selector,
    resolve_selector,
    standing_holds,
)
from coordinator.core.model import KeyLayout, NodeId, dump_record
from coordinator.core.spec.loader import parse_spec

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
D1, D2, D3 = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"
DAILY = {"cron": "0 0 * * *"}
HOURLY = {"cron": "0 * * * *"}


def graph_of(dags: dict[str, object]) -> Graph:
    return parse_spec(json.dumps({"version": 1, "dags": dags}))


def seven() -> Graph:
    """The seven-DAG example: 01 -> 02..05 -> 06 -> 07, and a lone 08."""
    mids = {f"0{i}": {"upstreams": "01"} for i in range(2, 6)}
    return graph_of({"01": {}, **mids, "06": {"upstreams": ["02", "03", "04", "05"]}, "07": {"upstreams": "06"},
                     "08": {}})  # fmt: skip


def hold(nodes: tuple[str, ...], *, hid: str = "h-1", at: datetime = T0, **fields: object) -> Hold:
    return Hold(id=hid, selector=Selector(kind=SelectorKind.DAG, text=nodes[0]), nodes=nodes, reason="bad data",
                by="alice", created_at=at, **fields)  # fmt: skip


def n(dag: str) -> NodeId:
    return NodeId("default", dag)


@pytest.mark.parametrize(
    ("text", "kind", "field", "value"),
    [
        ("ingest", SelectorKind.DAG, "dag", "ingest"),
        ("team_a/ingest", SelectorKind.DAG, "dag", "team_a/ingest"),
        ("team_a/ingest:load", SelectorKind.TASK, "task", "load"),
        ("instance:team_b", SelectorKind.INSTANCE, "instance", "team_b"),
        ("lineage:dbt_prod/jaffle.orders", SelectorKind.LINEAGE, "job", "jaffle.orders"),
    ],
    ids=["dag", "qualified-dag", "task", "instance", "lineage"],
)
def test_selector_forms_parse(text: str, kind: SelectorKind, field: str, value: str) -> None:
    """Each selector form the command accepts parses to its kind and parts."""
    selector = parse_selector(text)
    assert selector.kind is kind
    assert getattr(selector, field) == value


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bad dag", "invalid selector 'bad dag'"),
        ("a/b:c d", "invalid task id 'c d'"),
        ("instance:", "invalid instance name ''"),
        ("lineage:nojob", "expected lineage:NAMESPACE/JOB"),
        ("..", "invalid selector '..'"),
    ],
    ids=["space", "task-space", "empty-instance", "lineage-no-job", "dot-dot"],
)
def test_bad_selector_names_what_is_wrong(text: str, says: str) -> None:
    """A selector that cannot be one is refused with a message quoting it."""
    with pytest.raises(ValueError, match=None) as caught:
        parse_selector(text)
    assert says in str(caught.value)


def test_resolve_names_nodes_or_says_what_is_missing() -> None:
    """A DAG, a task (its DAG) and an instance resolve to graph nodes; an unknown DAG is a LookupError naming it."""
    graph = seven()
    assert resolve_selector(parse_selector("01"), graph) == (n("01"),)
    assert resolve_selector(parse_selector("default/06:t"), graph) == (n("06"),)
    assert len(resolve_selector(parse_selector("instance:default"), graph)) == 8
    with pytest.raises(LookupError, match="'nope' is not in the graph"):
        resolve_selector(parse_selector("nope"), graph)
    with pytest.raises(LookupError, match="no DAG of instance 'x'"):
        resolve_selector(parse_selector("instance:x"), graph)


@pytest.mark.parametrize(
    ("downstream", "span", "asked", "held"),
    [
        (False, (None, None), ("01", D1), True),
        (False, (None, None), ("02", D1), False),
        (True, (None, None), ("07", D3), True),
        (True, (None, None), ("08", D1), False),
        (True, (D1, D2), ("06", D2), True),
        (True, (D1, D2), ("06", D3), False),
        (False, (D2, None), ("01", D1), False),
        (False, (D2, None), ("01", D3), True),
        (False, (None, D1), ("01", D1), True),
    ],
    ids=["root-itself", "root-only-not-child", "downstream-grandchild", "downstream-not-unrelated",
         "range-inside", "range-outside", "from-open-before", "from-open-after", "to-inclusive"],
)  # fmt: skip
def test_held_set_on_the_seven_dags(
    downstream: bool, span: tuple[str | None, str | None], asked: tuple[str, str], held: bool
) -> None:
    """A hold on 01 holds 01 (and with --downstream every DAG below it) for the partitions of its range only."""
    holds = HoldSet(seven(), [hold(("default/01",), downstream=downstream, from_partition=span[0],
                                   to_partition=span[1])])  # fmt: skip
    assert (holds.held_by(n(asked[0]), asked[1]) is not None) is held


def test_downstream_range_maps_through_grids() -> None:
    """--downstream with a range on an hourly root holds the daily rollup of a held hour, not the next day's."""
    graph = graph_of({"hourly": {"partitions": HOURLY}, "daily": {"partitions": DAILY, "upstreams": "hourly"}})
    holds = HoldSet(graph, [hold(("default/hourly",), downstream=True, from_partition="2026-03-01T05:00:00Z",
                                 to_partition="2026-03-01T05:00:00Z")])  # fmt: skip
    assert holds.held_by(n("daily"), D1) is not None
    assert holds.held_by(n("daily"), D2) is None
    assert holds.held_by(n("hourly"), "2026-03-01T06:00:00Z") is None


def test_first_hold_by_creation_is_named() -> None:
    """Two holds over one key: the one created first is named, whatever the order given."""
    late = hold(("default/01",), hid="h-late", at=T0 + timedelta(minutes=5), downstream=True)
    early = hold(("default/02",), hid="h-early", at=T0)
    assert HoldSet(seven(), [late, early]).held_by(n("02"), D1) == early


@pytest.mark.parametrize(
    ("fields", "at", "standing"),
    [
        ({}, T0, True),
        ({"until": T0 + timedelta(hours=1)}, T0 + timedelta(minutes=59), True),
        ({"until": T0 + timedelta(hours=1)}, T0 + timedelta(hours=1), False),
        ({"released_at": T0 + timedelta(minutes=1)}, T0 + timedelta(minutes=2), False),
    ],
    ids=["open", "before-until", "at-until", "released"],
)
def test_standing(fields: dict[str, object], at: datetime, standing: bool) -> None:
    """A hold holds until released or until its expiry (exclusive)."""
    assert hold(("default/01",), **fields).standing(at) is standing
    assert bool(standing_holds([hold(("default/01",), **fields)], at)) is standing


def test_next_expiry_is_the_earliest_ahead() -> None:
    """The watcher plans again at the earliest expiry still ahead of a standing hold."""
    a = hold(("default/01",), hid="a", until=T0 + timedelta(hours=2))
    b = hold(("default/01",), hid="b", until=T0 + timedelta(hours=1))
    gone = hold(("default/01",), hid="c", until=T0 - timedelta(hours=1))
    assert next_expiry([a, b, gone], T0) == T0 + timedelta(hours=1)
    assert next_expiry([gone], T0) is None


def test_values_round_trip_and_bad_values_are_reasons() -> None:
    """A hold and a history entry read back as written; a bad value is (None, why), never an exception."""
    h = hold(("default/01",), downstream=True, from_partition=D1, to_partition=D1)
    assert parse_hold(dump_record(h)) == (h, None)
    entry = HistoryEntry(id="e1", action=HistoryAction.HOLD, by="alice", at=T0, why="bad data", target="01",
                         affected=("default/02@" + D1,), hold="h-1")  # fmt: skip
    assert parse_history(dump_record(entry)) == (entry, None)
    assert parse_hold(b"{}")[0] is None
    assert parse_hold(b"not json")[1] is not None


def test_describe_says_who_when_why() -> None:
    """The line status and why print: the hold, since when, by whom, and the reason."""
    text = hold(("default/01",)).describe()
    assert text.startswith("held by hold h-1 since 2026-11-26T03:00:00+00:00 by alice: bad data")


def test_key_families() -> None:
    """Hold and history keys live under their own families; history keys sort by time as text."""
    keys = KeyLayout("/c")
    assert keys.hold_key("h-1") == "/c/holds/h-1"
    assert keys.parse_hold_key("/c/holds/h-1") == "h-1"
    assert keys.parse_hold_key("/c/holds/a/b") is None
    early = keys.history_key(T0, "zz")
    later = keys.history_key(T0 + timedelta(microseconds=1), "aa")
    assert early == "/c/history/2026-11-26T03:00:00.000000Z-zz"
    assert early < later


def test_status_and_why_lines_name_the_hold() -> None:
    """status lists each standing hold; why names the hold that covers a key, and nothing for one it does not."""
    from coordinator.explain.holds import status_lines, why_line

    h = hold(("default/01",), downstream=True, from_partition=D1, to_partition=D1)
    released = hold(("default/08",), hid="h-2", released_at=T0)
    assert status_lines([h, released], T0) == [f"hold h-1: default/01 and every DAG below, partition {D1}: "
                                               f"{h.describe()}"]  # fmt: skip
    line = why_line(seven(), [h], n("07"), D1, T0)
    assert line is not None and "held by hold h-1 since 2026-11-26T03:00:00+00:00 by alice: bad data" in line
    assert why_line(seven(), [h], n("07"), D2, T0) is None


@pytest.mark.parametrize(
    ("dags", "asked", "held"),
    [
        ({"daily": {"partitions": DAILY}, "hourly": {"partitions": HOURLY, "upstreams": "daily"}},
         ("hourly", "2026-03-01T05:00:00Z"), True),
        ({"daily": {"partitions": DAILY}, "hourly": {"partitions": HOURLY, "upstreams": "daily"}},
         ("hourly", "2026-03-02T05:00:00Z"), False),
        ({"daily": {"partitions": DAILY}, "mid": {"partitions": DAILY, "upstreams": "daily"},
          "hourly": {"partitions": HOURLY, "upstreams": "mid"}}, ("hourly", "2026-03-01T23:00:00Z"), True),
    ],
    ids=["fan-out-held-day", "fan-out-other-day", "two-hops-through-a-grid"],
)  # fmt: skip
def test_downstream_range_follows_fan_outs(dags: dict[str, object], asked: tuple[str, str], held: bool) -> None:
    """A daily root held for one day holds the hours of that day below it (through any number of hops), not the
    next day's."""
    holds = HoldSet(graph_of(dags), [hold(("default/daily",), downstream=True, from_partition=D1, to_partition=D1)])
    assert (holds.held_by(n(asked[0]), asked[1]) is not None) is held
