"""Start-up at scale: the snapshot streamed into a sink in ranges, the watch without a copy of the keys, slim facts."""

from __future__ import annotations

import asyncio
import copy
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from coordinator.core.fact_index import FactIndex
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
from coordinator.core.planner import partitions_to_plan, plan
from coordinator.core.view import View
from coordinator.etcd import KV, EtcdStore, Event, EventKind, WatchBatch
from coordinator.etcd.range_page import PackedItems, read_items
from coordinator.etcd.stubs import rpc
from coordinator.etcd.wire import encode
from coordinator.informer.retention import RetentionTracker
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from coordinator.watcher import sweep, triggers
from devtools.etcd_server import EtcdServer
from tests.conftest import run_coro
from tests.support.examples import examples
from tests.support.world import World, make_graph


class Pages:
    """A snapshot sink that records what it was given."""

    def __init__(self) -> None:
        self.kvs: list[KV] = []
        self.resets = 0
        self.pages = 0

    def reset(self) -> None:
        self.resets += 1
        self.kvs.clear()

    def add(self, kvs: Sequence[KV]) -> None:
        self.pages += 1
        self.kvs.extend(kvs)


def test_streamed_snapshot_in_ranges_equals_a_plain_snapshot(
    etcd_settings: EtcdSettings, etcd_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut into ranges (cuts inside, outside and between the keys), paged, the stream hands out exactly the keys a
    plain snapshot reads, in key order, at its revision."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            names = [f"{etcd_prefix}/{d}/{i:03d}" for d in ("a", "b", "bb", "c", "z") for i in range(120)]
            names += [f"{etcd_prefix}/0first", f"{etcd_prefix}/b", f"{etcd_prefix}/~last"]
            limit = asyncio.Semaphore(64)

            async def put(key: str) -> None:
                async with limit:
                    await store.put(key, key.encode())

            await asyncio.gather(*(put(k) for k in names))
            plain = await store.snapshot(etcd_prefix + "/")
            cuts = [f"{etcd_prefix}/{d}/" for d in ("a", "b", "c", "y")] + ["/elsewhere/", f"{etcd_prefix}/b/"]
            sink = Pages()
            with caplog.at_level("DEBUG", logger="coordinator.etcd"):
                revision, count = await store.stream_snapshot(etcd_prefix + "/", sink, page_size=50, cuts=cuts)
        assert (revision, count, sink.resets) == (plain.revision, len(names), 1)
        assert sink.kvs == list(plain.kvs)
        assert "ranges=1 " not in caplog.text and f"keys={len(names)}" in caplog.text

    run_coro(scenario(), timeout=120)


def test_streamed_snapshot_starts_over_when_its_revision_is_compacted(private_etcd: EtcdServer) -> None:
    """A compaction while paging makes the stream reset its sink and read everything again at a newer revision."""
    etcdctl = Path(sys.executable).with_name("etcdctl")

    def ctl(*args: str) -> str:
        cmd = [str(etcdctl), f"--endpoints={private_etcd.endpoint}", *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout

    class CompactingOnce(Pages):
        def add(self, kvs: Sequence[KV]) -> None:
            super().add(kvs)
            if self.resets == 1 and self.pages == 1:  # the first page of the first attempt: history goes away
                ctl("put", "/s/new", "late")
                revision = int(ctl("get", "/s/new", "-w", "fields").split('"Revision" : ')[1].split()[0])
                ctl("compact", str(revision))

    async def scenario() -> None:
        async with await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))) as store:
            for i in range(60):
                await store.put(f"/s/k{i:02d}", b"v")
            first = await store.current_revision()
            sink = CompactingOnce()
            revision, count = await store.stream_snapshot("/s/", sink, page_size=10)
            assert sink.resets == 2 and revision > first
            assert (count, [kv.key for kv in sink.kvs]) == (
                61,
                sorted([f"/s/k{i:02d}" for i in range(60)] + ["/s/new"]),
            )

    run_coro(scenario(), timeout=120)


def test_watch_from_a_revision_relists_against_the_keys_the_consumer_holds(private_etcd: EtcdServer) -> None:
    """Started from a bare revision, a watch whose history was compacted diffs the relist against ``held()``."""

    async def scenario() -> None:
        async with await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))) as store:
            r_old = await store.put("/c/old", b"1")
            r_kept = await store.put("/c/kept", b"1")
            start = await store.current_revision()
            await store.delete("/c/old")
            r_new = await store.put("/c/new", b"2")
            await store.compact(r_new)
            batches = store.watch_prefix("/c/", start, lambda: {"/c/old": r_old, "/c/kept": r_kept})
            first = await asyncio.wait_for(anext(batches), 20)
            await batches.aclose()  # type: ignore[attr-defined]
            assert first == WatchBatch(
                (Event(EventKind.PUT, "/c/new", b"2", r_new), Event(EventKind.DELETE, "/c/old", b"", r_new)),
                r_new,
                relisted=True,
            )
            with pytest.raises(ValueError, match="known"):
                await anext(store.watch_prefix("/c/", start))

    run_coro(scenario())


