"""``coordinator import-dags``: convert a DAGs folder's ExternalTaskSensors, markers, triggers and asset schedules.

Rules:
- **Airflow in a child process.** The folder is loaded by Airflow's own loader in a child process
  (:mod:`coordinator.airflow_import.process`): the estate's own Python with ``--python``, else this one. This process
  never imports Airflow; without it there, the command exits 2 saying where to run it.
- **Pure translation.** The translation is :func:`coordinator.core.importer.translate.translate` (pure); this module
  reads, writes, prints.
- **Validated before written.** The document goes to stdout, or to ``--output``. An existing ``--output`` is validated
  first (invalid: every problem, exit 2, nothing written), merged (:mod:`coordinator.core.importer.merge`), and what
  changed is printed with ``coordinator diff``'s own text; the file is written only when the result validates.
- **The report.** The report (stderr, :mod:`coordinator.core.importer.report`): the summary line first, the files
  Airflow could not import grouped by deepest cause with a hint (:mod:`coordinator.core.importer.failures`), then sensor
  bugs, what cannot be expressed and notes, one line each ``file:line: dag.task: ...``, repeated ones folded (``xN``).
  Airflow's own output only with ``--verbose``. ``--report FILE`` writes every finding unfolded as JSON.
- **Too few loaded.** Exit 1 when fewer than ``--min-loaded`` loaded (default: no DAG, or fewer than half of the files):
  the report is printed and written, no dependencies file (nor stdout document) is, since an empty or partial graph
  would read as "no dependencies". With ``--strict`` exit 1 when a bug, something inexpressible or a failed file was
  found (the file is written), so CI can require a clean conversion.
- **Rewrite on request.** ``--rewrite`` also replaces each sensor whose edge was written with the permit's wait and
  marks its DAG ``"runs": "scheduled"`` (:mod:`coordinator.cli.import_rewrite`): a diff on stdout or ``--diff-out``,
  the DAG files edited only with ``--in-place``. stdout carries one thing: the diff there needs ``--output``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, SETUP, app, fail
from coordinator.cli.diff_cmds import to_text
from coordinator.cli.import_rewrite import RewriteOutcome, apply, rewrite_folder
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import Baseline, diff_graphs
from coordinator.core.importer.facts import Finding, FindingKind
from coordinator.core.importer.failures import (
    CauseGroup,
    FailedFile,
    airflow2_headline,
    group_failures,
    missing_module,
    verdict,
)
from coordinator.core.importer.jobs import LineageOffer
from coordinator.core.importer.merge import merge
from coordinator.core.importer.report import (
    MAX_SECTION_LINES,
    Counts,
    MinLoaded,
    clip,
    counts,
    explain_missing,
    fold,
)
from coordinator.core.importer.rewrite_plan import mark_scheduled, scheduled_notes
from coordinator.core.importer.translate import ImportResult, dump, translate
from coordinator.core.model import DEFAULT_INSTANCE, NAME_RE
from coordinator.core.spec.loader import parse_spec
from coordinator.errors import ConfigError, SpecError
from coordinator.runtime.spec_file import load_spec, read_spec_text

if TYPE_CHECKING:  # the adapter is imported inside the command only (**Airflow in a child process**)
    from coordinator.airflow_import import LoadedFolder

SECTIONS = (
    (FindingKind.BUG, "sensor bugs"),
    (FindingKind.INEXPRESSIBLE, "cannot express (no edge written)"),
    (FindingKind.NOTE, "notes"),
)


def _problems(exc: SpecError, what: str) -> NoReturn:
    for problem in exc.problems:
        typer.echo(problem, err=True)
    typer.echo(what, err=True)
    raise typer.Exit(EXIT_INVALID) from None


def report_lines(findings: tuple[Finding, ...], groups: tuple[CauseGroup, ...], names: set[str]) -> list[str]:
    """The report printed on stderr after the summary (**The report**)."""
    lines: list[str] = []
    if groups:
        failed = sum(len(g.files) for g in groups)
        lines.append(f"files Airflow could not import ({failed}), by cause: their DAGs are missing from the file")
        lines += _section(["\n".join(clip(part) for part in f"  {group}".split("\n")) for group in groups])
    for kind, title in SECTIONS:
        found = [f for f in findings if f.kind is kind]
        if found:
            folded = fold(found, names)
            shown = f"{len(found)}" if len(folded) == len(found) else f"{len(found)} on {len(folded)} lines"
            lines.append(f"{title} ({shown}):")
            lines += _section([f"  {clip(str(line))}" for line in folded])
    return lines


def _section(lines: list[str]) -> list[str]:
    """At most MAX_SECTION_LINES lines of a section, then how many more the JSON report holds
    (``core.importer.report``'s **Folded findings**)."""
    if len(lines) <= MAX_SECTION_LINES:
        return lines
    rest = len(lines) - MAX_SECTION_LINES
    return [*lines[:MAX_SECTION_LINES], f"  ... and {rest} more line(s): --report FILE writes every one"]


def report_json(
    findings: tuple[Finding, ...],
    summary: Counts,
    loaded: LoadedFolder,
    groups: tuple[CauseGroup, ...],
    failure: str | None,
    offers: tuple[LineageOffer, ...] = (),
) -> dict[str, Any]:
    """The report as JSON (``--report``): the summary, every finding unfolded, the failed files and their causes, and
    the OpenLineage nodes offered for sensors on other systems' jobs (to confirm before adding them)."""
    return {
        "openlineage_offers": [offer.to_json() for offer in offers],
        "airflow": loaded.airflow_version,
        "python": loaded.python,
        "written": failure is None,
        "failure": failure,
        "summary": dataclasses.asdict(summary),
        "dags": summary.dags,
        "edges": summary.edges,
        "findings": [
            {
                "kind": str(f.kind),
                "file": f.origin.file,
                "line": f.origin.line,
                "subject": f.subject,
                "message": f.message,
            }
            for f in findings
        ],
        "import_errors": [{"file": f.file, "line": f.line, "error": f.cause} for f in loaded.failed],
        "causes": [{"cause": g.cause, "count": len(g.files), "files": list(g.files), "hint": g.hint} for g in groups],
    }


FolderArg = Annotated[
    Path,
    typer.Argument(metavar="FOLDER", help="the DAGs folder (or one DAG file) to convert", show_default=False),
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        show_default="standard output",
        help="write here (an existing file is merged; the diff is shown)",
    ),
]
InstanceOpt = Annotated[
    str,
    typer.Option(
        "--instance", metavar="INSTANCE", help="the Airflow instance these DAGs live in (qualifies every DAG)"
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="exit 1 when something cannot be expressed, a sensor has a bug or a file fails to import"
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="FILE",
        show_default="none",
        help="also write the findings as JSON here (for CI and review tools)",
    ),
]
PythonOpt = Annotated[
    Path | None,
    typer.Option(
        "--python",
        metavar="PYTHON",
        show_default="this Python",
        help="load the folder with this interpreter (the estate's: a venv's, an image's)",
    ),
]
MinLoadedOpt = Annotated[
    str,
    typer.Option(
        "--min-loaded",
        metavar="N|P%|N,P%",
        help="exit 1, writing no file, below N DAGs loaded or P% of files imported, or either of N,P%",
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", help="show Airflow's own output while it loads")]
RewriteOpt = Annotated[
    bool,
    typer.Option(
        "--rewrite",
        help="also rewrite the DAG files: each sensor whose edge was written becomes WaitForPermitOperator (its DAG "
        '"runs": "scheduled", its schedule kept); a unified diff, on stdout or --diff-out',
    ),
]
DiffOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--diff-out",
        metavar="FILE",
        show_default="standard output",
        help="with --rewrite: write the diff of the DAG files here (apply it with patch -p1 -i FILE)",
    ),
]
InPlaceOpt = Annotated[
    bool,
    typer.Option("--in-place", help="with --rewrite: also edit the DAG files (after the dependencies file is written)"),
]
RelayEdgesOpt = Annotated[
    bool,
    typer.Option(
        "--relay-edges",
        help="also write edges for the markers of relay DAGs (all tasks markers), which make every marked DAG "
        "wait for the relay's runs",
    ),
]


