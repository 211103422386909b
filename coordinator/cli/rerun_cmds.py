"""``coordinator plan rerun`` (the preview of a rerun's whole cascade) and ``coordinator rerun`` (docs/howto/rerun.md).

Rules:
- **One planner.** ``plan rerun`` loads the store through ``informer.read_model.load`` like ``status`` and ``why``,
  and asks ``core.rerun.preview``, which runs the one decision (``core/decide.py``) on a copy of the view. It writes
  nothing. ``rerun`` shows the same preview before it acts.
- **Confirm on purpose.** ``rerun`` without ``--yes`` shows the preview and asks on a terminal; without a terminal it
  refuses and says to add ``--yes``. With ``--yes`` it acts without showing the cascade.
- **Record, then clear.** For each target run: with ``--no-cascade`` the no-cascade record is written first
  (semantics `no-cascade-once`; a record of the same attempt, left by an earlier try that crashed before its clear,
  is kept as it is), then the run is read from Airflow and cleared unless it is queued or running already (an earlier
  try's clear, or a run under way). A clear whose answer is lost is looked up: a ``queued_at`` that moved means it
  happened. So repeating the command after a crash at any point does the same thing once: the record means the same
  and the clear is not repeated while the rerun is under way. (A repeat after the rerun's run has FINISHED is a new
  rerun: nothing tells the two apart.)
- **Targets.** The runs of TARGET whose partition is in [--from, --to] and that have a run state in the store; a run
  queued or running now is not cleared (rerun it after it ends: the command says so).
- **Recorded.** Every ``rerun`` that clears appends one entry to the audit trail (``writers/history.py``): who, when,
  why, the runs cleared.
- **Outside the graph.** ``plan rerun`` of a DAG the graph does not name, whose runs the plugin records, previews it
  through Airflow's asset schedules (``core/rerun.py``'s **Outside the graph**): the assets its tasks produce and the
  DAGs scheduled on them are read from its instance's Airflow (and from each instance a route of the graph carries
  those assets to); a DAG with no run in the store, or an instance with no Airflow configured, is refused with why.
- **Exit codes.** 2 bad input (unknown DAG, a range with no run, no Airflow configured for the instance, a refusal
  without a terminal); 1 etcd or Airflow failed (the runs cleared before the failure are listed; repeat to finish).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from coordinator.airflow.client import AirflowClient
from coordinator.cli.app import (
    EXIT_FAILURE,
    INSPECT,
    OPERATE,
    AirflowUrlOpt,
    DepsOpt,
    EtcdOpt,
    InstancesOpt,
    PanelOrderGroup,
    PrefixOpt,
    app,
    build_settings,
    fail,
    out,
    run_async,
)
from coordinator.cli.incident_cmds import who_acts
from coordinator.cli.rerun_outside import outside_preview
from coordinator.core.graph import Graph
from coordinator.core.holds import HistoryAction, HistoryEntry
from coordinator.core.model import NodeId, RunState, canonical_partition, parse_run_record
from coordinator.core.no_cascade import NoCascade, NoCascadeRecord, dump_no_cascade, parse_no_cascade
from coordinator.core.rerun import DeadlineMove, RerunPreview, RunPreview, Step, preview
from coordinator.core.spec.near_misses import close_dags
from coordinator.errors import ConfigError, CoordinatorError, SpecError
from coordinator.etcd import EtcdStore
from coordinator.informer.holds import read_holds
from coordinator.informer.read_model import VIEW, load
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.writers.history import append_history, new_id

plan = typer.Typer(
    name="plan",
    help="Preview what a command would do across every deployment, writing nothing.",
    no_args_is_help=True,
    cls=PanelOrderGroup,
)
app.add_typer(plan, rich_help_panel=INSPECT)

TargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="the DAG to rerun: dag id, or instance/dag_id")]
FromOpt = Annotated[str, typer.Option("--from", metavar="DATE", help="first logical date (inclusive)")]
ToOpt = Annotated[str, typer.Option("--to", metavar="DATE", help="last logical date (inclusive)")]
NoCascadeOpt = Annotated[
    bool,
    typer.Option(
        "--no-cascade",
        help="rerun TARGET only: its dependents keep what they consumed (a metadata-only rerun, a re-export)",
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", metavar="NAME", show_default="the etcd user, else the login name", help="who does it"),
]
ReasonOpt = Annotated[
    str, typer.Option("--reason", metavar="WHY", show_default="none", help="why, for the audit trail (`history`)")
]


@dataclass(frozen=True, slots=True)
class Cleared:
    """What ``rerun`` did to one target run."""

    node: NodeId
    partition: str
    run_id: str | None
    #: ``cleared``; ``rerunning`` (queued or running in Airflow: not cleared again); ``running`` (queued or running in
    #: the store: not cleared); ``skipped`` (no run to clear).
    outcome: str
    detail: str


def _settings(etcd: str | None, prefix: str | None, deps: Path | None, **extra: Any) -> Settings:
    return build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps, **extra)


def _graph(settings: Settings) -> Graph:
    try:
        return load_spec(settings.deps)
    except SpecError as exc:
        fail("\n".join(exc.problems))


def _node(graph: Graph, dag: str, settings: Settings) -> NodeId:
    node = graph.resolve(dag)
    if node is None:
        close = close_dags(dag, graph.dags)
        hint = f"did you mean {' or '.join(map(str, close[:3]))}?" if close else "see `coordinator status`"
        fail(f"{dag!r} is not a DAG in {settings.deps}: {hint}")
    return node


def _ambiguous(graph: Graph, target: str) -> bool:
    """A bare dag id that several instances of the graph have (``_node`` says so)."""
    return "/" not in target and sum(n.dag_id == target for n in graph.dags) > 1


def _range(start: str, end: str) -> tuple[str, str]:
    try:
        lo, hi = canonical_partition(start), canonical_partition(end)
    except ValueError as exc:
        fail(str(exc))
    if lo > hi:
        fail(f"--from {start} is after --to {end}")
    return lo, hi


def _load_preview(
    settings: Settings, graph: Graph, node: NodeId, lo: str, hi: str, no_cascade: bool, now: datetime
) -> RerunPreview:
    """**One planner**: the store read as ``status`` reads it, the preview decided on a copy of its view."""

    async def read() -> RerunPreview:
        async with await EtcdStore.connect(settings.etcd()) as store:
            model = await load(store, settings.keys, VIEW)
            holds, _ = await read_holds(store, settings.keys)
        view = model.view
        targets = [(n, p) for (n, p), _ in view.runs.items() if n == node and lo <= p <= hi]
        held = holds.hold_set(graph, now)  # holds in the way (``core.holds``)
        return preview(graph, view, targets, now=now, no_cascade=no_cascade, holds=held)

    return run_async(read)


def _run_line(run: RunPreview) -> str:
    step = "clear" if run.step is Step.CLEAR else "create" if run.step is Step.CREATE else "skip"
    who = run.by if run.by in ("rerun", "airflow") else "watcher"
    line = f"    {step:<6} {run.node.dag_id} {run.partition} ({who}): {run.reason}"
    if run.held_by:
        line += f"; HELD: {run.held_by}"
    return line


def print_preview(result: RerunPreview, node: NodeId, lo: str, hi: str) -> None:
    how = "without its cascade" if result.no_cascade else "and its cascade"
    out.print(f"plan: rerun {node} for {lo} .. {hi} {how} (store revision {result.revision}; nothing written)",
              markup=False, soft_wrap=True)  # fmt: skip
    if not result.runs:
        out.print("  no run of it in that range: nothing to rerun", markup=False)
        return
    for instance, depths in result.by_instance().items():
        out.print(f"instance {instance}:", markup=False)
        for depth, runs in depths.items():
            out.print(f"  depth {depth}" + (" (the target)" if depth == 0 else ""), markup=False)
            for run in runs:
                out.print(_run_line(run), markup=False, soft_wrap=True)
    counts = result.counts()
    total = sum(counts.values())
    per = ", ".join(f"{i}: {c}" for i, c in counts.items()) or "none"
    by_airflow = sum(r.by == "airflow" for r in result.cascade)
    airflow = f"{by_airflow} by Airflow's asset schedules, " if by_airflow else ""
    watchers = len(result.cascade) - by_airflow
    out.print(f"total: {total} run(s) cleared or started ({per}); {len(result.cleared)} cleared by rerun, "
              f"{airflow}{watchers} by the watchers after", markup=False, soft_wrap=True)  # fmt: skip
    running = [r for r in result.runs if r.running and r.depth > 0]
    if running:
        out.print(f"running now, cleared after they end: {', '.join(f'{r.node} {r.partition}' for r in running)}",
                  markup=False, soft_wrap=True)  # fmt: skip
    held = [r for r in result.runs if r.held_by]
    if held:
        out.print(f"held: {len(held)} run(s) would wait for a release (`coordinator holds`)", markup=False)
    for move in result.deadlines:
        before, after = move.before, move.after
        eta = after.eta.isoformat(timespec="minutes") if after.eta is not None else "unknown"
        out.print(f"deadline: {move.node} {move.partition}: {before.state} -> {after.state} (eta {eta}, deadline "
                  f"{after.deadline.isoformat(timespec='minutes')})", markup=False, soft_wrap=True)  # fmt: skip


def _move_json(move: DeadlineMove) -> dict[str, Any]:
    before, after = move.before, move.after
    return {
        "node": move.node.qualified, "partition": move.partition, "before": before.state.value,
        "after": after.state.value, "deadline": after.deadline.isoformat(),
        "eta_before": before.eta.isoformat() if before.eta else None,
        "eta_after": after.eta.isoformat() if after.eta else None,
    }  # fmt: skip


def _preview_json(result: RerunPreview) -> dict[str, Any]:
    def run(r: RunPreview) -> dict[str, Any]:
        return {
            "instance": r.node.instance, "dag": r.node.dag_id, "partition": r.partition, "depth": r.depth,
            "step": r.step.value, "by": r.by, "run_id": r.run_id, "running": r.running, "reason": r.reason,
            "held_by": r.held_by,
        }  # fmt: skip

    return {
        "revision": result.revision,
        "no_cascade": result.no_cascade,
        "targets": [{"node": n.qualified, "partition": p} for n, p in result.targets],
        "runs": [run(r) for r in result.runs],
        "counts": result.counts(),
        "running": [run(r) for r in result.runs if r.running and r.depth > 0],
        "deadlines": [_move_json(m) for m in result.deadlines],
    }


@plan.command("rerun", rich_help_panel=INSPECT)
def plan_rerun(
    target: TargetArg,
    start: FromOpt,
    end: ToOpt,
    no_cascade: NoCascadeOpt = False,
    fmt: FormatOpt = "text",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
) -> None:
    """What `rerun TARGET` would do across every deployment, writing nothing: each run cleared or started, by
    instance and depth, runs running now, deadlines that would move, holds in the way. A TARGET the dependencies file
    does not name but whose runs the plugin records is previewed through Airflow's asset schedules (read from its
    Airflow: --airflow-url or --instances)."""
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    settings = _settings(etcd, prefix, deps, airflow_url=airflow_url, instances_file=instances)
    graph = _graph(settings)
    lo, hi = _range(start, end)
    if graph.resolve(target) is None and not _ambiguous(graph, target):
        if no_cascade:
            fail(f"--no-cascade: {target!r} is not a DAG in {settings.deps}, so the coordinator cascades nothing from "
                 "it: its dependents are Airflow's (asset schedules)")  # fmt: skip
        outside = outside_preview(settings, graph, target, lo, hi, datetime.now(UTC))
        if fmt == "json":
            typer.echo(json.dumps({**_preview_json(outside.preview), "outside": outside.json()}, indent=2))
            return
        outside.print(lo, hi, print_preview)
        return
    node = _node(graph, target, settings)
    result = _load_preview(settings, graph, node, lo, hi, no_cascade, datetime.now(UTC))
    if fmt == "json":
        typer.echo(json.dumps(_preview_json(result), indent=2))
        return
    print_preview(result, node, lo, hi)


async def _rerun_one(
    store: EtcdStore, client: AirflowClient, settings: Settings, node: NodeId, partition: str, *,
    no_cascade: bool, who: str, now: datetime,
) -> Cleared:  # fmt: skip
    """**Record, then clear** for one target run."""
    keys = settings.keys
    kv = await store.get(keys.run_key(node, partition))
    record = parse_run_record(kv.value)[0] if kv is not None else None
    if kv is None or record is None:
        return Cleared(node, partition, None, "skipped", "no run state: nothing to clear")
    if record.state.active:  # a rerun under way (an earlier try's clear), or a run not finished yet
        return Cleared(node, partition, record.run_id, "running",
                       f"{record.state} now: not cleared (rerun it after it ends if it is not the rerun)")  # fmt: skip
    if no_cascade:  # semantics `no-cascade-once`: the record before the clear
        key = keys.no_cascade_key(node, partition)
        old = await store.get(key)
        recorded = parse_no_cascade(old.value)[0] if old is not None else None
        # An earlier try's record of this same attempt (a crash before its clear) is kept as it is.
        if recorded is None or not NoCascade(recorded, 0).pending(record.run_id, record.clear_number):
            waiver = NoCascadeRecord(
                run_id=record.run_id, clear_number=record.clear_number,
                replaces=kv.mod_revision if record.state is RunState.SUCCESS else None, by=who, at=now,
            )  # fmt: skip
            done = await store.cas(key, dump_no_cascade(waiver), old.mod_revision if old is not None else 0)
            if not done.succeeded:
                raise CoordinatorError(f"{key} changed while rerun wrote it; repeat the command")
    run = await client.get_run(node.dag_id, record.run_id)
    if run is None:
        return Cleared(node, partition, record.run_id, "skipped", f"Airflow has no run {record.run_id}")
    if run.state in ("queued", "running"):
        return Cleared(
            node, partition, record.run_id, "rerunning", f"{run.state} in Airflow already: not cleared again"
        )
    try:
        await client.clear(node.dag_id, record.run_id)
    except CoordinatorError:
        # A clear whose answer was lost may have happened: Airflow's queued_at moves on every clear (semantics
        # `clear-queued-at-first`), so look before reporting a failure the repeat would turn into a second clear.
        after = await client.get_run(node.dag_id, record.run_id)
        if after is None or after.queued_at == run.queued_at:
            raise
    return Cleared(node, partition, record.run_id, "cleared", f"was {record.state}")


async def _rerun(
    settings: Settings, node: NodeId, partitions: list[str], *, no_cascade: bool, who: str, why: str, now: datetime
) -> tuple[list[Cleared], CoordinatorError | None]:
    """**Record, then clear** for each partition in turn; the runs done so far and the error that stopped it, if any
    (**Exit codes**: what was cleared before a failure is listed)."""
    instance = settings.instances().get(node.instance)
    if instance is None:
        raise _NoAirflow(node.instance)
    done: list[Cleared] = []
    stopped: CoordinatorError | None = None
    async with await EtcdStore.connect(settings.etcd()) as store, AirflowClient(instance, name=node.instance) as client:
        try:
            for partition in partitions:
                done.append(await _rerun_one(store, client, settings, node, partition, no_cascade=no_cascade,
                                             who=who, now=now))  # fmt: skip
        except ConfigError:
            raise
        except CoordinatorError as exc:  # etcd or Airflow failed: report what was done, then the error
            stopped = exc
        finally:
            cleared = [c for c in done if c.outcome == "cleared"]
            if cleared:  # **Recorded**
                entry = HistoryEntry(
                    id=new_id(), action=HistoryAction.RERUN, by=who, at=now, why=why,
                    target=f"{node} {partitions[0]} .. {partitions[-1]}" + (" --no-cascade" if no_cascade else ""),
                    affected=tuple(f"{c.node}@{c.partition} run {c.run_id}" for c in cleared),
                )  # fmt: skip
                await append_history(store, settings.keys, entry)
    return done, stopped


class _NoAirflow(ConfigError):
    def __init__(self, instance: str) -> None:
        super().__init__(f"no Airflow is configured for instance {instance}: set COORDINATOR_AIRFLOW_URL or an entry "
                         "in the instances file (COORDINATOR_INSTANCES_FILE)")  # fmt: skip
        self.instance = instance


@app.command(rich_help_panel=OPERATE)
def rerun(
    target: TargetArg,
    start: FromOpt,
    end: ToOpt,
    no_cascade: NoCascadeOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="act without showing the preview or asking")] = False,
    by: ByOpt = None,
    reason: ReasonOpt = "",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
) -> None:
    """Clear TARGET's runs for [--from, --to] in Airflow; the watchers then rerun what depends on them, once (not
    with --no-cascade). Shows `plan rerun` first and asks, unless --yes. Safe to repeat."""
    settings = _settings(etcd, prefix, deps, airflow_url=airflow_url, instances_file=instances)
    graph = _graph(settings)
    node = _node(graph, target, settings)
    lo, hi = _range(start, end)
    now = datetime.now(UTC)
    result = _load_preview(settings, graph, node, lo, hi, no_cascade, now)
    partitions = [p for n, p in result.targets]
    if not partitions:
        fail(f"{node} has no run for {lo} .. {hi}: nothing to rerun")
    if not yes:
        print_preview(result, node, lo, hi)
        if not sys.stdin.isatty():
            fail("not a terminal: nothing cleared; add --yes to rerun without asking")
        if not typer.confirm(f"rerun {node} for {len(partitions)} partition(s)?", default=False):
            out.print("nothing cleared")
            raise typer.Exit(1)
    who = who_acts(by, settings)
    done, stopped = run_async(
        lambda: _rerun(settings, node, partitions, no_cascade=no_cascade, who=who, why=reason, now=now)
    )
    for item in done:
        out.print(f"{item.outcome} {item.node} {item.partition}" + (f" (run {item.run_id})" if item.run_id else "")
                  + f": {item.detail}", markup=False, soft_wrap=True)  # fmt: skip
    cleared = sum(c.outcome == "cleared" for c in done)
    tail = "its dependents stay as they are" if no_cascade else "the watchers rerun what depends on them, once"
    out.print(f"rerun {node}: {cleared} run(s) cleared; {tail}", markup=False)
    if stopped is not None:
        left = len(partitions) - len(done)
        fail(f"{stopped}; {left} partition(s) not done: repeat the command to finish (a run Airflow shows queued or "
             "running is not cleared again)", EXIT_FAILURE)  # fmt: skip
    if any(c.outcome == "skipped" for c in done):
        raise typer.Exit(EXIT_FAILURE if cleared == 0 else 0)
