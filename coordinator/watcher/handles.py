"""The typed names under which the watcher's concerns share what another concern uses (``manager/manager.py``'s
**Handles**): each concern's ``setup`` provides its own, a later setup (or the service) gets it by the same name.
Here, not in the concerns' modules, so two concerns that hand each other work (the planner and the actions) need not
import each other; the types are read by the type checker only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coordinator.manager import Handle

if TYPE_CHECKING:
    from coordinator.watcher.actuator import Actuator
    from coordinator.watcher.assets import AssetJob
    from coordinator.watcher.audit import AuditJob
    from coordinator.watcher.checkpoint import CheckpointJob
    from coordinator.watcher.deadlines import DeadlineJob
    from coordinator.watcher.deliveries import AssetDeliveries
    from coordinator.watcher.graph_reload import GraphReload
    from coordinator.watcher.pass_summary import SummaryJob
    from coordinator.watcher.presence import PresenceJob
    from coordinator.watcher.retention import RetentionReconciler
    from coordinator.watcher.triggers import TriggerReconciler

#: The planner (DAG and partition keys): the actions hand a key back to it, a graph reload plans every partition.
TRIGGERS: Handle[TriggerReconciler] = Handle("triggers")
#: The actions (one intent protocol attempt per (DAG, partition)): the planner submits to it.
ACTUATOR: Handle[Actuator] = Handle("actions")
#: The asset streams' reconciler: the asset round submits every due stream to it.
DELIVERIES: Handle[AssetDeliveries] = Handle("deliveries")
#: The timed concerns and the leader's deadlines, retention and this watcher's presence: the service reads them.
ASSET_ROUND: Handle[AssetJob] = Handle("asset round")
AUDIT: Handle[AuditJob] = Handle("audit")
CHECKPOINT: Handle[CheckpointJob] = Handle("checkpoint")
DEADLINES: Handle[DeadlineJob] = Handle("deadlines")
RETENTION: Handle[RetentionReconciler] = Handle("retention")
GRAPH_RELOAD: Handle[GraphReload] = Handle("graph reload")
PRESENCE: Handle[PresenceJob] = Handle("presence")
#: The summary of the planner's passes (one line a minute): the service says it once more at the stop.
PASS_SUMMARY: Handle[SummaryJob] = Handle("pass summary")
