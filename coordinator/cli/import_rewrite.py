"""``import-dags --rewrite``: the DAG files read, rewritten in memory, the diff written, the files edited only with
``--in-place``.

Rules (``docs/import-dags.md``, "Rewriting the DAG files"):
- **Never in place unless asked.** The rewrite is a unified diff (stdout, or ``--diff-out FILE``); the DAG files change
  only with ``--in-place``, and only after the dependencies file was written (a file that does not validate leaves
  every DAG file as it was).
- **Pure underneath.** Which sensors is :mod:`coordinator.core.importer.rewrite_plan`; each file's new text is
  :mod:`coordinator.rewrite.sensors` (LibCST); the diff :mod:`coordinator.rewrite.patch`. This module reads, writes and
  prints.
- **Every sensor kept is said.** A sensor left as it is, for the plan's reason or the rewrite's, is one line
  ``file:line: dag.task: reason`` on stderr and an entry of ``--report``'s ``rewrite.kept``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.core.importer.facts import DagFact, LinkFact, Origin
from coordinator.core.importer.rewrite_plan import KeptSensor, SensorTarget, plan_rewrite
from coordinator.core.importer.translate import ImportResult


@dataclass(frozen=True)
class FileChange:
    path: Path
    #: The path the diff names (**Paths as git diff writes them** of ``coordinator.rewrite.patch``).
    shown: str
    old: str
    new: str


@dataclass(frozen=True)
class RewriteOutcome:
    changes: tuple[FileChange, ...]
    replaced: tuple[tuple[Origin, str], ...]
    kept: tuple[KeptSensor, ...]
    #: The DAGs (ids) with at least one sensor replaced: marked ``"runs": "scheduled"``.
    scheduled: frozenset[str]

    def diff(self) -> str:
        from coordinator.rewrite.patch import unified_diff

        return unified_diff((c.shown, c.old, c.new) for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [c.shown for c in self.changes],
            "replaced": [{"file": o.file, "line": o.line, "subject": s} for o, s in self.replaced],
            "kept": [
                {"file": k.origin.file, "line": k.origin.line, "subject": k.subject, "reason": k.reason}
                for k in self.kept
            ],
            "scheduled": sorted(self.scheduled),
        }


def rewrite_folder(
    folder: Path, result: ImportResult, links: Sequence[LinkFact], dags: Sequence[DagFact] = ()
) -> RewriteOutcome:
    """Every file with a target, rewritten in memory (**Pure underneath**); nothing is written here."""
    from coordinator.rewrite.sensors import rewrite_source  # LibCST only for this command

    plan = plan_rewrite(result, links, dags)
    base = folder.resolve() if folder.is_dir() else folder.resolve().parent
    changes: list[FileChange] = []
    replaced: list[tuple[Origin, str]] = []
    scheduled: set[str] = set()
    kept = list(plan.kept)
    for file, targets in plan.targets.items():
        path = Path(file) if Path(file).is_absolute() else base / file
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            kept += [_kept(file, t, f"cannot read the file: {exc}") for t in targets]
            continue
        done = rewrite_source(old, targets)
        replaced += [(Origin(file, t.line), t.subject) for t in done.replaced]
        scheduled |= {t.dag_id for t in done.replaced}
        kept += [_kept(file, u.target, u.reason) for u in done.untranslated]
        if done.text != old:
            changes.append(FileChange(path, _shown(path), old, done.text))
    return RewriteOutcome(tuple(changes), tuple(replaced), tuple(sorted(kept)), frozenset(scheduled))


def _kept(file: str, target: SensorTarget, reason: str) -> KeptSensor:
    return KeptSensor(Origin(file, target.line), target.subject, reason)


def _shown(path: Path) -> str:
    """The path relative to the working directory when the file is under it, else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def apply(outcome: RewriteOutcome) -> list[str]:
    """``--in-place``: write each rewritten file; the errors, one line each (**Never in place unless asked**)."""
    errors = []
    for change in outcome.changes:
        try:
            change.path.write_text(change.new, encoding="utf-8")
        except OSError as exc:
            errors.append(f"{change.shown}: cannot write it: {exc.strerror or exc}")
    return errors
