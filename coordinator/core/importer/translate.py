"""DAGs-folder facts -> a ``dependencies.json`` document and the findings a reviewer must read.

Rules (``docs/import-dags.md``):
- **Every DAG an entry.** Every DAG of the folder gets an entry: its grid (:mod:`coordinator.core.importer.schedule`)
  and its upstreams.
- **Sensors.** An ``ExternalTaskSensor`` in D on U becomes one edge per awaited task (``external_task_id(s)``, or every
  task of ``external_task_group_id``; none: the whole run), ``condition`` from ``allowed_states`` (``[success]``:
  success, ``[success, failed]``: finished; anything else cannot be expressed), and the date semantics fitted to the
  sensor's own dates (:mod:`coordinator.core.importer.fit`). ``failed_states``/``skipped_states`` only make a sensor
  give up early: noted, not translated.
- **Bugs proven on samples.** Sensor bugs are proven on the samples, against the upstream's grid: a date the upstream
  never runs at means the sensor is never satisfied for that run (on every sample: no edge is written, the sensor is
  reported; on some: the edge is written and the dates are reported); a date older than D's previous partition means the
  run is satisfied by an upstream run that already existed for D's previous run (reported; the edge reproduces it).
- **Markers.** An ``ExternalTaskMarker`` in U naming D's task means "D's run at the same logical date depends on U":
  covered when D has a sensor on U, else an edge with U's date equal to D's. A ``TriggerDagRunOperator`` in U triggering
  D becomes an edge D <- each direct upstream task of the trigger (the whole run when it has none) at U's logical date;
  the operator should then be removed. An asset schedule becomes an edge to the producing task of each consumed asset
  (several producers of one asset and aliases cannot be expressed: the coordinator needs all); an OR, or a
  ``MinimumCount`` rollup over several producers, becomes condition groups where it maps exactly
  (:mod:`coordinator.core.importer.conditions`).
- **Validated by the loader.** The document is validated by the real loader before it is returned; an edge it rejects (a
  cycle, a duplicate) is removed and reported with the loader's message, so the output always validates. A cycle is
  broken per DAG pair: when the loader names one edge D <- U of a cycle, every edge D <- U goes with it in the same
  round (two DAGs with 23 mutual task sensors are one decision, not 23 rounds). An operator whose edge is rejected gets
  that finding only ("keep this operator"): its notes ("remove this operator") are withdrawn. Each round removes at
  least one edge or fails, so the rounds are bounded by the number of edges, which no real graph can exceed.
- **Pure**: facts in, a document (the JSON value to write) and findings out.
- **Unscheduled DAGs.** A DAG without a schedule (``None``, an asset schedule) whose edges are all plain and come from
  DAGs on one grid runs at those DAGs' partitions (the coordinator triggers it for each): it gets that grid, so its
  edges join equal periods and ``validate`` has nothing to warn about. Noted. Repeated to a fixed point, so a chain of
  asset schedules inherits the first cron's grid at every link, in any order; an ungridded cycle ends it.
- **SubDAGs.** An Airflow 2 SubDAG (``parent.child``, run by a ``SubDagOperator`` inside the parent's run at the same
  logical date) is no DAG of the file: it is skipped, noted once on its parent, and its sensors, markers and triggers
  are translated as the parent's (a SubDAG's sensor holds the parent's run).
- **Relay DAGs.** A relay DAG, one whose every task is an ``ExternalTaskMarker`` (it exists to clear other DAGs on
  demand, not to produce anything), gets no marker edges by default: each would make the marked DAG wait for every run
  of the relay, which Airflow never did (a marker only clears). One note per relay says how many were left out;
  ``relay_edges`` (``--relay-edges``) writes them as any marker's.
- **Schedules said.** Once the file is final, each DAG that needs a schedule in Airflow gets one ``schedule:`` note
  (:mod:`coordinator.core.importer.schedules_needed`): ``PartitionedAtRuntime()`` for a dependent triggered with a
  partition key, ``None`` for any other dependent, and a runtime-keyed producer's own kept. The operators' notes never
  say it themselves.
- **Job sensors.** A sensor on another system's job (dbt Cloud, Glue, EMR, Spark on Kubernetes...) writes no edge: it is
  noted as the DAG's own work, or reported with an OpenLineage node offered for confirmation
  (:mod:`coordinator.core.importer.jobs`), after the grids are final (the offer's partitions are the sensing DAG's
  grid). The offers are in the result (``offers``) and in the findings, never in the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.core.importer.conditions import asset_conditions
from coordinator.core.importer.edges import Work
from coordinator.core.importer.facts import (
    DagFact,
    Finding,
    FindingKind,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleKind,
)
from coordinator.core.importer.intervals import interval_entry
from coordinator.core.importer.jobs import LineageOffer, job_links
from coordinator.core.importer.operators import asset_edges, marker_edges, sensor_edges, trigger_edges
from coordinator.core.importer.partitioned import declared_segments, partitions_entry
from coordinator.core.importer.schedule import choose_grid
from coordinator.core.importer.schedules_needed import schedule_notes
from coordinator.core.importer.unrun_tasks import unrun_task_notes
from coordinator.core.model import DEFAULT_INSTANCE
from coordinator.core.spec.loader import SPEC_VERSION, parse_spec
from coordinator.core.spec.source import format_path
from coordinator.errors import SpecError


@dataclass(frozen=True, slots=True)
class ImportResult:
    document: dict[str, Any]
    findings: tuple[Finding, ...]
    dag_count: int
    edge_count: int
    #: **Relay DAGs**: (relay DAG, the marker edges left out of it), when they were left out.
    relays: tuple[tuple[str, int], ...] = ()
    #: **Job sensors**: the OpenLineage nodes offered for sensors on other systems' jobs (not in ``document``).
    offers: tuple[LineageOffer, ...] = ()
    #: ``dag.task`` of every operator with at least one edge or group in ``document`` (after the loader's
    #: rejections): what ``import-dags --rewrite`` may replace (``core.importer.rewrite_plan``).
    written: frozenset[str] = frozenset()

    def of(self, kind: FindingKind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)


def translate(
    dags: Sequence[DagFact], links: Sequence[LinkFact], instance: str = DEFAULT_INSTANCE, *, relay_edges: bool = False
) -> ImportResult:
    """The document and findings for a folder's facts (**Every DAG an entry** to **Job sensors**)."""
    by_id = {d.dag_id: d for d in sorted(dags, key=lambda d: d.dag_id) if d.subdag_of is None}
    work = Work(instance, by_id, {d.dag_id: choose_grid(d.schedule) for d in by_id.values()})
    work.segments = declared_segments(by_id)
    links = _skip_subdags(work, dags, links)
    for dag in by_id.values():
        problem = work.grids[dag.dag_id].problem
        if problem is not None:
            work.add(FindingKind.INEXPRESSIBLE, dag, f"{problem}")
    sensors = [link for link in links if link.kind is LinkKind.SENSOR]
    sensed = {(s.dag_id, s.other_dag) for s in sensors}
    relays = {} if relay_edges else relay_dags(by_id.values(), links)
    for dag_id, count in relays.items():
        work.add(
            FindingKind.NOTE,
            by_id[dag_id],
            f"{dag_id} is a relay DAG (its {count} task(s) are all ExternalTaskMarkers: it clears other DAGs, it "
            f"produces nothing): its markers are written as no edges, since each marked DAG would then wait for "
            f"every run of {dag_id}, which Airflow never did; --relay-edges writes them",
        )
    ordered = sorted(links, key=lambda x: (x.dag_id, x.task_id))
    for link in ordered:
        if link.kind is LinkKind.SENSOR:
            sensor_edges(work, link)
        elif link.kind is LinkKind.MARKER:
            if link.dag_id not in relays:
                marker_edges(work, link, covered=(link.other_dag, link.dag_id) in sensed)
        elif link.kind is LinkKind.TRIGGER:
            trigger_edges(work, link)
    for dag in by_id.values():
        if dag.schedule.kind is ScheduleKind.ASSETS and not asset_conditions(work, dag):
            asset_edges(work, dag)
    _inherit_grids(work)
    offers = job_links(work, [link for link in ordered if link.kind is LinkKind.JOB and link.dag_id in by_id])
    document, edge_count = _validated(work)
    schedule_notes(work)
    unrun_task_notes(work)
    order = {FindingKind.BUG: 0, FindingKind.INEXPRESSIBLE: 1, FindingKind.NOTE: 2}
    findings = tuple(sorted(work.findings, key=lambda f: (order[f.kind], f.origin, f.subject, f.message)))
    written = frozenset(subject for edges in work.edges.values() for _, _, subject in edges) | frozenset(
        subject for groups in work.groups.values() for _, _, subject in groups
    )
    return ImportResult(document, findings, len(by_id), edge_count, tuple(sorted(relays.items())), offers, written)


