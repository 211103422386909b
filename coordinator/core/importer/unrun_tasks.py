"""Notes on edges that name a task Airflow never runs (semantics `edge-task`).

Rules:
- **Said where the edge is written.** An edge (or a condition group's member) whose ``task`` is one Airflow's scheduler
  marks success without running it (``DagFact.not_run``: an ``EmptyOperator`` without callbacks, inlets or outlets)
  gets a note at the sensor it came from: no plugin code records that task, the leader's audit does, so the dependent
  starts up to one audit interval later; naming the task before it, or the whole DAG, avoids the wait.
- **Pure.**
"""

from __future__ import annotations

from coordinator.core.importer.edges import Work
from coordinator.core.importer.facts import Finding, FindingKind, Origin

#: The audit's default interval (``COORDINATOR_AUDIT_INTERVAL_S``), said in the note.
AUDIT_INTERVAL_DEFAULT_S = 60


def unrun_task_notes(work: Work) -> None:
    """Add a note for each written edge on a task Airflow never runs (**Said where the edge is written**)."""
    for edges in work.edges.values():
        for edge, origin, subject in edges:
            _note(work, edge.dag, edge.task, origin, subject)
    for groups in work.groups.values():
        for group, origin, subject in groups:
            for member in group.members:
                _note(work, member.dag, member.task, origin, subject)


def _note(work: Work, upstream: str, task: str | None, origin: Origin, subject: str) -> None:
    fact = work.dags.get(upstream.rsplit("/", 1)[-1])
    if task is None or fact is None or task not in fact.not_run:
        return
    # The same words for every such edge, so the report folds them into one line (the subject names the sensor).
    message = (
        "its edge names an EmptyOperator Airflow marks success without running it, so no plugin code records it; the "
        "leader's audit does, and this DAG starts up to one COORDINATOR_AUDIT_INTERVAL_S "
        f"({AUDIT_INTERVAL_DEFAULT_S} s by default) after it: name the task before it, or the whole DAG, to start "
        "at once"
    )
    work.findings.append(Finding(FindingKind.NOTE, origin, subject, message))
