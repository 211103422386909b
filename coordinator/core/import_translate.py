"""DAGs-folder facts -> a ``dependencies.json`` document and the findings a reviewer must read.

Rules (``docs/import-dags.md``):
1. Every DAG of the folder gets an entry: its grid (:mod:`coordinator.core.import_schedule`) and its upstreams.
2. An ``ExternalTaskSensor`` in D on U becomes one edge per awaited task (``external_task_id(s)``, or every task of
   ``external_task_group_id``; none: the whole run), ``condition`` from ``allowed_states`` (``[success]``: success,
   ``[success, failed]``: finished; anything else cannot be expressed), and the date semantics fitted to the
   sensor's own dates (:mod:`coordinator.core.import_fit`). ``failed_states``/``skipped_states`` only make a sensor
   give up early: noted, not translated.
3. Sensor bugs are proven on the samples, against the upstream's grid: a date the upstream never runs at means the
   sensor is never satisfied for that run (on every sample: no edge is written, the sensor is reported; on some: the
   edge is written and the dates are reported); a date older than D's previous partition means the run is satisfied
   by an upstream run that already existed for D's previous run (reported; the edge reproduces it).
4. An ``ExternalTaskMarker`` in U naming D's task means "D's run at the same logical date depends on U": covered when
   D has a sensor on U, else an edge with U's date equal to D's. A ``TriggerDagRunOperator`` in U triggering D becomes
   an edge D <- each direct upstream task of the trigger (the whole run when it has none) at U's logical date; the
   operator should then be removed. An asset schedule becomes an edge to the producing task of each consumed asset
   (several producers of one asset, OR conditions and aliases cannot be expressed: the coordinator needs all).
5. The document is validated by the real loader before it is returned; an edge it rejects (a cycle, a duplicate) is
   removed and reported with the loader's message, so the output always validates.
6. Pure: facts in, a document (the JSON value to write) and findings out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from coordinator.core.grid import Grid
from coordinator.core.import_facts import (
    DagFact,
    DateSample,
    Finding,
    FindingKind,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleKind,
)
from coordinator.core.import_fit import Edge, FitProblem, Fitter, key, on_grid
from coordinator.core.import_schedule import GridChoice, choose_grid, sample_partitions
from coordinator.core.model import DEFAULT_INSTANCE
from coordinator.core.spec import SPEC_VERSION, parse_spec
from coordinator.core.spec_json import format_path
from coordinator.errors import SpecError

#: Examples quoted in one finding; the rest are counted.
EXAMPLES = 3
#: Logical-date templates of markers and triggers that mean "the same logical date as this run".
SAME_DATE_TEMPLATES = frozenset(
    t.replace(" ", "")
    for t in (
        "{{ logical_date.isoformat() }}",
        "{{ execution_date.isoformat() }}",
        "{{ logical_date }}",
        "{{ execution_date }}",
        "{{ ts }}",
        "{{ dag_run.logical_date }}",
        "{{ dag_run.logical_date.isoformat() }}",
    )
)
CONDITIONS = {frozenset({"success"}): "success", frozenset({"success", "failed"}): "finished"}
#: How often the loader may reject edges of the assembled document before we give up (a bug, not an input problem).
MAX_VALIDATION_ROUNDS = 10


@dataclass(frozen=True, slots=True)
class ImportResult:
    document: dict[str, Any]
    findings: tuple[Finding, ...]
    dag_count: int
    edge_count: int

    def of(self, kind: FindingKind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)


@dataclass
class _Work:
    """What the translation accumulates."""

    instance: str
    dags: Mapping[str, DagFact]
    grids: Mapping[str, GridChoice]
    edges: dict[str, list[tuple[Edge, Origin, str]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def ref(self, dag_id: str) -> str:
        return dag_id if self.instance == DEFAULT_INSTANCE else f"{self.instance}/{dag_id}"

    def grid(self, dag_id: str) -> Grid | None:
        choice = self.grids.get(dag_id)
        return choice.grid if choice is not None else None

    def add(self, kind: FindingKind, link: LinkFact | DagFact, message: str) -> None:
        subject = f"{link.dag_id}.{link.task_id}" if isinstance(link, LinkFact) else link.dag_id
        self.findings.append(Finding(kind, link.origin, subject, message))

    def edge(self, dag_id: str, edge: Edge, link: LinkFact | DagFact) -> None:
        subject = f"{link.dag_id}.{link.task_id}" if isinstance(link, LinkFact) else link.dag_id
        listed = self.edges.setdefault(dag_id, [])
        if all(known != edge for known, _, _ in listed):
            listed.append((edge, link.origin, subject))


def _dates(values: Iterable[datetime]) -> str:
    return ", ".join(key(v) for v in values)


def _examples(items: Sequence[str]) -> str:
    """The first EXAMPLES items and how many more there are (callers may pad the list with placeholders)."""
    shown = "; ".join(items[:EXAMPLES])
    return shown + (f"; and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


def identity_samples(down: Grid | None, up: Grid | None) -> tuple[DateSample, ...]:
    """D at P waits for U at P: what a marker, a trigger and an asset say. A D without a grid runs at U's dates."""
    return tuple(DateSample(p, (p,)) for p in sample_partitions(down or up))


