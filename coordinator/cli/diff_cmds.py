"""``coordinator diff``: what a change of ``dependencies.json`` will do, before it is merged or deployed.

Rules:
- **Validated first.** The new file is read through :func:`load_spec`, like ``validate``: an invalid file prints every
  problem and exits 2.
- **The adopted baseline.** The baseline is the graph the leading watcher adopted (``{prefix}/config/graph``, read once,
  never written), or another file with ``--against``. etcd unreachable exits 1; a graph value that cannot be read exits
  1 too (it is not "nothing adopted": ``core/adoption.py``'s **Unreadable is no first adoption**).
- **Pure comparison.** The comparison itself is :func:`coordinator.core.graph_diff.diff_graphs` (pure); this module only
  gathers facts and prints. ``--format json`` is stable for CI; ``--exit-code`` exits 1 when anything changed, like
  ``git diff``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from coordinator.cli.app import (
    EXIT_FAILURE,
    EXIT_INVALID,
    SETUP,
    DepsOpt,
    EtcdOpt,
    PrefixOpt,
    app,
    build_settings,
    fail,
    run_async,
)
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import Baseline, ChangeKind, DagChange, GraphDiff, diff_graphs, store_activity
from coordinator.core.model import KeyLayout
from coordinator.core.view import View
from coordinator.errors import ConfigError, SpecError
from coordinator.informer.read_model import VIEW, load
from coordinator.runtime.settings import EtcdSettings
from coordinator.runtime.spec_file import load_spec

PathArg = Annotated[
    Path | None, typer.Argument(metavar="FILE", help="the changed dependencies file", show_default="the --deps file")
]


def _load(path: Path, role: str) -> Graph:
    try:
        return load_spec(path)
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        typer.echo(f"{role} is not a valid dependencies file", err=True)
        raise typer.Exit(EXIT_INVALID) from None


async def read_adopted(etcd: EtcdSettings, keys: KeyLayout) -> View:
    """The view of everything under the prefix (one load, no other index): the activation and the facts the
    warnings need."""
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

    async with await EtcdStore.connect(etcd) as store:
        return (await load(store, keys, VIEW)).view


def diff_against_store(new: Graph, view: View) -> GraphDiff:
    """The diff of ``new`` against the graph adopted in ``view`` (raise ValueError when its value is unreadable)."""
    problem = view.problems.get(view.graph_key)
    if problem is not None:
        raise ValueError(f"{view.graph_key}: {problem}")
    label = f"the adopted graph ({view.graph_key}" + (
        f", revision {view.activation_rev})" if view.activation is not None else ", never adopted)"
    )
    baseline = Baseline.from_activation(view.activation, label, view.activation_rev)
    removed = set(baseline.dags) - set(new.dags)
    return diff_graphs(baseline, new, store_activity(view, removed))


def to_json(diff: GraphDiff) -> dict[str, Any]:
    """The stable JSON form (documented in docs/howto/change-the-graph.md)."""
    return {
        "old": diff.old_label,
        "new": diff.new_label,
        "first_adoption": diff.first_adoption,
        "changed": diff.changed,
        "dags": [
            {
                "dag": change.node.qualified,
                "change": str(change.kind),
                "edges_known": change.edges_known,
                "edges": [
                    {"change": str(e.kind), "kind": str(e.edge), "from": e.source.qualified, "to": e.target.qualified}
                    for e in change.edges
                ],
                "details": list(change.details),
                "applies_from": change.applies_from,
                "needs_backfill": change.needs_backfill,
                "old_since_revision": change.old_since,
            }
            for change in diff.changes
        ],
        "backfill": [n.qualified for n in diff.backfill],
        "new_instances": list(diff.instances_added),
        "warnings": list(diff.warnings),
    }


def to_text(diff: GraphDiff) -> list[str]:
    """Lines for a human reviewer."""
    head = f"{diff.new_label} against {diff.old_label}"
    if not diff.changed:
        return [f"{head}: no changes"]
    lines = [f"{head}:"]
    if diff.first_adoption:
        lines.append("  nothing was ever adopted under this prefix: the next watcher's first pass adopts this file")
    for change in diff.changes:
        lines.append(f"  {change.kind:<8} {change.node}{_since(change)}")
        lines += [f"             {edge.describe()}" for edge in change.edges]
        lines += [f"             {detail}" for detail in change.details]
        if not change.edges_known:
            lines.append("             sources changed (the adopted value predates edge recording: edges unknown)")
        lines.append(f"             applies: {change.applies_from}")
    if diff.backfill:
        lines.append("history needs a backfill after the adoption (only if you want it processed):")
        lines += [f"  coordinator backfill {node} --from YYYY-MM-DD --to YYYY-MM-DD" for node in diff.backfill]
    if diff.warnings:
        lines.append("warnings:")
        lines += [f"  - {warning}" for warning in diff.warnings]
    counts = ", ".join(f"{len(diff.of(kind))} {kind}" for kind in ChangeKind if diff.of(kind))
    lines.append(f"{len(diff.changes)} DAG(s) differ: {counts}")
    return lines


def _since(change: DagChange) -> str:
    return f" (old definition active since revision {change.old_since})" if change.old_since is not None else ""


@app.command(rich_help_panel=SETUP)
def diff(
    path: PathArg = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            metavar="FILE",
            show_default="the graph adopted in etcd",
            help="compare with this dependencies file",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")] = "text",
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="exit 1 when the graphs differ (for CI), 0 when they do not")
    ] = False,
    deps: DepsOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Show what a dependencies.json change does: DAGs and edges added, removed or changed, from when, backfills.

    Exit 2 when a file is invalid, 1 when etcd cannot be read (or, with --exit-code, when the graphs differ).
    """
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    target = path if path is not None else build_settings(deps=deps).deps
    new = _load(target, str(target))
    if against is not None:
        result = diff_graphs(Baseline.from_graph(_load(against, str(against))), new)
    else:
        settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
        try:
            etcd_settings = settings.etcd()
        except ConfigError as exc:
            fail(str(exc))
        view = run_async(lambda: read_adopted(etcd_settings, settings.keys))
        try:
            result = diff_against_store(new, view)
        except ValueError as exc:
            fail(f"cannot compare with the adopted graph: {exc}", EXIT_FAILURE)
    if fmt == "json":
        typer.echo(json.dumps(to_json(result), indent=2))
    else:
        for line in to_text(result):
            typer.echo(line)
    if exit_code and result.changed:
        raise typer.Exit(EXIT_FAILURE)