def relay_dags(dags: Iterable[DagFact], links: Sequence[LinkFact]) -> dict[str, int]:
    """**Relay DAGs**: each DAG whose every task is a marker, with its number of markers."""
    markers: dict[str, set[str]] = {}
    for link in links:
        if link.kind is LinkKind.MARKER:
            markers.setdefault(link.dag_id, set()).add(link.task_id)
    return {
        dag.dag_id: len(markers[dag.dag_id])
        for dag in dags
        if dag.task_ids and dag.dag_id in markers and set(dag.task_ids) <= markers[dag.dag_id]
    }


def _skip_subdags(work: Work, dags: Sequence[DagFact], links: Sequence[LinkFact]) -> list[LinkFact]:
    """**SubDAGs**: SubDAGs are no entries; one note per parent; their operators become the parent's."""
    roots = {d.dag_id: d.subdag_of for d in dags if d.subdag_of is not None}
    for parent in sorted(set(roots.values())):
        children = sorted(child for child, root in roots.items() if root == parent)
        fact = work.dags.get(parent)
        if fact is None:
            continue
        work.add(
            FindingKind.NOTE,
            fact,
            f"SubDAG(s) {', '.join(children)} skipped: Airflow 2's SubDagOperator runs them inside {parent}'s run at "
            f"its logical date, so they are no DAGs of their own; their cross-DAG operators are translated as "
            f"{parent}'s",
        )
    return [replace(link, dag_id=roots[link.dag_id]) if link.dag_id in roots else link for link in links]