def translate(dags: Sequence[DagFact], links: Sequence[LinkFact], instance: str = DEFAULT_INSTANCE) -> ImportResult:
    """The document and findings for a folder's facts (rules 1-6)."""
    by_id = {d.dag_id: d for d in sorted(dags, key=lambda d: d.dag_id)}
    work = _Work(instance, by_id, {d.dag_id: choose_grid(d.schedule) for d in by_id.values()})
    for dag in by_id.values():
        problem = work.grids[dag.dag_id].problem
        if problem is not None:
            work.add(FindingKind.INEXPRESSIBLE, dag, f"{problem}")
    sensors = [link for link in links if link.kind is LinkKind.SENSOR]
    sensed = {(s.dag_id, s.other_dag) for s in sensors}
    for link in sorted(links, key=lambda x: (x.dag_id, x.task_id)):
        if link.kind is LinkKind.SENSOR:
            _sensor(work, link)
        elif link.kind is LinkKind.MARKER:
            _marker(work, link, covered=(link.other_dag, link.dag_id) in sensed)
        else:
            _trigger(work, link)
    for dag in by_id.values():
        if dag.schedule.kind is ScheduleKind.ASSETS:
            _assets(work, dag)
    document, edge_count = _validated(work)
    order = {FindingKind.BUG: 0, FindingKind.INEXPRESSIBLE: 1, FindingKind.NOTE: 2}
    findings = tuple(sorted(work.findings, key=lambda f: (order[f.kind], f.origin, f.subject, f.message)))
    return ImportResult(document, findings, len(by_id), edge_count)


def _condition(work: _Work, link: LinkFact) -> str | None:
    condition = CONDITIONS.get(frozenset(s.lower() for s in link.allowed_states))
    if condition is None:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"allowed_states {list(link.allowed_states)}: an edge waits for success, or for success or failure "
            f'("condition": "finished"); keep this sensor',
        )
    return condition


def _tasks(work: _Work, link: LinkFact) -> tuple[str | None, ...] | None:
    if link.task_group is None:
        return link.tasks if link.tasks else (None,)
    upstream = work.dags.get(link.other_dag)
    group = upstream.group(link.task_group) if upstream is not None else None
    if not group:
        where = "is not in this folder" if upstream is None else f"has no task group {link.task_group!r}"
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"external_task_group_id {link.task_group!r}: {link.other_dag} {where}, so its tasks are unknown",
        )
        return None
    return group


def _templated(work: _Work, link: LinkFact) -> bool:
    if "{{" in link.other_dag or "{%" in link.other_dag:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"the DAG id {link.other_dag!r} is a template rendered at run time; write the edge by hand",
        )
        return True
    return False


def _sensor(work: _Work, link: LinkFact) -> None:
    if _templated(work, link):
        return
    condition = _condition(work, link)
    tasks = _tasks(work, link)
    if condition is None or tasks is None:
        return
    if link.date_error is not None:
        work.add(FindingKind.INEXPRESSIBLE, link, f"cannot evaluate its dates: {link.date_error}")
        return
    if link.failed_states or link.skipped_states:
        states = ", ".join(f"{n}={list(v)}" for n, v in (("failed_states", link.failed_states),
                                                           ("skipped_states", link.skipped_states)) if v)  # fmt: skip
        work.add(
            FindingKind.NOTE,
            link,
            f"{states} made the sensor give up early; the coordinator simply does not trigger {link.dag_id} "
            f"until the upstream is {condition}",
        )
    if link.other_dag not in work.dags:
        work.add(
            FindingKind.NOTE,
            link,
            f"{link.other_dag} is not in this folder: it is written as {work.ref(link.other_dag)!r} without a grid; "
            f"declare its partitions if it runs elsewhere on a schedule",
        )
    _link_edges(work, link, link.samples, tasks, condition)


