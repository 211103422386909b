"""``coordinator import-dags``: convert a DAGs folder's ExternalTaskSensors, markers, triggers and asset schedules.

Rules:
1. The folder is loaded by Airflow's own loader through :mod:`coordinator.airflow_import`, imported here lazily:
   every other command works without Airflow; without it this one exits 2 saying where to run it.
2. The translation is :func:`coordinator.core.importer.translate.translate` (pure); this module reads, writes, prints.
3. The document goes to stdout, or to ``--output``. An existing ``--output`` is validated first (invalid: every
   problem, exit 2, nothing written), merged (:mod:`coordinator.core.importer.merge`), and what changed is printed with
   ``coordinator diff``'s own text; the file is written only when the result validates.
4. The report (stderr) lists sensor bugs, what cannot be expressed and notes, each ``file:line: dag.task: ...``, and
   files Airflow could not import; ``--report FILE`` writes the same as JSON. Exit 0; with ``--strict`` exit 1 when
   a bug, something inexpressible or an import error was found, so CI can require a clean conversion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, app, fail
from coordinator.cli.diff_cmds import to_text
from coordinator.core.graph_diff import Baseline, diff_graphs
from coordinator.core.importer.facts import FindingKind
from coordinator.core.importer.merge import merge
from coordinator.core.importer.translate import ImportResult, dump, translate
from coordinator.core.model import DEFAULT_INSTANCE, NAME_RE
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import ConfigError, SpecError
from coordinator.spec_file import load_spec, read_spec_text

if TYPE_CHECKING:  # the adapter is imported inside the command only (rule 1)
    from coordinator.airflow_import import LoadedFolder

SECTIONS = (
    (FindingKind.BUG, "sensor bugs"),
    (FindingKind.INEXPRESSIBLE, "cannot express (no edge written)"),
    (FindingKind.NOTE, "notes"),
)


def _problems(exc: SpecError, what: str) -> None:
    for problem in exc.problems:
        typer.echo(problem, err=True)
    typer.echo(what, err=True)
    raise typer.Exit(EXIT_INVALID) from None


def report_lines(result: ImportResult, import_errors: tuple[tuple[str, str], ...]) -> list[str]:
    """The report printed on stderr (rule 4)."""
    lines: list[str] = []
    for kind, title in SECTIONS:
        found = result.of(kind)
        if found:
            lines.append(f"{title} ({len(found)}):")
            lines += [f"  {finding}" for finding in found]
    if import_errors:
        lines.append(f"files Airflow could not import ({len(import_errors)}): their DAGs are missing from the file")
        lines += [f"  {name}: {error}" for name, error in import_errors]
    return lines


def report_json(result: ImportResult, loaded: LoadedFolder) -> dict[str, Any]:
    """The findings as JSON (``--report``): one object per finding, kinds as in the text report."""
    return {
        "airflow": loaded.airflow_version,
        "dags": result.dag_count,
        "edges": result.edge_count,
        "findings": [
            {
                "kind": str(f.kind),
                "file": f.origin.file,
                "line": f.origin.line,
                "subject": f.subject,
                "message": f.message,
            }
            for f in result.findings
        ],
        "import_errors": [{"file": name, "error": error} for name, error in loaded.import_errors],
    }


@app.command("import-dags")
def import_dags(
    folder: Annotated[Path, typer.Argument(help="the DAGs folder (or one DAG file) to convert", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="write here (an existing file is merged; the diff is shown) [stdout]"),
    ] = None,
    instance: Annotated[
        str, typer.Option("--instance", help="the Airflow instance these DAGs live in (qualifies every DAG)")
    ] = DEFAULT_INSTANCE,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit 1 when something cannot be expressed, a sensor bug or import error")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="also write the findings as JSON here (for CI and review tools)")
    ] = None,
) -> None:
    """Write a dependencies.json from a DAGs folder's ExternalTaskSensors, markers, triggers and asset schedules."""
    if not NAME_RE.match(instance):
        fail(f"--instance {instance!r}: invalid instance name — use letters, digits, '_', '.', '-'")
    old = None
    if output is not None and output.exists():
        try:
            old = load_spec(output)
        except SpecError as exc:
            _problems(exc, f"{output} is not a valid dependencies file: fix it or choose another --output")
    from coordinator.airflow_import import load_folder  # rule 1: Airflow only for this command

    try:
        loaded = load_folder(folder)
    except ConfigError as exc:
        fail(str(exc))
    result = translate(loaded.dags, loaded.links, instance)
    document = result.document
    if old is not None and output is not None:
        document = merge(json.loads(read_spec_text(output)), document)
    text = dump(document)
    target = str(output) if output is not None else "stdout"
    try:
        graph = parse_spec(text, target)
    except SpecError as exc:  # pragma: no cover - translate validates; a merge with hand-written edges may not
        _problems(exc, "the merged file does not validate; nothing was written")
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"{output}: cannot write the file: {exc.strerror or exc} — check the directory exists and is writable")
    typer.echo(
        f"import-dags: {result.dag_count} DAGs, {result.edge_count} edges from {folder} (Airflow "
        f"{loaded.airflow_version}) -> {target}; the file has {len(graph.dags)} DAGs, {graph.edge_count} edges",
        err=True,
    )
    if old is not None:
        for line in to_text(diff_graphs(Baseline.from_graph(old), graph)):
            typer.echo(line, err=True)
    for line in report_lines(result, loaded.import_errors):
        typer.echo(line, err=True)
    if report is not None:
        try:
            report.write_text(json.dumps(report_json(result, loaded), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            fail(f"{report}: cannot write the report: {exc.strerror or exc} — check the directory exists")
    problems = len(result.of(FindingKind.BUG)) + len(result.of(FindingKind.INEXPRESSIBLE)) + len(loaded.import_errors)
    if strict and problems:
        typer.echo(f"--strict: {problems} problem(s) above", err=True)
        raise typer.Exit(EXIT_FAILURE)
