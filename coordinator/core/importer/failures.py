"""Why DAG files failed to import: the deepest cause of each, grouped by cause, each group with what to do.

Rules (``docs/import-dags.md``, "Importing a real estate"):
- **Deepest cause.** A file's cause is the deepest exception of what Airflow recorded: Python prints a chain innermost
  first, so it is the first exception line of the text (the first line at column 0 that is not ``Traceback ...``), not
  the last line (SQLAlchemy's last line is ``(Background on this error at: ...)``, its real cause ``no such table:
  ...``). Without a traceback (Airflow's tracebacks turned off) it is the first line.
- **Grouped by cause.** Files are grouped by cause, the largest group first; each group names a few files and gets a
  hint:
  - an Airflow 2 idiom under Airflow 3 (``schedule_interval``, ``days_ago``, ``airflow.datasets``,
    ``airflow.operators.dummy``, any removed ``airflow.*`` module...) -> these are Airflow 2 DAGs: import with an
    Airflow 2 interpreter (``--python``); an Airflow 3 idiom (``airflow.sdk``, the standard provider) under
    Airflow 2 -> the converse;
  - a missing ``airflow.providers.X`` module -> install that provider (its real package name: Airflow's registry
    keeps two segments for the namespaces of :data:`TWO_SEGMENT_PROVIDERS`, ``cncf.kubernetes`` ->
    ``apache-airflow-providers-cncf-kubernetes``; a name that cannot be told is not guessed), or run with the
    estate's Python;
  - a name missing from an installed provider (``cannot import name 'SimpleHttpOperator' from
    'airflow.providers.http...'``) -> the provider here is not the version the estate was written for;
  - a missing module that is the estate's own code (found beside the DAGs folder: ``operators/``, ``utils/``,
    which the estate's image puts on ``PYTHONPATH``) -> put that folder on ``PYTHONPATH``;
  - any other missing module -> install it, or run with the estate's Python (``--python``);
  - a metadata-database error (``no such table``, a Variable or Connection read at parse time) -> the file reads
    Airflow's database while it loads: run where that database (and its Variables) is configured.
- **The verdict**: the hint shared by at least half of the failed files is said once, first (an Airflow 2 estate under
  Airflow 3 fails on a dozen different idioms, all with one remedy). Under Airflow 3, a folder where at least
  :data:`AIRFLOW2_SHARE` of the files use Airflow 2 idioms in their source is called Airflow 2 in the headline, whatever
  its files failed on first (a missing local module hides the idiom further down).
- **Pure**: text in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The longest cause kept: a cause is one line of a report, not a dump of an SQL statement.
MAX_CAUSE = 240
#: Files named per group on the report (all are in the JSON report).
EXAMPLE_FILES = 3

#: Words in a cause that only an Airflow 2 DAG file produces under Airflow 3 (removed arguments and modules).
AIRFLOW2_IDIOMS = (
    "schedule_interval",
    "days_ago",
    "airflow.datasets",
    "airflow.operators.",
    "airflow.sensors.",
    "airflow.utils.dates",
    "airflow.contrib",
    "DummyOperator",
    "SubDagOperator",
    "provide_context",
    "execution_date",
    "'concurrency'",
    "'sla'",
    "airflow.hooks.",
)
#: Words in a cause that only an Airflow 3 DAG file produces under Airflow 2.
AIRFLOW3_IDIOMS = ("airflow.sdk", "airflow.providers.standard", "airflow.assets")
#: Words in a DAG file's source that only Airflow 2 DAGs use (removed in Airflow 3).
AIRFLOW2_SOURCE_IDIOMS = (
    "schedule_interval",
    "days_ago",
    "airflow.utils.dates",
    "airflow.operators.subdag",
    "SubDagOperator",
    "SlaMiss",
    "sla_miss_callback",
    "airflow.operators.dummy",
    "DummyOperator",
    "airflow.contrib",
    "provide_context",
)
#: The share of a folder's files that must show Airflow 2 idioms for the headline to call it Airflow 2
#: (**The verdict**).
AIRFLOW2_SHARE = 0.2
#: Provider namespaces of Airflow's provider registry that hold several providers: the package name keeps the next
#: segment too (apache-airflow-providers-apache-spark, -cncf-kubernetes, -common-sql, -dbt-cloud, -microsoft-azure,
#: -atlassian-jira); every other provider is named by its first segment (-amazon for airflow.providers.amazon.aws).
TWO_SEGMENT_PROVIDERS = frozenset({"apache", "atlassian", "cncf", "common", "dbt", "microsoft"})
_MISSING = re.compile(r"No module named '([^']+)'")
#: ``from google.cloud import bigquery`` where the namespace package has no such member: that library is missing.
_MISSING_NAME = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
_DATABASE = ("no such table", "OperationalError", "ProgrammingError", "could not connect to server")
#: A Variable or Connection read at parse time that this environment does not have.
_AIRFLOW_OBJECT = re.compile(r"(Variable|conn(ection)?(_id)?)\b.*(does not exist|isn't defined|is not defined)", re.I)


@dataclass(frozen=True, slots=True, order=True)
class FailedFile:
    """A file Airflow could not import, the deepest cause of it (**Deepest cause**) and the line of the file that
    raised."""

    file: str
    cause: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class CauseGroup:
    """Every file that failed for one cause, and what to do about it (**Grouped by cause**)."""

    cause: str
    #: ``file:line`` (the line when the traceback showed it).
    files: tuple[str, ...]
    hint: str | None

    def __str__(self) -> str:
        shown = ", ".join(self.files[:EXAMPLE_FILES])
        more = f" and {len(self.files) - EXAMPLE_FILES} more" if len(self.files) > EXAMPLE_FILES else ""
        noun = "file" if len(self.files) == 1 else "files"
        hint = f"\n    -> {self.hint}" if self.hint else ""
        return f"{len(self.files)} {noun}: {self.cause} ({shown}{more}){hint}"


def deepest_cause(recorded: str) -> str:
    """The first exception line of a traceback Airflow recorded (**Deepest cause**)."""
    lines = [line.rstrip() for line in recorded.strip().splitlines() if line.strip()]
    if not lines:
        return "import failed (Airflow recorded no error)"
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and not line[0].isspace():
            return _short(line)
    return _short(lines[0])


def failing_line(recorded: str, path: str) -> int | None:
    """The line of ``path`` in the traceback's last frame in that file (the statement that raised), if shown."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', recorded)
    lines = [int(line) for name, line in frames if name == path or path.endswith("/" + name.lstrip("./"))]
    return lines[-1] if lines else None