def _link_edges(
    work: _Work, link: LinkFact, samples: Sequence[DateSample], tasks: Sequence[str | None], condition: str
) -> None:
    """Prove bugs on the samples, fit the edge, add one edge per task (rules 2, 3)."""
    down, up = link.dag_id, link.other_dag
    if link.kind is not LinkKind.SENSOR:
        down, up = link.other_dag, link.dag_id  # markers and triggers live in the upstream
    empty = [s for s in samples if not s.dates]
    if empty:
        work.add(
            FindingKind.BUG,
            link,
            f"waits for no date at all for {down}'s run at {key(empty[0].partition)}: satisfied at once, it waits "
            f"for nothing",
        )
        return
    up_grid, down_grid = work.grid(up), work.grid(down)
    # Without D's grid its dates are whatever triggers it: nothing can be proven about them.
    if up_grid is not None and down_grid is not None and not _bugs(work, link, samples, down, up, up_grid, down_grid):
        return
    fitted = Fitter(down_grid, up_grid, self_edge=(up == down)).fit(samples)
    if isinstance(fitted, FitProblem):
        edge_said = "nothing (the edge is rejected)" if fitted.edge is None else _list(fitted.edge)
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"no edge reproduces its dates: for {down}'s run at {key(fitted.partition)} it waits for {up} at "
            f"{_list(fitted.sensor)}, a plain edge would wait for {edge_said}; keep this sensor or write the edge by "
            f"hand",
        )
        return
    for task in tasks:
        work.edge(down, replace(fitted, dag=work.ref(up), task=task, condition=condition), link)


@lru_cache(maxsize=262_144)
def previous(grid: Grid, at: datetime) -> datetime:
    return grid.prev(at)


def _list(keys: Sequence[str]) -> str:
    return ", ".join(keys) if keys else "nothing"


def _bugs(
    work: _Work,
    link: LinkFact,
    samples: Sequence[DateSample],
    down: str,
    up: str,
    up_grid: Grid,
    down_grid: Grid | None,
) -> bool:
    """Report what the samples prove (rule 3); False when the sensor is never satisfied (no edge is written)."""
    off = [(s, d) for s in samples for d in s.dates if not on_grid(up_grid, d)]
    bad_runs = {s.partition for s, _ in off}
    where = f"{up} runs at {up_grid}" if up_grid.timezone == "UTC" else f"{up} runs at {up_grid} ({up_grid.timezone})"
    # Only the quoted examples get their nearest runs: two cron steps each, for hundreds of off-grid samples.
    examples = [
        f"{down}'s run at {key(s.partition)} waits for {up} at {key(d)} (nearest runs {key(up_grid.floor(d))}, "
        f"{key(up_grid.next(d))})"
        for s, d in off[:EXAMPLES]
    ] + [""] * max(0, len(off) - EXAMPLES)
    if off and len(bad_runs) == len(samples):
        work.add(
            FindingKind.BUG,
            link,
            f"never satisfied: it waits for a time {up} never runs at ({where}): {_examples(examples)}; no edge "
            f"written: fix the sensor's delta, then import again",
        )
        return False
    if off:
        work.add(
            FindingKind.BUG,
            link,
            f"not satisfied on {len(bad_runs)} of {len(samples)} sampled runs ({where}; daylight saving?): "
            f"{_examples(examples)}; the edge reproduces this",
        )
    if down_grid is not None and up != down:
        stale = [
            f"{down}'s run at {key(s.partition)} accepts {up}'s run at {key(s.dates[0])}, older than {down}'s "
            f"previous partition {key(previous(down_grid, s.partition))}"
            for s in samples
            if len(s.dates) == 1 and s.dates[0] < previous(down_grid, s.partition)
        ]
        if stale:
            work.add(
                FindingKind.BUG,
                link,
                f"satisfied by an old run: {_examples(stale)}: the run it accepts already existed for {down}'s "
                f"previous run; check the delta's sign and unit (the edge reproduces it)",
            )
    return True


def _marker(work: _Work, link: LinkFact, covered: bool) -> None:
    if _templated(work, link):
        return
    if covered:
        work.add(
            FindingKind.NOTE,
            link,
            f"covered by {link.other_dag}'s sensor on {link.dag_id}: the coordinator reruns {link.other_dag} after "
            f"a rerun of {link.dag_id}, as the marker's recursive clear did",
        )
        return
    if not _same_date(link.logical_date):
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"logical_date {link.logical_date!r} is a template the importer cannot evaluate; write the edge by hand",
        )
        return
    work.add(
        FindingKind.NOTE,
        link,
        f"the marker made a clear of {link.dag_id} clear {link.other_dag}.{(link.tasks or ('?',))[0]}: written as "
        f"an edge {link.other_dag} <- {link.dag_id} (same logical date), so {link.other_dag} now also waits for it",
    )
    _link_edges(work, link, identity_samples(work.grid(link.other_dag), work.grid(link.dag_id)), (None,), "success")


def _same_date(template: str | None) -> bool:
    return template is None or template.replace(" ", "") in SAME_DATE_TEMPLATES


