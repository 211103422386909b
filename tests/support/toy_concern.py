"""A toy concern in one module, as a new concern of the watcher would be written: a ``setup(manager, deps)`` that
asks for the index it reads (the holds, by its need: ``watcher/deps.py``'s **Indexes are asked for**), builds its
reconciler, registers its controller with its interest (two map functions from a watch batch's changes to keys of its
own, one per kind it cares for) and provides its reconciler for others to find. Registered with one line:
``Watcher(..., concerns=(*CONCERNS, toy_concern.setup))`` (``tests/test_concern_setup.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.view import View
from coordinator.informer import Changes
from coordinator.informer.holds import HOLD_INDEX, HoldIndex
from coordinator.manager import DONE, Controller, Handle, Manager, Result, Watch
from coordinator.watcher.deps import Deps


@dataclass(frozen=True)
class PartitionTouched:
    """A partition whose run states, ledger entries or task states a watch changed."""

    partition: str


@dataclass(frozen=True)
class HoldTouched:
    """A hold a watch put or deleted."""

    hold_id: str


ToyKey = PartitionTouched | HoldTouched


@dataclass
class Tally:
    """Reads the current state by key (the key carries no payload) and notes what it saw, in order."""

    view: View
    holds: HoldIndex
    seen: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)

    async def reconcile(self, key: ToyKey, now: datetime) -> Result:
        if isinstance(key, PartitionTouched):
            dags = tuple(sorted(node.dag_id for node, partition in self.view.runs if partition == key.partition))
            self.seen.append(("partition", key.partition, dags))
        else:
            standing = ("standing",) if key.hold_id in self.holds.holds else ()
            self.seen.append(("hold", key.hold_id, standing))
        return DONE


#: What the toy provides: a test finds its reconciler by this name.
TALLY: Handle[Tally] = Handle("tally")


def partitions_touched(changes: Changes) -> list[ToyKey]:
    return [PartitionTouched(p) for p in sorted({p for _, p in changes.of(View.NODES)})]


def holds_touched(changes: Changes) -> list[ToyKey]:
    return [HoldTouched(h) for h in sorted(changes.of(HoldIndex.HOLDS))]


def setup(manager: Manager, deps: Deps) -> Tally:
    """The toy's one entry point: every watcher runs it (not leader-only)."""
    tally = Tally(deps.view, deps.index(HOLD_INDEX))
    controller: Controller[ToyKey] = Controller("tally", tally)
    manager.register(controller, Watch(partitions_touched), Watch(holds_touched))
    return manager.provide(TALLY, tally)
