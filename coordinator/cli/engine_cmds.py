"""Commands of the engine: ``watch``, ``reconcile``, ``status``, ``why`` and ``backfill``.

Rules: each command builds Settings from flags and environment, opens what it needs, calls one function and maps
errors to exit codes (2 bad input, 1 runtime failure). ``status`` and ``why`` only read: they never need leadership
and are safe to run anywhere, any time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from coordinator.cli import status_report
from coordinator.cli.app import (
    INSPECT,
    OPERATE,
    RUN,
    AirflowUrlOpt,
    DepsOpt,
    EtcdOpt,
    InstancesOpt,
    PrefixOpt,
    app,
    build_settings,
    fail,
    out,
    run_async,
    setting_option,
)
from coordinator.cli.asset_cmds import why_asset_lines
from coordinator.cli.inspect_reads import (
    decide_now,
    first_start_lines,
    partition_arg,
    read_all_holds,
    read_lineage_lines,
    read_model,
)
from coordinator.core import canonical
from coordinator.core.actions import Plan, Trigger
from coordinator.core.deadline.states import deadline_states
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, canonical_partition, partition_datetime
from coordinator.core.partition import is_segment_only
from coordinator.core.spec.near_misses import close_dags
from coordinator.errors import SpecError
from coordinator.etcd import EtcdStore
from coordinator.explain.deadlines import why_lines
from coordinator.explain.holds import why_line as why_hold_line
from coordinator.explain.report import undeclared_lines, why
from coordinator.informer.presence_value import airflow_majors
from coordinator.informer.read_model import VIEW
from coordinator.runtime.allocator import keep_freed_memory
from coordinator.runtime.frozen_gc import held_off_then_frozen
from coordinator.runtime.health import Health
from coordinator.runtime.http import serve
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.watcher.keys import AllPartitions
from coordinator.watcher.presence import record_pass
from coordinator.watcher.service import open_watcher

log = logging.getLogger(__name__)

PartitionOpt = Annotated[
    str | None,
    typer.Option(
        "--partition", "-p", metavar="PARTITION", show_default="the last --last partitions",
        help="logical date (2026-01-01T00:00:00Z), a segment (eu) or both (2026-01-01~eu)",
    ),
]  # fmt: skip
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")]
AdoptAllOpt = Annotated[
    bool,
    typer.Option(
        "--adopt-all",
        help="first start: process every run state already in etcd, however many (COORDINATOR_ADOPT_HISTORY=all)",
    ),
]
AdoptSinceOpt = Annotated[
    str | None,
    typer.Option(
        "--adopt-since", metavar="DATE", show_default="COORDINATOR_ADOPT_HISTORY, else auto",
        help="first start: process run states of partitions at or after this logical date",
    ),
]  # fmt: skip
AdoptNoneOpt = Annotated[
    bool,
    typer.Option(
        "--adopt-none",
        help="first start: ignore history (then `coordinator backfill DAG --from DATE --to DATE` for it; "
        "COORDINATOR_ADOPT_HISTORY=none)",
    ),
]
LimitOpt = Annotated[
    int | None,
    setting_option(
        "--first-start-limit", field="first_start_limit", metavar="N",
        help="first start in auto mode: hold the first pass when it would trigger more than N runs",
    ),
]  # fmt: skip
#: status and why predict what a first pass would hold: the watcher's own limit makes the prediction match it.
PredictLimitOpt = Annotated[
    int | None,
    setting_option(
        "--first-start-limit", field="first_start_limit", metavar="N",
        help="the watcher's first-start limit, for the prediction of whether its first pass is held",
    ),
]  # fmt: skip
LogLevelOpt = Annotated[
    str, typer.Option("--log-level", metavar="LEVEL", help="log lines on stderr from this level up (DEBUG, INFO, ...)")
]


def setup_logging(level: str = "INFO") -> None:
    """key=value lines on stderr; secrets never reach a log call (settings hold them as SecretStr). INFO says what the
    watcher decided and did, and its passes once a minute (``watcher/pass_summary.py``); DEBUG adds each pass."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # DEBUG is the coordinator's own bookkeeping (each pass's line, each Airflow request): gRPC's and asyncio's
    # internals would outnumber it.
    for library in ("grpc", "asyncio"):
        logging.getLogger(library).setLevel(max(logging.getLogger().level, logging.INFO))


