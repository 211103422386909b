"""Commands about the dependencies file: ``validate``, ``schema``, ``graph`` and ``inputs``.

Rules:
1. The file is read through :func:`load_spec` only, so these commands judge it exactly as the watcher will.
2. An invalid or unreadable file prints every problem on stderr, one per line, and exits 2; never a traceback.
3. Machine-readable output (schema, mermaid, dot, JSON) is written verbatim with ``typer.echo``: rich would highlight
   or wrap it.
4. None of them needs etcd: they read the file alone (``inputs`` answers "what does this run wait for?" from it).
5. ``validate`` also prints the warnings of :mod:`coordinator.core.spec_warnings` about a valid file on stderr, one
   line each; they never change the exit code.
"""

from __future__ import annotations

import difflib
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from coordinator.cli.app import EXIT_INVALID, DepsOpt, app, build_settings, fail
from coordinator.core.graph import Graph
from coordinator.core.inputs import OffGrid, RequiredInput, required_inputs
from coordinator.core.model import NodeId, canonical_partition
from coordinator.core.spec_json import decode
from coordinator.core.spec_render import GraphFormat, render
from coordinator.core.spec_schema import schema_text
from coordinator.core.spec_warnings import spec_warnings
from coordinator.errors import SpecError
from coordinator.spec_file import load_spec, read_spec_text

#: Roots named in the summary line; a wide graph would otherwise print a paragraph.
SUMMARY_ROOTS = 5

PathArg = Annotated[
    Path | None,
    typer.Argument(
        help="dependencies file [default: --deps, env COORDINATOR_DEPS, ./dependencies.json]", show_default=False
    ),
]
FormatOpt = Annotated[GraphFormat, typer.Option("--format", "-f", help="output format")]


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
    typer.Argument(
        help="dependencies files [default: --deps, env COORDINATOR_DEPS, ./dependencies.json]", show_default=False
    ),
]


@app.command()
def validate(paths: PathsArg = None, deps: DepsOpt = None) -> None:
    """Check the dependencies file(s); print a summary each (exit 0) or every problem found (exit 2)."""
    # Several paths: a pre-commit hook (.pre-commit-hooks.yaml) passes every matching file at once.
    invalid = 0
    targets: list[Path | None] = list(paths) if paths else [None]
    for path in targets:
        try:
            loaded = _load(path, deps)
        except typer.Exit:
            invalid += 1
            continue
        typer.echo(summary(loaded))
        # The file just loaded, so reading and decoding it again cannot fail.
        for warning in spec_warnings(loaded, decode(read_spec_text(loaded.source).removeprefix("\ufeff"))):
            typer.echo(warning.format(loaded.source), err=True)
    if invalid:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the dependencies file."""
    typer.echo(schema_text(), nl=False)


@app.command()
def graph(path: PathArg = None, deps: DepsOpt = None, fmt: FormatOpt = GraphFormat.TEXT) -> None:
    """Draw the dependency graph as text, a Mermaid flowchart or Graphviz dot."""
    typer.echo(render(_load(path, deps), fmt), nl=False)


class InputsFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def inputs(
    dag: Annotated[str, typer.Argument(help="dag id, or instance/dag_id")],
    partition: Annotated[
        str, typer.Option("--partition", "-p", help="logical date, e.g. 2026-01-01T05:00:00Z or 2026-01-01")
    ],
    deps: DepsOpt = None,
    fmt: Annotated[InputsFormat, typer.Option("--format", "-f", help="output format")] = InputsFormat.TEXT,
) -> None:
    """Print the exact upstream partitions one run of DAG waits for (no etcd needed)."""
    graph = _load(None, deps)
    node = graph.resolve(dag)
    if node is None:
        fail(_unknown_dag(graph, dag))
    try:
        canonical = canonical_partition(partition)
    except ValueError as exc:
        fail(f"--partition: {exc}")
    try:
        found = required_inputs(graph, node, canonical)
    except OffGrid as exc:
        fail(f"--partition: {exc}")
    if fmt is InputsFormat.JSON:
        typer.echo(json.dumps(_inputs_json(node, canonical, found)))
        return
    for line in _inputs_text(graph, node, canonical, found):
        typer.echo(line)


def _unknown_dag(graph: Graph, ref: str) -> str:
    names = sorted({str(n) for n in graph.dags} | {n.qualified for n in graph.dags})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    suggestion = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(sorted(map(str, graph.dags)))}"
    return f"{ref!r} is not a DAG in {graph.source} ({suggestion})"


def _inputs_json(node: NodeId, partition: str, found: tuple[RequiredInput, ...]) -> dict[str, object]:
    return {
        "dag": node.dag_id,
        "partition": partition,
        "upstreams": [
            {
                "dag": item.dag.dag_id,
                "instance": item.dag.instance,
                "task": item.task,
                "condition": item.condition,
                "partitions": list(item.partitions),
            }
            for item in found
        ],
    }


def _inputs_text(graph: Graph, node: NodeId, partition: str, found: tuple[RequiredInput, ...]) -> list[str]:
    if not found:
        spec = graph.dags[node]
        why = "a failure handler: it runs when a source fails" if spec.is_failure_handler else "a root"
        return [f"{node} {partition} waits for nothing ({node} is {why})"]
    lines = [f"{node} {partition} waits for:"]
    for item in found:
        name = f"{item.dag} task {item.task}" if item.task is not None else str(item.dag)
        if item.dag == node:
            name += " (itself: its own earlier partition)"
        condition = "success or failed" if item.condition == "finished" else "success"
        if item.partitions:
            lines.append(f"  {name} [{condition}]: {', '.join(item.partitions)}")
        else:
            lines.append(f"  {name} [{condition}]: nothing maps to this partition; it would wait forever")
    return lines