def _short(line: str) -> str:
    return line if len(line) <= MAX_CAUSE else line[: MAX_CAUSE - 3] + "..."


def airflow_major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def provider_package(module: str) -> str | None:
    """The PyPI package of the provider that holds ``module`` (``airflow.providers.cncf.kubernetes.operators.pod`` ->
    ``apache-airflow-providers-cncf-kubernetes``), or None when the module path does not tell (**Grouped by cause**)."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["airflow", "providers"]:
        return None
    if parts[2] in TWO_SEGMENT_PROVIDERS:
        if len(parts) < 4:
            return None
        name = f"{parts[2]}-{parts[3]}"
    else:
        name = parts[2]
    return "apache-airflow-providers-" + name.replace("_", "-")


def missing_module(cause: str) -> str | None:
    """The top-level module a ``No module named`` cause names (``utils`` for ``utils.slack``), if any."""
    missing = _MISSING.search(cause)
    return missing.group(1).split(".")[0] if missing else None


def hint(cause: str, airflow_version: str, local: Mapping[str, str] | None = None) -> str | None:
    """What to do about files failing for ``cause`` under that Airflow (**Grouped by cause**). ``local`` maps a
    top-level module name to the folder beside the DAGs where the estate's own code holds it (the command looks; this is
    pure)."""
    major = airflow_major(airflow_version)
    missing = _MISSING.search(cause)
    member = _MISSING_NAME.search(cause)
    module = missing.group(1) if missing else f"{member.group(2)}.{member.group(1)}" if member else None
    provider = module is not None and module.startswith("airflow.providers.")
    if major is not None and major >= 3 and not provider and any(idiom in cause for idiom in AIRFLOW2_IDIOMS):
        return (
            f"these are Airflow 2 DAGs (this is Airflow {airflow_version}): import with an Airflow 2 interpreter, "
            f"--python /path/to/airflow2/bin/python"
        )
    if major == 2 and any(idiom in cause for idiom in AIRFLOW3_IDIOMS):
        return (
            f"these are Airflow 3 DAGs (this is Airflow {airflow_version}): import with an Airflow 3 interpreter, "
            f"--python /path/to/airflow3/bin/python"
        )
    if module is not None and provider:
        package = provider_package(module)
        if member is not None and not missing:
            named = package or "the provider"
            return (
                f"{named} is installed here but has no {member.group(1)}: it is not the version the estate was "
                f"written for (a newer release removed or renamed it); import with the estate's own Python "
                f"(--python) or install the provider version the estate pins"
            )
        if package is None:
            return (
                f"install the provider that holds {module} (Airflow's provider registry names it) into this "
                f"Python, or import with the estate's own Python where it is installed (--python)"
            )
        return (
            f"install the provider (pip install {package}) into this Python, or import with the estate's own "
            f"Python where it is installed (--python)"
        )
    top = module.split(".")[0] if module is not None else None
    if top is not None and local and top in local:
        return (
            f"{top} is the estate's own code ({local[top]}/{top}), not a library: put {local[top]} on PYTHONPATH "
            f"as the estate's image does (PYTHONPATH={local[top]} coordinator import-dags ...)"
        )
    if module is not None and not module.startswith("airflow."):
        return (
            f"{module.split('.')[0]} is not installed in this Python: import with the estate's own Python, the one "
            f"its scheduler runs (--python PATH, e.g. a venv's or an image's python), or install it here"
        )
    if any(word in cause for word in _DATABASE) or _AIRFLOW_OBJECT.search(cause):
        return (
            "the file reads Airflow's metadata database while it loads (a Variable, a Connection, a query): run "
            "where that database is configured (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and its Variables)"
        )
    return None


def airflow2_headline(sources: Mapping[str, str], airflow_version: str) -> str | None:
    """**The verdict**' headline: under Airflow 3, when enough of the folder's files (``sources``: file -> text) use
    Airflow 2 idioms, say so once with the idioms seen and the remedy; None otherwise."""
    major = airflow_major(airflow_version)
    if major is None or major < 3 or not sources:
        return None
    seen: dict[str, int] = {}
    files = 0
    for text in sources.values():
        found = [idiom for idiom in AIRFLOW2_SOURCE_IDIOMS if idiom in text]
        files += bool(found)
        for idiom in found:
            seen[idiom] = seen.get(idiom, 0) + 1
    if not files or files < AIRFLOW2_SHARE * len(sources):
        return None
    common = ", ".join(name for name, _ in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
    return (
        f"these look like Airflow 2 DAGs: {files} of {len(sources)} files use Airflow 2 idioms ({common}) and this "
        f"is Airflow {airflow_version}: import with an Airflow 2 interpreter, --python /path/to/airflow2/bin/python"
    )


def group_failures(
    failed: Sequence[FailedFile], airflow_version: str, local: Mapping[str, str] | None = None
) -> tuple[CauseGroup, ...]:
    """Failed files grouped by cause, the largest group first, then by cause (**Grouped by cause**)."""
    by_cause: dict[str, list[str]] = {}
    for item in failed:
        by_cause.setdefault(item.cause, []).append(str(item))
    groups = [CauseGroup(c, tuple(sorted(names)), hint(c, airflow_version, local)) for c, names in by_cause.items()]
    return tuple(sorted(groups, key=lambda g: (-len(g.files), g.cause)))


def verdict(groups: Sequence[CauseGroup]) -> str | None:
    """The hint most failed files share, when it covers at least half of them: what to do first, on one line."""
    by_hint: dict[str, int] = {}
    for group in groups:
        if group.hint is not None:
            by_hint[group.hint] = by_hint.get(group.hint, 0) + len(group.files)
    failed = sum(len(g.files) for g in groups)
    if not by_hint:
        return None
    best, count = max(by_hint.items(), key=lambda item: (item[1], item[0]))
    return f"{count} of {failed} failed files: {best}" if 2 * count >= failed else None
