"""What each cross-DAG mechanism becomes: sensors, markers, triggers and asset schedules (``translate``'s **Sensors**
and **Markers**).

Rules (``docs/import-dags.md``):
- **Sensors.** A sensor: one edge per awaited task with the fitted date semantics
  (:func:`coordinator.core.importer.edges.link_edges`).
- **Markers.** A marker in U naming D's task: covered when D has a sensor on U, else an edge at the same logical date.
- **Triggers.** A trigger in U of D: an edge per direct upstream task of the trigger at U's logical date; remove the
  operator.
- **Asset schedules.** An asset schedule: an edge to the one producing task of each asset; aliases, several or no
  producers are reported (an OR is :mod:`coordinator.core.importer.conditions`'s). A partitioned asset (Airflow
  3.2+) mapped by anything but the identity is fitted to the
  samples Airflow's mapper gave (a rollup waits for its window); a mapping that is no edge is reported with its mapper.
- **Pure**.
- **Rendered templates.** A marker's or trigger's ``logical_date`` template is known by samples the adapter rendered
  with Airflow's own template engine (``{{ ds }}``, ``{{ macros.ds_add(ds, -1) }}``...): D's date for U's run at P. The
  edge is fitted to them as a sensor's is (a shift, an offset...); the default and the same-date templates are U's date.
  A template that raised, or that sends several runs of U to one date of D (Airflow acts on that run again each time; an
  edge would wait for all), is reported.
"""

from __future__ import annotations

import json
from dataclasses import replace

from coordinator.core.importer.edges import (
    Work,
    awaited_tasks,
    identity_samples,
    is_templated,
    link_edges,
    quote_examples,
    sensor_condition,
)
from coordinator.core.importer.facts import (
    DagFact,
    DateSample,
    FindingKind,
    LinkFact,
    ScheduleFact,
)
from coordinator.core.importer.fit import Edge, FitProblem, Fitter, key
from coordinator.core.importer.partitioned import segment_edge

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


def sensor_edges(work: Work, link: LinkFact) -> None:
    if is_templated(work, link):
        return
    condition = sensor_condition(work, link)
    tasks = awaited_tasks(work, link)
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
    link_edges(work, link, link.samples, tasks, condition)


def marker_edges(work: Work, link: LinkFact, covered: bool) -> None:
    if is_templated(work, link):
        return
    if covered:
        work.add(
            FindingKind.NOTE,
            link,
            f"covered by {link.other_dag}'s sensor on {link.dag_id}: the coordinator reruns {link.other_dag} after "
            f"a rerun of {link.dag_id}, as the marker's recursive clear did",
        )
        return
    samples = operator_samples(work, link)
    if samples is None or target_missing(work, link):
        return
    work.add(
        FindingKind.NOTE,
        link,
        f"the marker made a clear of {link.dag_id} clear {link.other_dag}.{(link.tasks or ('?',))[0]}: written as "
        f"an edge {link.other_dag} <- {link.dag_id} ({_at(link)}), so {link.other_dag} now also waits for it",
    )
    link_edges(work, link, samples, (None,), "success")


def target_missing(work: Work, link: LinkFact) -> bool:
    """A marker's or trigger's edge lives in the DAG it clears or triggers: when that DAG is not in the file (not in
    the folder, or its file failed to import), no edge can be written, and the report says so instead of claiming
    one. The words "D is not in this folder" are the ones the report replaces with the failed file's cause."""
    if link.other_dag in work.dags:
        return False
    work.add(
        FindingKind.NOTE,
        link,
        f"{link.other_dag} is not in this folder: no edge {link.other_dag} <- {link.dag_id} written (the edge "
        f"belongs to {link.other_dag}); keep this operator, and import again once {link.other_dag} loads",
    )
    return True


def same_date(template: str | None) -> bool:
    return template is None or template.replace(" ", "") in SAME_DATE_TEMPLATES


def _at(link: LinkFact) -> str:
    if same_date(link.logical_date) or all(s.dates == (s.partition,) for s in link.samples):
        return "same logical date"
    return f"at the date logical_date {link.logical_date!r} gives"


def operator_samples(work: Work, link: LinkFact) -> tuple[DateSample, ...] | None:
    """**Rendered templates**: what a marker's or trigger's run of U at P means for D, as samples ``(D's date, (P,))``;
    None (and the reason reported) when its template could not be rendered or sends several runs of U to one date of
    D."""
    if link.date_error is not None:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"logical_date {link.logical_date!r} could not be rendered: {link.date_error}; write the edge by hand",
        )
        return None
    if not link.samples:
        if same_date(link.logical_date):
            return identity_samples(work.grid(link.other_dag), work.grid(link.dag_id))
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"logical_date {link.logical_date!r} is a template the importer cannot evaluate; write the edge by hand",
        )
        return None
    shared = next((s for s in link.samples if len(s.dates) > 1), None)
    if shared is not None:
        runs = quote_examples([key(d) for d in shared.dates]).replace("; ", ", ")
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"logical_date {link.logical_date!r} gives {link.dag_id}'s runs at {runs} the same date of "
            f"{link.other_dag}, {key(shared.partition)}: Airflow acts on that one run again for each, an edge would "
            f"wait for all of them; write the edge by hand",
        )
        return None
    return link.samples


