"""The shared half of import-dags' translation: the work in progress, and a link's samples -> an edge or findings.

Rules (``docs/import-dags.md``, "ExternalTaskSensor -> edges" and "Sensor bugs it proves"):
- **Fitted edges.** :func:`link_edges` proves bugs on the samples against the upstream's grid, fits the edge
  (:mod:`coordinator.core.importer.fit`) and adds one edge per awaited task. A date the upstream never runs at on every
  sample: never satisfied, no edge; on some samples: the edge (which maps to nothing there, as the sensor waits forever)
  and the dates are reported. A date older than D's previous partition: satisfied by an old run, reported. Without D's
  grid nothing is proven (its dates are whatever triggers it).
- **Allowed states.** ``allowed_states`` ``[success]`` is ``success``, ``[success, failed]`` is ``finished``; anything
  else is reported.
- **Pure**.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache

from coordinator.core.grid import Grid
from coordinator.core.importer.facts import (
    DagFact,
    DateSample,
    Finding,
    FindingKind,
    LinkFact,
    LinkKind,
    Origin,
)
from coordinator.core.importer.fit import Edge, FitProblem, Fitter, key, on_grid
from coordinator.core.importer.schedule import GridChoice, sample_partitions
from coordinator.core.model import DEFAULT_INSTANCE

EXAMPLES = 3
#: Logical-date templates of markers and triggers that mean "the same logical date as this run".

CONDITIONS = {frozenset({"success"}): "success", frozenset({"success", "failed"}): "finished"}


@dataclass(frozen=True, slots=True)
class ImportedGroup:
    """A condition group to write (semantics `condition-groups`): ``any`` of its members, or ``at_least`` ``need``."""

    rule: str
    need: int
    members: tuple[Edge, ...]

    def to_json(self) -> dict[str, object]:
        members = [m.to_json() for m in self.members]
        return {"any": members} if self.rule == "any" else {"at_least": self.need, "of": members}

    def describe(self) -> str:
        names = ", ".join(m.dag if m.task is None else f"{m.dag}.{m.task}" for m in self.members)
        return f"any of [{names}]" if self.rule == "any" else f"{self.need} of [{names}]"


@dataclass
class Work:
    """What the translation accumulates."""

    instance: str
    dags: Mapping[str, DagFact]
    #: Mutable: a DAG without a schedule inherits its producer's grid at the end (``translate``'s **Unscheduled DAGs**).
    grids: dict[str, GridChoice]
    edges: dict[str, list[tuple[Edge, Origin, str]]] = field(default_factory=dict)
    #: Condition groups (``any``, ``at_least``) written after a DAG's edges (``conditions``' **One level**).
    groups: dict[str, list[tuple[ImportedGroup, Origin, str]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    #: Each DAG's segments (``partitioned``'s **Consumer segments** and **Producer segments**); DAGs without are absent.
    segments: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def ref(self, dag_id: str) -> str:
        return dag_id if self.instance == DEFAULT_INSTANCE else f"{self.instance}/{dag_id}"

    def grid(self, dag_id: str) -> Grid | None:
        choice = self.grids.get(dag_id)
        return choice.grid if choice is not None else None

    def add(self, kind: FindingKind, link: LinkFact | DagFact, message: str) -> None:
        subject = f"{link.dag_id}.{link.task_id}" if isinstance(link, LinkFact) else link.dag_id
        self.findings.append(Finding(kind, link.origin, subject, message))

    def group(self, dag_id: str, group: ImportedGroup, dag: DagFact) -> None:
        self.groups.setdefault(dag_id, []).append((group, dag.origin, dag.dag_id))

    def upstream_edges(self, dag_id: str) -> list[Edge]:
        """Every edge of a DAG, its groups' members included."""
        return [e for e, _, _ in self.edges.get(dag_id, ())] + [
            m for g, _, _ in self.groups.get(dag_id, ()) for m in g.members
        ]

    def edge(self, dag_id: str, edge: Edge, link: LinkFact | DagFact) -> None:
        subject = f"{link.dag_id}.{link.task_id}" if isinstance(link, LinkFact) else link.dag_id
        listed = self.edges.setdefault(dag_id, [])
        if all(known != edge for known, _, _ in listed):
            listed.append((edge, link.origin, subject))


def quote_examples(items: Sequence[str]) -> str:
    """The first EXAMPLES items and how many more there are (callers may pad the list with placeholders)."""
    shown = "; ".join(items[:EXAMPLES])
    return shown + (f"; and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


def identity_samples(down: Grid | None, up: Grid | None) -> tuple[DateSample, ...]:
    """D at P waits for U at P: what a marker, a trigger and an asset say. A D without a grid runs at U's dates."""
    return tuple(DateSample(p, (p,)) for p in sample_partitions(down or up))


def sensor_condition(work: Work, link: LinkFact) -> str | None:
    condition = CONDITIONS.get(frozenset(s.lower() for s in link.allowed_states))
    if condition is None:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"allowed_states {list(link.allowed_states)}: an edge waits for success, or for success or failure "
            f'("condition": "finished"); keep this sensor',
        )
    return condition


def awaited_tasks(work: Work, link: LinkFact) -> tuple[str | None, ...] | None:
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


def is_templated(work: Work, link: LinkFact) -> bool:
    if "{{" in link.other_dag or "{%" in link.other_dag:
        work.add(
            FindingKind.INEXPRESSIBLE,
            link,
            f"the DAG id {link.other_dag!r} is a template rendered at run time; write the edge by hand",
        )
        return True
    return False


def link_edges(
    work: Work, link: LinkFact, samples: Sequence[DateSample], tasks: Sequence[str | None], condition: str
) -> None:
    """Prove bugs on the samples, fit the edge, add one edge per task (**Allowed states** and **Pure**)."""
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
    work: Work,
    link: LinkFact,
    samples: Sequence[DateSample],
    down: str,
    up: str,
    up_grid: Grid,
    down_grid: Grid | None,
) -> bool:
    """Report what the samples prove (**Pure**); False when the sensor is never satisfied (no edge is written)."""
    off = [(s, d) for s in samples for d in s.dates if not on_grid(up_grid, d)]
    bad_runs = {s.partition for s, _ in off}
    where = f"{up} runs at {up_grid}"  # the grid names its zone
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
            f"never satisfied: it waits for a time {up} never runs at ({where}): {quote_examples(examples)}; no edge "
            f"written: fix the sensor's delta, then import again",
        )
        return False
    if off:
        work.add(
            FindingKind.BUG,
            link,
            f"not satisfied on {len(bad_runs)} of {len(samples)} sampled runs ({where}; daylight saving?): "
            f"{quote_examples(examples)}; the edge reproduces this",
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
                f"satisfied by an old run: {quote_examples(stale)}: the run it accepts already existed for {down}'s "
                f"previous run; check the delta's sign and unit (the edge reproduces it)",
            )
    return True