def _trigger(work: _Work, link: LinkFact) -> None:
    if _templated(work, link):
        return
    if not _same_date(link.logical_date):
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"logical_date {link.logical_date!r} is a template the importer cannot evaluate; write the edge by hand",
        )
        return
    rule = link.trigger_rule
    condition = {"all_success": "success", "all_done": "finished"}.get(rule)
    if condition is None:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"trigger_rule {rule!r}: an edge waits for its upstream task's success or its end ('all_done'); keep "
            f"the operator",
        )
        return
    tasks: tuple[str | None, ...] = link.upstream_tasks or (None,)
    target = work.dags.get(link.other_dag)
    also = ""
    if target is not None and target.schedule.kind not in (ScheduleKind.NONE, ScheduleKind.ASSETS):
        also = f"; {link.other_dag} also has its own schedule ({target.schedule.written}): set schedule=None"
    where = "the whole run" if not link.upstream_tasks else "task(s) " + ", ".join(link.upstream_tasks)
    work.add(
        FindingKind.NOTE,
        link,
        f"{link.other_dag} is triggered by the coordinator for {link.dag_id}'s partition once {where} of "
        f"{link.dag_id} {'succeeded' if condition == 'success' else 'finished'}: remove this operator{also}",
    )
    _link_edges(work, link, identity_samples(work.grid(link.other_dag), work.grid(link.dag_id)), tasks, condition)


def _assets(work: _Work, dag: DagFact) -> None:
    schedule = dag.schedule
    if schedule.assets is None:
        work.add(FindingKind.INEXPRESSIBLE, dag, schedule.problem or "the asset condition cannot be expressed")
        return
    for uri in schedule.assets:
        producers = [(p, task) for p in work.dags.values() for task, out in p.outlets if out == uri]
        if not producers:
            work.add(
                FindingKind.INEXPRESSIBLE,
                dag,
                f"asset {uri!r}: no DAG in this folder produces it; add the producer's edge by hand",
            )
            continue
        if len(producers) > 1:
            names = ", ".join(f"{p.dag_id}.{t}" for p, t in producers)
            work.add(
                FindingKind.INEXPRESSIBLE,
                dag,
                f"asset {uri!r} has several producers ({names}): Airflow runs on any update, an edge waits for all",
            )
            continue
        producer, task = producers[0]
        samples = identity_samples(work.grid(dag.dag_id), work.grid(producer.dag_id))
        fitted = Fitter(work.grid(dag.dag_id), work.grid(producer.dag_id), self_edge=False).fit(samples)
        if isinstance(fitted, FitProblem):
            work.add(FindingKind.INEXPRESSIBLE, dag, f"asset {uri!r}: no edge maps {producer.dag_id}'s dates")
            continue
        work.edge(dag.dag_id, replace(fitted, dag=work.ref(producer.dag_id), task=task), dag)
    work.add(
        FindingKind.NOTE,
        dag,
        "asset schedule: written as edges to the producing tasks at the producer's logical date; set schedule=None "
        "(assets carry no dates: Airflow merged several updates into one run and made a new run on a producer rerun; "
        "the coordinator runs once per partition and reruns it)",
    )


def _entries(work: _Work) -> dict[str, Any]:
    dags: dict[str, Any] = {}
    for dag_id, dag in work.dags.items():
        entry: dict[str, Any] = {"description": f"imported from {dag.origin}"}
        choice = work.grids[dag_id]
        if choice.grid is not None:
            entry["partitions"] = {"cron": choice.written_cron or choice.grid.cron, "timezone": choice.grid.timezone}
        edges = work.edges.get(dag_id)
        if edges:
            entry["upstreams"] = [edge.to_json() for edge, _, _ in edges]
        dags[work.ref(dag_id)] = entry
    return dags


def _validated(work: _Work) -> tuple[dict[str, Any], int]:
    """The document, after removing every edge the loader rejects (rule 5)."""
    for _ in range(MAX_VALIDATION_ROUNDS):
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


def _drop_rejected(work: _Work, problems: Sequence[str]) -> bool:
    """Remove the edges named by the loader's problems; False when a problem names no edge."""
    dropped = False
    for dag_id, edges in work.edges.items():
        prefix = format_path(("dags", work.ref(dag_id), "upstreams"))
        keep = []
        for i, item in enumerate(edges):
            path = prefix + f"[{i}]"
            hits = [p for p in problems if f" {path}: " in p or f" {path}." in p]
            if not hits:
                keep.append(item)
                continue
            edge, origin, subject = item
            reason = hits[0].split(": ", 2)[-1]
            work.findings.append(
                Finding(FindingKind.INEXPRESSIBLE, origin, subject, f"edge {edge.describe()} rejected: {reason}")
            )
            dropped = True
        edges[:] = keep
    return dropped


def dump(document: Mapping[str, Any]) -> str:
    """The text written to the file: two-space indent, keys in the order built, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