@app.command("import-dags", rich_help_panel=SETUP)
def import_dags(
    folder: FolderArg,
    output: OutputOpt = None,
    instance: InstanceOpt = DEFAULT_INSTANCE,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    python: PythonOpt = None,
    min_loaded: MinLoadedOpt = MinLoaded.DEFAULT,
    verbose: VerboseOpt = False,
    relay_edges: RelayEdgesOpt = False,
    rewrite: RewriteOpt = False,
    diff_out: DiffOutOpt = None,
    in_place: InPlaceOpt = False,
) -> None:
    """Write a dependencies.json from a DAGs folder's ExternalTaskSensors, markers, triggers and asset schedules.

    Exit 1 when too little loaded (--min-loaded; nothing is written) or, with --strict, when a problem was found (the
    file is written); 2 for bad options, an invalid existing --output or no Airflow to load the folder with.
    """
    threshold = _checked_options(instance, min_loaded, folder, python)
    _checked_rewrite(rewrite, diff_out, in_place, output)
    old = _existing_output(output)
    # **Airflow in a child process**: no Airflow in this process.
    from coordinator.airflow_import.process import run_loader

    try:
        loaded = run_loader(folder, python or Path(sys.executable), verbose=verbose)
    except ConfigError as exc:
        fail(str(exc))
    conversion = _convert(folder, loaded, instance, relay_edges, threshold)
    outcome = None
    if rewrite and conversion.failure is None:
        outcome, conversion = _rewritten(folder, conversion)
    _print_outcome(conversion, folder, old, output)
    if outcome is not None:
        _finish_rewrite(outcome, diff_out, in_place)
    if report is not None:
        _write_report(report, conversion, outcome)
    if conversion.failure is not None:
        if not conversion.groups and loaded.files == 0:
            typer.echo(f"{folder}: Airflow found no DAG file there (a file must mention 'airflow' and 'dag')", err=True)
        raise typer.Exit(EXIT_FAILURE)
    result = conversion.result
    problems = len(result.of(FindingKind.BUG)) + len(result.of(FindingKind.INEXPRESSIBLE)) + len(loaded.failed)
    if outcome is not None:  # a sensor the rewrite could not replace although its edge was written
        problems += sum(1 for k in outcome.kept if not k.reported)
    if strict and problems:
        typer.echo(f"--strict: {problems} problem(s) above", err=True)
        raise typer.Exit(EXIT_FAILURE)


