"""Asking one Airflow whether its DAGs accept the partition keys the coordinator triggers them with, for
``validate --airflow`` and ``doctor`` (the judgement is :mod:`coordinator.core.key_acceptance`'s).

Rules:
- **Read-only, one more request at most.** The DAG list the caller already read says each DAG's timetable; only when a
  keyed dependent's shows no partitions is the list asked again, filtered by ``timetable_type`` to Airflow's built-in
  timetables that refuse keys, to tell those (an error) from a custom timetable (a warning).
- **A filter Airflow ignored** (a server that ignores an unknown query parameter, as FastAPI does) lists every DAG:
  every suspect is then judged refused, as its listed timetable says, never let through.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.runs import DagInfo
from coordinator.core.key_acceptance import REFUSING_TIMETABLES, KeyedDag, KeyRefusal, key_refusals, suspects


async def refused_keys(
    client: AirflowClient, keyed: Sequence[KeyedDag], listed: Sequence[DagInfo], *, version: str, deps: str
) -> tuple[KeyRefusal, ...]:
    """The keyed dependents of this instance that its Airflow refuses (or may refuse) a ``partition_key``;
    ``listed``: its DAG list (:meth:`AirflowClient.dag_list`), ``version``: its Airflow version."""
    timetables = {d.dag_id: d.timetable for d in listed if d.timetable is not None}
    asked = suspects(keyed, timetables)
    built_in = [d.dag_id for d in await client.dag_list(timetable_types=REFUSING_TIMETABLES)] if asked else []
    return key_refusals(keyed, timetables, built_in, airflow_version=version, deps=deps)
