"""Plain answers for operators: ``status`` rows and ``why`` chains, rendered from the planner's verdicts.

Rules: pure functions of (graph, view, plan); no I/O. The JSON form is stable (docs/howto/doctor.md, "Asking why")
so that dashboards and scripts can rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from coordinator.core.actions import Plan, Verdict
from coordinator.core.error_backoff import retry_stamp
from coordinator.core.graph import Graph
from coordinator.core.holds import HoldSet
from coordinator.core.model import NodeId, RunState, TriggerRecord, TriggerStatus
from coordinator.core.segments import can_have
from coordinator.core.spec.near_misses import CloseDags
from coordinator.core.view import View
from coordinator.explain.groups import group_lines
from coordinator.explain.used_runs import used_runs_line


class TriggerSummary(BaseModel):
    """The last trigger of a DAG for a partition, as ``status --format json`` shows it."""

    model_config = ConfigDict(frozen=True)
    status: str
    action: str
    run_id: str
    at: str | None
    revision: int
    inputs: dict[str, int]
    count: int
    #: How many of the ``count`` triggers were requested in the last hour, read from the ledger key's history
    #: (``informer/trigger_history.py``) when more than one may have been; None: not read (the only one, or older).
    last_hour: int | None = None
    #: False: etcd's history was cut (compacted) before the hour's start: ``last_hour`` is a lower bound.
    last_hour_complete: bool = True


class StatusRow(BaseModel):
    """One (partition, DAG) line of ``status``; its JSON form is the documented, stable one."""

    model_config = ConfigDict(frozen=True)
    partition: str
    dag: str
    instance: str
    state: str | None
    fresh: bool
    due: bool
    waiting_on: list[str]
    summary: str
    last_trigger: TriggerSummary | None
    last_error: str | None
    #: The one state the text table shows (:func:`row_status`); ``state``/``fresh``/``due`` are its raw parts.
    status: str = ""
    #: One line per condition group of the DAG (``explain.groups``: its rule, where each member stands, its cutoff);
    #: [] for a DAG without groups.
    conditions: list[str] = []
    #: The standing hold that keeps a due run back (its id; ``status`` is then "held"), as ``why`` names it.
    held_by: str | None = None
    #: When the leader tries a refused trigger again (semantics `trigger-errors`: its ledger entry's ``retry_at``, UTC
    #: to the second); None unless the trigger failed.
    next_try: str | None = None


class AdoptionReport(BaseModel):
    """Whether a graph was ever adopted under the prefix and, if not, what the first start will do
    (semantics `first-adoption`)."""

    model_config = ConfigDict(frozen=True)
    adopted: bool
    held: bool | None = None
    triggers: int | None = None
    partitions: list[str] | None = None
    limit: int | None = None
    summary: str | None = None
    next: list[str] | None = None


def status_rows(
    graph: Graph,
    plan: Plan,
    partitions: Iterable[str],
    view: View | None = None,
    now: datetime | None = None,
    holds: HoldSet | None = None,
) -> list[StatusRow]:
    """One row per (partition, DAG) in graph order: state, freshness, due, waiting on, last trigger, last error,
    and the condition groups' lines (with ``view``; ``now`` as the plan was decided, for a cutoff). With the standing
    ``holds``, a due run one of them covers is "held" by it (:func:`held_status`)."""
    rows: list[StatusRow] = []
    for partition in partitions:
        for node in graph.topo_order:
            verdict = plan.verdicts.get((node, partition))
            if verdict is None or _off_grid(graph, verdict):
                continue
            fact = view.runs.get((node, partition)) if view is not None else None
            spec = graph.dags[node]
            handler = spec.is_failure_handler or spec.is_late_handler
            rev = fact.rev if fact is not None else None
            row = _row(verdict, row_status(verdict, rev, handler=handler, scheduled=spec.scheduled))
            hold = held_status(row.status, holds, node, partition)
            if hold is not None:
                row = row.model_copy(update={"status": "held", "held_by": hold})
            if view is not None and spec.groups:
                row = row.model_copy(update={"conditions": group_lines(graph, view, plan, node, partition, now)})
            rows.append(row)
    return rows


def row_status(verdict: Verdict, run_rev: int | None, *, handler: bool = False, scheduled: bool = False) -> str:
    """ONE state for a row, the most pressing first: a failed or unconfirmed trigger, a run in progress, a rerun
    asked for but not started (the old attempt's "success" is history then, not the state), due, the outcome.
    ``run_rev``: revision of the run state in the view (None: none). ``handler``: a failure or late handler that
    never ran waits (for a failure or a deadline change of its sources) rather than "not run". The page draws exactly
    this state (``page.model.classify``): one state function, so the page and ``status`` cannot drift apart.
    ``scheduled``: a scheduled dependent (semantics `scheduled-permit`), whose run in progress without a granted permit
    is "waiting in Airflow" (its wait is; "due" once its permit is next) and whose granted permit not yet taken by a run
    is "permit granted"."""
    ledger = verdict.ledger
    if scheduled and ledger is not None and ledger.withdrawn is not None:
        ledger = None  # semantics `permit-retracted`: as if never granted (its run, if any, waits in Airflow)
    if ledger is not None and ledger.status is TriggerStatus.ERROR:
        return "trigger failed"
    if ledger is not None and ledger.status is TriggerStatus.PENDING:
        return "triggering"
    if verdict.state is not None and verdict.state.active:
        if scheduled and ledger is None:  # its wait is running: due (its permit is next) or still waiting
            return "due" if verdict.due else "waiting in Airflow"
        return str(verdict.state)
    if ledger is not None and (run_rev is None or run_rev < ledger.intent_rev):
        if scheduled:
            return "permit granted"
        return "rerun requested" if verdict.state is not None else "triggered"
    if verdict.due:
        return "due"
    if verdict.state is RunState.SUCCESS:
        return "success" if verdict.fresh else "stale"
    if verdict.state is RunState.FAILED:
        return "failed"
    return "waiting" if verdict.blocked_by or handler else "not run"


def held_status(status: str, holds: HoldSet | None, node: NodeId, partition: str) -> str | None:
    """The id of the standing hold that keeps a "due" run back, or None. Only "due": that is the run the leader would
    start now and a hold stops it (``watcher/triggers.py``); a run waiting on its upstreams is not held back by a hold
    but by them, and the first hold by creation is named, as ``why`` and the watcher's log name it."""
    if status != "due" or not holds:
        return None
    hold = holds.held_by(node, partition)
    return hold.id if hold is not None else None


def _off_grid(graph: Graph, verdict: Verdict) -> bool:
    """A DAG with nothing of its own in a partition it can never have (``core/segments.py``'s **Own partitions**): a
    daily DAG at 05:00Z of its hourly upstream, a daily DAG for the segment ``eu``, a DAG of segments alone for a day.
    That partition is not one of its own, so a row would only be noise."""
    if verdict.state is not None or verdict.ledger is not None:
        return False
    spec = graph.dags[verdict.node]
    return not can_have(spec.grid, spec.segments, verdict.partition)


def _row(verdict: Verdict, status: str = "") -> StatusRow:
    ledger = verdict.ledger
    trigger: TriggerSummary | None = None
    if ledger is not None:
        rec = ledger.record
        at = rec.done_at or rec.requested_at
        trigger = TriggerSummary(
            status=str(rec.status),
            action=str(rec.action),
            run_id=rec.run_id,
            at=at.isoformat() if at else None,
            revision=ledger.intent_rev,
            inputs=dict(rec.inputs),
            count=rec.trigger_count,
        )
    return StatusRow(
        partition=verdict.partition,
        dag=str(verdict.node),
        instance=verdict.node.instance,
        state=str(verdict.state) if verdict.state else None,
        fresh=verdict.fresh,
        due=verdict.due,
        waiting_on=[str(n) for n in verdict.blocked_by],
        summary=verdict.summary,
        last_trigger=trigger,
        last_error=ledger.record.last_error if ledger is not None else None,
        status=status,
        next_try=_next_try(ledger.record) if ledger is not None else None,
    )


def _next_try(record: TriggerRecord) -> str | None:
    """Semantics `trigger-errors`: when a refused trigger is tried again (None unless it failed)."""
    if record.status is not TriggerStatus.ERROR or record.retry_at is None:
        return None
    return retry_stamp(record.retry_at)


def why(
    graph: Graph, plan: Plan, node: NodeId, partition: str, view: View | None = None, now: datetime | None = None
) -> list[str]:
    """The chain of reasons, outermost first, indented by depth: why ``node`` is (not) running for ``partition``;
    with ``view``, each DAG with condition groups says where each group stands (``explain.groups``, at ``now``) and
    each DAG with a run in flight which upstream runs its trigger used (``explain.used_runs``)."""
    lines: list[str] = []
    seen: set[NodeId] = set()

    def explain(current: NodeId, depth: int) -> None:
        verdict = plan.verdicts.get((current, partition))
        if verdict is None or current in seen:
            return
        seen.add(current)
        lines.append("  " * depth + verdict.summary)
        if view is not None:
            lines.extend("  " * (depth + 1) + line for line in group_lines(graph, view, plan, current, partition, now))
            used = used_runs_line(graph, view, current, partition)  # a run in flight: which upstream runs it reads
            if used is not None:
                lines.append("  " * (depth + 1) + used)
        if verdict.ledger is not None and verdict.ledger.record.last_error and depth == 0:
            lines.append("  " * (depth + 1) + f"last error: {verdict.ledger.record.last_error}")
        for up in verdict.blocked_by:
            if up in graph.mapped_edges.get(current, ()):
                # another partition's story (semantics `partition-grids`): the reason line already names what is missing
                continue
            up_verdict = plan.verdicts.get((up, partition))
            if up_verdict is not None and (up_verdict.blocked_by or not graph.dags[up].is_root):
                explain(up, depth + 1)

    explain(node, 0)
    return lines


def undeclared_lines(graph: Graph, plan: Plan, node: NodeId, partition: str) -> list[str]:
    """``why``'s word on a misspelt upstream: each DAG that ``node`` or a DAG of its chain waits for, that no key of
    the file declares, that has no run state here, and whose name is a near miss of another DAG's
    (``spec.near_misses``, as ``validate`` and ``doctor`` judge it): that it is declared nowhere, and the close names.
    "X has not run" alone sends the reader to Airflow for a DAG that does not exist. A root declared nowhere with no
    close name is how roots are usually written (``"02": "01"``), so it gets no line. Only a graph read from a file
    knows what was declared (the adopted one does not): nothing then. Not part of :func:`why`, which the page calls
    for every DAG: the near-miss index costs a pass over the graph, paid once here."""
    if not graph.declared:
        return []
    lines: list[str] = []
    close: CloseDags | None = None
    seen: set[NodeId] = set()
    todo = [node]
    while todo:
        current = todo.pop(0)
        verdict = plan.verdicts.get((current, partition))
        if verdict is None or current in seen:
            continue
        seen.add(current)
        for up in verdict.blocked_by:
            upstream = plan.verdicts.get((up, partition))
            if up in graph.declared:
                todo.append(up)  # the chain ``why`` walks
                continue
            if upstream is not None and upstream.state is not None:
                continue  # it ran: a DAG of that name exists
            close = close or CloseDags(graph.dags)
            named = " or ".join(repr(str(c)) for c in close.of(up.dag_id)[:3])
            if named:
                lines.append(f"{up} is declared nowhere in {graph.source}, so it is a root that {current} waits for "
                             f"and that may never run — did you mean {named}?")  # fmt: skip
    return lines


def problems_lines(problems: Mapping[str, str]) -> list[str]:
    """``key: problem`` for every key the read model left out (``StoreModel.bad_values``), in order."""
    return [f"{key}: {problem}" for key, problem in problems.items()]
