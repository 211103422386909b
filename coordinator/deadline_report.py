"""Deadlines as ``status`` and ``why`` show them (semantics rule 13): the pure decision, rendered.

Rules:
1. Decided by ``core.deadlines.deadline_states`` on the same view the rest of the report reads, at ``now`` (the
   caller's clock), so ``status`` shows what the leader's next deadline pass would decide.
2. Only DAGs with an ``expected_by`` have rows; times are UTC, ``-`` when there is none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel

from coordinator.core.deadlines import DeadlineStatus
from coordinator.core.model import NodeId


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


def deadline_rows(
    statuses: Mapping[tuple[NodeId, str], DeadlineStatus], partitions: Iterable[str] | None = None
) -> list[DeadlineRow]:
    """Rows for ``partitions`` (every partition judged when None), by partition then DAG."""
    wanted = None if partitions is None else set(partitions)
    rows = []
    for (node, partition), status in sorted(statuses.items(), key=lambda item: (item[0][1], item[0][0])):
        if wanted is not None and partition not in wanted:
            continue
        cause = status.cause
        rows.append(
            DeadlineRow(
                dag=str(node), partition=partition, state=str(status.state), deadline=status.deadline,
                eta=status.eta, slack_s=status.slack, cause=cause.text() if cause else None,
                chain=cause.chain_text() if cause else None,
            )
        )  # fmt: skip
    return rows


def stamp(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%MZ") if at is not None else "-"


def why_lines(status: DeadlineStatus | None) -> list[str]:
    """What ``why`` adds for a DAG with a deadline: the state, the deadline, the ETA and the cause chain."""
    if status is None:
        return []
    lines = [
        f"deadline: {status.state} — due {stamp(status.deadline)}, ETA {stamp(status.eta)}, "
        f"slack {status.slack / 60:+.0f} min"
    ]
    if status.cause is not None:
        lines.append(f"  cause: {status.cause.text()}")
        lines.append(f"  chain: {status.cause.chain_text()}")
    return lines