def _checked_options(instance: str, min_loaded: str, folder: Path, python: Path | None) -> MinLoaded:
    """The options checked before anything is loaded (exit 2 with the fix); the parsed ``--min-loaded``."""
    if not NAME_RE.match(instance):
        fail(f"--instance {instance!r}: invalid instance name — use letters, digits, '_', '.', '-'")
    try:
        threshold = MinLoaded.parse(min_loaded)
    except ValueError as exc:
        fail(f"--min-loaded: {exc}")
    if not folder.exists():
        fail(f"{folder}: no such DAGs folder — pass the folder your DAG files are in")
    if python is not None and not python.is_file():
        fail(f"--python {python}: no such file — give the path of the estate's python (e.g. /opt/venv/bin/python)")
    return threshold


def _checked_rewrite(rewrite: bool, diff_out: Path | None, in_place: bool, output: Path | None) -> None:
    """**Rewrite on request**: its options make sense together (exit 2 with the fix)."""
    if not rewrite and (diff_out is not None or in_place):
        fail(f"{'--diff-out' if diff_out is not None else '--in-place'} goes with --rewrite: add --rewrite")
    if rewrite and diff_out is None and output is None:
        fail(
            "--rewrite prints the DAG files' diff on stdout, where the dependencies file would go: give it a file, "
            "e.g. --output dependencies.json (or the diff one: --diff-out rewrite.diff)"
        )


def _rewritten(folder: Path, conversion: _Conversion) -> tuple[RewriteOutcome, _Conversion]:
    """The rewrite in memory, and the conversion whose document marks the rewritten DAGs scheduled (with their
    ``schedule:`` notes saying to keep their schedule)."""
    result = conversion.result
    outcome = rewrite_folder(folder, result, conversion.loaded.links, conversion.loaded.dags)
    refs = [key for key in result.document["dags"] if key.rsplit("/", 1)[-1] in outcome.scheduled]
    result = dataclasses.replace(result, document=mark_scheduled(result.document, refs))
    findings = scheduled_notes(conversion.findings, outcome.scheduled)
    return outcome, dataclasses.replace(conversion, result=result, findings=findings)


