"""A page of a range read, from the bytes etcd sent: its revision, whether more follows, and its keys as the
(key, value, mod_revision) triples a load's item sink takes.

A store's load reads millions of keys; protobuf's parse of a page, then a Python object per message, per field and
per triple cost about a third of a microsecond a key at the estate, a second of a start's CPU. The compiled reader
(``_range.c``, built where a C compiler is, like ``core.canonical``'s) reads the page's bytes straight into the triples
in a fifth of that.

Rules:
- **Exactly protobuf's reading.** ``read_items`` gives what protobuf's parse of the same bytes gives: the compiled
  reader reads the fields a load keeps (the header's revision, ``more``, ``count``, each key, value and mod revision,
  the last of each given, as protobuf merges them), skips every other field by its wire type, and declines anything it
  cannot read exactly so (a group, a field it reads in another wire type, a truncated field); then protobuf reads the
  bytes. Bytes protobuf rejects (a torn answer) are a ``StoreError`` saying so, as gRPC's own parse failing was.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

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
    items: list[tuple[str, bytes, int]]


def read_items(data: bytes) -> ItemsPage:
    """The page etcd sent as ``data`` (**Exactly protobuf's reading**); ``StoreError`` for bytes protobuf rejects."""
    if compiled is not None:
        read = compiled.read_page(data)
        if read is not None:
            return ItemsPage(*read)
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