def _inherit_grids(work: Work) -> None:
    """**Unscheduled DAGs**, to a fixed point: a chain A (cron) <- B (asset on A) <- C (asset on B) gives C A's grid
    whatever the order of the DAGs, because a round that gives any DAG a grid is followed by another. A DAG that got a
    grid keeps it, so each round but the last grids at least one DAG and the rounds are bounded by the number of DAGs; a
    cycle of ungridded DAGs gets no grid and ends the loop."""
    for _ in range(len(work.dags) + 1):
        if not any([_inherit_grid(work, dag_id, dag) for dag_id, dag in work.dags.items()]):
            return


def _inherit_grid(work: Work, dag_id: str, dag: DagFact) -> bool:
    """Give one ungridded DAG the one grid of its plain edges' sources; True when it got one."""
    edges = work.upstream_edges(dag_id)
    if not edges or work.grids[dag_id].grid is not None:
        return False
    if dag.schedule.kind not in (ScheduleKind.NONE, ScheduleKind.ASSETS):
        return False  # a schedule the file cannot express stays without a grid (it was reported)
    sources = {edge.dag.rsplit("/", 1)[-1] for edge in edges}
    choices = {work.grids[s] for s in sources if s in work.grids}
    plain = all(
        e.shift is None and not e.offset and e.member is None and e.segments is None and e.at_least is None
        for e in edges
    )
    if not plain or len(choices) != 1 or len(sources) != len([s for s in sources if s in work.grids]):
        return False
    (choice,) = choices
    if choice.grid is None:
        return False
    work.grids[dag_id] = choice
    names = ", ".join(sorted(sources))
    work.add(
        FindingKind.NOTE,
        dag,
        f"no schedule of its own: it runs at {names}'s partitions, so it gets that grid ({choice.written_cron} "
        f"{choice.grid.timezone})",
    )
    return True


def _entries(work: Work) -> dict[str, Any]:
    dags: dict[str, Any] = {}
    for dag_id, dag in work.dags.items():
        entry: dict[str, Any] = {"description": f"imported from {dag.origin}"}
        partitions = partitions_entry(work, dag_id)
        if partitions is not None:
            entry["partitions"] = partitions
        upstreams = [edge.to_json() for edge, _, _ in work.edges.get(dag_id, ())]
        upstreams += [group.to_json() for group, _, _ in work.groups.get(dag_id, ())]
        if upstreams:
            entry["upstreams"] = upstreams
        if (interval := interval_entry(dag.schedule, entry)) is not None:  # semantics `triggered-data-interval`
            entry["data_interval"] = interval
        dags[work.ref(dag_id)] = entry
    return dags


