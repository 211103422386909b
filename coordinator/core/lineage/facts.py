"""What one OpenLineage run event changes in etcd (semantics `lineage-once`): the run's own record and its node's run
state.

The receiver keeps one record per run, ``{prefix}/lineage/{instance}/{runId}`` (:class:`LineageRun`), and writes the
node's run state, ``{prefix}/runs/{instance}/{dag}/{partition}``, as any writer does (``docs/keys.md``). Both are
written in one transaction, guarded by their mod revisions; :func:`judge` says what to write, from what is stored.

Rules (semantics `lineage-once`):
- **Once per run and type.** Exactly once per (runId, eventType): an event whose type the run's record already holds is
  a duplicate; nothing is written and the client is answered as for the first copy.
- **Partition fixed by the first event.** A run's partition is fixed by the first event the receiver records for it
  (``lineage.mapping``'s **The partition**: the ``nominalTime`` facet's start on the node's grid; else the partition of
  its parent's run, when the receiver holds that run's record under the same instance, so every model of one dbt
  invocation lands on one partition; else the event's time placed by the mapping's slot). Later events of the run keep
  it, whatever their times.
- **Strongest event.** A run's state is its strongest event: a terminal one (COMPLETE: success; FAIL, ABORT: failed; of
  two, the later event time) over START or RUNNING (running); OTHER gives none. So COMPLETE before START is a success
  that a late START does not undo, and a run never goes backwards.
- **Newest run only.** The run state is written when the run's state changed and the run is the partition's newest: the
  key holds no state, or this run's, or another run's that started before this one did (``start_date``, else
  ``updated_at``). A late event of an older run is recorded in its own record only: it never hides a newer run. The
  value says the run's place, ``run_after`` (its earliest event), the run order every writer follows (semantics
  `newest-run-stands`).
- **The writers' rules.** The value follows the writers' rules (``docs/keys.md``): ``run_id`` is the OpenLineage runId,
  ``clear_number`` 0 (a rerun is a new runId: a new generation that reruns every dependent once, like a cleared DAG
  run), ``start_date``/``end_date`` the START and terminal event times, ``updated_at`` the latest event time, ``source``
  ``openlineage:<namespace>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from coordinator.core.lineage.events import EventType, RunEvent
from coordinator.core.lineage.mapping import LineageJob, PartitionSource
from coordinator.core.model import NodeId, RunRecord, RunState, canonical_partition
from coordinator.core.partition import join_partition
from coordinator.core.run_order import comes_later

#: **Strongest event**: what each event type says of the run.
STATE_OF = {
    EventType.START: RunState.RUNNING,
    EventType.RUNNING: RunState.RUNNING,
    EventType.COMPLETE: RunState.SUCCESS,
    EventType.FAIL: RunState.FAILED,
    EventType.ABORT: RunState.FAILED,
}
_TERMINAL = (EventType.COMPLETE, EventType.FAIL, EventType.ABORT)
SOURCE_PREFIX = "openlineage:"


class LineageRun(BaseModel):
    """Value of ``{prefix}/lineage/{instance}/{runId}``: one OpenLineage run as the receiver recorded it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    namespace: str
    job: str
    dag: str
    partition: str
    #: The time the partition was placed from (**Partition fixed by the first event**): the nominal start, else the
    #: first event's time.
    anchor: datetime
    parent_run_id: str | None = None
    #: Event type -> its event time (**Once per run and type**: one of each).
    events: dict[EventType, datetime] = Field(default_factory=dict)
    producer: str = ""

    def state(self) -> RunState | None:
        """**Strongest event**."""
        terminal = [(at, kind) for kind, at in self.events.items() if kind in _TERMINAL]
        if terminal:
            return STATE_OF[max(terminal)[1]]
        if EventType.START in self.events or EventType.RUNNING in self.events:
            return RunState.RUNNING
        return None

    def last_event(self) -> tuple[EventType, datetime] | None:
        """The latest event by its time (for ``why`` and the page)."""
        if not self.events:
            return None
        kind, at = max(self.events.items(), key=lambda item: (item[1], item[0] in _TERMINAL))
        return kind, at


class Outcome(StrEnum):
    """What became of one event (the receiver's metric label)."""

    ACCEPTED = "accepted"  # recorded, the run state written
    # recorded, the run state unchanged (**Strongest event**: nothing new; **Newest run only**: an older run)
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # **Once per run and type**
    IGNORED = "ignored"  # no mapping names its job (``lineage.mapping``'s **First match**), or not a run event


