"""What the leader records of a deadline state, and when a status is a transition of it (semantics
`deadlines-judged`; the judging is ``core.deadline.states``).

Rules:
- **Transitions.** A transition is a status whose state differs from the state recorded for it (nothing recorded reads
  as ``on_time``): :func:`transitions`. The shell records each by compare-and-swap before it alerts, so one transition
  alerts at most once; whether and when it triggers the ``on_late_of`` handlers (never for ``on_time``, not again for a
  state already alerted in the partition, after ``hold``) is ``coordinator.core.deadline.alerts``.
- **Deterministic handler runs.** A transition names its handlers' run by (DAG, partition, sequence)
  (:func:`late_run_id`), so a handler retried after a failover is the same run and Airflow refuses a second; the run's
  conf is read from the record alone (:func:`handler_conf`), so a retry sends the same conf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coordinator.core.deadline.states import DeadlineState, DeadlineStatus
from coordinator.core.model import NodeId


class DeadlineRecord(BaseModel):
    """Value of a transition key ``{prefix}/deadlines/{instance}/{dag_id}/{partition}`` (docs/keys.md): the last
    state recorded for this (DAG, partition), written by the leader by compare-and-swap (**Transitions**).

    The stored field names are the key's contract: ``alert_after`` is stored and read as ``hold_until`` (its alias)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, serialize_by_alias=True, validate_by_alias=True, validate_by_name=True
    )
    state: DeadlineState
    deadline: datetime
    eta: datetime | None = None
    cause: str | None = None
    chain: str | None = None
    #: How many transitions this (DAG, partition) had: names the handler run (``late_run_id``), so completing a
    #: handler after a failover reuses the same run id and Airflow refuses a second run.
    sequence: int = 1
    changed_at: datetime
    #: The logical date of the handlers' runs for this transition, whole seconds, distinct from every other recorded
    #: transition's (Airflow allows one run per DAG and logical date); chosen when recorded, so a retry asks again.
    handler_date: datetime | None = None
    #: The handlers were triggered (or there are none, or none are due: on_time, a repeat); False: a transition
    #: recorded but not yet alerted (``core.deadline.alerts``).
    alerted: bool = False
    watcher: str = ""
    #: The states whose handlers ran for this partition, carried across its transitions (``alerts``'
    #: **Alerted states carried**).
    alerted_states: tuple[DeadlineState, ...] = ()
    #: The handlers run at the first pass at or after this instant if the state is still the recorded one
    #: (``alerts``' **Wait before alerting**).
    alert_after: datetime | None = Field(default=None, alias="hold_until")
    #: A state already alerted for this partition: recorded, not alerted again (``alerts``' **No repeat alerts**).
    repeat: bool = False
    #: The task a task deadline was judged on (**Task deadlines**); None: the DAG run (records written before task
    #: deadlines).
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    status: DeadlineStatus
    previous: DeadlineState
    sequence: int


def transitions(
    statuses: Mapping[tuple[NodeId, str], DeadlineStatus], recorded: Mapping[tuple[NodeId, str], DeadlineRecord]
) -> list[Transition]:
    """The statuses whose state differs from the recorded one (absent reads as ``on_time``), in key order."""
    found = []
    for at in sorted(statuses):
        status = statuses[at]
        record = recorded.get(at)
        previous = record.state if record is not None else DeadlineState.ON_TIME
        if status.state is not previous:
            found.append(Transition(status, previous, (record.sequence + 1) if record is not None else 1))
    return found


def late_run_id(node: NodeId, partition: str, sequence: int) -> str:
    """Deterministic run id of a late handler's run (one per transition), so a retried trigger is refused."""
    return f"coordinator_late__{node.instance}__{node.dag_id}__{partition}__{sequence}"


def handler_conf(record: DeadlineRecord, node: NodeId, partition: str, level: str | None = None) -> dict[str, Any]:
    """The conf a late handler's run receives (docs/dependencies.md); a level's handler also gets ``level``, a task
    deadline's handler ``task``."""
    conf = {
        "coordinator": {
            "deadline": {
                "dag": node.qualified,
                "partition": partition,
                "state": str(record.state),
                "deadline": record.deadline.isoformat(),
                "eta": record.eta.isoformat() if record.eta is not None else None,
                "cause": record.cause,
                "chain": record.chain,
            }
        }
    }
    if level is not None:
        conf["coordinator"]["deadline"]["level"] = level
    # A task deadline: the handler is told which task was judged (semantics `deadline-task`)
    if record.task is not None:
        conf["coordinator"]["deadline"]["task"] = record.task
    return conf
