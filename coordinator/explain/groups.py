"""The words ``why``, ``status`` and the page use for a DAG's condition groups (semantics `condition-groups`,
`group-cutoff`, `group-late`): one line per group saying its declared rule and where each member stands, and for a
cutoff what the runs did.

Rules:
- **Pure.** (graph, view, plan, node, partition, now) in, lines out; no I/O, the clock is an argument.
- **The planner's facts.** A member is *done* when every partition it maps to holds its success (or its failure, for a
  ``finished`` member) and, where the plan judged that upstream in the same partition, the planner found it fresh;
  otherwise it is *stale*, *failed*, *running*/*queued* or *has not run*, as the view records. Which members a run
  consumed is what the ledger's inputs record (semantics `group-consumed`), nothing guessed; whether a member was in
  by the cutoff is its success's end (the time the deadlines read) against the cutoff.
- **The declared rule, always.** Every line of an ``at_least`` group starts with the rule as written (``at least 3 of
  4``, ``all 3`` for a group of every member) and, with a cutoff, its minimum (``2 after the cutoff at 06:00Z``): the
  count the planner holds the group to at ``now`` (after a cutoff, its minimum) is said beside it, never instead.
- **Lines.** ``runs when any of a, b: neither has run for P`` / ``at least 2 of 3, 1 more needed: eu done; us has not
  run`` / ``at least 2 of 3, met: eu, us done; apac failed``; after a cutoff the count says which number holds
  (``at least 3 of 4, met (2 after the cutoff): ...``). With a cutoff, a second line whose head is the whole rule
  (``at least 3 of 4, 2 after the cutoff at 06:00Z``) says: before it ``not passed yet (late: will rerun once)``
  (``not passed yet; its last run used ...`` once the rule was met), after it ``passed, not run yet (...)`` until a
  run; after a run that consumed fewer than the rule ``ran with eu, us at the cutoff; apac late, ignored`` (``will
  rerun once`` with ``"late": "rerun"``, ``after the cutoff`` when a member it ran with came after it, ``once the
  cutoff passed`` when one's end is unknown); after a run that consumed the rule's count ``its last run used eu, us
  (in by the cutoff) and apac (late)``, or ``..., all in by the cutoff`` (``all after the cutoff``; without the
  members' ends, what it used alone). What happened, from the ledger and the members' ends; never a count that did
  not happen.
"""

from __future__ import annotations

from datetime import datetime

from coordinator.core.actions import Plan
from coordinator.core.conditions import GroupRule, GroupSpec, Late, Member, clock_text, member_name
from coordinator.core.graph import Condition, EdgeSpec, Graph
from coordinator.core.model import NodeId, RunState, partition_datetime, task_input_key
from coordinator.core.partition import is_segment_only
from coordinator.core.view import LedgerFact, View


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
            ends = {m: _member_end(graph, view, node, m, partition, ledger) for m in group.members}
            lines.append(_cutoff_line(group, states, took, ends, partition, now, ledger is not None))
    return lines


def declared(group: GroupSpec) -> str:
    """**The declared rule**: ``at least 3 of 4`` / ``all 3`` (an ``at_least`` group), without its cutoff."""
    if group.need >= len(group.members):
        return f"all {len(group.members)}"
    return f"at least {group.need} of {len(group.members)}"


def _rule_line(group: GroupSpec, states: dict[Member, str], partition: str, now: datetime | None) -> str:
    names = ", ".join(member_name(m) for m in group.members)
    if group.rule is GroupRule.ANY:
        head = f"runs when any of {names}"
    else:
        # The count the planner holds the group to (after a cutoff, its minimum), so the line agrees with the cutoff
        # line and the reason beside it; said beside the declared rule, never instead of it.
        need = group.need_at(partition, now)
        done = sum(state == "done" for state in states.values())
        count = "met" if done >= need else f"{need - done} more needed"
        if need < group.need:
            count += f" ({need} after the cutoff)"
        head = f"{declared(group)}, {count}"
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
    group: GroupSpec,
    states: dict[Member, str],
    took: list[Member],
    ends: dict[Member, datetime | None],
    partition: str,
    now: datetime | None,
    ran: bool,
) -> str:
    at = group.cutoff_at(partition)
    assert at is not None  # a group with a cutoff
    head = f"{declared(group)}, {group.minimum} after the cutoff at {_when(group, at, partition)}"
    if now is None or now < at:
        if ran and took:  # it ran with the whole rule before the cutoff
            return f"{head}: not passed yet; its last run used {_names(took)}"
        return f"{head}: not passed yet (late: {_late_words(group)})"
    if not ran or not took:
        return f"{head}: passed, not run yet (late: {_late_words(group)})"
    after = [m for m in took if (end := ends[m]) is not None and end > at]
    if len(took) < group.need:
        # A run with fewer than the rule: the cutoff's run (semantics `group-cutoff`), at it when what it ran with
        # was in by then, else once the minimum came.
        late = [m for m in group.members if m not in took]
        arrived = [m for m in late if states[m] == "done"]
        when = "after the cutoff" if after else "at the cutoff"
        if not after and any(ends[m] is None for m in took):
            when = "once the cutoff passed"  # no end to place them by: only that a short run follows the cutoff
        names = ", ".join(member_name(m) for m in (arrived or late))
        return f"{head}: ran with {_names(took)} {when}; {names} late, {_late_words(group)}"
    unknown = [m for m in took if ends[m] is None]
    if unknown:  # no end to place them by: what the run used, and nothing said about when they came
        return f"{head}: its last run used {_names(took)}"
    if not after:
        return f"{head}: its last run used {_names(took)}, all in by the cutoff"
    in_time = [m for m in took if m not in after]
    if not in_time:
        return f"{head}: its last run used {_names(after)}, all after the cutoff"
    return f"{head}: its last run used {_names(in_time)} (in by the cutoff) and {_names(after)} (late)"


def _names(members: list[Member]) -> str:
    return ", ".join(member_name(m) for m in members)


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


def _member_end(
    graph: Graph, view: View, node: NodeId, member: Member, partition: str, ledger: LedgerFact | None
) -> datetime | None:
    """When ``member`` finished in every partition it maps to (the latest end), None when one is unknown or, for a
    member the last trigger recorded, when the result the view holds is no longer the one it used (a newer one's end
    says nothing of when the used one came)."""
    up, task = member
    ends: list[datetime] = []
    for q in graph.source_partitions(node, up, partition):
        fact = view.runs.get((up, q)) if task is None else view.tasks.get((up, task, q))
        end = fact.finished if fact is not None else None
        used = ledger.input(task_input_key(up, task, q, partition)) if ledger is not None else None
        if end is None or (used is not None and fact is not None and fact.rev != used):
            return None
        ends.append(end)
    return max(ends, default=None)


def _consumed(graph: Graph, node: NodeId, member: Member, partition: str, inputs: set[str]) -> bool:
    """Whether the last trigger's inputs record ``member`` (semantics `group-consumed`)."""
    up, task = member
    return any(task_input_key(up, task, q, partition) in inputs for q in graph.source_partitions(node, up, partition))
