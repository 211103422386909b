"""Kinds of changed keys: the typed names a watch batch's changes are grouped by, so the informer can carry every key
family's news without knowing one of them (client-go's informer hands typed deltas on and knows no resource type).

Rules:
- **A kind is a token.** :class:`Kind` carries the type of its keys (``Kind[StreamKey]``), compared by identity: the
  model that owns a family declares its kinds (``View.NODES``, ``AssetIndex.STREAMS``...), a reader asks for one by
  the same token and gets keys of that type back (``Changes.of``), so no dict of untyped values crosses a module.
- **The owner names its keys.** Whoever applied a key says which keys of its kinds it touched, into a :class:`Moves`
  (the informer's ``Changes``); nobody else parses the key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class Kind(Generic[K]):
    """A kind of changed key (**A kind is a token**); ``name`` is for reading only."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"


class Moves(Protocol):
    """Where the owner of a key names what it touched (**The owner names its keys**)."""

    def add(self, kind: Kind[K], key: K) -> None: ...

    def update(self, kind: Kind[K], keys: Iterable[K]) -> None: ...
