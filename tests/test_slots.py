"""A partition's facts in slots: the compiled ``Slots`` reads and writes as the dict it replaces, holds a full partition
in a fraction of the dict's memory and a sparse one in no more (``core/_slots.c``, ``core/fact_index.py``'s **A
partition's facts in slots**)."""

from __future__ import annotations

import copy
import gc
import pickle
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.fact_index import FactIndex, PartitionMaps
from coordinator.core.model import KeyLayout, NodeId
from coordinator.core.view import View
from tests.support.examples import examples

NODES = [NodeId("default", f"dag_{i:03d}") for i in range(160)]
#: Set, delete, pop, look up: enough of them over up to 160 nodes to make a partition dense (a quarter of the index,
#: at least 64) and to delete from it after.
OPS = st.lists(
    st.tuples(st.sampled_from(["set", "del", "pop", "get"]), st.integers(0, len(NODES) - 1), st.integers()),
    max_size=400,
)


def fresh(known: int) -> tuple[PartitionMaps, MutableMapping[NodeId, Any]]:
    maps = PartitionMaps()
    maps.know(NODES[:known])
    return maps, maps.fresh()


def test_the_test_environment_holds_the_partitions_in_slots() -> None:
    """Where the package is compiled (the test venv), a view's partitions are ``Slots``, so every test of the view
    checks them."""
    built = "the compiled module is not built: sudo apt-get install -y gcc python3-dev && touch setup.py && make venv"
    assert type(PartitionMaps().fresh()).__name__ == "Slots", built


@settings(max_examples=examples(300), deadline=None)
@given(OPS, st.integers(0, len(NODES)), st.integers(0, len(NODES)))
def test_slots_answer_every_read_and_write_as_a_dict_does(
    ops: list[tuple[str, int, int]], known: int, filled: int
) -> None:
    """Any sequence of sets, deletes, pops and lookups, after the first ``filled`` nodes were set (dense from 64 on),
    leaves a ``Slots`` reading as a dict given the same: items, length, membership, ``get``, equality both ways,
    ``repr``'s items, a pickle and a copy."""
    _, slots = fresh(known)
    mirror: dict[NodeId, int] = {}
    for i in range(filled):
        slots[NODES[i]] = mirror[NODES[i]] = -i
    for op, i, value in ops:
        node = NODES[i]
        if op == "set":
            slots[node] = mirror[node] = value
        elif op == "del":
            if node in mirror:
                del slots[node], mirror[node]
            else:
                try:
                    del slots[node]
                except KeyError as exc:
                    assert exc.args == (node,)
                else:
                    raise AssertionError("deleting a missing node did not raise KeyError")
        elif op == "pop":
            assert slots.pop(node, "none") == mirror.pop(node, "none")
        else:
            assert slots.get(node) == mirror.get(node) and (node in slots) == (node in mirror)
    assert len(slots) == len(mirror) and bool(slots) == bool(mirror)
    assert dict(slots.items()) == mirror and set(slots) == set(mirror) == set(slots.keys())
    assert sorted(slots.values()) == sorted(mirror.values())
    assert slots == mirror and mirror == slots and (slots != {}) == bool(mirror)
    for node in NODES[:3]:
        assert slots.get(node, "d") == mirror.get(node, "d")
    assert pickle.loads(pickle.dumps(slots)) == mirror and copy.deepcopy(slots) == mirror
    assert repr(slots).startswith("Slots(") and all(repr(node) in repr(slots) for node in mirror)


def test_a_full_partition_takes_a_fraction_of_a_dicts_memory() -> None:
    """A partition where every one of 5,000 DAGs has a fact is an array: under a third of what a dict of them holds."""
    nodes = [NodeId("default", f"dag_{i:04d}") for i in range(5000)]
    maps = PartitionMaps()
    maps.know(nodes)

    def held(make: Any) -> int:
        tracemalloc.start()
        try:
            partition = make()
            for node in nodes:
                partition[node] = None
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    slots, plain = held(maps.fresh), held(dict)
    assert slots * 3 < plain, (slots, plain)
    full = maps.fresh()
    for node in nodes:
        full[node] = None
    assert sys.getsizeof(full) >= 5000 * 8 and len(full) == 5000


