"""The manager, in controller-runtime's shape: controllers of keyed reconcilers on typed work queues (``controller``,
``queue``), timed concerns as keys requeued at their interval (``periodic``), and the manager that runs them and fans
the informer's changes out to the controllers that declared interest (``manager``). Nothing here knows what a
trigger or an asset is: each concern of the watcher registers itself in its own ``setup`` (the list of them is
``coordinator/watcher/concerns.py``'s ``CONCERNS``)."""

from coordinator.manager.controller import DONE, BatchReconciler, Controller, Reconciler, Result, wall_clock
from coordinator.manager.manager import Handle, Manager, Watch
from coordinator.manager.periodic import Periodic, RequeueAfter
from coordinator.manager.queue import WorkQueue

__all__ = [
    "DONE",
    "BatchReconciler",
    "Controller",
    "Handle",
    "Manager",
    "Periodic",
    "Reconciler",
    "RequeueAfter",
    "Result",
    "Watch",
    "WorkQueue",
    "wall_clock",
]
