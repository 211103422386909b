"""What a trigger's 409 means, read back: Airflow answers the same "Unique constraint violation" whether the run id or
the (dag, logical date) pair is taken, and a partitioned run is only the one we asked for when its partition key is
ours too (two segments of one day would share a logical date).

Rules: only reads (``get_run``, ``find_run_by_logical_date``); an answer that does not name our run, or a holder of
the logical date that would rerun another partition, is an AirflowConflict that says so, never a guess.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from coordinator.airflow.runs import TriggerOutcome, TriggerResult
from coordinator.errors import AirflowConflict

if TYPE_CHECKING:
    from coordinator.airflow.client import AirflowClient


async def resolve_conflict(
    client: AirflowClient,
    conflict: AirflowConflict,
    dag_id: str,
    run_id: str,
    logical_date: datetime | None,
    partition_key: str | None,
) -> TriggerOutcome:
    """Which constraint a trigger's 409 hit, read back (:meth:`AirflowClient.trigger`)."""
    target = None if logical_date is None else logical_date.astimezone(UTC)
    wanted = f"logical date {target.isoformat() if target else None} and partition key {partition_key}"
    existing = await client.get_run(dag_id, run_id)
    if existing is not None:
        if existing.logical_date != target or existing.partition_key != partition_key:
            raise AirflowConflict(
                f"{client.name}: run {run_id} of {dag_id} exists with logical date {existing.logical_date} and "
                f"partition key {existing.partition_key} instead of {wanted}",
                status=409,
            ) from conflict
        return TriggerOutcome(TriggerResult.ALREADY_EXISTS, existing)
    holder = None if logical_date is None else await client.find_run_by_logical_date(dag_id, logical_date)
    if holder is not None and holder.partition_key == partition_key:
        return TriggerOutcome(TriggerResult.LOGICAL_DATE_TAKEN, holder)
    if holder is not None:
        raise AirflowConflict(
            f"{client.name}: run {holder.run_id} of {dag_id} holds logical date {holder.logical_date} with "
            f"partition key {holder.partition_key}, not {partition_key}: rerunning it would not run this partition",
            status=409,
        ) from conflict
    raise AirflowConflict(f"{conflict}; neither run id {run_id} nor {wanted} is taken now", status=409) from conflict
