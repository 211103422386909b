"""Which sensors ``import-dags --rewrite`` replaces with the permit's wait, which stay and why, and the graph it marks
(``docs/import-dags.md``, "Rewriting the DAG files").

Rules:
- **Only sensors whose edge was written.** An ``ExternalTaskSensor`` is a target when the file written has its edge
  (after the loader's rejections) and nothing about it was found inexpressible: the wait then waits for what the edge
  says. A sensor bug whose edge was written (satisfied by an old run, not satisfied on some runs) is a target too: the
  edge reproduces it, as the report says. Every other sensor stays, with the reason the report gave (never satisfied,
  cannot express, rejected); a sensor without a known line stays too.
- **Sensors on other systems' jobs stay.** A job sensor writes no edge (an OpenLineage node is offered, to confirm):
  when one is offered the sensor is listed as kept, since its DAG still waits on something outside the graph; one
  that polls its own DAG's work is no cross-DAG wait and is not listed.
- **Scheduled where a wait replaced a sensor.** A DAG is marked ``"runs": "scheduled"`` (semantics `scheduled-permit`)
  when at least one of its sensors was replaced; the sensors that stay beside the wait keep waiting for what they
  waited for, so its runs wait for everything they waited for before. Its ``data_interval`` is dropped: the
  coordinator never triggers a scheduled DAG, its own timetable gives the interval.
- **Pure**: the translation's result and facts in, values out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.core.importer.facts import DagFact, Finding, FindingKind, LinkFact, LinkKind, Origin
from coordinator.core.importer.translate import ImportResult


@dataclass(frozen=True, slots=True)
class SensorTarget:
    """A sensor to replace: its DAG, its task id (with its task group's prefix) and the line of its call."""

    dag_id: str
    task_id: str
    line: int

    @property
    def subject(self) -> str:
        return f"{self.dag_id}.{self.task_id}"


@dataclass(frozen=True, slots=True, order=True)
class KeptSensor:
    """A sensor that stays as it is, and why (listed with ``file:line`` in the report and the command's output)."""

    origin: Origin
    subject: str
    reason: str
    #: Already a finding of the report (its edge is not in the file), so ``--strict`` counts it once.
    reported: bool = False

    def __str__(self) -> str:
        return f"{self.origin}: {self.subject}: {self.reason}"


@dataclass(frozen=True, slots=True)
class RewritePlan:
    #: file (as the loader's origin names it) -> the sensors of that file to replace, by line.
    targets: Mapping[str, tuple[SensorTarget, ...]]
    kept: tuple[KeptSensor, ...]


def plan_rewrite(result: ImportResult, links: Sequence[LinkFact], dags: Sequence[DagFact] = ()) -> RewritePlan:
    """The targets and the kept sensors (**Only sensors whose edge was written** and **Sensors on other systems' jobs
    stay**). An Airflow 2 SubDAG's sensor is its parent's, as the translation reads it."""
    roots = {d.dag_id: d.subdag_of for d in dags if d.subdag_of is not None}
    links = [replace(link, dag_id=roots[link.dag_id]) if link.dag_id in roots else link for link in links]
    inexpressible = {f.subject for f in result.findings if f.kind is FindingKind.INEXPRESSIBLE}
    reasons: dict[str, str] = {}
    for finding in sorted(result.findings, key=lambda f: f.kind is not FindingKind.INEXPRESSIBLE):
        if finding.kind is not FindingKind.NOTE:
            reasons.setdefault(finding.subject, f"{finding.kind}: {finding.message}")
    offered = {offer.subject for offer in result.offers}
    targets: dict[str, list[SensorTarget]] = {}
    kept: list[KeptSensor] = []
    for link in links:
        subject = f"{link.dag_id}.{link.task_id}"
        if link.kind is LinkKind.JOB:
            if subject in offered:
                sensor = link.job.sensor if link.job is not None else "job sensor"
                why = f"{sensor} polls another system's job: no edge written (an OpenLineage node is offered)"
                kept.append(KeptSensor(link.origin, subject, why, reported=True))
            continue
        if link.kind is not LinkKind.SENSOR:
            continue
        if subject not in result.written or subject in inexpressible:
            reason = reasons.get(subject, "no edge written for it")
            kept.append(KeptSensor(link.origin, subject, f"its edge is not in the file ({reason})", reported=True))
        elif link.origin.line is None:
            kept.append(KeptSensor(link.origin, subject, "the line that creates it is unknown"))
        else:
            targets.setdefault(link.origin.file, []).append(SensorTarget(link.dag_id, link.task_id, link.origin.line))
    by_file = {f: tuple(sorted(t, key=lambda s: s.line)) for f, t in sorted(targets.items())}
    return RewritePlan(by_file, tuple(sorted(kept)))


def mark_scheduled(document: Mapping[str, Any], dag_refs: Collection[str]) -> dict[str, Any]:
    """``document`` with each of ``dag_refs`` (keys of its ``dags``) ``"runs": "scheduled"`` and no ``data_interval``
    (**Scheduled where a wait replaced a sensor**)."""
    dags = dict(document["dags"])
    for ref in dag_refs:
        entry = {k: v for k, v in dags[ref].items() if k != "data_interval"}
        entry["runs"] = "scheduled"
        dags[ref] = entry
    return {**document, "dags": dags}


#: The ``schedule:`` note of a DAG marked scheduled (``core.importer.schedules_needed``'s notes assume it triggered).
KEEP_SCHEDULE_NOTE = (
    'schedule: keep its schedule: "runs": "scheduled", its runs wait for the coordinator\'s permit '
    "(WaitForPermitOperator in place of its sensors)"
)


def scheduled_notes(findings: Sequence[Finding], dag_ids: Collection[str]) -> tuple[Finding, ...]:
    """``findings`` with the ``schedule:`` note of each DAG of ``dag_ids`` saying to keep its schedule (**Scheduled
    where a wait replaced a sensor**): the coordinator never triggers it, so a schedule of its own is what runs it."""
    return tuple(
        replace(f, message=KEEP_SCHEDULE_NOTE)
        if f.kind is FindingKind.NOTE and f.subject in dag_ids and f.message.startswith("schedule:")
        else f
        for f in findings
    )
