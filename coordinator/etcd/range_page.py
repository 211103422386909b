"""A page of a range read, from the bytes etcd sent: its revision, whether more follows, and its keys as the
(key, value, mod_revision) triples a load's item sink takes.

A store's load reads millions of keys; protobuf's parse of a page, then a Python object per message, per field and
per triple cost about a third of a microsecond a key at the estate, a second of a start's CPU. The compiled reader
(``_range.c``, built where a C compiler is, like ``core.canonical``'s) reads the page's bytes into a table of where
each key, value and revision lies, and the page's items are a :class:`PackedItems` over the bytes and the table: the
view's compiled loop (``core/_load.c``) reads them in place, with no Python object per key, and anything else reading
an item gets its triple made then.

Rules:
- **Exactly protobuf's reading.** ``read_items`` gives what protobuf's parse of the same bytes gives (its items read
  as the same triples): the compiled reader reads the fields a load keeps (the header's revision, ``more``, ``count``,
  each key, value and mod revision, the last of each given, as protobuf merges them), skips every other field by its
  wire type, and declines anything it cannot read exactly so (a group, a field it reads in another wire type, a
  truncated field); then protobuf reads the bytes. Bytes protobuf rejects (a torn answer) are a ``StoreError`` saying
  so, as gRPC's own parse failing was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import NamedTuple, overload

from coordinator.errors import StoreError
from coordinator.etcd.stubs import rpc
from coordinator.etcd.wire import decode

compiled: ModuleType | None
try:
    from coordinator.etcd import _range as compiled
except ImportError:  # an install without a C compiler: protobuf reads every page
    compiled = None


class ItemsPage(NamedTuple):
    """One ``RangeResponse`` as a load keeps it."""

    revision: int
    more: bool
    in_range: int  # etcd's ``count``: the keys of the whole range (not the page)
    items: Sequence[tuple[str, bytes, int]]


#: One row of the compiled reader's table: the key's offset and length, the value's, the mod revision (int64 each).
ROW_BYTES = 40


class PackedItems(Sequence[tuple[str, bytes, int]]):
    """A page's items as the bytes etcd sent and the compiled reader's table of where each lies (``packed``, which
    ``core.view``'s compiled loop reads in place); as a sequence, the (key, value, mod_revision) triples, each made
    when read."""

    __slots__ = ("packed",)

    def __init__(self, data: bytes, table: bytes) -> None:
        self.packed = (data, table)

    def __len__(self) -> int:
        return len(self.packed[1]) // ROW_BYTES

    @overload
    def __getitem__(self, index: int) -> tuple[str, bytes, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, bytes, int]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, bytes, int] | list[tuple[str, bytes, int]]:
        assert compiled is not None  # only the compiled reader makes these
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:  # no reader steps through a page: all of it, sliced
                every: list[tuple[str, bytes, int]] = compiled.items(*self.packed, 0, len(self))
                return every[index]
            triples: list[tuple[str, bytes, int]] = compiled.items(*self.packed, start, max(start, stop))
            return triples
        at = index + len(self) if index < 0 else index
        if not 0 <= at < len(self):
            raise IndexError("page item index out of range")
        one: list[tuple[str, bytes, int]] = compiled.items(*self.packed, at, at + 1)
        return one[0]

    def __iter__(self) -> Iterator[tuple[str, bytes, int]]:
        return iter(self[:])

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, PackedItems)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list: unhashable like one

    def __repr__(self) -> str:
        return f"PackedItems({len(self)} items)"


def read_items(data: bytes) -> ItemsPage:
    """The page etcd sent as ``data`` (**Exactly protobuf's reading**); ``StoreError`` for bytes protobuf rejects."""
    if compiled is not None:
        read = compiled.read_page(data)
        if read is not None:
            revision, more, in_range, table = read
            return ItemsPage(revision, more, in_range, PackedItems(data, table))
    try:
        return protobuf_items(data)
    # protobuf's DecodeError, the one error a parse of bytes raises: its module sits in the ``google`` namespace,
    # which the import contracts keep to the Airflow adapter's cloud auth.
    except Exception as exc:
        raise StoreError(
            f"etcd's answer to a range read does not parse as a RangeResponse ({len(data)} bytes): {exc}"
        ) from exc


def protobuf_items(data: bytes) -> ItemsPage:
    """The same page read by protobuf alone (what the compiled reader is held to)."""
    response = rpc.RangeResponse.FromString(data)
    items = [(decode(raw.key), raw.value, raw.mod_revision) for raw in response.kvs]
    return ItemsPage(int(response.header.revision), bool(response.more), int(response.count), items)
