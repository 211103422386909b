"""Commands about the dependencies file: ``validate``, ``schema`` and ``graph``.

Rules:
1. The file is read through :func:`load_spec` only, so these commands judge it exactly as the watcher will.
2. An invalid or unreadable file prints every problem on stderr, one per line, and exits 2; never a traceback.
3. Machine-readable output (schema, mermaid, dot) is written verbatim with ``typer.echo``: rich would highlight or
   wrap it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coordinator.cli.app import EXIT_INVALID, DepsOpt, app, build_settings
from coordinator.core.graph import Graph
from coordinator.core.spec_render import GraphFormat, render
from coordinator.core.spec_schema import schema_text
from coordinator.errors import SpecError
from coordinator.spec_file import load_spec

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
            typer.echo(summary(_load(path, deps)))
        except typer.Exit:
            invalid += 1
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