def _finish_rewrite(outcome: RewriteOutcome, diff_out: Path | None, in_place: bool) -> None:
    """The diff written, the files edited with ``--in-place``, and on stderr what was replaced and what was kept
    (``import_rewrite``'s **Every sensor kept is said**)."""
    diff = outcome.diff()
    if diff_out is None:
        typer.echo(diff, nl=False)
    else:
        try:
            diff_out.write_text(diff, encoding="utf-8")
        except OSError as exc:
            fail(f"{diff_out}: cannot write the diff: {exc.strerror or exc} — check the directory exists")
    where = "stdout" if diff_out is None else str(diff_out)
    done = "edited in place" if in_place else f"diff -> {where}"
    typer.echo(
        f"rewrite: {len(outcome.replaced)} sensor(s) replaced by WaitForPermitOperator in {len(outcome.changes)} "
        f'file(s), {len(outcome.scheduled)} DAG(s) marked "runs": "scheduled" ({done}); {len(outcome.kept)} kept',
        err=True,
    )
    if outcome.kept:
        typer.echo(f"not rewritten, kept as they are ({len(outcome.kept)}):", err=True)
        for line in _section([f"  {clip(str(k))}" for k in outcome.kept]):
            typer.echo(line, err=True)
    if in_place:
        errors = apply(outcome)
        for error in errors:
            typer.echo(error, err=True)
        if errors:
            raise typer.Exit(EXIT_FAILURE)


def _existing_output(output: Path | None) -> Graph | None:
    """**Validated before written**: the existing ``--output`` to merge into (None: there is none); exit 2 when it is
    invalid."""
    if output is None or not output.exists():
        return None
    try:
        return load_spec(output)
    except SpecError as exc:
        _problems(exc, f"{output} is not a valid dependencies file: fix it or choose another --output")


@dataclasses.dataclass(frozen=True)
class _Conversion:
    """What one load translated to, and what the report says of it."""

    loaded: LoadedFolder
    result: ImportResult
    findings: tuple[Finding, ...]
    summary: Counts
    groups: tuple[CauseGroup, ...]
    airflow2: str | None
    #: Every DAG name the folder mentions, for folding repeated findings.
    names: set[str]
    #: **Too few loaded**: why nothing is written (None: the file is written).
    failure: str | None


def _convert(folder: Path, loaded: LoadedFolder, instance: str, relay_edges: bool, threshold: MinLoaded) -> _Conversion:
    """**Pure translation** of what loaded, with the report's findings, counts and failure groups."""
    result = translate(loaded.dags, loaded.links, instance, relay_edges=relay_edges)
    causes = {f.file: f.cause for f in loaded.failed}
    findings = explain_missing(result.findings, {d: (f, causes[f]) for d, f in loaded.failed_dags if f in causes})
    entries = sum(len(entry.get("upstreams", ())) for entry in result.document["dags"].values())
    summary = counts(
        loaded.files, len(loaded.failed), result.dag_count, loaded.links, result.edge_count, findings, entries
    )
    return _Conversion(
        loaded=loaded,
        result=result,
        findings=findings,
        summary=summary,
        groups=group_failures(loaded.failed, loaded.airflow_version, local_modules(folder, loaded.failed)),
        airflow2=airflow2_headline(_sources(folder), loaded.airflow_version),
        names={d.dag_id for d in loaded.dags} | {link.other_dag for link in loaded.links},
        failure=threshold.shortfall(loaded.files, len(loaded.failed), result.dag_count),
    )


