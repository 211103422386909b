"""The manager: the controllers of one process, run together, and the fan-out of the informer's changes to the
controllers that declared interest in them.

Rules:
- **Registration.** A concern is one ``register`` call: its controller, and (optionally) which keys of its own an
  informer change brings (``interest``). A timed concern also names its first delay (``start_after``).
- **Fan-out.** ``dispatch`` gives every change of one watch batch to each interest in registration order; each adds
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


@dataclass(frozen=True)
class _Route(Generic[K]):
    controller: Controller[K]
    interest: Callable[[Changes], Iterable[K]]

    def dispatch(self, changes: Changes) -> None:
        for key in self.interest(changes):
            self.controller.add(key)


class Manager:
    """Rules *registration*, *fan-out*, *run and stop*."""

    def __init__(self) -> None:
        self.controllers: dict[str, Controller[Any]] = {}
        self._routes: list[_Route[Any]] = []

    def register(
        self,
        controller: Controller[K],
        *,
        interest: Callable[[Changes], Iterable[K]] | None = None,
        start_after: tuple[K, float] | None = None,
    ) -> Controller[K]:
        if controller.name in self.controllers:
            raise ValueError(f"a controller named {controller.name!r} is registered already")
        self.controllers[controller.name] = controller
        if interest is not None:
            self._routes.append(_Route(controller, interest))
        if start_after is not None:
            controller.add_after(*start_after)
        return controller

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