def _value(record: Any) -> bytes:
    return dump_record(record)


def test_held_names_every_key_the_view_holds_with_its_mod_revision() -> None:
    """``held()`` rebuilds the key and mod revision of each fact, and marks keys with problems -1 (sent again)."""
    keys = KeyLayout()
    node = NodeId("default", "d")
    p = "2026-01-01T00:00:00Z"
    run = RunRecord(state=RunState.SUCCESS, run_id="r")
    done = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r", inputs={"default/u": 3})
    view = View(keys)
    items = [
        (keys.run_key(node, p), _value(run), 5),
        (keys.trigger_key(node, p), _value(done), 4),
        (keys.config_key(f"backfill/default/d/{p}"), b"{}", 6),
        (keys.run_key(NodeId("default", "bad"), p), b"not json", 7),
        (keys.leader, b"someone", 8),
    ]
    view.load(8, items)
    assert view.known() == {
        keys.run_key(node, p): 5,
        keys.trigger_key(node, p): 4,
        keys.config_key(f"backfill/default/d/{p}"): 6,
        keys.run_key(NodeId("default", "bad"), p): -1,
    }


def test_a_snapshot_page_loads_the_same_facts_and_problems_as_applying_each_key() -> None:
    """``load_page`` (the snapshot's fast path) ends in the same facts, index, problems and revision as ``apply`` of
    each key in turn: good and bad values, a key rewritten good after bad and bad after good, malformed keys, a
    backfill mark, the activation and keys the view does not read, a malformed key right after a good one of the
    same DAG (the page parses a DAG's key prefix once) (rule 2)."""
    keys = KeyLayout()
    a, b = NodeId("default", "a"), NodeId("team", "b")
    p, q = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    run = RunRecord(state=RunState.SUCCESS, run_id="r", source="s")
    done = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CREATE, run_id="r", inputs={"default/a": 3})
    items = [
        (keys.config_key("graph"), b"not json", 1),
        (keys.run_key(a, p), _value(run), 2),
        (keys.run_key(a, q), b'{"state":"success"}', 3),
        (keys.trigger_key(b, p), _value(done), 4),
        (keys.trigger_key(b, q), b"[]", 5),
        (keys.run_key(a, q), _value(run), 6),
        (keys.run_key(a, q) + "/deeper", _value(run), 7),  # right after a key of the same DAG: still malformed
        (keys.run_key(a, p), b"{", 7),
        (keys.run_key(b, p), _value(run), 8),
        (keys.runs + "default/a/2026-02-30T00:00:00Z", _value(run), 9),
        (keys.runs + "default/a", _value(run), 10),
        (keys.triggers + "bad id!/a/" + p, _value(done), 11),
        (keys.config_key(f"backfill/default/a/{q}"), b"{}", 12),
        (keys.leader, b"someone", 13),
    ]
    one_by_one, paged = View(keys), View(keys)
    for key, value, mod_rev in items:
        one_by_one.apply(key, value, mod_rev)
    paged.load_page(items[:6])
    paged.load_page(items[6:])
    paged.end_load()
    for field in ("runs", "ledger", "backfills", "problems", "partitions", "revision", "activation"):
        assert getattr(paged, field) == getattr(one_by_one, field), field
    assert set(paged.problems) == {
        keys.config_key("graph"), keys.run_key(a, p), keys.trigger_key(b, q),
        keys.runs + "default/a/2026-02-30T00:00:00Z",
        keys.run_key(a, q) + "/deeper",
        keys.runs + "default/a", keys.triggers + "bad id!/a/" + p,
    }  # fmt: skip
    assert set(paged.runs) == {(a, q), (b, p)} and set(paged.ledger) == {(b, p)}