def _settings(etcd: str | None, prefix: str | None, deps: Path | None, **extra: Any) -> Settings:
    return build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps, **extra)


def _adopt_history(adopt_all: bool, adopt_since: str | None, adopt_none: bool) -> str | None:
    """The --adopt-* flags as the adopt_history setting (None: not given, the environment decides)."""
    given = [flag for flag, on in (("--adopt-all", adopt_all), ("--adopt-since", adopt_since is not None),
                                   ("--adopt-none", adopt_none)) if on]  # fmt: skip
    if len(given) > 1:
        fail(f"choose one of {', '.join(given)}: they say different things about the history")
    if adopt_since is not None:
        return _time(adopt_since)
    return "all" if adopt_all else "none" if adopt_none else None


def _graph(settings: Settings) -> Graph:
    try:
        # The graph lives as long as the process (a watcher's, until the file changes): read with the cyclic GC held
        # off and frozen after, like the imports (``runtime.frozen_gc``). Its collections over the file's objects were
        # a third of the read at 50,000 DAGs.
        with held_off_then_frozen():
            return load_spec(settings.deps)
    except SpecError as exc:
        fail("\n".join(exc.problems))


@app.command(rich_help_panel=RUN)
def watch(
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
    leader_ttl: Annotated[
        int | None,
        setting_option("--leader-ttl", field="leader_ttl_s", metavar="SECONDS", help="leader lease TTL"),
    ] = None,
    watcher_id: Annotated[
        str | None,
        setting_option(
            "--id",
            field="watcher_id",
            metavar="ID",
            shown="HOST:PID",
            help="this watcher's identity in the leader key and the ledger",
        ),
    ] = None,
    log_level: LogLevelOpt = "INFO",
    adopt_all: AdoptAllOpt = False,
    adopt_since: AdoptSinceOpt = None,
    adopt_none: AdoptNoneOpt = False,
    first_start_limit: LimitOpt = None,
    http: Annotated[
        str | None,
        setting_option(
            "--http", field="http", metavar="HOST:PORT", help="listener for /metrics, /healthz, /readyz, or off"
        ),
    ] = None,
) -> None:
    """Run the watcher service: watch run states, trigger or clear dependent DAG runs, exactly once."""
    setup_logging(log_level)
    settings = _settings(
        etcd, prefix, deps, airflow_url=airflow_url, instances_file=instances, leader_ttl_s=leader_ttl,
        watcher_id=watcher_id, adopt_history=_adopt_history(adopt_all, adopt_since, adopt_none),
        first_start_limit=first_start_limit, http=http,
    )  # fmt: skip
    graph = _graph(settings)  # fail fast with exit 2 on an invalid file
    allocator = keep_freed_memory()  # before the store's first read (``runtime.allocator``)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            metrics, health = Metrics(), Health(start_timeout_s=settings.start_timeout_s)
            if settings.http_address is not None:
                # Before etcd is reached: /healthz answers while the view loads, /readyz says why it is not ready.
                # Not set by the operator (flag or environment): the default port may give way (``runtime.http``'s
                # **Only the default gives way**).
                default = "http" not in settings.model_fields_set
                stack.enter_context(serve(settings.http_address, metrics, health, default=default))
            watcher = await open_watcher(settings, stack, metrics, health, graph)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, watcher.stop.set)
            # ``reader``: whether the store's values are read by the compiled reader (``core.canonical``'s **The
            # compiled reader**) or in Python alone, which starts slower on a big store: an install without a compiler.
            # ``allocator``: whether freed memory is kept for the next page of a load (``runtime.allocator``).
            log.info("watcher.start watcher=%s prefix=%s deps=%s instances=%s reader=%s allocator=%s",
                     watcher.watcher_id, settings.prefix, settings.deps, ",".join(sorted(watcher.clients)) or "-",
                     "python" if canonical.native_run_fact is None else "compiled", allocator.value)  # fmt: skip
            await watcher.run()

    run_async(main)


