"""What the planner returns: actions (:class:`Trigger`, :class:`Resume`), verdicts and the plan holding them.

Rules:
- **Values only** (frozen dataclasses); ``coordinator.core.planner`` decides them and re-exports these names, which is
  where the rest of the code imports them from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from coordinator.core.model import NodeId, RunState, TriggerAction, TriggerRecord, TriggerStatus
from coordinator.core.view import LedgerFact


@dataclass(frozen=True, slots=True)
class Trigger:
    """Create or clear D's run for P. Safe to repeat: the ledger CAS on ``ledger_rev`` admits it once."""

    node: NodeId
    partition: str
    inputs: Mapping[str, int]
    action: TriggerAction
    run_id: str
    reason: str
    #: The newest input generation: the revision that caused this action (logged with it).
    cause_rev: int
    #: mod revision of the ledger key when planned (0 = no entry); the intent write compares it.
    ledger_rev: int
    trigger_count: int
    #: A scheduled dependent's (semantics `scheduled-permit`): when the newest upstream run it waits for ended, for the
    #: permit's delay (a metric); None otherwise, or when no upstream run says.
    cause_at: datetime | None = None
    #: Semantics `trigger-errors`: the revision since which the DAG's definition this was planned under is active (its
    #: activation's ``since``; 0: not adopted yet): an error of it records that definition.
    definition: int = 0

    def intent(self, requested_at: datetime | None = None, watcher: str = "") -> TriggerRecord:
        """The pending ledger record that announces this trigger (the actuator writes it before calling Airflow)."""
        return TriggerRecord(
            status=TriggerStatus.PENDING,
            action=self.action,
            run_id=self.run_id,
            inputs=dict(self.inputs),
            reason=self.reason,
            cause_rev=self.cause_rev,
            requested_at=requested_at,
            watcher=watcher,
            trigger_count=self.trigger_count,
        )


@dataclass(frozen=True, slots=True)
class Resume:
    """Finish an intent that was recorded but not confirmed (crash, Airflow error): never re-decided, only completed."""

    node: NodeId
    partition: str
    ledger: LedgerFact
    reason: str
    #: The triggered run has already reported a state after the intent: confirm it without calling Airflow.
    observed: bool = False
    #: Semantics `trigger-errors`: the DAG's definition in force was adopted after the one the error's try was
    #: planned under (its ``tried_under``), so the refused intent is tried at once, not at its ``retry_at``, and its
    #: backoff starts over.
    redefined: bool = False
    #: As :attr:`Trigger.definition`: the definition this resume was planned under (0: not adopted yet).
    definition: int = 0
    #: Semantics `permit-retracted`: not a completion but one write of this done intent of a scheduled dependent:
    #: withdraw its permit (the reason: an input it was granted on is no longer a success), or with "" give back one
    #: withdrawn while its run was being recorded. Calls nobody, so no hold keeps it back.
    withdraw: str | None = None


Action = Trigger | Resume


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a DAG is or is not running for a partition, in plain words and in fields."""

    node: NodeId
    partition: str
    state: RunState | None
    fresh: bool
    due: bool
    summary: str
    #: One line per reason (waiting on whom, why stale), each self-contained.
    reasons: tuple[str, ...] = ()
    #: Upstreams that block D (not fresh), for recursive explanations.
    blocked_by: tuple[NodeId, ...] = ()
    ledger: LedgerFact | None = None


@dataclass(frozen=True)
class Plan:
    revision: int
    actions: tuple[Action, ...]
    verdicts: Mapping[tuple[NodeId, str], Verdict] = field(default_factory=dict)
