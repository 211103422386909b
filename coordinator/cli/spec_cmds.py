"""Commands about the dependencies file: ``validate``, ``schema``, ``graph`` and ``inputs``.

Rules:
- **Read as the watcher reads it.** The file is read through :func:`load_spec` only, so these commands judge it exactly
  as the watcher will.
- **Every problem, exit 2.** An invalid or unreadable file prints every problem on stderr, one per line, and exits 2;
  never a traceback.
- **Verbatim machine output.** Machine-readable output (schema, mermaid, dot, JSON) is written verbatim with
  ``typer.echo``: rich would highlight or wrap it.
- **Warnings exit 0.** ``validate`` prints the warnings of a valid file (``coordinator.core.spec.near_misses``) on
  stderr and still exits 0: the watcher adopts such a file as written.
- **Asking Airflow.** ``validate --airflow`` also asks each instance's Airflow (the watcher's settings:
  COORDINATOR_AIRFLOW_URL or the instances file) which DAGs it has: a DAG of the graph that it lacks is an error (exit
  1, with "did you mean" against Airflow's DAG ids), a paused one a warning; a keyed dependent (a ``key_format`` or
  ``segments``) whose Airflow DAG refuses a ``partition_key`` is an error (exit 1) naming the schedule it needs, one on
  a custom timetable that may refuse it a warning (``coordinator.core.key_acceptance``); an instance without settings
  exits 2 (configuration), one that cannot be asked exits 1. An instance the file declares ``"kind": "external"`` has no
  Airflow: it is named on stdout and never asked (``coordinator.core.spec.instances``).
- **No etcd.** None of them needs etcd; ``inputs`` answers "what does this run wait for?" from the file alone.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from coordinator.airflow.client import AirflowClient, ApiVersion
from coordinator.airflow.key_check import refused_keys
from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, SETUP, DepsOpt, app, build_settings, fail
from coordinator.core.assets import TargetAssets, route_warnings
from coordinator.core.dag_presence import DagPresence, dag_presence
from coordinator.core.duration import format_shift
from coordinator.core.graph import Graph
from coordinator.core.inputs import InputGroup, NotAPartition, RequiredInput, grouped_inputs, required_inputs
from coordinator.core.key_acceptance import KeyRefusal, keyed_dependents
from coordinator.core.model import NodeId, any_partition
from coordinator.core.spec.near_misses import spec_warnings
from coordinator.core.spec.render import GraphFormat, render
from coordinator.core.spec.schema import schema_text
from coordinator.errors import CoordinatorError, SpecError
from coordinator.runtime.settings import InstanceSettings, Settings
from coordinator.runtime.spec_file import load_spec

#: Roots named in the summary line; a wide graph would otherwise print a paragraph.
SUMMARY_ROOTS = 5

PathArg = Annotated[
    Path | None,
    typer.Argument(metavar="FILE", help="dependencies file", show_default="the --deps file"),
]
FormatOpt = Annotated[GraphFormat, typer.Option("--format", "-f", metavar="text|mermaid|dot", help="output format")]


def _load(path: Path | None, deps: Path | None) -> Graph:
    """The validated graph, or every problem on stderr and exit 2."""
    target = path if path is not None else build_settings(deps=deps).deps
    try:
        return load_spec(target)
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        if len(exc.problems) > 1:
            typer.echo(f"{len(exc.problems)} problems", err=True)
        raise typer.Exit(EXIT_INVALID) from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(graph: Graph) -> str:
    """``deps.json: valid — 7 DAGs, 9 edges, 1 root (01_pipeline), 1 instance``."""
    failure_edges = sum(len(spec.on_failure_of) for spec in graph.dags.values())
    edges = _count(graph.edge_count, "edge") + (f" ({failure_edges} on failure)" if failure_edges else "")
    roots = [str(node) for node in graph.roots]
    shown = ", ".join(roots[:SUMMARY_ROOTS]) + (", ..." if len(roots) > SUMMARY_ROOTS else "")
    instances = sorted({node.instance for node in graph.dags})
    parts = [
        _count(len(graph.dags), "DAG"),
        edges,
        _count(len(roots), "root") + (f" ({shown})" if roots else ""),
        _count(len(instances), "instance") + (f" ({', '.join(instances)})" if len(instances) > 1 else ""),
    ]
    return f"{graph.source}: valid — {', '.join(parts)}"


PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(metavar="FILE", help="dependencies files (one or more)", show_default="the --deps file"),
]


AirflowFlag = Annotated[
    bool,
    typer.Option(
        "--airflow",
        help="also check that every DAG exists in its instance's Airflow and that each one triggered with a "
        "partition_key (a key_format or segments) is partitioned there (REST; the watcher's settings: "
        "COORDINATOR_AIRFLOW_URL/_USERNAME/_PASSWORD(_FILE) or COORDINATOR_INSTANCES_FILE): exit 1 when a DAG is "
        "missing or refuses its partition keys or an Airflow cannot be asked, 2 when an instance has no Airflow "
        "configured",
    ),
]


@app.command(rich_help_panel=SETUP)
def validate(paths: PathsArg = None, deps: DepsOpt = None, airflow: AirflowFlag = False) -> None:
    """Check the dependencies file(s); print a summary each and any warnings (exit 0) or every problem found (exit 2).

    With --airflow, also check each DAG exists in its Airflow and accepts the partition keys it is triggered with: exit
    1 when one does not or an Airflow cannot be asked, 2 when an instance has no Airflow configured (an invalid file: 2
    as well).
    """
    # Several paths: a pre-commit hook (.pre-commit-hooks.yaml) passes every matching file at once.
    codes = [0]
    targets: list[Path | None] = list(paths) if paths else [None]
    for path in targets:
        try:
            graph = _load(path, deps)
        except typer.Exit:
            codes.append(EXIT_INVALID)
            continue
        typer.echo(summary(graph))
        for warning in spec_warnings(graph):
            typer.echo(warning.format(graph.source), err=True)
        if airflow:
            codes.append(_check_airflow(graph, build_settings(deps=deps)))
    if max(codes):
        raise typer.Exit(EXIT_INVALID if EXIT_INVALID in codes else max(codes))


def _where(name: str, url: str) -> str:
    """``instance default (http://host:8080)``: scheme, host and port only, never credentials in a URL."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"instance {name} ({parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path})"


async def _airflow_dags(
    name: str, instance: InstanceSettings, graph: Graph
) -> tuple[str, dict[str, bool], tuple[KeyRefusal, ...]]:
    """Airflow's version, every DAG id it lists with its paused flag, and the instance's keyed dependents it refuses
    (or may refuse) a ``partition_key`` (``coordinator.airflow.key_check``)."""
    keyed = [k for k in keyed_dependents(graph) if k.node.instance == name]
    async with AirflowClient(instance, name=name) as client:
        version = await client.version()
        listed = await client.dag_list()
        refused = await refused_keys(client, keyed, listed, version=version, deps=graph.source)
        return version, {d.dag_id: d.is_paused for d in listed}, refused


def _check_airflow(graph: Graph, settings: Settings) -> int:
    """**Asking Airflow** for one file: one line per instance on stdout when all is well, the problems on stderr; the
    exit code."""
    # The client logs failed requests for the watcher's log; here the command reports them itself, once.
    logging.getLogger("coordinator").addHandler(logging.NullHandler())
    configured = settings.instances()
    code = 0
    for name in sorted({node.instance for node in graph.dags}):
        if not graph.has_airflow(name):
            count = sum(node.instance == name for node in graph.dags)
            typer.echo(f"instance {name}: no Airflow (\"kind\": \"external\"): {_count(count, 'DAG')} not asked; "
                       "their run states come from the OpenLineage receiver or `coordinator mark`")  # fmt: skip
            continue
        instance = configured.get(name)
        if instance is None:
            how = "COORDINATOR_AIRFLOW_URL" if name == "default" else "an entry in the instances file"
            typer.echo(
                f"{graph.source}: instance {name}: error: no Airflow is configured for it — set {how} "
                "(COORDINATOR_INSTANCES_FILE maps every instance name to its URL and credentials); if it has no "
                f'Airflow (its DAGs are OpenLineage jobs or written by `coordinator mark`), declare "{name}": '
                f'{{"kind": "external"}} under "instances" in {graph.source}',
                err=True,
            )
            code = max(code, EXIT_INVALID)
            continue
        where = _where(name, instance.url)
        try:
            version, listed, refused = asyncio.run(_airflow_dags(name, instance, graph))
        except CoordinatorError as exc:
            typer.echo(f"{graph.source}: {where}: error: cannot list its DAGs: {exc}", err=True)
            code = max(code, EXIT_FAILURE)
            continue
        presence = dag_presence(graph, name, listed)
        _print_presence(graph.source, where, version, presence)
        for refusal in refused:
            level = "error" if refusal.certain else "warning"
            typer.echo(f"{graph.source}: {where}: {level}: {refusal.line()}", err=True)
        if not presence.ok or any(r.certain for r in refused):
            code = max(code, EXIT_FAILURE)
    return max(code, _check_routes(graph, configured))


async def target_assets(name: str, instance: InstanceSettings) -> TargetAssets:
    """What one route target holds: its assets with their consumer DAGs, and whether it is an Airflow 2."""
    async with AirflowClient(instance, name=name) as client:
        listed = await client.assets()
        airflow2 = await client.api_version() is ApiVersion.V1
    return TargetAssets(name, tuple((a.uri, a.name, a.consumers) for a in listed), airflow2)


def _check_routes(graph: Graph, configured: Mapping[str, InstanceSettings]) -> int:
    """Semantics `asset-routes` against each route's targets: warnings (exit 0), or exit 1 when a target cannot be
    read."""
    code = 0
    seen: dict[str, TargetAssets] = {}
    for name in sorted({t for route in graph.asset_routes for t in route.targets}):
        instance = configured.get(name)
        if instance is None:
            typer.echo(f"{graph.source}: instance {name}: error: assets are routed to it but no Airflow is "
                       "configured for it (an entry in COORDINATOR_INSTANCES_FILE)", err=True)  # fmt: skip
            code = max(code, EXIT_INVALID)
            continue
        try:
            seen[name] = asyncio.run(target_assets(name, instance))
        except CoordinatorError as exc:
            typer.echo(f"{graph.source}: {_where(name, instance.url)}: error: cannot list its assets: {exc}", err=True)
            code = max(code, EXIT_FAILURE)
    for warning in route_warnings(graph.asset_routes, seen):
        typer.echo(f"{graph.source}: {warning}", err=True)
    return code


def _print_presence(source: str, where: str, version: str, presence: DagPresence) -> None:
    for missing in presence.missing:
        close = " or ".join(repr(dag_id) for dag_id in missing.did_you_mean[:3])
        hint = (
            f"did you mean {close}?"
            if close
            else "deploy its DAG file to that Airflow's dags folder, or correct its name in the dependencies file"
        )
        typer.echo(
            f"{source}: {where}: error: DAG {missing.node.dag_id!r} does not exist in that Airflow — {hint}", err=True
        )
    for node in presence.paused:
        typer.echo(
            f"{source}: {where}: warning: DAG {node.dag_id!r} is paused — runs the coordinator starts wait in "
            f"'queued' until it is unpaused (airflow dags unpause {node.dag_id})",
            err=True,
        )
    found = len(presence.checked) - len(presence.missing)
    typer.echo(f"{where}: Airflow {version}: {found} of {len(presence.checked)} DAGs exist")


@app.command(rich_help_panel=SETUP)
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the dependencies file."""
    typer.echo(schema_text(), nl=False)


@app.command(rich_help_panel=SETUP)
def graph(path: PathArg = None, deps: DepsOpt = None, fmt: FormatOpt = GraphFormat.TEXT) -> None:
    """Draw the dependency graph as text, a Mermaid flowchart or Graphviz dot."""
    typer.echo(render(_load(path, deps), fmt), nl=False)


class InputsFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command(rich_help_panel=SETUP)
def inputs(
    dag: Annotated[str, typer.Argument(metavar="DAG", help="dag id, or instance/dag_id")],
    partition: Annotated[
        str,
        typer.Option(
            "--partition",
            "-p",
            metavar="PARTITION",
            help="logical date, e.g. 2026-01-01T05:00:00Z or 2026-01-01; a segment, e.g. eu; or both: 2026-01-01~eu",
        ),
    ],
    deps: DepsOpt = None,
    fmt: Annotated[
        InputsFormat, typer.Option("--format", "-f", metavar="text|json", help="output format")
    ] = InputsFormat.TEXT,
) -> None:
    """Print the exact upstream partitions one run of DAG waits for (no etcd needed)."""
    graph = _load(None, deps)
    node = graph.resolve(dag)
    if node is None:
        fail(_unknown_dag(graph, dag))
    try:
        canonical = any_partition(partition)
    except ValueError as exc:
        fail(f"--partition: {exc}")
    try:
        found = required_inputs(graph, node, canonical)
    except NotAPartition as exc:
        fail(f"--partition: {exc}")
    required, groups = grouped_inputs(graph, node, found, canonical)
    if fmt is InputsFormat.JSON:
        typer.echo(json.dumps(_inputs_json(node, canonical, required, groups)))
        return
    for line in _inputs_text(graph, node, canonical, required, groups):
        typer.echo(line)


def _unknown_dag(graph: Graph, ref: str) -> str:
    names = sorted({str(n) for n in graph.dags} | {n.qualified for n in graph.dags})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    suggestion = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(sorted(map(str, graph.dags)))}"
    return f"{ref!r} is not a DAG in {graph.source} ({suggestion})"


def _input_json(item: RequiredInput) -> dict[str, object]:
    body: dict[str, object] = {
        "dag": item.dag.dag_id,
        "instance": item.dag.instance,
        "task": item.task,
        "condition": item.condition,
        "partitions": list(item.partitions),
    }
    if item.count is not None:  # only for an edge that counts its partitions: other outputs stay as they were
        body["at_least"] = _count_need(item)
        body["count"] = item.count.describe(len(item.partitions))
    return body


def _count_need(item: RequiredInput) -> int | None:
    """How many of the input's partitions are enough (None: all), before any cutoff."""
    if item.count is None:
        return None
    return min(item.count.at_least or len(item.partitions), len(item.partitions))


def _inputs_json(
    node: NodeId, partition: str, found: tuple[RequiredInput, ...], groups: tuple[InputGroup, ...]
) -> dict[str, object]:
    """``upstreams`` are the required inputs; ``groups`` (only for a DAG that has condition groups) each rule with its
    members."""
    body: dict[str, object] = {
        "dag": node.dag_id,
        "partition": partition,
        "upstreams": [_input_json(item) for item in found],
    }
    if groups:
        body["groups"] = [
            {
                "rule": str(g.group.rule),
                "need": g.group.need,
                "text": g.rule,
                "cutoff": None if g.group.cutoff is None else format_shift(g.group.cutoff),
                "cutoff_at": g.cutoff_at,
                "min": g.group.minimum if g.cutoff_at is not None else None,
                "late": str(g.group.late) if g.cutoff_at is not None else None,
                "members": [_input_json(item) for item in g.members],
            }
            for g in groups
        ]
    return body


def _input_line(node: NodeId, item: RequiredInput, indent: str) -> str:
    name = f"{item.dag} task {item.task}" if item.task is not None else str(item.dag)
    if item.dag == node:
        name += " (itself: its own earlier partition)"
    condition = "success or failed" if item.condition == "finished" else "success"
    if item.partitions and item.count is not None:
        return (
            f"{indent}{name} [{condition}], {item.count.describe(len(item.partitions))}: {', '.join(item.partitions)}"
        )
    if item.partitions:
        return f"{indent}{name} [{condition}]: {', '.join(item.partitions)}"
    return f"{indent}{name} [{condition}]: nothing maps to this partition; it would wait forever"


def _inputs_text(
    graph: Graph, node: NodeId, partition: str, found: tuple[RequiredInput, ...], groups: tuple[InputGroup, ...]
) -> list[str]:
    if not found and not groups:
        spec = graph.dags[node]
        why = (
            "a failure handler: it runs when a source fails" if spec.is_failure_handler
            else "a late handler: it runs when a source's deadline state changes" if spec.is_late_handler
            else "a root"
        )  # fmt: skip
        return [f"{node} {partition} waits for nothing ({node} is {why})"]
    lines = [f"{node} {partition} waits for:"]
    lines += [_input_line(node, item, "  ") for item in found]
    for group in groups:
        lines.append(f"  {group.rule} (satisfied by {group.satisfied_by()}):")
        lines += [_input_line(node, item, "    ") for item in group.members]
    return lines