@app.command(rich_help_panel=RUN)
def reconcile(
    # One pass is the only mode: --once, once required, is still accepted (and ignored) for the scripts that pass it.
    once: Annotated[bool, typer.Option("--once", hidden=True)] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, change nothing")] = False,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
    wait: Annotated[
        float, typer.Option("--wait", metavar="SECONDS", help="how long to wait for leadership (0: do not wait)")
    ] = 0.0,
    adopt_all: AdoptAllOpt = False,
    adopt_since: AdoptSinceOpt = None,
    adopt_none: AdoptNoneOpt = False,
    first_start_limit: LimitOpt = None,
) -> None:
    """One reconcile pass, then exit (for cron or a watcher DAG); --dry-run prints what it would do.

    Exit 0 when the pass recorded no error (or another watcher leads: nothing done), 1 when it did.
    """
    del once  # accepted for scripts written when it was required; one pass is the only mode
    setup_logging("WARNING" if dry_run else "INFO")
    settings = _settings(
        etcd, prefix, deps, airflow_url=airflow_url, instances_file=instances,
        adopt_history=_adopt_history(adopt_all, adopt_since, adopt_none), first_start_limit=first_start_limit,
    )  # fmt: skip
    graph = _graph(settings)
    keep_freed_memory()  # before the store's read (``runtime.allocator``)

    if dry_run:
        view = run_async(lambda: read_model(settings, VIEW)).view
        # The same plan the first pass would make: nothing while a first adoption is held (backfill requests aside).
        decision = decide_now(graph, view, settings)
        first = decision.adoption.first
        for line in first_start_lines(first, settings):
            out.print(line, markup=False)
        _print_plan(decision.plan)
        if first is not None and first.paused and first.triggers:
            shown = first.triggers[:20]
            out.print(f"held back ({len(first.triggers)}), e.g.:")
            for action in shown:
                out.print(f"  {action.action} {action.node} {action.partition}: {action.reason}", markup=False)
        return

    async def main() -> int:
        async with AsyncExitStack() as stack:
            watcher = await open_watcher(settings, stack)
            await watcher.load()
            if not await watcher.election.acquire(timeout=wait):
                holder = await watcher.election.leader_identity()
                out.print(f"another watcher leads ({holder}); nothing done")
                return 0
            try:
                # Every partition: a one-shot pass has no full pass after it, so no plan checkpoint may narrow it.
                result = await watcher.reconcile_pass(keys=[AllPartitions])
                await watcher.act_on_submitted()
            finally:
                await watcher.election.resign()
            # doctor and status: a watcher passes here now and then (00_watcher)
            await record_pass(watcher.store, settings, watcher.watcher_id)
            o = watcher.actuator.outcome
            # One line says what the pass did (the watcher DAG's task log shows it as is).
            did = ", ".join(
                f"{a.action if isinstance(a, Trigger) else 'resume'} {a.node} {a.partition}" for a in result.actions
            )
            first = watcher.triggers.adoption.first
            adoption = f"; {first.summary()}" if first is not None else ""
            out.print(f"revision {result.revision}: {len(result.actions)} action(s), {o.done} done, "
                      f"{o.skipped} skipped, {o.errors} error(s)" + (f" [{did}]" if did else "") + adoption,
                      markup=False, soft_wrap=True)  # fmt: skip
            if first is not None and first.paused:
                for hint in first.how_to_proceed():
                    out.print(f"  - {hint}", markup=False, soft_wrap=True)
            return 1 if o.errors else 0

    code = run_async(main)
    raise typer.Exit(code)


def _print_plan(result: Plan) -> None:
    if not result.actions:
        out.print(f"revision {result.revision}: nothing to do")
        return
    out.print(f"revision {result.revision}: {len(result.actions)} action(s)")
    for action in result.actions:
        if isinstance(action, Trigger):
            out.print(f"  {action.action} {action.node} {action.partition} run_id={action.run_id}: {action.reason}")
        else:
            out.print(f"  resume {action.node} {action.partition}: {action.reason}")


