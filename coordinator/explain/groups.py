"""The words ``why``, ``status`` and the page use for a DAG's condition groups (semantics `condition-groups`,
`group-cutoff`, `group-late`): one line per group saying its rule and where each member stands.

Rules:
- **Pure.** (graph, view, plan, node, partition, now) in, lines out; no I/O, the clock is an argument.
- **The planner's facts.** A member is *done* when every partition it maps to holds its success (or its failure, for a
  ``finished`` member) and, where the plan judged that upstream in the same partition, the planner found it fresh;
  otherwise it is *stale*, *failed*, *running*/*queued* or *has not run*, as the view records. Which members a run
  consumed is what the ledger's inputs record (semantics `group-consumed`), nothing guessed.
- **Lines.** ``runs when any of a, b: neither has run for P`` / ``1 more of 2 needed: eu done; us, apac have not
  run`` / ``2 of 3 needed, met: eu, us done; apac failed`` (the count the planner holds the group to: after a cutoff,
  its minimum); with a cutoff, before it ``cutoff at 06:00: runs then with at least 2`` (``cutoff at 06:00 passed:
  ...`` until it runs), after a run at it ``cutoff at 06:00 ran with eu, us; apac late: will rerun once`` (``late:
  ignored`` with ``"late": "ignore"``), and once a run consumed the whole need ``cutoff at 06:00: ran with 3 of 3
  needed (...)``.
"""

from __future__ import annotations

from datetime import datetime

from coordinator.core.actions import Plan
from coordinator.core.conditions import GroupRule, GroupSpec, Late, Member, clock_text, member_name
from coordinator.core.graph import Condition, EdgeSpec, Graph
from coordinator.core.model import NodeId, RunState, partition_datetime, task_input_key
from coordinator.core.partition import is_segment_only
from coordinator.core.view import View


def group_lines(
    graph: Graph, view: View, plan: Plan | None, node: NodeId, partition: str, now: datetime | None
) -> list[str]:
    """One line per condition group of ``node`` for ``partition`` (**Lines**); [] for a DAG without groups."""
    spec = graph.dags.get(node)
    if spec is None or not spec.groups:
        return []
    edges = {(e.source, e.task): e for e in spec.all_edges() if not e.failure}
    ledger = view.ledger.get((node, partition))
    consumed = set(ledger.input_names) if ledger is not None else set()
    lines = []
    for group in spec.groups:
        states = {m: _member_state(graph, view, plan, node, edges.get(m), m, partition) for m in group.members}
        lines.append(_rule_line(group, states, partition, now))
        if group.has_cutoff:
            took = [m for m in group.members if _consumed(graph, node, m, partition, consumed)]
            lines.append(_cutoff_line(group, states, took, partition, now, ledger is not None))
    return lines


def _rule_line(group: GroupSpec, states: dict[Member, str], partition: str, now: datetime | None) -> str:
    names = ", ".join(member_name(m) for m in group.members)
    if group.rule is GroupRule.ANY:
        head = f"runs when any of {names}"
    else:
        # The count the planner holds the group to (after a cutoff, its minimum), so the line agrees with the cutoff
        # line and the reason beside it.
        need = group.need_at(partition, now)
        done = sum(state == "done" for state in states.values())
        head = f"{need} of {len(group.members)} needed, met" if done >= need else f"{need - done} more of {need} needed"
    if all(state == "has not run" for state in states.values()):
        nobody = "neither" if len(states) == 2 else "none"
        return f"{head}: {nobody} has run for {partition}"
    by_state: dict[str, list[str]] = {}
    for member, state in states.items():
        by_state.setdefault(state, []).append(member_name(member))
    order = sorted(by_state, key=lambda s: (s != "done", s))  # done first, then the others by name of state
    return f"{head}: " + "; ".join(_said(by_state[s], s) for s in order)


def _said(names: list[str], state: str) -> str:
    """``eu done`` / ``us, apac have not run``: the verb agrees with how many members it is said of."""
    if state == "has not run" and len(names) > 1:
        state = "have not run"
    return f"{', '.join(names)} {state}"


def _cutoff_line(
    group: GroupSpec, states: dict[Member, str], took: list[Member], partition: str, now: datetime | None, ran: bool
) -> str:
    at = group.cutoff_at(partition)
    assert at is not None  # a group with a cutoff
    when = f"cutoff at {_when(group, at, partition)}"
    if now is None or now < at:
        return f"{when}: runs then with at least {group.minimum} (late: {_late_words(group)})"
    if not ran or not took:
        return f"{when} passed: runs with at least {group.minimum} (late: {_late_words(group)})"
    if len(took) >= group.need:
        return f"{when}: ran with {len(took)} of {group.need} needed ({', '.join(member_name(m) for m in took)})"
    late = [m for m in group.members if m not in took]
    arrived = [m for m in late if states[m] == "done"]
    text = f"{when} ran with {', '.join(member_name(m) for m in took)}"
    names = ", ".join(member_name(m) for m in (arrived or late))
    if group.late is Late.IGNORE:
        return f"{text}; {names} late: ignored"
    return f"{text}; {names} late: will rerun once"


def _late_words(group: GroupSpec) -> str:
    return "will rerun once" if group.late is Late.RERUN else "ignored"


def _when(group: GroupSpec, at: datetime, partition: str) -> str:
    """``06:00`` (a time of day, in its zone), ``06:00Z`` on the partition's day or a full UTC time otherwise."""
    if group.at_time is not None and group.grid is not None:
        zone = "" if group.grid.timezone == "UTC" else f" {group.grid.timezone}"
        return f"{clock_text(group.at_time)}{zone} ({at:%Y-%m-%d %H:%M}Z)"
    if not is_segment_only(partition) and at.date() == partition_datetime(partition).date():
        return f"{at:%H:%M}Z"
    return f"{at:%Y-%m-%d %H:%M}Z"


def _member_state(
    graph: Graph, view: View, plan: Plan | None, node: NodeId, edge: EdgeSpec | None, member: Member, partition: str
) -> str:
    """**The planner's facts** for one member: done, stale, failed, running, queued or has not run."""
    up, task = member
    parts = graph.source_partitions(node, up, partition)
    finished = edge is not None and edge.condition is Condition.FINISHED
    if not parts:
        return "has not run"
    found: list[str] = []
    for q in parts:
        fact = view.runs.get((up, q)) if task is None else view.tasks.get((up, task, q))
        state = fact.record.state if fact is not None else None
        if state is RunState.SUCCESS or (finished and state is RunState.FAILED):
            verdict = plan.verdicts.get((up, q)) if plan is not None and task is None and q == partition else None
            found.append("stale" if verdict is not None and not verdict.fresh else "done")
        elif state is None:
            found.append("has not run")
        else:
            found.append(str(state))
    for worst in ("failed", "running", "queued", "stale", "has not run"):
        if worst in found:
            return worst
    return "done" if all(s == "done" for s in found) else found[0]


def _consumed(graph: Graph, node: NodeId, member: Member, partition: str, inputs: set[str]) -> bool:
    """Whether the last trigger's inputs record ``member`` (semantics `group-consumed`)."""
    up, task = member
    return any(task_input_key(up, task, q, partition) in inputs for q in graph.source_partitions(node, up, partition))
