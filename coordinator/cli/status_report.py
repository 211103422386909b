"""What ``coordinator status`` shows: read and decided once (:func:`read_status`), printed as JSON or text.

Rules:
- **Read once, render twice.** :func:`read_status` reads the store once and decides once into a
  :class:`StatusReport`; :func:`print_json` and :func:`print_text` only format it, so ``--format json`` and the text
  say the same things from the same values.
- **The file's trouble first.** An invalid local graph file is said on stderr before etcd is read: if etcd cannot be
  read either, the file's trouble must not be hidden behind etcd's; the adopted graph is shown instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import typer
from rich.table import Table

from coordinator.cli.app import err, fail, out, run_async
from coordinator.cli.asset_cmds import AssetStreamRow, asset_rows, print_assets
from coordinator.cli.inspect_reads import (
    decide_now,
    first_start_lines,
    partition_arg,
    read_all_holds,
    read_lineage_states,
    read_model,
)
from coordinator.core.adoption import FirstAdoption
from coordinator.core.deadline.levels import graph_levels
from coordinator.core.deadline.states import deadline_states
from coordinator.core.floor import RetentionFloor
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import adopted_graph
from coordinator.core.holds import Hold, HoldSet, standing_holds
from coordinator.core.model import NodeId
from coordinator.core.planner import partitions_to_plan
from coordinator.errors import SpecError
from coordinator.etcd import EtcdStore
from coordinator.explain.deadlines import DeadlineRow, deadline_rows, level_text, stamp
from coordinator.explain.holds import status_lines as status_hold_lines
from coordinator.explain.lineage import LineageState
from coordinator.explain.report import AdoptionReport, StatusRow, TriggerSummary, problems_lines, status_rows
from coordinator.informer.presence_value import airflow_majors, status_header
from coordinator.informer.read_model import READERS, Family, StoreModel
from coordinator.informer.trigger_history import RecentTriggers, recent_triggers
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec

#: ``status`` says how many times a DAG was triggered within this much before now, when more than once.
LAST_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class StatusReport:
    """Everything ``status`` shows, read and decided at one revision."""

    model: StoreModel
    #: The local graph file when it is valid (None: the adopted graph is shown).
    local: Graph | None
    graph: Graph
    header: list[str]
    first: FirstAdoption | None
    first_lines: list[str]
    floor: RetentionFloor | None
    holds: list[Hold]
    now: datetime
    rows: list[StatusRow]
    deadlines: list[DeadlineRow]
    assets: list[AssetStreamRow]
    lineage: list[LineageState]
    #: The partitions shown, and how many more the store has.
    parts: list[str]
    more: int
    #: The run states' prefix, named when there are none.
    runs_prefix: str


def print_json(report: StatusReport) -> None:
    """``--format json``: one object."""
    typer.echo(json.dumps(_payload(report), indent=2))


def _adoption(first: FirstAdoption | None) -> AdoptionReport:
    if first is None:
        return AdoptionReport(adopted=True)
    return AdoptionReport(
        adopted=False, held=first.paused, triggers=len(first.triggers), partitions=first.partitions,
        limit=first.limit, summary=first.summary(), next=first.how_to_proceed() if first.paused else [],
    )  # fmt: skip


def _payload(report: StatusReport) -> dict[str, Any]:
    view, local, floor = report.model.view, report.local, report.floor
    leader = report.model.leader
    return {
        "revision": view.revision,
        "retention": floor.model_dump(mode="json") if floor is not None else None,
        "adoption": _adoption(report.first).model_dump(exclude_none=True),
        "rows": [row.model_dump(mode="json") for row in report.rows],
        "problems": problems_lines(report.model.bad_values()),
        "leader": leader.identity if leader is not None else None,
        "graph": {
            "adopted_digest": view.activation.digest if view.activation else None,
            "local_digest": local.digest if local is not None else None,
            "local_valid": local is not None,
            "shown": "local" if local is not None else "adopted",
        },
        "more_partitions": report.more,
        "header": report.header,
        "deadlines": [row.model_dump(mode="json") for row in report.deadlines],
        # semantics `trigger-budget`: the instances the trigger budget stopped (stored "held": false after a release)
        "budget": [{"instance": i, **s.model_dump(mode="json")} for i, s in sorted(view.budget_states().items())],
        # semantics `asset-order`: the text output's "shared assets" table, one object per stream
        "assets": [row.model_dump(mode="json", by_alias=True) for row in report.assets],
        "openlineage": [
            {
                "node": s.node.qualified,
                "partition": s.partition,
                "entry": s.entry.label,
                "state": s.record.state.value if s.record is not None else None,
                "describe": s.describe(),
            }
            for s in report.lineage
        ],
        # semantics `flap-held`: each run state held because it flapped, with the command that releases it
        "flaps": [
            {
                "dag": n.qualified,
                "partition": p,
                **f.record.model_dump(mode="json"),
                "describe": f.record.describe(n, p),
            }
            for n, p, f in view.standing_flaps()
        ],
    }


def print_text(report: StatusReport) -> None:
    """The text output: what stands above the table, the table of rows, the deadlines, what was left out."""
    _print_preamble(report)
    view = report.model.view
    if not report.parts:
        out.print(f"no run states under {report.runs_prefix} yet (revision {view.revision})")
        return
    out.print(_rows_table(report.rows, view.revision))
    for item in report.lineage:
        out.print(f"openlineage: {item.describe()}", markup=False, soft_wrap=True)
    if report.deadlines:
        out.print(_deadlines_table(report.deadlines))
    if report.more > 0:
        out.print(f"{report.more} more partition(s) (use --last N or -p PARTITION)", markup=False)
    for line in problems_lines(report.model.bad_values()):
        out.print(f"[yellow]problem[/]: {line}")


def _print_preamble(report: StatusReport) -> None:
    """The header, the first adoption, the retention floor, the trigger budget, the flapping run states held, the
    operators' holds, the assets."""
    for line in (*report.header, *report.first_lines):
        out.print(line, markup=False, soft_wrap=True)
    if report.floor is not None:
        out.print(f"retention: {report.floor.describe()}", markup=False, soft_wrap=True)
    for instance, budget in sorted(report.model.view.budget_states().items()):
        # The watcher's limit is not known here: a larger one lifts the stop (semantics `budget-holds-stay`)
        if budget.stopped:
            out.print(f"trigger budget: {budget.describe(instance)}", markup=False, soft_wrap=True)
        # Semantics `budget-per-dag`: a DAG beyond its allowance, the others run.
        for dag_id, stopped in budget.stopped_dags().items():
            out.print(f"trigger budget: {stopped.describe(instance, dag_id)}", markup=False, soft_wrap=True)
    # Semantics `flap-held`: each run state the leader holds because it flapped, and the command that releases it.
    for node, partition, flap in report.model.view.standing_flaps():
        out.print(f"flapping: {flap.record.describe(node, partition)}", markup=False, soft_wrap=True)
    # Each operator's hold that stands (``explain/holds.py``).
    for line in status_hold_lines(report.holds, report.now):
        out.print(line, markup=False, soft_wrap=True)
    if report.graph.asset_routes:
        print_assets(report.graph, report.assets)