def test_a_sparse_partition_holds_no_array_of_every_dag() -> None:
    """A partition where 20 of 5,000 DAGs have a fact (an hourly or a segment partition) stays a dict inside: it
    holds no array sized to every DAG."""
    nodes = [NodeId("default", f"dag_{i:04d}") for i in range(5000)]
    maps = PartitionMaps()
    maps.know(nodes)
    sparse = maps.fresh()
    for node in nodes[::250]:
        sparse[node] = None
    assert len(sparse) == 20 and sys.getsizeof(sparse) < 5000 * 8


def test_a_node_keeps_its_slot_in_every_partition_and_new_ones_come_after() -> None:
    """The graph's DAGs are given their slots in its order; a DAG the graph does not name, stored in a dense
    partition, is given the next slot and read back from there."""
    maps = PartitionMaps()
    maps.know(NODES[:100])
    first, second = maps.fresh(), maps.fresh()
    for node in NODES[:100]:
        first[node] = node.dag_id
    stranger = NodeId("other", "not_in_graph")
    first[stranger] = "new"
    second[stranger] = "there too"
    assert maps.index[stranger] == 100 and maps.nodes[100] == stranger
    assert list(first)[:100] == NODES[:100] and first[stranger] == "new" and second[stranger] == "there too"
    assert first[NODES[42]] == "dag_042" and NODES[42] not in second


def test_a_view_loads_its_partitions_into_slots_and_drops_emptied_ones() -> None:
    """A view's snapshot fills its partitions' facts and nodes as ``Slots``; deleting every fact of a partition drops
    it from the facts' index (``FactIndex``' **Empty partitions dropped**)."""
    keys = KeyLayout()
    view = View(keys)
    view.intern_nodes(NODES)
    stamp = "2026-01-01T01:00:00.000000+00:00"
    value = (f'{{"state":"success","run_id":"r","clear_number":0,"updated_at":"{stamp}","source":"plugin",'
             f'"start_date":"{stamp}","end_date":"{stamp}"}}').encode()  # fmt: skip
    items = [(keys.run_key(node, "2026-01-01T00:00:00Z"), value, rev) for rev, node in enumerate(NODES, start=2)]
    view.load(len(NODES) + 1, sorted(items))
    assert type(view.runs.by_partition["2026-01-01T00:00:00Z"]).__name__ == "Slots"
    assert type(view.partitions["2026-01-01T00:00:00Z"]).__name__ == "Slots"
    assert len(view.runs) == len(NODES) and set(view.partitions["2026-01-01T00:00:00Z"]) == set(NODES)
    for node in NODES:
        view.apply(keys.run_key(node, "2026-01-01T00:00:00Z"), None, 500)
    assert len(view.runs) == 0 and "2026-01-01T00:00:00Z" not in view.runs.by_partition


@contextmanager
def _collecting(
    callback: Callable[[str, dict[str, int]], None], threshold: tuple[int, int, int], switch_s: float | None = None
) -> Iterator[None]:
    """The cyclic GC collecting at ``threshold`` and running ``callback`` at each collection (Python code in the middle
    of any C-level copy that allocates as it goes, as a ``__del__`` or a library's ``gc.callbacks`` would be: where
    the interpreter may hand the GIL to another thread); ``switch_s``: the interpreter's switch interval meanwhile.
    Everything restored after."""
    saved_threshold, saved_interval = gc.get_threshold(), sys.getswitchinterval()
    gc.callbacks.append(callback)
    gc.set_threshold(*threshold)
    if switch_s is not None:
        sys.setswitchinterval(switch_s)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*saved_threshold)
        sys.setswitchinterval(saved_interval)


def _switch_point(phase: str, info: dict[str, int]) -> None:
    """Python code run by the collector: a point where the other thread may take the GIL."""


