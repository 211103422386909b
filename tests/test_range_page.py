"""A range read's page read from etcd's bytes (``coordinator.etcd.range_page``): the compiled reader gives exactly
what protobuf's parse gives or declines, torn bytes are a clear error, and a real etcd's load reads the same keys
either way."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.errors import StoreError
from coordinator.etcd import EtcdStore, range_page
from coordinator.etcd.range_page import ItemsPage, PackedItems, protobuf_items, read_items
from coordinator.etcd.stubs import rpc
from coordinator.runtime.settings import EtcdSettings
from tests.conftest import run_coro
from tests.support.examples import examples

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)


def _varint(n: int) -> bytes:
    n &= 2**64 - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


# A field neither message reads (any number above the ones they define), in each wire type protobuf skips.
UNKNOWN = st.one_of(
    st.builds(lambda n, v: _field(n, 0, _varint(v)), st.integers(7, 2000), UINT64),
    st.builds(lambda n, b: _field(n, 1, b), st.integers(7, 2000), st.binary(min_size=8, max_size=8)),
    st.builds(lambda n, b: _field(n, 2, _varint(len(b)) + b), st.integers(7, 2000), st.binary(max_size=30)),
    st.builds(lambda n, b: _field(n, 5, b), st.integers(7, 2000), st.binary(min_size=4, max_size=4)),
)


@st.composite
def key_values(draw: st.DrawFn) -> bytes:
    """One ``kvs`` entry as it travels: a KeyValue (any field may be absent, any may come twice), unknown fields."""
    chunks = [
        rpc.KeyValue(
            key=draw(st.binary(max_size=40)),
            value=draw(st.binary(max_size=120)),
            create_revision=draw(INT64),
            mod_revision=draw(INT64),
            version=draw(INT64),
            lease=draw(INT64),
        ).SerializeToString()
        for _ in range(draw(st.integers(1, 2)))
    ]
    chunks += draw(st.lists(UNKNOWN, max_size=2))
    body = b"".join(draw(st.permutations(chunks)))
    return _field(2, 2, _varint(len(body)) + body)


@st.composite
def range_responses(draw: st.DrawFn) -> bytes:
    """A RangeResponse's bytes: headers, pages of kvs, ``more`` and ``count``, each part possibly repeated (protobuf
    merges them), with unknown fields between."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 2))):
        header = rpc.ResponseHeader(
            cluster_id=draw(UINT64), member_id=draw(UINT64), revision=draw(INT64), raft_term=draw(UINT64)
        )
        parts.append(rpc.RangeResponse(header=header).SerializeToString())
    parts += draw(st.lists(key_values(), max_size=6))
    parts += [rpc.RangeResponse(more=more).SerializeToString() for more in draw(st.lists(st.booleans(), max_size=2))]
    parts += [rpc.RangeResponse(count=count).SerializeToString() for count in draw(st.lists(INT64, max_size=2))]
    parts += draw(st.lists(UNKNOWN, max_size=3))
    return b"".join(draw(st.permutations(parts)))


def _protobuf_or_none(data: bytes) -> ItemsPage | None:
    try:
        return protobuf_items(data)
    except Exception:  # protobuf's DecodeError
        return None


def _compiled(data: bytes) -> ItemsPage | None:
    """The compiled reader's page of ``data`` with its items as the triples they read as; None: declined."""
    assert range_page.compiled is not None
    read = range_page.compiled.read_page(data)
    if read is None:
        return None
    revision, more, in_range, table = read
    return ItemsPage(revision, more, in_range, list(PackedItems(data, table)))


def test_the_compiled_reader_is_built_here() -> None:
    """The test venv builds the compiled reader (setup.py), so every load in the suite goes through it."""
    assert range_page.compiled is not None


