"""The planner's side of the actions' controller, for tests that drive the actuator without a trigger pass."""

from __future__ import annotations

from coordinator.core.actions import Action
from coordinator.watcher.actuator import Actuator, Offer


def submit(actuator: Actuator, action: Action, view_revision: int | None = None) -> bool:
    """Offer ``action`` and start it when the actuator would (a leading pass does this with the budget between);
    whether it started."""
    if actuator.offer(action, view_revision=view_revision) is not Offer.READY:
        return False
    actuator.start(action)
    return True
