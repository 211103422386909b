"""``coordinator trigger DAG -p PARTITION``: start a root's run for a partition by hand, keyed as the coordinator keys
its own runs, for the roots ``airflow dags trigger`` cannot start (it has no partition key option: a
``PartitionedAtRuntime`` DAG keyed by region, a ``CronPartitionTimetable`` keyed by time).

Rules:
- **Keyed as the watcher keys.** The run is created as the actuator creates its runs (``watcher/actuator.py``): the
  logical date of a time partition (none for one with a segment), and the ``partition_key`` the graph gives the DAG
  (``Graph.partition_key``: its segment, its time in its ``key_format``, or both); a DAG the graph does not name gets
  its segment as it is and a time without a key. ``--dry-run`` prints the REST call (path and JSON body) instead, for
  a user who starts runs another way.
- **Once.** The run id is ``manual__{partition}`` unless given: a repeat finds the run there (``already exists``,
  nothing done), never a second run. A run holding the logical date already is said, not cleared.
- **Not the watcher's.** The coordinator never starts a root on its own; this is a person's command, like ``airflow
  dags trigger``. Exit 0 when the run exists afterwards, 1 when Airflow failed, 2 for bad input.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from coordinator.airflow.client import AirflowClient, TriggerResult
from coordinator.airflow.runs import iso_utc
from coordinator.cli.app import (
    EXIT_FAILURE,
    OPERATE,
    AirflowUrlOpt,
    DepsOpt,
    InstancesOpt,
    app,
    build_settings,
    fail,
    out,
)
from coordinator.cli.inspect_reads import partition_arg
from coordinator.core.graph import Graph
from coordinator.core.model import DEFAULT_INSTANCE, NodeId
from coordinator.core.partition import airflow_partition_key, trigger_logical_date
from coordinator.errors import CoordinatorError, SpecError
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec


@app.command(rich_help_panel=OPERATE)
def trigger(
    dag: Annotated[str, typer.Argument(metavar="DAG", help="the DAG to start: dag id, or instance/dag_id")],
    partition: Annotated[
        str,
        typer.Option("--partition", "-p", metavar="PARTITION", help="a date, a segment (eu), or both: 2026-01-01~eu"),
    ],
    run_id: Annotated[
        str | None, typer.Option("--run-id", metavar="ID", show_default="manual__PARTITION", help="the run's id")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the REST call instead of making it")] = False,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
) -> None:
    """Start DAG's run for PARTITION in its Airflow, with the partition key the graph gives it: how to start a
    partitioned root (`airflow dags trigger` has no partition key). Safe to repeat."""
    settings = build_settings(deps=deps, airflow_url=airflow_url, instances_file=instances)
    part = partition_arg(partition)
    node, key = _keyed(_graph(settings), dag, part)
    at = trigger_logical_date(part)
    run = run_id or f"manual__{part}"
    if dry_run:
        body: dict[str, object] = {"dag_run_id": run, "logical_date": None if at is None else iso_utc(at), "conf": {}}
        if key is not None:
            body["partition_key"] = key
        out.print(f"POST /api/v2/dags/{node.dag_id}/dagRuns", markup=False)
        out.print(json.dumps(body), markup=False, soft_wrap=True)
        return
    configured = settings.instances()
    if node.instance not in configured:
        how = "--airflow-url (COORDINATOR_AIRFLOW_URL)" if node.instance == DEFAULT_INSTANCE else "--instances"
        fail(f"no Airflow is configured for instance {node.instance}: give it with {how}")

    async def create() -> str:
        async with AirflowClient(configured[node.instance], name=node.instance) as client:
            outcome = await client.trigger(node.dag_id, run, at, {}, key)
        keyed = f" (partition_key {key!r})" if key is not None else ""
        if outcome.result is TriggerResult.CREATED:
            return f"created run {run} of {node} for {part}{keyed}"
        if outcome.result is TriggerResult.ALREADY_EXISTS:
            return f"run {run} of {node} exists already: nothing done"
        return f"run {outcome.run.run_id} of {node} holds that logical date already: nothing done"

    try:
        said = asyncio.run(create())
    except CoordinatorError as exc:
        fail(f"{node}: {exc}", EXIT_FAILURE)
    out.print(said, markup=False, soft_wrap=True)


def _graph(settings: Settings) -> Graph | None:
    """The graph (it gives the DAG's key format); None without a dependencies file (the DAG keyed by its partition
    alone); an invalid one exits 2 with its problems."""
    if not settings.deps.exists():
        return None
    try:
        return load_spec(settings.deps)
    except SpecError as exc:
        fail("\n".join(exc.problems))


def _keyed(graph: Graph | None, dag: str, partition: str) -> tuple[NodeId, str | None]:
    """**Keyed as the watcher keys**: the node and its ``partition_key``."""
    node = graph.resolve(dag) if graph is not None else None
    if node is not None and graph is not None:
        return node, graph.partition_key(node, partition)
    try:
        plain = NodeId.parse(dag) if "/" in dag else NodeId(DEFAULT_INSTANCE, dag)
    except ValueError as exc:
        fail(f"{dag!r}: {exc}")
    return plain, airflow_partition_key(partition, None)