@settings(max_examples=examples(1500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(range_responses())
def test_the_compiled_reader_reads_what_protobuf_reads(data: bytes) -> None:
    """Every well-formed page (fields repeated, reordered, unknown ones between) is read by the compiled reader, to
    exactly protobuf's revision, more, count and triples."""
    read = _compiled(data)
    assert read is not None
    assert read == protobuf_items(data)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(range_responses(), st.binary(max_size=64))
def test_torn_or_foreign_bytes_are_declined_or_read_as_protobuf_reads_them(data: bytes, noise: bytes) -> None:
    """Any cut of a page, arbitrary bytes, and a page with bytes after it: the compiled reader returns None or exactly
    protobuf's reading, never a page protobuf rejects."""
    for given_bytes in [data[:cut] for cut in range(len(data))] + [noise, data + noise, noise + data]:
        read = _compiled(given_bytes)
        if read is not None:
            assert read == _protobuf_or_none(given_bytes), given_bytes


# Encodings at protobuf's edges: varints of 10 and 11 bytes, non-minimal varints and lengths, the largest field
# number, a tag beyond 32 bits (drawn once by the test above), a bool written as 2.
EDGES = [
    b"\x20" + b"\xff" * 9 + b"\x7f",
    b"\x20" + b"\xff" * 9 + b"\x01",
    b"\x20" + b"\xff" * 10 + b"\x01",
    b"\x18\x02",
    b"\xf8\xff\xff\xff\x0f\x00",
    b"\x98\x00\x01",
    b"\x12\x80\x00",
    b"\x12\x0b\x18" + b"\xff" * 9 + b"\x01",
    b"\x89\x80\x80\x80\x80\x01\x12\x008\x00",
]


@pytest.mark.parametrize("data", EDGES)
def test_encodings_at_protobufs_edges_read_as_protobuf_reads_them(data: bytes) -> None:
    """Each edge encoding is declined or read to exactly protobuf's result (None where protobuf rejects it)."""
    read = _compiled(data)
    expected = _protobuf_or_none(data)
    assert read is None or read == expected
    assert expected is None or read is not None  # protobuf reads it: so does the compiled reader


def test_a_pages_packed_items_are_a_sequence_of_its_triples() -> None:
    """The compiled reader's items answer as the list of protobuf's triples would: length, indexes from either end,
    slices with any step, iteration, truth and equality; an index past the end is an IndexError, and a table whose rows
    lie outside the page's bytes is refused, never read."""
    kvs = [rpc.KeyValue(key=f"k{i}".encode(), value=b"v" * i, mod_revision=10 + i) for i in range(5)]
    data = rpc.RangeResponse(kvs=kvs).SerializeToString()
    page = read_items(data)
    expected = protobuf_items(data).items
    assert isinstance(page.items, PackedItems) and page.items == expected and list(page.items) == expected
    assert len(page.items) == 5 and page.items[0] == expected[0] and page.items[-1] == expected[-1]
    for cut in (slice(1, 3), slice(None, None, 2), slice(4, 0, -1), slice(-2, None), slice(3, 1)):
        assert page.items[cut] == expected[cut], cut
    with pytest.raises(IndexError):
        page.items[5]
    assert not read_items(rpc.RangeResponse().SerializeToString()).items
    assert range_page.compiled is not None
    outside = struct.pack("=5q", 0, len(data) + 1, 0, 0, 1)
    with pytest.raises(ValueError, match="outside the page's bytes"):
        range_page.compiled.items(data, outside, 0, 1)


def test_torn_bytes_are_a_store_error_saying_so() -> None:
    """Bytes neither reader can read (a header cut short) are a StoreError naming what did not parse."""
    with pytest.raises(StoreError, match=r"does not parse as a RangeResponse \(2 bytes\)"):
        read_items(b"\x0a\x05")


class _Items:
    """An item sink that keeps every triple."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, int]] = []

    def reset(self) -> None:
        self.items = []

    def add_items(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        self.items += items


def test_a_load_reads_the_same_keys_with_either_reader(
    etcd_settings: EtcdSettings, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load of a real etcd's prefix in many pages (a key that is not UTF-8, an empty value among them) gives the same
    triples and revision with the compiled reader and with protobuf's, equal to the store's own snapshot."""

    async def scenario() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            keys = [f"{etcd_prefix}/k{i:03d}" for i in range(40)] + [f"{etcd_prefix}/not-utf8-\udcff"]
            await asyncio.gather(*(store.put(key, b"" if i == 3 else f"v{i}".encode()) for i, key in enumerate(keys)))
            loads = []
            for compiled in (range_page.compiled, None):
                monkeypatch.setattr(range_page, "compiled", compiled)
                sink = _Items()
                revision, count = await store.stream_snapshot(etcd_prefix + "/", sink, page_size=7)
                loads.append((revision, count, sink.items))
            snapshot = await store.snapshot(etcd_prefix + "/")
        assert loads[0] == loads[1]
        assert loads[0][1] == len(keys)
        assert loads[0][2] == [(kv.key, kv.value, kv.mod_revision) for kv in snapshot.kvs]

    run_coro(scenario())
