"""What a deadline judgement is made of (semantics `deadlines-judged`): the predicted finish as a form of ``now``
(:class:`Eta`), the predicted start of the root it counts from, an overdue root, and why a partition cannot finish
(:class:`Cause`).

Rules:
- **Values only.** Frozen values and their text; no judging. ``states`` builds them (its **ETA** and **Causes**),
  ``groups`` ranks and bounds ETAs for condition groups; both import this module and neither imports the other's
  internals, so the two stay a layer apart (``groups`` below ``states``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from coordinator.core.deadline.start import StartRule
from coordinator.core.duration import format_shift
from coordinator.core.model import NodeId


class CauseReason(StrEnum):
    FAILED = "failed"
    INTENT_ERROR = "intent_error"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"
    #: A root that should have started and has not (**ETA**): an ``at_risk`` cause, not a ``blocked`` one.
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a partition cannot finish (**Causes**): the deepest blocked (DAG, partition) and the hops to it."""

    node: NodeId
    partition: str
    reason: CauseReason
    #: (DAG, partition) from the DAG whose status this is down to ``node`` (both included).
    chain: tuple[tuple[NodeId, str], ...] = ()
    #: ``not_started`` only: when the root was due to start, and how late it is at the status's ``now``.
    due: datetime | None = None
    late: timedelta | None = None
    #: The task of a task deadline whose failure this is (**Task deadlines**); None: the DAG run's.
    task: str | None = None

    @property
    def instance(self) -> str:
        return self.node.instance

    def text(self) -> str:
        """``instance/dag@partition reason`` (what status, why, the log and the handler's conf show); for a root
        that has not started ``instance/dag@partition has not started (due HH:MM, 5h late)``."""
        if self.reason is CauseReason.NOT_STARTED and self.due is not None and self.late is not None:
            late = format_shift(int(self.late.total_seconds()) // 60 * 60)
            return f"{self.node.qualified}@{self.partition} has not started (due {self.due:%H:%M}, {late} late)"
        if self.task is not None:
            return f"{self.node.qualified}@{self.partition} task {self.task} {self.reason}"
        return f"{self.node.qualified}@{self.partition} {self.reason}"

    def chain_text(self) -> str:
        return " <- ".join(f"{n.qualified}@{p}" for n, p in self.chain)


@dataclass(frozen=True, slots=True)
class PredictedStart:
    """A root's predicted start for one partition (``coordinator.core.deadline.start``), as status and why show it."""

    node: NodeId
    partition: str
    at: datetime
    rule: StartRule

    def text(self) -> str:
        return f"{self.node.qualified}@{self.partition} starts {self.at:%Y-%m-%d %H:%MZ} ({self.rule.source})"


@dataclass(frozen=True, slots=True)
class Overdue:
    """A root without any fact that is due to have started (**ETA**): overdue after ``at`` (start + grace)."""

    at: datetime
    due: datetime
    #: (DAG, partition) from the one whose ETA this is up to the root (both included).
    chain: tuple[tuple[NodeId, str], ...]

    def cause(self, now: datetime) -> Cause:
        node, partition = self.chain[-1]
        return Cause(node, partition, CauseReason.NOT_STARTED, self.chain, self.due, now - self.due)


@dataclass(frozen=True, slots=True)
class Eta:
    """**ETA**' predicted finish as a function of ``now``: ``max(now + ahead, fixed)``, a part left out when None.

    Every ETA has this form (**Known instants**): a success's end is ``fixed``; a running attempt is ``max(now, start +
    duration)``; any other is the latest of ``now``, a root's window end and its upstreams' ETAs plus the latency,
    plus its duration, and ``max`` and ``+`` of such forms stay such forms. Kept as a form, not an instant, so a
    status can be re-read at a later ``now`` without a pass (``coordinator.core.deadline.cache``).
    """

    ahead: timedelta | None = None
    fixed: datetime | None = None
    #: The root this ETA starts from has not started and is overdue after ``overdue.at`` (**ETA**).
    overdue: Overdue | None = None
    start: PredictedStart | None = None

    def at(self, now: datetime) -> datetime | None:
        if self.ahead is None:
            return self.fixed
        moving = now + self.ahead
        return moving if self.fixed is None or moving >= self.fixed else self.fixed