def _rows_table(rows: list[StatusRow], revision: int) -> Table:
    table = Table(title=f"coordinator status at revision {revision}")
    # One state per row (report.row_status) with its one reason: a rerun in progress is not also "success" and
    # "stale" at once; the raw parts stay in --format json.
    for column in ("partition", "dag", "state", "why", "last trigger", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        trig = row.last_trigger
        # DUE and HELD in capitals: the rows an operator acts on (a hold's id is what `release-hold` takes).
        state = row.status.upper() if row.status in ("due", "held") else row.status
        state += f" {row.held_by}" if row.held_by else ""
        hold_line = (f"held by hold {row.held_by}: the leader starts it once released",) if row.held_by else ()
        table.add_row(
            row.partition, row.dag, state,
            "\n".join((*hold_line, row.summary, *row.conditions)),  # each condition group's line (``explain.groups``)
            f"{trig.action} {trig.status} #{trig.count} {trig.run_id}{_last_hour(trig)}" if trig else "-",
            # Semantics `trigger-errors`: a refused trigger says when the leader tries it again.
            (row.last_error or "") + (f"\nnext try at {row.next_try}" if row.next_try else ""),
        )  # fmt: skip
    return table


def _last_hour(trig: TriggerSummary) -> str:
    """How many triggers of the last hour, when more than one (``informer/trigger_history.py``)."""
    if trig.last_hour is None or trig.last_hour < 2:
        return ""
    # Created or cleared: each is one trigger of the ledger (its ``#N`` counts them all, since the first).
    return f"\ntriggered {RecentTriggers(trig.last_hour, trig.last_hour_complete).describe()}"


async def _with_last_hour(settings: Settings, rows: list[StatusRow], now: datetime) -> list[StatusRow]:
    """``rows`` with, for each DAG triggered more than once whose last trigger is recent, how many times in the last
    hour (``informer/trigger_history.py``)."""
    since = now - LAST_HOUR
    wanted = [
        i for i, row in enumerate(rows)
        if row.last_trigger is not None and row.last_trigger.count > 1
        and (row.last_trigger.at is None or datetime.fromisoformat(row.last_trigger.at) >= since)
    ]  # fmt: skip
    if not wanted:
        return rows
    found = list(rows)
    async with await EtcdStore.connect(settings.etcd()) as store:
        for i in wanted:
            row = rows[i]
            trig = row.last_trigger
            assert trig is not None
            key = settings.keys.trigger_key(NodeId(row.instance, row.dag), row.partition)
            recent = await recent_triggers(store, key, trig.revision, since)
            update = {"last_hour": recent.count, "last_hour_complete": recent.complete}
            found[i] = row.model_copy(update={"last_trigger": trig.model_copy(update=update)})
    return found


def _deadlines_table(deadlines: list[DeadlineRow]) -> Table:
    late = Table(title="deadlines (expected_by)")
    for column in ("partition", "dag", "deadline", "state", "eta", "start", "cause"):
        late.add_column(column, overflow="fold")
    for d in deadlines:
        # ``explain.deadlines``'s **The leader's causes**.
        state = f"{d.state} (leader)" if d.judged_by == "leader" else d.state
        # The root's predicted start and where it came from (history, timetable, airflow_version, default).
        start = f"{stamp(d.start)} ({d.start_source})" if d.start is not None else "-"
        cause = d.chain or ""
        if d.state == "at_risk" and d.cause:  # a root that has not started: say so, the chain alone would not
            cause = f"{d.cause}: {cause}"
        if d.levels:  # escalation: which levels fire (semantics `deadline-levels`)
            state = f"{state} [{level_text(d.levels)}]"
        # A task deadline: judged on that task (semantics `deadline-task`)
        dag = f"{d.dag} task {d.task}" if d.task else d.dag
        late.add_row(d.partition, dag, stamp(d.deadline), state, stamp(d.eta), start, cause)
    return late


def _local_graph(settings: Settings) -> tuple[Graph | None, SpecError | None]:
    """The local graph file, or why it is invalid (said at once on stderr: ``status`` then shows the adopted one)."""
    try:
        return load_spec(settings.deps), None
    except SpecError as exc:
        # Said first: if etcd cannot be read either, the file's trouble must not be hidden behind etcd's.
        err.print(f"note: {settings.deps} is invalid (`coordinator validate` lists the problems); showing the adopted "
                  "graph", markup=False, soft_wrap=True)  # fmt: skip
        return None, exc


def read_status(settings: Settings, partition: str | None, last: int) -> StatusReport:
    """Read the store once, decide once: everything ``status`` shows for ``partition`` (the ``last`` newest when
    None)."""
    local, local_error = _local_graph(settings)
    partitions = [partition_arg(partition)] if partition else None
    # The asset streams from the same read, unless the local graph routes no asset (the adopted one is not known yet).
    routes = local is None or bool(local.asset_routes)
    model = run_async(lambda: read_model(settings, READERS | {Family.ASSETS} if routes else READERS))
    view = model.view
    adopted = adopted_graph(view.activation, f"the adopted graph ({view.graph_key})") if view.activation else None
    graph = local or adopted
    if graph is None:
        assert local_error is not None  # no local graph only when the file is invalid
        fail("\n".join(local_error.problems))  # nothing adopted to fall back on: the file's problems, exit 2
    header = status_header(
        leader=model.leader, watchers=model.watchers, deps=str(settings.deps), local=local, adopted=adopted,
        adopted_digest=view.activation.digest if view.activation else None, adopted_rev=view.activation_rev,
    )  # fmt: skip
    # The partitions the watcher plans (core/decide.py), mapped ones included: a fan-out's hours exist nowhere in the
    # store until they run, and a due decision there must be shown.
    every = partitions_to_plan(graph, view)
    parts = partitions or every[-last:]
    # Never adopted: show what the first pass will decide (nothing while it would be paused).
    decision = decide_now(graph, view, settings, parts)
    first_lines = first_start_lines(decision.adoption.first, settings)
    # Operators' holds, read once: the header lists them, and a due run one covers is HELD, not DUE (the leader
    # starts nothing a hold covers: ``watcher/triggers.py``).
    holds = run_async(lambda: read_all_holds(settings))
    hold_set = HoldSet(graph, standing_holds(holds, decision.now))
    rows = status_rows(graph, decision.plan, parts, view, decision.now, hold_set)
    rows = run_async(lambda: _with_last_hour(settings, rows, decision.now))
    # A root's predicted start, as the leader predicts it (semantics `deadlines-judged`)
    statuses = deadline_states(graph, view, decision.now, majors=airflow_majors(model.watchers))
    deadlines = deadline_rows(statuses, partitions, model.recorded, graph_levels(graph))
    assets = asset_rows(graph, model.assets)
    # semantics `lineage-upstreams`: each OpenLineage node at the shown partitions, with its job and last event
    lineage = run_async(lambda: read_lineage_states(settings, graph, parts)) if graph.lineage_jobs and parts else []
    return StatusReport(
        model=model, local=local, graph=graph, header=header, first=decision.adoption.first, first_lines=first_lines,
        floor=decision.floor, holds=holds, now=decision.now, rows=rows, deadlines=deadlines, assets=assets,
        lineage=lineage, parts=parts, more=0 if partitions else len(every) - len(parts), runs_prefix=settings.keys.runs,
    )  # fmt: skip
