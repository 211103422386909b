"""The report a person reads after ``import-dags``: the summary first, then the causes, then one line per finding.

Rules (``docs/import-dags.md``, "Importing a real estate"):
- **Counts first.** The summary counts come first: files, failed files, DAGs loaded, sensors, markers, triggers, the
  edges written (counted as the file counts them, one per DAG pair, beside the upstream entries that carry them), cannot
  express, never satisfied (sensor bugs and notes follow the same line). Sensors on other systems' jobs are counted
  apart, and named only when there are some (they write no edge: :mod:`coordinator.core.importer.jobs`).
- **Folded findings.** Findings that say the same thing about different DAGs are folded: the message with every DAG
  name, every chain of DAGs (a cycle's) and every date replaced by a placeholder is the key; a key met ``FOLD_AT`` times
  or more is one line, ``xN``, the message of its first finding and a few more ``file:line`` examples. So that the
  report reads on a screen, a line is cut at ``MAX_LINE`` characters and a section at ``MAX_SECTION_LINES`` lines, each
  saying so; every finding stays whole in the JSON report (``--report``).
- **Failed files named.** A finding about a DAG that is missing because its file failed to import says so: "its file
  failed: <cause>" instead of "not in this folder" (the loader found the DAG id in the failed file's text).
- **Good enough to write.** Whether the load is good enough to write a file: below ``--min-loaded`` (a count of DAGs, a
  percentage of the folder's files that imported, or both as ``N,P%``; default ``1,50%``: at least one DAG and at least
  half of the files, since a folder that mostly failed would write a file that reads as "these DAGs have no
  dependencies"), the command fails and writes no dependencies file. Asking for less (``1``, ``0``, ``20%``) is the
  user's call.
- **Pure**: values in, lines and decisions out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from coordinator.core.importer.facts import Finding, FindingKind, LinkFact, LinkKind

#: How many findings with one key are folded into one line (**Folded findings**): two are still read one by one.
FOLD_AT = 3
#: file:line examples shown on a folded line.
FOLD_EXAMPLES = 3
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?(Z|[+-]\d\d:\d\d)?")
#: A chain of DAG placeholders (a cycle ``a -> b -> c -> a``): chains of any length fold together (**Folded findings**).
_CHAIN = re.compile(r"<dag>(\s+-(?:\(on failure\))?>\s+<dag>)+")
#: The longest report line (**Folded findings**): a finding with its first example fits (about 300 characters); notes
#: and cycles of 450-900 characters are cut, their whole text is in the JSON report.
MAX_LINE = 400
#: Lines shown per report section before the rest is left to the JSON report (**Folded findings**): a screen and a half.
MAX_SECTION_LINES = 30


@dataclass(frozen=True, slots=True)
class Counts:
    """The summary line (**Counts first**)."""

    files: int
    failed_files: int
    dags: int
    sensors: int
    markers: int
    triggers: int
    edges: int
    cannot_express: int
    never_satisfied: int
    sensor_bugs: int
    notes: int

    #: The upstream entries written (one per task or window an edge waits for; several may join one DAG pair).
    entries: int = 0
    #: Sensors on other systems' jobs (dbt Cloud, Glue, EMR...): reported with an OpenLineage offer, no edge.
    job_sensors: int = 0

    def __str__(self) -> str:
        edges = plural(self.edges, "edge")
        if self.entries != self.edges:
            edges += f" (one per DAG pair, from {plural(self.entries, 'upstream entry', 'upstream entries')})"
        jobs = f" ({plural(self.job_sensors, 'sensor')} on other systems' jobs: no edges)" if self.job_sensors else ""
        return (
            f"{plural(self.files, 'file')} ({self.failed_files} failed), {self.dags} DAGs loaded, "
            f"{plural(self.sensors, 'sensor')}, {plural(self.markers, 'marker')}, {plural(self.triggers, 'trigger')}"
            f" -> {edges}{jobs}; {self.cannot_express} cannot express, {self.never_satisfied} never satisfied, "
            f"{plural(self.sensor_bugs, 'sensor bug')}, {plural(self.notes, 'note')}"
        )


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 edge``, ``2 edges``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def clip(line: str, limit: int = MAX_LINE) -> str:
    """A report line cut to ``limit`` characters, saying where the rest is (**Folded findings**)."""
    if len(line) <= limit:
        return line
    tail = " ... (whole in --report)"
    return line[: limit - len(tail)].rstrip() + tail


def counts(
    files: int,
    failed: int,
    dags: int,
    links: Sequence[LinkFact],
    edges: int,
    findings: Sequence[Finding],
    entries: int | None = None,
) -> Counts:
    """**Counts first**."""
    kinds = [link.kind for link in links]
    bugs = [f for f in findings if f.kind is FindingKind.BUG]
    return Counts(
        files=files,
        failed_files=failed,
        dags=dags,
        sensors=kinds.count(LinkKind.SENSOR),
        markers=kinds.count(LinkKind.MARKER),
        triggers=kinds.count(LinkKind.TRIGGER),
        edges=edges,
        cannot_express=sum(1 for f in findings if f.kind is FindingKind.INEXPRESSIBLE),
        never_satisfied=sum(1 for f in bugs if f.message.startswith("never satisfied")),
        sensor_bugs=len(bugs),
        notes=sum(1 for f in findings if f.kind is FindingKind.NOTE),
        entries=edges if entries is None else entries,
        job_sensors=kinds.count(LinkKind.JOB),
    )


@dataclass(frozen=True, slots=True)
class Folded:
    """One report line: a finding, or ``count`` findings saying the same thing (**Folded findings**)."""

    first: Finding
    count: int = 1
    examples: tuple[Finding, ...] = ()

    def __str__(self) -> str:
        if self.count == 1:
            return str(self.first)
        where = ", ".join(f"{f.origin} {f.subject}" for f in self.examples)
        return f"x{self.count} like {self.first} (also {where}, ...)"


def fold_key(finding: Finding, names: re.Pattern[str] | None) -> str:
    """The message with DAG names and dates as placeholders: findings with one key say the same thing."""
    text = _DATE.sub("<date>", finding.message)
    return _CHAIN.sub("<dags>", names.sub("<dag>", text)) if names is not None else text


def names_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of ``names`` as a whole word (longest first, so ``a_b`` wins over ``a``)."""
    ordered = sorted({n for n in names if n}, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in ordered) + r")(?![\w])")