_PAGE_KEYS = KeyLayout()
_PAGE_NODES = [NodeId("default", "a"), NodeId("team", "b")]
_PAGE_PARTS = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
_PAGE_KEY_LIST = [
    *(_PAGE_KEYS.run_key(n, p) for n in _PAGE_NODES for p in _PAGE_PARTS),
    *(_PAGE_KEYS.trigger_key(n, p) for n in _PAGE_NODES for p in _PAGE_PARTS),
    _PAGE_KEYS.run_key(_PAGE_NODES[0], _PAGE_PARTS[0]) + "/deeper",
    _PAGE_KEYS.runs + "default/a/2026-02-30T00:00:00Z",
    _PAGE_KEYS.runs + "default/a",
    _PAGE_KEYS.task_key(_PAGE_NODES[1], "t", _PAGE_PARTS[1]),
    _PAGE_KEYS.runs + "default/\u00e4/2026-01-01T00:00:00Z",  # not ASCII: the compiled loop leaves it
    _PAGE_KEYS.runs + "/",
    _PAGE_KEYS.runs,
    _PAGE_KEYS.config_key(f"backfill/default/a/{_PAGE_PARTS[0]}"),
]
_PAGE_VALUES = [
    b'{"state":"success","run_id":"r","source":"s","start_date":"2026-01-01T00:00:00.123456Z"}',  # canonical
    b'{"state":"running","run_id":"r","start_date":"2026-01-01T02:00:00+02:00"}',  # pydantic's: another zone
    b'{"state":"failed","run_id":"r","end_date":"2026-01-01T00:00:00.1234567Z"}',  # pydantic's: rule 2
    b'{"status":"done","action":"create","run_id":"r","inputs":{"default/a":3},"done_at":"2026-01-01T00:00:00Z"}',
    b'{"status":"pending","action":"clear","run_id":"r"}',  # pydantic's: kept whole
    b'{"state":"success","run_id":"b","run_type":"backfill","start_date":"2026-01-01T00:00:00Z"}',  # indexed
    b'{"status":"done","action":"clear","run_id":"r","inputs":{"default/a":4,"team/b":2}}',
    b"{",
    b"[]",
]


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PAGE_KEY_LIST), st.sampled_from(_PAGE_VALUES), st.booleans()), max_size=24))
@example(  # known parts; then a partition's last fact dropped mid-page and a fact of another DAG there after it
    [
        (_PAGE_KEY_LIST[0], _PAGE_VALUES[0], False),
        (_PAGE_KEY_LIST[3], _PAGE_VALUES[0], True),
        (_PAGE_KEY_LIST[0], _PAGE_VALUES[0], False),
        (_PAGE_KEY_LIST[0], b"{", False),
        (_PAGE_KEY_LIST[2], _PAGE_VALUES[0], True),
    ]
)
def test_any_pages_load_the_same_view_as_applying_each_key(writes: list[tuple[str, bytes, bool]]) -> None:
    """Any keys and values cut into pages anywhere (a page ends after a write drawn True) load into the same facts,
    partitions (with no partition left without facts), problems, backfill index and revision as ``apply`` of each key
    in turn (each partition's nodes in the same order), as triples and as etcd's bytes: a partition whose last fact a
    bad value drops in the middle of a page and that gets a fact again later in it, a key rewritten on the fast path
    after a problem, values with and without a long fraction in one page (rule 2), backfills among other runs, keys
    the compiled loop leaves to Python's (not ASCII, malformed)."""
    items = [(key, value, rev) for rev, (key, value, _) in enumerate(writes, start=1)]
    one_by_one, paged, packed = View(_PAGE_KEYS), View(_PAGE_KEYS), View(_PAGE_KEYS)
    for key, value, mod_rev in items:
        one_by_one.apply(key, value, mod_rev)
    start = 0
    for end, (_, _, cut) in enumerate(writes, start=1):
        if cut or end == len(writes):
            paged.load_page(iter(items[start:end]))  # any iterable, as typed
            packed.load_page(_as_sent(items[start:end]))  # the rows of etcd's bytes, read in place
            start = end
    paged.end_load()
    packed.end_load()
    for view in (paged, packed):
        for name in ("runs", "ledger", "tasks", "backfills", "run_backfills", "problems", "partitions", "revision"):
            assert getattr(view, name) == getattr(one_by_one, name), name
        assert repr(sorted(view.runs.items())) == repr(sorted(one_by_one.runs.items()))
        assert repr(sorted(view.ledger.items())) == repr(sorted(one_by_one.ledger.items()))
        assert view.runs.by_partition.keys() == one_by_one.runs.by_partition.keys()
        assert view.ledger.by_partition.keys() == one_by_one.ledger.by_partition.keys()
        for index in (lambda v: v.partitions, lambda v: v.runs.by_partition, lambda v: v.ledger.by_partition):
            assert [list(d) for d in index(view).values()] == [list(d) for d in index(one_by_one).values()]


