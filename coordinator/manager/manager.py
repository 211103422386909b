"""The manager: the controllers of one process, run together, and the fan-out of the informer's changes to the
controllers that declared interest in them.

Rules:
- **Registration.** A concern registers in its own ``setup(manager, deps)`` (controller-runtime's builder): one
  ``register`` call names its controller, its interest as :class:`Watch` values (a map function from a watch batch's
  changes to keys of its own, controller-runtime's ``Watches(src, EnqueueRequestsFromMapFunc(f))``; ``after_s``: those
  keys are added that much later, for a concern that takes every change of one moment in one pass) and a timed
  concern's first key (``start_after``). The manager knows no concern: the process's list of setups is the only place
  that names them. Who leads is told to the manager once (``Manager(leading=...)``), and it hands that to every
  controller that ``needs_leader`` without being told otherwise; one registered with nobody to tell is refused
  (``manager/controller.py``'s **Leader only**).
- **Handles.** What one concern's setup shares with another (the planner the actions hand keys back to, the presence
  a refusal wakes) is ``provide``d under a typed :class:`Handle` and found with ``get``, so a cross-concern link is a
  lookup by a name that carries its type, never an attribute patched in afterwards. A concern that is off provides
  nothing (``find`` answers None).
- **Fan-out.** ``dispatch`` gives every change of one watch batch to each watch in registration order; each adds
  keys to its own controller's queue. No controller reads another's queue, and nothing but the informer's changes,
  a reconcile's result, a controller that hands work on (the planner to the actions) and the campaign (a new term's
  first work) adds keys.
- **Run and stop.** ``run`` runs every controller's workers until cancelled; ``shutdown`` refuses new keys and wakes
  every worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from coordinator.informer import Changes
from coordinator.manager.controller import Controller

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Watch(Generic[K]):
    """Interest (**Registration**): the keys ``map`` finds in a watch batch's changes, added ``after_s`` later (0:
    now). One delay per watch, not per key: the map runs once per batch and its keys are the hot path (thousands per
    batch), so it makes no object per key."""

    map: Callable[[Changes], Iterable[K]]
    after_s: float = 0.0


class Handle(Generic[T]):
    """A typed name for what a concern's setup shares (**Handles**)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Handle({self.name!r})"


@dataclass(frozen=True)
class _Route(Generic[K]):
    controller: Controller[K]
    watch: Watch[K]

    def dispatch(self, changes: Changes) -> None:
        controller, after_s = self.controller, self.watch.after_s
        if after_s > 0:
            for key in self.watch.map(changes):
                controller.add_after(key, after_s)
        else:
            for key in self.watch.map(changes):
                controller.add(key)


class Manager:
    """Rules *registration*, *handles*, *fan-out*, *run and stop*."""

    def __init__(self, leading: Callable[[], bool] | None = None) -> None:
        #: Who leads (the election), handed to every controller that ``needs_leader`` and was not told otherwise
        #: (``manager/controller.py``'s **Leader only**).
        self.leading = leading
        self.controllers: dict[str, Controller[Any]] = {}
        self._routes: list[_Route[Any]] = []
        self._provided: dict[Handle[Any], Any] = {}

    def register(
        self, controller: Controller[K], *watches: Watch[K], start_after: tuple[K, float] | None = None
    ) -> Controller[K]:
        """Rule *registration*."""
        if controller.name in self.controllers:
            raise ValueError(f"a controller named {controller.name!r} is registered already")
        if controller.needs_leader and not controller.told_who_leads:
            if self.leading is None:
                raise ValueError(f"{controller.name!r} needs the leader, and this manager was told no leadership")
            controller.bind_leading(self.leading)
        self.controllers[controller.name] = controller
        self._routes += [_Route(controller, watch) for watch in watches]
        if start_after is not None:
            controller.add_after(*start_after)
        return controller

    def provide(self, handle: Handle[T], value: T) -> T:
        """Rule *handles*: ``value`` is what ``handle`` names from now on."""
        if handle in self._provided:
            raise ValueError(f"{handle!r} is provided already")
        self._provided[handle] = value
        return value

    def get(self, handle: Handle[T]) -> T:
        """Rule *handles*: what a setup provided under ``handle`` (one listed earlier, or any once all ran)."""
        if handle not in self._provided:
            raise LookupError(f"nothing provides {handle!r}: its concern is off or set up later")
        value: T = self._provided[handle]
        return value

    def find(self, handle: Handle[T]) -> T | None:
        """``get``, or None while nothing provides ``handle`` (its concern is off)."""
        value: T | None = self._provided.get(handle)
        return value

    def dispatch(self, changes: Changes) -> None:
        """Rule *fan-out*."""
        for route in self._routes:
            route.dispatch(changes)

    async def run(self) -> None:
        """Rule *run and stop*: every controller's workers, until cancelled."""
        tasks = [asyncio.create_task(c.run(), name=f"controller {c.name}") for c in self.controllers.values()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def shutdown(self) -> None:
        for controller in self.controllers.values():
            controller.queue.shutdown()