@app.command(rich_help_panel=INSPECT)
def status(
    partition: PartitionOpt = None,
    fmt: FormatOpt = "text",
    last: Annotated[int, typer.Option("--last", metavar="N", help="how many recent partitions to show")] = 3,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    first_start_limit: PredictLimitOpt = None,
) -> None:
    """Per DAG and partition: state, fresh or stale, due, waiting on whom, last trigger, last error."""
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    if last < 1:
        fail(f"--last must be at least 1, not {last}")
    settings = _settings(etcd, prefix, deps, first_start_limit=first_start_limit)
    report = status_report.read_status(settings, partition, last)
    if fmt == "json":
        status_report.print_json(report)
    else:
        status_report.print_text(report)


@app.command(name="why", rich_help_panel=INSPECT)
def why_cmd(
    dag: Annotated[
        str, typer.Argument(metavar="DAG", help="dag id, or instance/dag_id; or the word asset followed by a URI")
    ],
    uri: Annotated[
        str | None,
        typer.Argument(metavar="URI", help="with `why asset`: the asset's URI or name", show_default=False),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            "--partition",
            "-p",
            metavar="PARTITION",
            show_default="none: required, except for `why asset URI`",
            help="logical date (2026-01-01T00:00:00Z), a segment (eu) or both (2026-01-01~eu)",
        ),
    ] = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    first_start_limit: PredictLimitOpt = None,
) -> None:
    """Explain in plain words why a DAG is, or is not, running for a partition; `why asset URI`: where an asset's
    events come from and where they stand in each deployment the asset is shared with."""
    if dag == "asset" and uri is not None:
        why_asset_lines(uri, etcd, prefix, deps)
        return
    if uri is not None:
        fail(f"unexpected argument {uri!r}: write `why <dag> -p <partition>` or `why asset <uri>`")
    if partition is None:
        fail("missing --partition/-p: the logical date to explain (e.g. -p 2026-01-01)")
    settings, graph, node = _target(dag, etcd, prefix, deps, first_start_limit=first_start_limit)
    p = partition_arg(partition)
    model = run_async(lambda: read_model(settings))
    view, watchers, recorded = model.view, model.watchers, model.recorded
    decision = decide_now(graph, view, settings, [p])
    for line in first_start_lines(decision.adoption.first, settings):
        out.print(line, markup=False, soft_wrap=True)
    for line in why(graph, decision.plan, node, p, view, decision.now):
        out.print(line, markup=False)
    for line in undeclared_lines(graph, decision.plan, node, p):  # a misspelt upstream, with the close names
        out.print(line, markup=False, soft_wrap=True)
    budget = view.budget_states().get(node.instance)
    dag_budget = budget.dags.get(node.dag_id) if budget is not None else None
    if dag_budget is not None and dag_budget.stopped:  # semantics `budget-per-dag`: a due trigger waits for a release
        out.print(f"trigger budget: {dag_budget.describe(node.instance, node.dag_id)}", markup=False, soft_wrap=True)
    elif budget is not None and budget.stopped:
        out.print(f"trigger budget: {budget.describe(node.instance)}", markup=False, soft_wrap=True)
    # Semantics `flap-held`: this DAG's own run state held because it flapped (its dependents say so in their verdicts).
    flap = view.flaps.get((node, p))
    if flap is not None and flap.record.standing:
        out.print(f"flapping: {flap.record.describe(node, p)}", markup=False, soft_wrap=True)
    # An operator's standing hold that covers this DAG and partition, by name.
    hold_line = why_hold_line(graph, run_async(lambda: read_all_holds(settings)), node, p, datetime.now(UTC))
    if hold_line is not None:
        out.print(hold_line, markup=False, soft_wrap=True)
    # Semantics `lineage-upstreams`: an upstream that is an OpenLineage job names the job and its last event.
    if graph.lineage_jobs:
        for line in run_async(lambda: read_lineage_lines(settings, graph, node, p)):
            out.print(line, markup=False, soft_wrap=True)
    if graph.dags[node].expected_by is not None:
        statuses = deadline_states(graph, view, datetime.now(UTC), partitions=[p], majors=airflow_majors(watchers))
        rule = graph.dags[node].expected_by
        levels = rule.levels if rule is not None else ()
        for line in why_lines(statuses.get((node, p)), recorded.get((node, p)), levels):
            out.print(line, markup=False)