def trigger_edges(work: Work, link: LinkFact) -> None:
    if is_templated(work, link):
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
    samples = operator_samples(work, link)
    if samples is None or target_missing(work, link):
        return
    tasks: tuple[str | None, ...] = link.upstream_tasks or (None,)
    where = "the whole run" if not link.upstream_tasks else "task(s) " + ", ".join(link.upstream_tasks)
    work.add(
        FindingKind.NOTE,
        link,
        f"{link.other_dag} is triggered by the coordinator for {link.dag_id}'s partition ({_at(link)}) once "
        f"{where} of {link.dag_id} {'succeeded' if condition == 'success' else 'finished'}: remove this "
        f"operator; {link.other_dag}'s 'schedule:' note says the schedule it needs",
    )
    link_edges(work, link, samples, tasks, condition)


def asset_edges(work: Work, dag: DagFact) -> None:
    schedule = dag.schedule
    if schedule.assets is None:
        work.add(FindingKind.INEXPRESSIBLE, dag, schedule.problem or "the asset condition cannot be expressed")
        return
    wrote = False
    for uri in schedule.assets:
        edge = asset_edge(work, dag, uri)
        if isinstance(edge, str):
            work.add(FindingKind.INEXPRESSIBLE, dag, edge)
            continue
        work.edge(dag.dag_id, edge, dag)
        wrote = True
    if wrote:  # else every asset was reported: no edge to explain
        work.add(FindingKind.NOTE, dag, assets_note(schedule))


def assets_note(schedule: ScheduleFact) -> str:
    """What a reviewer should know about asset edges: the producer's dates, or the mapper's."""
    mapped = sorted({m.mapper for m in schedule.mappings if m.dates()})
    if mapped:
        return (
            f"partitioned assets mapped by {', '.join(mapped)}: written as edges from the producer runs Airflow's "
            "mapper sends to each of its partition dates (its partition_date is the coordinator's partition), in "
            "place of its asset schedule"
        )
    return (
        "asset schedule: written as edges to the producing tasks at the producer's logical date, in place of its "
        "asset schedule (assets carry no dates: Airflow merged several updates into one run and made a new run on a "
        "producer rerun, and on Airflow 3 an asset-triggered run has no logical date at all; the coordinator runs it "
        "once per partition of the producer, with that partition as its logical date, and reruns it)"
    )


def asset_edge(work: Work, dag: DagFact, uri: str) -> Edge | str:
    """The edge to the one producing task of ``uri``, fitted to the producer's dates (or Airflow's mapper's), or
    why there is none (**Asset schedules**)."""
    mapping = dag.schedule.mapping(uri)
    if mapping is not None and mapping.problem is not None:
        return f"asset {uri!r}: {mapping.problem}"
    producers = [(p, task) for p in work.dags.values() for task, out in p.outlets if out == uri]
    if not producers:
        # Semantics `assets-by-route`: a producer in another Airflow is what asset routes are for; the consumer
        # keeps its schedule=[Asset] and nothing else changes (the producing instance is not known from this
        # folder).
        route = {"asset": uri, "from": "<producing instance>", "to": [work.instance]}
        return (
            f"asset {uri!r}: no DAG in this folder produces it; if another Airflow produces it, keep "
            f'schedule=[Asset] and share the asset with a route: "assets": [{json.dumps(route)}] '
            "(docs/semantics.md#assets-by-route); else add the producer's edge by hand"
        )
    if len(producers) > 1:
        names = ", ".join(f"{p.dag_id}.{t}" for p, t in producers)
        return f"asset {uri!r} has several producers ({names}): Airflow runs on any update, an edge waits for all"
    producer, task = producers[0]
    if mapping is not None and mapping.segments is not None:
        return segment_edge(work, dag, uri, mapping, producer.dag_id, task)
    samples = identity_samples(work.grid(dag.dag_id), work.grid(producer.dag_id))
    if mapping is not None and mapping.samples:
        samples = mapping.samples
    edge = fitted_edge(work, dag, uri, producer.dag_id, task, samples)
    if isinstance(edge, Edge) and mapping is not None and mapping.at_least is not None:
        edge = replace(edge, at_least=mapping.at_least)  # ``partitions``' **Counted windows**
    return edge


def fitted_edge(
    work: Work, dag: DagFact, uri: str, producer: str, task: str, samples: tuple[DateSample, ...]
) -> Edge | str:
    fitted = Fitter(work.grid(dag.dag_id), work.grid(producer), self_edge=False).fit(samples)
    if isinstance(fitted, FitProblem):
        return f"asset {uri!r}: no edge maps {producer}'s dates"
    return replace(fitted, dag=work.ref(producer), task=task)
