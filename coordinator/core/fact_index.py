"""Facts of the view held per partition: ``{partition: {node: fact}}`` behind a ``(node, partition)`` mapping.

Rules:
- **A mapping.** A mutable mapping from (DAG, partition) to a fact, as the view's dicts were: every reader that looks
  up, iterates, counts or compares ``View.runs`` / ``View.ledger`` keeps working unchanged (iteration goes partition by
  partition, which no reader depends on).
- **Per partition.** Held per partition because that is how a pass reads them (every DAG of one partition, then the
  next): no (NodeId, partition) tuple is kept per fact (two million of them, about 120 MB, on a big store), and a
  planner of one partition looks facts up in that partition's dict (``in_partition``) without building a tuple per
  lookup.
- **Empty partitions dropped.** A partition with no fact left is dropped, so ``partitions_held`` names exactly the
  partitions with facts.
- **Safe iteration.** Iterating never fails, and never pairs a DAG with another's fact, while the event loop's thread
  writes (the HTTP listener's thread counts the ledger for /metrics): the dict of partitions, and each partition's
  mapping, is copied before it is walked, by a C-level call that runs no Python code while it copies. Not
  ``list(d.items())``: it makes a tuple an item, each may set off the cyclic GC, whose callbacks and finalizers are
  Python code, where the interpreter may hand the GIL to the writer mid-copy (it did, once, in CI). ``dict.copy()``,
  ``list(d)`` and ``list(d.values())`` allocate no object an item; ``Slots`` lists its items whole first
  (``core/_slots.c``' **A dict's manners**).
- **A partition's facts in slots.** Where the package is compiled, a partition's facts are a ``Slots``
  (``core/_slots.c``), not a dict: read and written as a dict, an array by DAG once most DAGs have a fact there, with
  the DAGs' slots shared by every partition of the view (``PartitionMaps``). At the estate this is about 40 KB a
  partition and kind where a dict of its 5,000 DAGs was 147 KB. Without the compiled module, dicts.
- **Pure**: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar, cast

from coordinator.core.model import NodeId

F = TypeVar("F")

#: What ``in_partition`` answers for a partition without facts (read-only: a shared empty dict must stay empty).
_NONE: Mapping[NodeId, object] = MappingProxyType({})


def _compiled_slots() -> Callable[[dict[NodeId, int], list[NodeId]], MutableMapping[NodeId, Any]] | None:
    """The compiled ``Slots`` type; None where the module is not built, or was built from a source before it."""
    try:
        from coordinator.core._native import Slots
    except ImportError:
        return None
    return Slots


_SLOTS = _compiled_slots()


class PartitionMaps:
    """Makes the per-partition mappings of one view (its facts by kind, its nodes), all over one index of slots
    (**A partition's facts in slots**): ``fresh()`` is a new empty one."""

    __slots__ = ("fresh", "index", "nodes")

    def __init__(self) -> None:
        #: node -> slot and slot -> node, shared by every mapping ``fresh`` makes (grown by them too).
        self.index: dict[NodeId, int] = {}
        self.nodes: list[NodeId] = []
        self.fresh: Callable[[], MutableMapping[NodeId, Any]] = (
            dict if _SLOTS is None else partial(_SLOTS, self.index, self.nodes)
        )

    def know(self, nodes: Iterable[NodeId]) -> None:
        """Give these nodes their slots now (the graph's DAGs, in its order): each partition's array is then sized
        once, to every DAG, and walks them in the graph's order."""
        index, known = self.index, self.nodes
        for node in nodes:
            if node not in index:
                index[node] = len(known)
                known.append(node)


class FactIndex(MutableMapping[tuple[NodeId, str], F]):
    """(DAG, partition) -> fact, stored as partition -> DAG -> fact (**A mapping**, **Per partition** and
    **Empty partitions dropped**)."""

    __slots__ = ("by_partition", "fresh")

    def __init__(self, fresh: Callable[[], MutableMapping[NodeId, Any]] = dict) -> None:
        #: partition -> DAG -> fact. Writers outside this class (the view's snapshot load, the hot path) keep
        #: **Empty partitions dropped**.
        self.by_partition: dict[str, MutableMapping[NodeId, F]] = {}
        #: Makes a partition's mapping (``PartitionMaps.fresh``: **A partition's facts in slots**).
        self.fresh = fresh

    def in_partition(self, partition: str) -> Mapping[NodeId, F]:
        """The facts of one partition by DAG (read-only; empty when it has none)."""
        found = self.by_partition.get(partition)
        return found if found is not None else cast(Mapping[NodeId, F], _NONE)

    def __getitem__(self, key: tuple[NodeId, str]) -> F:
        try:
            return self.by_partition[key[1]][key[0]]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: tuple[NodeId, str], default: F | None = None) -> F | None:  # type: ignore[override]
        found = self.by_partition.get(key[1])
        return default if found is None else found.get(key[0], default)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        found = self.by_partition.get(key[1])
        return found is not None and key[0] in found

    def __setitem__(self, key: tuple[NodeId, str], value: F) -> None:
        node, partition = key
        found = self.by_partition.get(partition)
        if found is None:
            found = self.by_partition[partition] = self.fresh()
        found[node] = value

    def __delitem__(self, key: tuple[NodeId, str]) -> None:
        node, partition = key
        found = self.by_partition.get(partition)
        if found is None or node not in found:
            raise KeyError(key)
        del found[node]
        if not found:  # **Empty partitions dropped**
            del self.by_partition[partition]

    def __iter__(self) -> Iterator[tuple[NodeId, str]]:
        for partition, facts in self.by_partition.copy().items():  # **Safe iteration**
            for node in list(facts):
                yield node, partition

    def __len__(self) -> int:
        return sum(map(len, self.by_partition.copy().values()))  # **Safe iteration**

    def clear(self) -> None:
        self.by_partition.clear()

    def items(self) -> ItemsView[tuple[NodeId, str], F]:
        return _Items(self)

    def values(self) -> ValuesView[F]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"FactIndex({dict(self.items())!r})"


class _Items(ItemsView[tuple[NodeId, str], F]):
    """Items straight from the per-partition dicts (the generic view looks every key up again)."""

    def __init__(self, index: FactIndex[F]) -> None:
        super().__init__(index)
        self._index = index

    def __iter__(self) -> Iterator[tuple[tuple[NodeId, str], F]]:
        for partition, facts in self._index.by_partition.copy().items():  # **Safe iteration**
            for node, fact in _pairs(facts):
                yield (node, partition), fact


class _Values(ValuesView[F]):
    """Values straight from the per-partition dicts."""

    def __init__(self, index: FactIndex[F]) -> None:
        super().__init__(index)
        self._index = index

    def __iter__(self) -> Iterator[F]:
        for facts in self._index.by_partition.copy().values():  # **Safe iteration**
            yield from list(facts.values())


def _pairs(facts: Mapping[NodeId, F]) -> Iterable[tuple[NodeId, F]]:
    """A partition's (DAG, fact) pairs, copied first by one C-level call (**Safe iteration**): ``Slots.items`` lists
    them whole; a dict is copied, not listed as pairs."""
    return facts.copy().items() if isinstance(facts, dict) else facts.items()