def _print_outcome(conversion: _Conversion, folder: Path, old: Graph | None, output: Path | None) -> None:
    """Write the file unless too few loaded, and print on stderr what happened: the outcome line, the summary, the
    headlines, what changed in an existing file and **The report**."""
    loaded, result, failure = conversion.loaded, conversion.result, conversion.failure
    target = str(output) if output is not None else "stdout"
    where = f"{folder} (Airflow {loaded.airflow_version}, {loaded.python})"
    graph = None
    if failure is not None:
        typer.echo(f"import-dags: FAILED: {failure}: nothing written to {target}; {where}", err=True)
    else:
        graph = _write(result.document, old, output)
        typer.echo(
            f"import-dags: {result.dag_count} DAGs, {result.edge_count} edges from {where} -> {target}; the file has "
            f"{len(graph.dags)} DAGs, {graph.edge_count} edges",
            err=True,
        )
    typer.echo(f"  {conversion.summary}", err=True)
    if conversion.airflow2 is not None:
        typer.echo(f"  {conversion.airflow2}", err=True)
    if result.relays:
        _print_relays(result.relays)
    first = verdict(conversion.groups)
    if first is not None and (conversion.airflow2 is None or "Airflow 2 DAGs" not in first):
        typer.echo(f"  {first}", err=True)
    if graph is not None and old is not None:
        for line in to_text(diff_graphs(Baseline.from_graph(old), graph)):
            typer.echo(line, err=True)
    for line in report_lines(conversion.findings, conversion.groups, conversion.names):
        typer.echo(line, err=True)


def _print_relays(relays: Sequence[tuple[str, int]]) -> None:
    left = sum(count for _, count in relays)
    shown = ", ".join(f"{dag} ({count})" for dag, count in relays[:3])
    more = f" and {len(relays) - 3} more" if len(relays) > 3 else ""
    typer.echo(
        f"  {left} marker(s) of {len(relays)} relay DAG(s) written as no edges: {shown}{more} (their "
        f"tasks only clear other DAGs; as edges every marked DAG would wait for the relay's runs); "
        f"--relay-edges writes them",
        err=True,
    )


def _write_report(report: Path, conversion: _Conversion, outcome: RewriteOutcome | None = None) -> None:
    """``--report FILE``: every finding unfolded, as JSON (with ``--rewrite``, what it replaced and kept)."""
    c = conversion
    try:
        body = report_json(c.findings, c.summary, c.loaded, c.groups, c.failure, c.result.offers)
        if outcome is not None:
            body["rewrite"] = outcome.to_json()
        text = json.dumps(body, indent=2)
        report.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"{report}: cannot write the report: {exc.strerror or exc} — check the directory exists")


#: How far above the DAGs folder the estate's own modules are looked for (its root is usually one or two up).
LOCAL_LEVELS = 3
#: A DAG file larger than this is not read for the Airflow 2 headline (a generated file, not a DAG someone wrote).
MAX_SOURCE_BYTES = 1_000_000


def local_modules(folder: Path, failed: Sequence[FailedFile]) -> dict[str, str]:
    """Each missing top-level module of the failed files that the estate holds itself, with the folder that holds it:
    a package or module directly in one of the DAGs folder's ancestors, or in a direct subfolder of the DAGs folder
    or of its parent (``plugins/``, ``include/``). The image puts that folder on PYTHONPATH; this Python does not."""
    base = folder.resolve() if folder.is_dir() else folder.resolve().parent
    roots = [*base.parents[:LOCAL_LEVELS]]
    for parent in (base, base.parent):
        try:
            roots += sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        except OSError:
            continue
    found: dict[str, str] = {}
    for name in sorted({m for f in failed if (m := missing_module(f.cause)) is not None}):
        for root in roots:
            if (root / name).is_dir() or (root / f"{name}.py").is_file():
                found[name] = str(root)
                break
    return found


def _sources(folder: Path) -> dict[str, str]:
    """The text of each Python file Airflow would read in ``folder`` (for the Airflow 2 headline)."""
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.py"))
    sources: dict[str, str] = {}
    for path in files:
        try:
            if path.stat().st_size <= MAX_SOURCE_BYTES:
                sources[str(path)] = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return sources


def _write(document: dict[str, Any], old: Graph | None, output: Path | None) -> Graph:
    """Merge onto ``old``, validate, write to ``output`` (stdout when None); the written graph
    (**Validated before written**)."""
    if old is not None and output is not None:
        document = merge(json.loads(read_spec_text(output)), document)
    text = dump(document)
    try:
        graph = parse_spec(text, str(output) if output is not None else "stdout")
    except SpecError as exc:  # pragma: no cover - translate validates; a merge with hand-written edges may not
        _problems(exc, "the merged file does not validate; nothing was written")
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"{output}: cannot write the file: {exc.strerror or exc} — check the directory exists and is writable")
    return graph