def fold(findings: Sequence[Finding], names: Iterable[str]) -> list[Folded]:
    """**Folded findings**: in the order of the first finding of each key."""
    pattern = names_pattern(names)
    groups: dict[tuple[FindingKind, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.kind, fold_key(finding, pattern)), []).append(finding)
    lines: list[Folded] = []
    for group in groups.values():
        if len(group) >= FOLD_AT:
            lines.append(Folded(group[0], len(group), tuple(group[1 : 1 + FOLD_EXAMPLES])))
        else:
            lines += [Folded(f) for f in group]
    return lines


def explain_missing(findings: Sequence[Finding], failed_dags: Mapping[str, tuple[str, str]]) -> tuple[Finding, ...]:
    """**Failed files named**: ``failed_dags`` maps a DAG id to (its failed file, the cause)."""
    found = []
    for finding in findings:
        for dag_id, (file, cause) in failed_dags.items():
            absent = f"{dag_id} is not in this folder"
            if absent in finding.message:
                why = f"{dag_id} is not loaded: its file {file} failed: {cause}"
                finding = replace(finding, message=finding.message.replace(absent, why, 1))
                break
        found.append(finding)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class MinLoaded:
    """``--min-loaded``: at least ``count`` DAGs and at least ``percent`` of the folder's files imported
    (**Good enough to write**)."""

    count: int | None = 1
    percent: float | None = 50.0

    #: The default of ``--min-loaded`` (**Good enough to write**).
    DEFAULT = "1,50%"

    @classmethod
    def parse(cls, text: str) -> MinLoaded:
        """``N``, ``P%`` or ``N,P%``; ValueError with what is wrong."""
        count: int | None = None
        percent: float | None = None
        parts = [p.strip() for p in text.split(",")]
        try:
            if not 1 <= len(parts) <= 2:
                raise ValueError
            for raw in parts:
                if raw.endswith("%"):
                    if percent is not None:
                        raise ValueError
                    percent = float(raw[:-1])
                    if not 0 <= percent <= 100:
                        raise ValueError
                else:
                    if count is not None:
                        raise ValueError
                    count = int(raw)
                    if count < 0:
                        raise ValueError
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a DAG count (0, 1, 50), a percentage of files (90%) nor both (1,50%)"
            ) from None
        return cls(count, percent)

    def shortfall(self, files: int, failed: int, dags: int) -> str | None:
        """Why the load is not good enough (**Good enough to write**), or None."""
        if self.count is not None and dags < self.count:
            why = "no DAG loaded" if dags == 0 else f"{dags} DAGs loaded"
            return f"{why}, --min-loaded {self}"
        if self.percent is not None:
            loaded = 100.0 * (files - failed) / files if files else 0.0
            if loaded < self.percent:
                return f"{files - failed} of {files} files imported ({loaded:.0f}%), --min-loaded {self}"
        return None

    def __str__(self) -> str:
        parts = ([str(self.count)] if self.count is not None else []) + (
            [f"{self.percent:g}%"] if self.percent is not None else []
        )
        return ",".join(parts) or "0"
