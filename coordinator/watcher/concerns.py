"""The watcher's concerns: the one list of their setups (``watcher/service.py``'s **One module, one line**) and a typed
view of what the setups provided.

Rules:
- **The list is the registration.** :data:`CONCERNS` is every concern's ``setup(manager, deps)``, in the order they
  run: a setup may use what an earlier one provided (the planner submits to the actions, the asset round to the
  streams, the checkpoint reads the planner). A new concern is its module and one line here.
- **Read through the handles.** :class:`Provided` reads each concern the service, the CLI and the tests use by its
  handle, typed; a concern that is off is None or absent, never a stub. A handle lives in the module of the concern
  that provides it (``ACTUATOR`` in ``watcher/actuator.py``...), so a concern imports only the concerns set up before
  it, never a later one: the planner's queue, which the actions (set up before the planner) hand keys back to, is
  ``watcher/keys.py``'s ``PLANNER``, beside the planner's keys.
"""

from __future__ import annotations

from typing import Protocol

from coordinator.manager import Manager
from coordinator.manager.periodic import Job
from coordinator.watcher import (
    actuator,
    assets,
    audit,
    checkpoint,
    deadlines,
    deliveries,
    graph_reload,
    pass_summary,
    presence,
    retention,
    triggers,
)
from coordinator.watcher.actuator import ACTUATOR, Actuator
from coordinator.watcher.assets import ASSET_ROUND
from coordinator.watcher.audit import AUDIT
from coordinator.watcher.checkpoint import CHECKPOINT
from coordinator.watcher.deadlines import DEADLINE_JOB, DeadlineJob
from coordinator.watcher.deliveries import DELIVERIES, AssetDeliveries
from coordinator.watcher.deps import Deps
from coordinator.watcher.pass_summary import PASS_SUMMARY, SummaryJob
from coordinator.watcher.presence import PRESENCE, PresenceJob
from coordinator.watcher.retention import RETENTION, RetentionReconciler
from coordinator.watcher.triggers import TRIGGERS, TriggerReconciler


class Setup(Protocol):
    """A concern's one entry point: builds its controller, registers it with its interest and first keys, provides
    what other concerns use; returns what it built (None: the concern is off)."""

    def __call__(self, manager: Manager, deps: Deps, /) -> object: ...


#: **The list is the registration**.
CONCERNS: tuple[Setup, ...] = (
    actuator.setup,  # the actions: one intent protocol attempt per (DAG, partition)
    triggers.setup,  # the planner: DAG and partition keys, and the holds
    deliveries.setup,  # the asset streams: one delivery attempt per stream
    deadlines.setup,  # the deadlines: (DAG, partition) keys and the clock
    retention.setup,  # retention: a key per partition
    audit.setup,  # the timed ones, each a key requeued at its interval
    checkpoint.setup,
    assets.setup,
    graph_reload.setup,
    presence.setup,
    pass_summary.setup,  # the planner's passes, one line a minute
)


class Provided:
    """**Read through the handles**: what the setups provided to ``manager``."""

    manager: Manager

    @property
    def triggers(self) -> TriggerReconciler:
        return self.manager.get(TRIGGERS)

    @property
    def actuator(self) -> Actuator:
        return self.manager.get(ACTUATOR)

    @property
    def deliveries(self) -> AssetDeliveries:
        return self.manager.get(DELIVERIES)

    @property
    def deadline(self) -> DeadlineJob:
        return self.manager.get(DEADLINE_JOB)

    @property
    def retention_reconciler(self) -> RetentionReconciler | None:
        return self.manager.find(RETENTION)

    @property
    def presence_job(self) -> PresenceJob:
        return self.manager.get(PRESENCE)

    @property
    def pass_summary(self) -> SummaryJob | None:
        return self.manager.find(PASS_SUMMARY)

    @property
    def jobs(self) -> dict[str, Job]:
        """The leader's timed concerns that are on, by name (audit, the checkpoint, the asset round)."""
        found: list[Job | None] = [self.manager.find(AUDIT), self.manager.find(CHECKPOINT),
                                   self.manager.find(ASSET_ROUND)]  # fmt: skip
        return {job.name: job for job in found if job is not None}
