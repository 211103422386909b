"""Deadlines as ``status`` and ``why`` show them (semantics `deadlines-judged`): the pure decision, rendered.

Rules:
- **The leader's decision.** Decided by ``core.deadlines.deadline_states`` on the same view the rest of the report
  reads, at ``now`` (the caller's clock), so ``status`` shows what the leader's next deadline pass would decide.
- **Rows for expected_by only.** Only DAGs with an ``expected_by`` have rows; times are UTC, ``-`` when there is none. A
  row that waits for a root shows that root's predicted start and its source (``core.deadline.start``: history,
  timetable, airflow_version, default).
- **The leader's causes.** Paused DAGs and unreachable instances are known only to the watcher (it asks Airflow; these
  commands read etcd only, and must answer when Airflow does not). So where this judgement is ``on_time`` or ``at_risk``
  without a success and the leader's recorded transition (``{prefix}/deadlines/...``, read from the same snapshot) is
  ``blocked`` by such a cause, the row shows the leader's state and cause (``judged_by: leader``), and ``why`` says so.
  The leader records every change within one deadline pass, so the record is as fresh as its last pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from coordinator.core.deadline.eta import Cause, CauseReason
from coordinator.core.deadline.levels import level_states
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.rules import Level
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus
from coordinator.core.duration import format_shift
from coordinator.core.model import NodeId

#: Causes only the watcher can see (**The leader's causes**).
WATCHER_ONLY = frozenset({CauseReason.PAUSED, CauseReason.UNREACHABLE})


class DeadlineRow(BaseModel):
    """One (DAG, partition) with a deadline, as ``status --format json`` prints it."""

    dag: str
    partition: str
    state: str
    deadline: datetime
    eta: datetime | None = None
    slack_s: float
    cause: str | None = None
    chain: str | None = None
    #: ``local``: judged by this command; ``leader``: the leader's recorded state, for a cause only it sees
    #: (**The leader's causes**).
    judged_by: Literal["local", "leader"] = "local"
    #: The predicted start of the root the ETA waits for (**Rows for expected_by only**): which root, when, and from
    #: which source.
    start_of: str | None = None
    start: datetime | None = None
    start_source: str | None = None
    #: Escalation levels (semantics `deadline-levels`): each level's name and state, in spec order; None without levels.
    levels: dict[str, str] | None = None
    #: A task deadline (semantics `deadline-task`): the task the state is judged on; None: the DAG run.
    task: str | None = None


def level_text(levels: Mapping[str, str] | None) -> str:
    """``warn at_risk, page on_time``: which levels are firing (status's table, why)."""
    return ", ".join(f"{name} {state}" for name, state in (levels or {}).items())


def _levels(status: DeadlineStatus, state: DeadlineState | None, levels: tuple[Level, ...]) -> dict[str, str] | None:
    """Each level's state; ``state``: the leader's recorded one (a cause only it sees reaches every level)."""
    if not levels:
        return None
    if state is not None:
        return {level.name: str(state) for level in levels}
    return {name: str(found) for name, found in level_states(status, levels)}


def _reason(cause: str | None) -> str | None:
    # ``Cause.text()`` is ``instance/dag@partition reason``: the reason is its last word.
    return cause.rsplit(" ", 1)[-1] if cause else None


def leader_judged(status: DeadlineStatus, record: DeadlineRecord | None) -> DeadlineRecord | None:
    """The leader's record where it knows a cause this command cannot see (**The leader's causes**), else None."""
    if record is None or status.succeeded or status.state not in (DeadlineState.ON_TIME, DeadlineState.AT_RISK):
        return None
    if record.state is not DeadlineState.BLOCKED or _reason(record.cause) not in WATCHER_ONLY:
        return None
    return record


def leader_status(status: DeadlineStatus, record: DeadlineRecord | None) -> DeadlineStatus:
    """``status`` with the leader's recorded state and cause where it knows a cause a reader cannot see
    (**The leader's causes**): what the dependencies page draws, as ``status`` shows it."""
    leader = leader_judged(status, record)
    if leader is None:
        return status
    cause = _parse_cause(leader.cause, leader.chain)
    return replace(status, state=leader.state, eta=None, cause=cause)


def _parse_cause(text: str | None, chain: str | None) -> Cause | None:
    """The :class:`Cause` whose ``text()`` and ``chain_text()`` a record holds; None when they do not parse."""

    def hop(item: str) -> tuple[NodeId, str]:
        ref, _, partition = item.rpartition("@")
        return NodeId.parse(ref), partition

    if not text:
        return None
    try:
        where, _, reason = text.rpartition(" ")
        where, marker, task = where.partition(" task ")  # a task deadline's failed task (``Cause.text``)
        node, partition = hop(where)
        hops = tuple(hop(item) for item in chain.split(" <- ")) if chain else ((node, partition),)
        return Cause(node, partition, CauseReason(reason), hops, task=task if marker else None)
    except ValueError:
        return None


def deadline_rows(
    statuses: Mapping[tuple[NodeId, str], DeadlineStatus],
    partitions: Iterable[str] | None = None,
    recorded: Mapping[tuple[NodeId, str], DeadlineRecord] | None = None,
    levels: Mapping[NodeId, tuple[Level, ...]] | None = None,
) -> list[DeadlineRow]:
    """Rows for ``partitions`` (every partition judged when None), by partition then DAG; ``recorded``: the
    leader's transitions (**The leader's causes**); ``levels``: the DAGs' escalation levels
    (``core.deadline.levels.graph_levels``)."""
    levels = levels or {}
    wanted = None if partitions is None else set(partitions)
    rows = []
    for (node, partition), status in sorted(statuses.items(), key=lambda item: (item[0][1], item[0][0])):
        if wanted is not None and partition not in wanted:
            continue
        leader = leader_judged(status, (recorded or {}).get((node, partition)))
        cause = status.cause
        if leader is not None:
            rows.append(
                DeadlineRow(
                    dag=str(node), partition=partition, state=str(leader.state), deadline=status.deadline,
                    slack_s=status.slack, cause=leader.cause, chain=leader.chain, judged_by="leader",
                    levels=_levels(status, leader.state, levels.get(node, ())), task=status.task,
                )
            )  # fmt: skip
            continue
        start = status.start
        rows.append(
            DeadlineRow(
                dag=str(node), partition=partition, state=str(status.state), deadline=status.deadline,
                eta=status.eta, slack_s=status.slack, cause=cause.text() if cause else None,
                chain=cause.chain_text() if cause else None,
                start_of=f"{start.node.qualified}@{start.partition}" if start else None,
                start=start.at if start else None, start_source=str(start.rule.source) if start else None,
                levels=_levels(status, None, levels.get(node, ())), task=status.task,
            )
        )  # fmt: skip
    return rows


def stamp(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%MZ") if at is not None else "-"


def why_lines(
    status: DeadlineStatus | None, record: DeadlineRecord | None = None, levels: tuple[Level, ...] = ()
) -> list[str]:
    """What ``why`` adds for a DAG with a deadline: the state, the deadline, the ETA and the cause chain; the
    leader's recorded state instead where it knows a cause this command cannot see (**The leader's causes**); each
    escalation level's state, with its slack."""
    if status is None:
        return []
    of_task = [f"  task: {status.task} (the deadline is judged on this task's state)"] if status.task else []
    leader = leader_judged(status, record)
    found = _levels(status, leader.state if leader is not None else None, levels)
    level_line = []
    if found:
        slack = {level.name: format_shift(level.slack) for level in levels}
        level_line = [
            "  levels: " + ", ".join(f"{name} {state} (slack {slack[name]})" for name, state in found.items())
        ]
    if leader is not None:
        return [
            f"deadline: {leader.state} — due {stamp(status.deadline)}, as the leading watcher recorded at "
            f"{stamp(leader.changed_at)}",
            *of_task,
            *level_line,
            f"  cause: {leader.cause}",
            f"  chain: {leader.chain}",
            "  paused DAGs and unreachable instances are judged by the watcher, which asks Airflow; this command "
            f"reads etcd only and alone would say {status.state}",
        ]
    lines = [
        f"deadline: {status.state} — due {stamp(status.deadline)}, ETA {stamp(status.eta)}, "
        f"slack {status.slack / 60:+.0f} min"
    ]
    if status.cause is not None:
        lines.append(f"  cause: {status.cause.text()}")
        lines.append(f"  chain: {status.cause.chain_text()}")
    if status.start is not None and not status.succeeded:
        lines.append(f"  start: {status.start.text()}")
    return [*lines[:1], *of_task, *level_line, *lines[1:]]