@pytest.mark.parametrize("compiled", [True, False], ids=["slots", "dicts"])
def test_reading_the_facts_on_another_thread_while_they_are_written_never_fails_nor_mispairs(compiled: bool) -> None:
    """The metrics listener's thread walks the ledger while the event loop writes it (``FactIndex``' **Safe
    iteration**): iterating, counting and pairing a ``FactIndex`` (of ``Slots``, and of dicts where the module is not
    built) while another thread adds partitions, fills one past dense and drops others raises nothing, and every pair
    read is a node with its own fact."""
    maps = PartitionMaps()
    maps.know(NODES)
    index: FactIndex[tuple[NodeId, int]] = FactIndex(maps.fresh if compiled else dict)
    for day in range(400):  # partitions enough that copying them takes many allocations
        index[(NODES[day % 7], f"old{day}")] = (NODES[day % 7], day)
    stop, failures = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            try:
                for (node, _), fact in index.items():
                    assert fact[0] == node, f"{node} paired with {fact[0]}'s fact"
                sum(1 for _ in index) + len(index) + sum(fact[1] for fact in index.values())
            except Exception as exc:  # the failure is the finding
                failures.append(exc)
                return

    # The race CI met once, made likely: a collection at almost every allocation, each running Python code.
    with _collecting(_switch_point, (5, 10, 10), switch_s=1e-5):
        reader = threading.Thread(target=read)
        reader.start()
        try:
            for round_ in range(1000):
                dense, sparse = f"d{round_ % 2}", f"p{round_}"
                for node in NODES:  # past dense, then emptied half way
                    index[(node, dense)] = (node, round_)
                for node in NODES[::2]:
                    del index[(node, dense)]
                for node in NODES[:5]:  # a new sparse partition each round, dropped 20 rounds on
                    index[(node, sparse)] = (node, round_)
                    index.pop((node, f"p{round_ - 20}"), None)
        finally:
            stop.set()
            reader.join()
    assert not failures, repr(failures)


@pytest.mark.parametrize("compiled", [True, False], ids=["slots", "dicts"])
def test_a_write_landing_inside_any_copy_neither_fails_nor_mispairs(compiled: bool) -> None:
    """The same race made certain (**Safe iteration**): a collector's callback that writes the index (a new partition,
    an old one dropped, a dense one's DAG set or deleted) at every allocation inside a read leaves every iteration,
    count and pairing of the facts whole."""
    maps = PartitionMaps()
    maps.know(NODES)
    index: FactIndex[tuple[NodeId, int]] = FactIndex(maps.fresh if compiled else dict)
    for day in range(3000):  # more pairs than the interpreter keeps free: copying them as pairs allocates
        index[(NODES[day % 7], f"old{day}")] = (NODES[day % 7], day)
    for node in NODES:
        index[(node, "dense")] = (node, 0)
    writes = 0

    def write(phase: str, info: dict[str, int]) -> None:
        """One write of the event loop's, where the interpreter could have switched threads."""
        nonlocal writes
        if phase != "start":
            return
        writes += 1
        node = NODES[writes % len(NODES)]
        index[(node, f"p{writes}")] = (node, writes)
        index.pop((NODES[(writes - 20) % len(NODES)], f"p{writes - 20}"), None)
        if index.pop((node, "dense"), None) is None:
            index[(node, "dense")] = (node, writes)

    with _collecting(write, (1, 100, 100)):
        for _ in range(5):
            pairs = list(index.items())
            counted, listed, values = len(index), list(index), list(index.values())
            assert all(fact[0] == node for (node, _), fact in pairs)
            assert counted > 0 and listed and values
    assert writes > 100, "the collector ran inside the reads"


def test_a_dense_partition_written_while_it_lists_itself_lists_each_node_with_its_own_fact() -> None:
    """``Slots``' **A dict's manners** under the same race: where making its lists sets off the collector and a write
    lands (a DAG set or deleted), ``items``, ``keys`` and ``values`` still give one whole snapshot, each node with its
    own fact, as many as its count."""
    _, dense = fresh(len(NODES))
    for node in NODES:
        dense[node] = (node, 0)
    writes = 0

    def write(phase: str, info: dict[str, int]) -> None:
        """One write of the event loop's, where the interpreter could have switched threads."""
        nonlocal writes
        if phase == "start":
            writes += 1
            node = NODES[writes % len(NODES)]
            if dense.pop(node, None) is None:
                dense[node] = (node, writes)

    with _collecting(write, (1, 100, 100)):
        for _ in range(50):
            held = [[] for _ in range(200)]  # the interpreter's spare lists used up: each list made is a new one
            pairs, keys, values = list(dense.items()), dense.keys(), dense.values()
            del held
            assert all(fact[0] == node for node, fact in pairs)
            assert len(set(keys)) == len(keys) and all(isinstance(fact, tuple) for fact in values)
    assert type(dense).__name__ == "Slots" and writes > 50, "the collector wrote inside the lists"
