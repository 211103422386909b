"""What ``coordinator status`` prints, from what it read and decided: the JSON payload and the text tables.

Rules:
- **Read once, render twice.** ``engine_cmds.status`` reads the store once and decides once; these functions only
  format that :class:`StatusReport`, so ``--format json`` and the text say the same things from the same values.
- **No I/O but the console.** Nothing here reads etcd, a file or a clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from coordinator.cli.app import out
from coordinator.cli.asset_cmds import AssetStreamRow, print_assets
from coordinator.core.adoption import FirstAdoption
from coordinator.core.floor import RetentionFloor
from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.explain.deadlines import DeadlineRow, level_text, stamp
from coordinator.explain.holds import status_lines as status_hold_lines
from coordinator.explain.lineage import LineageState
from coordinator.explain.report import AdoptionReport, StatusRow, problems_lines
from coordinator.informer.read_model import StoreModel


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
    """The header, the first adoption, the retention floor, the trigger budget, the operators' holds, the assets."""
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
            f"{trig.action} {trig.status} #{trig.count} {trig.run_id}" if trig else "-",
            row.last_error or "",
        )  # fmt: skip
    return table


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
