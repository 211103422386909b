"""What the informer feeds (``informer/informer.py``): an :class:`Index` of one key family, a :class:`Follower` of the
view, and the typed :class:`Need` by which a reader asks the informer for one.

Rules:
- **Small interfaces.** The informer knows no key family: an index says which keys it owns and applies them, a
  follower sees each key after the view (client-go's ``store.go`` and ``index.go``).
- **A need lives beside its index.** Each index's module declares the :class:`Need` that names it and how it is built
  from the view's key layout; a concern (or any reader) asks with it (``informer/informer.py``'s **Asked for, built
  once**), so no list of indexes is kept by whoever builds the informer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from coordinator.core.kinds import Moves
from coordinator.core.view import View

T = TypeVar("T")


class Index(Protocol):
    """One key family's read model, fed key by key (newest revision wins) from the snapshot and the watch."""

    @property
    def name(self) -> str:
        """Short name for log lines (``{name}.bad_value``)."""
        ...

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The keys it owns: those that start with one of these (an exact key is its own prefix)."""
        ...

    def reset(self) -> None:
        """Forget everything: a snapshot is about to be read."""

    def apply(self, key: str, value: bytes | None, mod_rev: int) -> str | None:
        """One put (``value``) or delete (None); what is wrong with the key or its value (it is left out), or None."""

    def moved(self, key: str, problem: str | None, into: Moves) -> None:
        """Name in ``into`` the keys of its own kinds that ``key``, just applied by a watch (``problem``: what
        ``apply`` found wrong with it), touched (``informer/informer.py``'s **Changes name what moved**); an index of
        no kind names nothing."""

    def passed(self, revision: int) -> None:
        """Every key up to ``revision`` has been applied (the end of a load or of a watch batch)."""

    def known(self) -> Mapping[str, int]:
        """key -> mod revision of every key it knows: what a relist diffs against
        (``informer/informer.py``'s **Relists diff every index**)."""
        ...


class Follower(Protocol):
    """Derived from the view: sees each key after the view has applied it (``informer/informer.py``'s
    **Followers after the view**)."""

    def loaded(self) -> None:
        """The view holds a whole snapshot now."""

    def follow(self, key: str, value: bytes | None, mod_rev: int) -> None:
        """One watch event, after ``View.apply``."""


@dataclass(frozen=True)
class Fed(Generic[T]):
    """What a :class:`Need` builds: the value its readers use, and how the informer feeds it (an index, a follower)."""

    value: T
    index: Index | None = None
    follower: Follower | None = None


IndexT = TypeVar("IndexT", bound=Index)


def indexed(index: IndexT) -> Fed[IndexT]:
    """An index as its own value: the informer feeds what its readers read."""
    return Fed(index, index=index)


class Need(Generic[T]):
    """A typed name for an index a reader asks the informer for (``informer/informer.py``'s **Asked for, built
    once**); it lives beside the index it names (**A need lives beside its index**)."""

    __slots__ = ("build", "name")

    def __init__(self, name: str, build: Callable[[View], Fed[T]]) -> None:
        self.name = name
        self.build = build

    def __repr__(self) -> str:
        return f"Need({self.name!r})"