@dataclass(frozen=True, slots=True)
class Writes:
    """What to write for one event: the run's record, and the node's run state when it changes
    (**Once per run and type** to **The writers' rules**)."""

    outcome: Outcome
    node: NodeId
    partition: str
    record: LineageRun | None = None
    run_state: RunRecord | None = None


class NoPartition(ValueError):
    """The mapping cannot place this run (``partition: nominal`` and no ``nominalTime``): the event is refused."""


def partition_of(event: RunEvent, entry: LineageJob, parent: LineageRun | None) -> tuple[str, datetime]:
    """**Partition fixed by the first event**: (partition, anchor) of a run first seen with ``event``."""
    if event.nominal_start is not None:
        at = event.nominal_start.astimezone(UTC).replace(microsecond=0)
        point = entry.grid.floor(at) if entry.grid is not None else at
        return join_partition(canonical_partition(point), entry.segment), event.nominal_start
    if entry.partition is PartitionSource.NOMINAL:
        raise NoPartition(
            f'job {event.namespace}/{event.job} is mapped by {entry.label} with "partition": "nominal" and the '
            "event has no nominalTime facet"
        )
    if parent is not None:
        return parent.partition, parent.anchor
    placed = canonical_partition(entry.place(event.event_time.astimezone(UTC)))
    return join_partition(placed, entry.segment), event.event_time


def judge(
    event: RunEvent,
    entry: LineageJob,
    node: NodeId,
    record: LineageRun | None,
    parent: LineageRun | None,
    current: RunRecord | None,
) -> Writes:
    """**Once per run and type** to **The writers' rules** for ``event`` of a job ``entry`` maps to ``node``, given the
    run's ``record``, its ``parent``'s record (looked up only for a run not yet recorded) and the run state ``current``
    of the partition the record fixes (of the partition **Partition fixed by the first event** gives, for a new run)."""
    if record is not None and event.event_type in record.events:
        return Writes(Outcome.DUPLICATE, node, record.partition)
    if record is None:
        partition, anchor = partition_of(event, entry, parent)
        record = LineageRun(
            namespace=event.namespace, job=event.job, dag=node.dag_id, partition=partition, anchor=anchor,
            parent_run_id=event.parent_run_id, producer=event.producer,
        )  # fmt: skip
    updated = record.model_copy(update={"events": {**record.events, event.event_type: event.event_time}})
    state = updated.state()
    if state is None or (record.events and state == record.state()):
        return Writes(Outcome.RECORDED, node, updated.partition, updated)
    value = run_state(event, updated, state)
    if current is not None and current.run_id != event.run_id and not _stands_over(value, current, updated):
        return Writes(Outcome.RECORDED, node, updated.partition, updated)
    return Writes(Outcome.ACCEPTED, node, updated.partition, updated, value)


def run_state(event: RunEvent, run: LineageRun, state: RunState) -> RunRecord:
    """**The writers' rules**."""
    start = run.events.get(EventType.START) or run.events.get(EventType.RUNNING)
    ends = [at for kind, at in run.events.items() if kind in _TERMINAL]
    return RunRecord(
        state=state, run_id=event.run_id, clear_number=0, updated_at=max(run.events.values()),
        source=f"{SOURCE_PREFIX}{event.namespace}", start_date=start,
        end_date=max(ends) if state is not RunState.RUNNING and ends else None, run_after=min(run.events.values()),
    )  # fmt: skip


def _stands_over(value: RunRecord, current: RunRecord, run: LineageRun) -> bool:
    """**Newest run only**, by the run order every writer follows (semantics `newest-run-stands`): a run's place is
    its earliest event (``run_after`` of its value); against a value of another writer that does not say its place,
    the other run's start (:func:`_newer`)."""
    if current.run_after is not None:
        return comes_later(value, current)
    return not _newer(current, run)


def _newer(current: RunRecord, run: LineageRun) -> bool:
    """**Newest run only**: whether the run state held by another run started after ``run`` did (this run's earliest
    event: its START, or what came first when START is late or missing; never the nominal anchor, which a rerun
    shares)."""
    since = current.start_date or current.updated_at
    return since is not None and since > min(run.events.values())