@app.command(rich_help_panel=OPERATE)
def backfill(
    dag: Annotated[str, typer.Argument(metavar="DAG", help="dag id, or instance/dag_id")],
    start: Annotated[str, typer.Option("--from", metavar="DATE", help="first logical date (inclusive)")],
    end: Annotated[str, typer.Option("--to", metavar="DATE", help="last logical date (inclusive)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the partitions, change nothing")] = False,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
) -> None:
    """Ask the watcher to process history for DAG: partitions in [--from, --to] where its upstreams have run."""
    settings, graph, node = _target(dag, etcd, prefix, deps)
    spec = graph.dags[node]
    if spec.is_root:
        fail(f"{node} is a root: it runs on its own schedule, the coordinator never triggers it")
    lo, hi = partition_datetime(_time(start)), partition_datetime(_time(end))
    if lo > hi:
        fail(f"--from {start} is after --to {end}")
    sources = {*spec.upstreams, *spec.on_failure_of}

    view = run_async(lambda: read_model(settings, VIEW)).view
    # Plans nothing: the decision's retirement answers "would the watcher plan there" (semantics `retention-retires`).
    decision = decide_now(graph, view, settings, [])
    floor = decision.floor
    if floor is not None and floor.retires(_time(start)):
        fail(
            f"--from {start}: {floor.describe()}; their keys may already be deleted and the watcher plans nothing "
            f"there (semantics rule 11). Backfill from {floor.before} on, or first lower the floor with "
            f"`coordinator prune --before {_time(start)} --lower-floor` (it deletes nothing at or after that date)"
        )
    # On D's grid when it has one: each source fact maps to the partitions of D that need it (identity otherwise).
    mapped = {p for (n, q) in view.runs if n in sources for p in graph.target_partitions(node, n, q)}
    parts = sorted(p for p in mapped if not is_segment_only(p) and lo <= partition_datetime(p) <= hi)
    retired = next(((p, why) for p in parts if (why := decision.why_retired(node, p)) is not None), None)
    if retired is not None:  # a window that reaches below the floor (semantics `retired-inert`, partition grids)
        fail(f"{node} {retired[0]}: {retired[1]}; the watcher plans nothing there (semantics rule 11). Backfill from "
             "a later date, or lower the floor first")  # fmt: skip

    async def request() -> None:
        async with await EtcdStore.connect(settings.etcd()) as store:
            for p in parts:
                await store.put(settings.keys.config_key(f"backfill/{node.instance}/{node.dag_id}/{p}"), b"{}")

    if not dry_run:
        run_async(request)
    verb = "would request" if dry_run else "requested"
    out.print(
        f"{verb} backfill of {node} for {len(parts)} partition(s)" + (f": {parts[0]} .. {parts[-1]}" if parts else "")
    )


def _target(
    dag: str, etcd: str | None, prefix: str | None, deps: Path | None, **extra: Any
) -> tuple[Settings, Graph, NodeId]:
    """Settings, the graph, and the DAG a command is about; exit 2 if it is not in the graph, suggesting close names
    (``6_pipeline`` -> ``06_pipeline``) or else naming the known DAGs."""
    settings = _settings(etcd, prefix, deps, **extra)
    graph = _graph(settings)
    node = graph.resolve(dag)
    if node is None:
        close = close_dags(dag, graph.dags)
        if close:
            fail(f"{dag!r} is not a DAG in {settings.deps}: did you mean {' or '.join(map(str, close[:3]))}?")
        fail(f"{dag!r} is not a DAG in {settings.deps} (known: {', '.join(sorted(map(str, graph.dags)))})")
    return settings, graph, node


def _time(text: str) -> str:
    """A logical date (a range's end, a first adoption's date): a time only, never a segment."""
    try:
        return canonical_partition(text)
    except ValueError as exc:
        fail(str(exc))