def _validated(work: Work) -> tuple[dict[str, Any], int]:
    """The document, after removing every edge the loader rejects (**Validated by the loader**)."""
    # **Validated by the loader**: every round but the last removes at least one edge, so this bound cannot be reached.
    bound = sum(len(edges) for edges in work.edges.values()) + sum(len(g) for g in work.groups.values())
    for _ in range(bound + 1):
        document: dict[str, Any] = {"version": SPEC_VERSION}
        if work.instance != DEFAULT_INSTANCE:
            document["instances"] = {work.instance: {}}
        document["dags"] = _entries(work)
        try:
            graph = parse_spec(dump(document), "import")
        except SpecError as exc:
            if not _drop_rejected(work, exc.problems):
                raise
            continue
        return document, graph.edge_count
    raise SpecError(["import: the loader kept rejecting edges; this is a bug of import-dags"])


def _drop_rejected(work: Work, problems: Sequence[str]) -> bool:
    """Remove the edges and groups named by the loader's problems, a cycle's whole DAG pair at once; False when none
    is named."""
    dropped = False
    rejected: set[tuple[Origin, str]] = set()
    for dag_id in sorted(set(work.edges) | set(work.groups)):
        edges = work.edges.get(dag_id, [])
        groups = work.groups.get(dag_id, [])
        prefix = format_path(("dags", work.ref(dag_id), "upstreams"))
        reasons: dict[int, str] = {}
        for i in range(len(edges) + len(groups)):
            path = prefix + f"[{i}]"
            # The problem's own path only: its text may name another edge ("... from the one at ...[0]"), which
            # is the edge it is compared with, not one to remove.
            hits = [p for p in problems if (subject := problem_path(p)) == path or subject.startswith(path + ".")]
            if hits:
                reasons[i] = hits[0].split(": ", 2)[-1]
        # A cycle through D <- U is broken by the pair: the other parallel edges D <- U would close it again.
        cyclic = {edges[i][0].dag: reason for i, reason in reasons.items() if i < len(edges) and "cycle" in reason}
        keep = []
        for i, item in enumerate(edges):
            edge, origin, subject = item
            reason = reasons.get(i) or cyclic.get(edge.dag)
            if reason is None:
                keep.append(item)
                continue
            work.findings.append(
                Finding(
                    FindingKind.INEXPRESSIBLE,
                    origin,
                    subject,
                    f"edge {edge.describe()} rejected: {reason}; keep this operator",
                )
            )
            rejected.add((origin, subject))
            dropped = True
        kept = []
        for j, (group, origin, subject) in enumerate(groups):
            reason = reasons.get(len(edges) + j) or next(
                (cyclic[m.dag] for m in group.members if m.dag in cyclic), None
            )
            if reason is None:
                kept.append((group, origin, subject))
                continue
            work.findings.append(
                Finding(
                    FindingKind.INEXPRESSIBLE,
                    origin,
                    subject,
                    f"group {group.describe()} rejected: {reason}; keep the asset schedule",
                )
            )
            rejected.add((origin, subject))
            dropped = True
        edges[:] = keep
        groups[:] = kept
    # An operator whose edge is gone keeps its job: a note saying "remove this operator" or "written as an edge"
    # would contradict the rejection on the next line (Airflow's example_external_task got both).
    work.findings[:] = [
        f for f in work.findings if f.kind is not FindingKind.NOTE or (f.origin, f.subject) not in rejected
    ]
    return dropped


#: A loader problem reads ``SOURCE:LINE: $.json.path: message``; the path is what the problem is about.
_PROBLEM_PATH = re.compile(r"^\S+ (\$\S*): ")


def problem_path(problem: str) -> str:
    """The JSON path a loader problem is about ("" when it names none)."""
    found = _PROBLEM_PATH.match(problem)
    return found.group(1) if found else ""


def dump(document: Mapping[str, Any]) -> str:
    """The text written to the file: two-space indent, keys in the order built, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