def test_a_partition_of_many_facts_loads_in_its_order_across_pages_and_batches() -> None:
    """Thousands of DAGs' run states and ledger entries in a few partitions, read as etcd's bytes in pages and kept
    by partition past a batch (``core/_load.c``'s **Stored by partition**), load into the same facts, in each
    partition's order, as ``apply`` of each key; a load that starts over keeps nothing of the first attempt."""
    nodes = [NodeId("default", f"d{i:04d}") for i in range(2600)]
    parts = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    run = b'{"state":"success","run_id":"r","source":"s","start_date":"2026-01-01T00:00:00Z"}'
    done = b'{"status":"done","action":"create","run_id":"r","inputs":{"default/d0000":3}}'
    items = sorted(
        [(_PAGE_KEYS.run_key(n, p), run, 0) for n in nodes for p in parts]
        + [(_PAGE_KEYS.trigger_key(n, p), done, 0) for n in nodes[::2] for p in parts]
    )
    items = [(key, value, rev) for rev, (key, value, _) in enumerate(items, start=1)]
    one_by_one, packed = View(_PAGE_KEYS), View(_PAGE_KEYS)
    for key, value, mod_rev in items:
        one_by_one.apply(key, value, mod_rev)
    packed.intern_nodes(nodes)
    packed.load_page(_as_sent(items[:3000]))  # a first attempt, dropped: the load starts over
    packed.load(0, ())
    for start in range(0, len(items), 1000):
        packed.load_page(_as_sent(items[start : start + 1000]))
    packed.end_load()
    assert packed.runs == one_by_one.runs and packed.ledger == one_by_one.ledger
    assert len(packed.runs) == 5200 and packed.revision == one_by_one.revision == len(items)
    for index in (lambda v: v.partitions, lambda v: v.runs.by_partition, lambda v: v.ledger.by_partition):
        assert [list(d) for d in index(packed).values()] == [list(d) for d in index(one_by_one).values()]


def _as_sent(items: list[tuple[str, bytes, int]]) -> PackedItems:
    """The page as a watcher's load gets it: etcd's bytes of the triples, read by the compiled range reader."""
    kvs = [rpc.KeyValue(key=encode(key), value=value, mod_revision=rev) for key, value, rev in items]
    page = read_items(rpc.RangeResponse(kvs=kvs).SerializeToString()).items
    assert isinstance(page, PackedItems)
    return page


def test_slim_facts_keep_what_decisions_read_and_a_whole_unfinished_intent() -> None:
    """A done ledger entry and a run state keep the fields decisions, the audit and status read; a pending intent
    keeps its whole record (completing it rewrites every field)."""
    keys = KeyLayout()
    node = NodeId("default", "d")
    p = "2026-01-01T00:00:00Z"
    run = RunRecord.model_validate_json(
        b'{"state":"failed","run_id":"r1","clear_number":2,"source":"airflow-plugin","start_date":"2026-01-01T01:00:00Z"}'
    )
    pending = TriggerRecord(
        status=TriggerStatus.PENDING, action=TriggerAction.CLEAR, run_id="r1", inputs={"default/u": 3, "x/v@p": 9},
        reason="why", watcher="w", prior_queued_at="q", trigger_count=4,
    )  # fmt: skip
    view = View(keys)
    view.load(9, [(keys.run_key(node, p), _value(run), 7), (keys.trigger_key(node, p), _value(pending), 9)])
    fact, ledger = view.runs[(node, p)], view.ledger[(node, p)]
    assert fact.record == run.model_copy(update={"updated_at": None, "end_date": None})
    assert ledger.record == pending and ledger.intent_rev == 9
    assert (ledger.inputs, ledger.input("x/v@p"), ledger.input("default/w")) == ({"default/u": 3, "x/v@p": 9}, 9, None)
    done = pending.model_copy(update={"status": TriggerStatus.DONE, "intent_rev": 8})
    view.apply(keys.trigger_key(node, p), _value(done), 10)
    slim = view.ledger[(node, p)]
    assert slim.full is None and slim.intent_rev == 8
    assert slim.record.model_dump(include={"status", "action", "run_id", "inputs", "trigger_count"}) == done.model_dump(
        include={"status", "action", "run_id", "inputs", "trigger_count"}
    )


