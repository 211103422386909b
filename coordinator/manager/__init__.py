"""The manager, in controller-runtime's shape: controllers of keyed reconcilers on typed work queues (``controller``,
``queue``), timed concerns as keys requeued at their interval (``periodic``), and the manager that runs them and fans
the informer's changes out to the controllers that declared interest (``manager``). Nothing here knows what a
trigger or an asset is: the watcher registers its concerns (``coordinator/watcher/service.py``)."""

from coordinator.manager.controller import DONE, BatchReconciler, Controller, Reconciler, Result, wall_clock
from coordinator.manager.manager import Manager
from coordinator.manager.periodic import Periodic, RequeueAfter
from coordinator.manager.queue import WorkQueue

__all__ = [
    "DONE",
    "BatchReconciler",
    "Controller",
    "Manager",
    "Periodic",
    "Reconciler",
    "RequeueAfter",
    "Result",
    "WorkQueue",
    "wall_clock",
]