def test_node_id_pickles_without_its_hash() -> None:
    """A NodeId unpickled in a process with another hash seed is still found as a dict key there."""
    data = pickle.dumps({NodeId("team", "d"): 1})
    code = (
        "import pickle, sys; from coordinator.core.model import NodeId; "
        "d = pickle.loads(sys.stdin.buffer.read()); print(d[NodeId('team', 'd')])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, env=env, check=True, timeout=60)
    assert out.stdout.strip() == b"1"


def test_node_id_keeps_its_value_behaviour() -> None:
    """NodeId (a tuple underneath, hashed in C) still behaves as the (instance, dag_id) value it was: equality and
    hash by both parts, ordering by instance then dag id, the same str/qualified/repr, immutable, copied and parsed
    as before, never equal to a string or a pair of strings."""
    a, b, c = NodeId("default", "b"), NodeId("default", "a"), NodeId("team", "a")
    assert a == NodeId("default", "b") and hash(a) == hash(NodeId("default", "b")) and a != b
    assert a not in ("default/b", ("default", "b"))
    assert sorted([c, a, b]) == [b, a, c] and b < a < c
    assert (str(a), a.qualified, str(c), c.qualified) == ("b", "default/b", "team/a", "team/a")
    assert (c.instance, c.dag_id, repr(c)) == ("team", "a", "NodeId(instance='team', dag_id='a')")
    assert NodeId.parse("team/a") == c and NodeId.parse("b") == a and copy.deepcopy(c) == c
    assert {a: 1}[NodeId("default", "b")] == 1 and (a, "p") == (NodeId("default", "b"), "p")
    with pytest.raises(AttributeError):
        c.dag_id = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="invalid dag id"):
        NodeId.parse("team/bad id")


def test_the_fact_index_answers_as_the_dict_it_replaced() -> None:
    """The view's facts held per partition answer every mapping operation as a dict keyed by (DAG, partition) did,
    drop a partition whose last fact is removed, and give a planner one partition's facts by DAG (read-only)."""
    index: FactIndex[int] = FactIndex()
    same: dict[tuple[NodeId, str], int] = {}
    a, b = NodeId("default", "a"), NodeId("team", "b")
    p, q = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    for key, value in [((a, p), 1), ((b, p), 2), ((a, q), 3), ((a, p), 4)]:
        index[key] = value
        same[key] = value
    assert index == same and len(index) == len(same) == 3 and set(index) == set(same)
    assert sorted(index.items()) == sorted(same.items()) and sorted(index.values()) == sorted(same.values())
    assert index[(a, p)] == 4 and index.get((b, q)) is None and index.get((b, q), 7) == 7
    assert (b, p) in index and (b, q) not in index and a not in index and "x" not in index
    assert dict(index.in_partition(p)) == {a: 4, b: 2} and dict(index.in_partition("2026-01-03T00:00:00Z")) == {}
    with pytest.raises(KeyError):
        index[(b, q)]
    with pytest.raises(TypeError):
        index.in_partition("2026-01-03T00:00:00Z")[a] = 1  # type: ignore[index]
    assert index.pop((a, q)) == 3 and index.pop((a, q), None) is None and q not in index.by_partition
    del index[(b, p)]
    assert index == {(a, p): 4} and list(index.by_partition) == [p]
    index.clear()
    assert len(index) == 0 and index == {}


def test_a_pass_planned_in_slices_has_the_actions_of_one_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trigger reconciler's sliced full pass (a partition per slice) returns just ``plan``'s actions, in order."""
    world = World(make_graph({"b": ["a"], "c": ["a", "b"]}, {"h": ["c"]}))
    world.adopt()
    for i, state in enumerate(["success", "success", "failed"]):
        p = f"2026-01-0{i + 1}T00:00:00Z"
        world.write(world.keys.run_key(NodeId("default", "a"), p), _value(RunRecord(state=RunState(state), run_id="x")))
    world.write(world.keys.run_key(NodeId("default", "c"), "2026-01-03T00:00:00Z"),
                _value(RunRecord(state=RunState.FAILED, run_id="y")))  # fmt: skip
    monkeypatch.setattr(sweep, "PLAN_SLICE_FACTS", 1)
    now = datetime(2026, 1, 10, tzinfo=UTC)
    # The pass decides through the reconciler's one call of core/decide.py (retention from the view's floor: none).
    fake = SimpleNamespace(view=world.view, retention=RetentionTracker(world.keys))
    decide_slice = partial(triggers.TriggerReconciler._decide, fake, world.graph, now)  # type: ignore[arg-type]
    parts = partitions_to_plan(world.graph, world.view)
    sliced = asyncio.run(sweep.plan_in_slices(world.view, parts, lambda chunk: decide_slice(chunk).plan))
    whole = plan(world.graph, world.view, explain=False, now=now)
    assert sliced.actions == whole.actions and len(whole.actions) >= 3
