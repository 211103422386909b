"""Incident commands (docs/howto/incidents.md): ``hold``, ``release-hold``, ``holds``, ``history`` and ``retract``.

Rules:
- **Facts, not actions.** Each command writes records in etcd (a hold, a release, a withdrawn run state, a history
  entry) and nothing else: the leading watcher reads them through its informer and acts, exactly once, through the
  ledger (``watcher/hold_gate.py``'s **Holds**). No Airflow call is made here.
- **Create-only, then compare-and-swap.** A hold is created with a create-only write under a fresh id; a release is a
  compare-and-swap on the hold's mod revision; a history entry is appended create-only
  (``writers/history.py``). A release of a released hold changes nothing and says so.
- **Every action recorded.** ``hold``, ``release-hold`` and ``retract`` each append one history entry (who, when, why,
  what it affected) after their write.
- **Who.** ``--by`` names the person; else the etcd user the command authenticates as; else the login name.
- **Exit codes.** Bad input (selector, partitions, times, an unknown DAG or hold) exits 2 with what is wrong and the
  fix; a retraction of something that is not a success exits 1; etcd trouble exits 1.
- **Retract.** ``retract DAG -p P`` withdraws DAG's success for P: it records a new attempt of the same run, ``failed``,
  ``source: retract:<by>`` (a new attempt, so no older writer, the REST audit included, can put the old success
  back; a failed state satisfies no dependency, and DAG's failure handlers run as for any failure), holds DAG and every
  DAG below it for P (a hold with ``retracted`` set, released with ``release-hold``), and lists the dependent runs the
  ledger says were triggered on or after the withdrawn success (they ran on it: clear them with ``rerun`` when the
  fix is in), and the asset events the withdrawn run produced that were delivered into other deployments (their
  consumers ran on it too). A later real success is a new generation and cascades once the hold is released.
- **Permits not used** (semantics `permit-retracted`): the permits of scheduled dependents below, granted on or after
  the withdrawn success, whose run of the partition has not recorded a state, are listed apart: the leading watcher
  withdraws each (the ledger is the watcher's alone), and the run the timetable makes then waits for a new one.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from coordinator.cli.app import (
    EXIT_FAILURE,
    INSPECT,
    OPERATE,
    DepsOpt,
    EtcdOpt,
    PrefixOpt,
    app,
    build_settings,
    err,
    fail,
    out,
    run_async,
)
from coordinator.core.assets import AssetEventFact, AssetKeys
from coordinator.core.audit import RETRACT_SOURCE
from coordinator.core.graph import Graph
from coordinator.core.graph_diff import adopted_graph
from coordinator.core.holds import (
    HOLD_ID_PREFIX,
    HistoryAction,
    HistoryEntry,
    Hold,
    InTheWay,
    Selector,
    SelectorKind,
    parse_hold,
    parse_selector,
    resolve_selector,
    still_in_the_way,
)
from coordinator.core.model import (
    NAME_RE,
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerStatus,
    any_partition,
    dump_record,
    parse_run_record,
    parse_trigger_record,
    parse_value,
)
from coordinator.errors import SpecError, StoreError
from coordinator.informer.holds import read_history, read_holds
from coordinator.informer.read_model import Family, Scope, load
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.writers.history import append_history, new_id
from coordinator.writers.run_records import RunWriteStatus, write_run_record

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore

T = TypeVar("T")
FORMATS = ("text", "json")
ReasonOpt = Annotated[str, typer.Option("--reason", metavar="WHY", help="why (recorded and shown)")]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", metavar="NAME", show_default="the etcd user, else the login name", help="who does it"),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")]


def who_acts(by: str | None, settings: Settings) -> str:
    """**Who**: ``--by``, else the etcd user, else the login name (every incident command and ``rerun``)."""
    if by is not None and by.strip():
        return by.strip()
    if settings.etcd_username:
        return settings.etcd_username
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "unknown"


def _partition(flag: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return any_partition(value)
    except ValueError as exc:
        fail(f"{flag}: {exc}")


def _time(flag: str, value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{flag} {value!r} is not a time: write ISO 8601 with a zone, e.g. 2026-11-26T09:00:00Z")
    if at.tzinfo is None:
        fail(f"{flag} {value!r} has no time zone: add 'Z' or an offset such as +00:00")
    return at.astimezone(UTC)


def _graph(settings: Settings) -> Graph:
    try:
        return load_spec(settings.deps)
    except OSError as exc:
        fail(f"cannot read the dependencies file {settings.deps}: {exc.strerror or exc}; pass --deps FILE")


async def _connect(settings: Settings) -> EtcdStore:
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import

    return await EtcdStore.connect(settings.etcd())


async def _create_hold(store: EtcdStore, keys: KeyLayout, hold: Hold, entry: HistoryEntry) -> None:
    """**Create-only, then compare-and-swap** and **Every action recorded**."""
    result = await store.cas(keys.hold_key(hold.id), dump_record(hold), 0)
    if not result.succeeded:
        raise StoreError(f"hold id {hold.id} is taken already; run the command again (a new id is drawn)")
    await append_history(store, keys, entry)


def _covers(hold: Hold, graph: Graph) -> list[str]:
    """What a hold covers, one line per DAG (the history's ``affected``)."""
    nodes = [NodeId.parse(q) for q in hold.nodes]
    lines = [f"{n.qualified} {hold.span()}" for n in nodes]
    if hold.downstream:
        below = sorted({d for n in nodes if n in graph.dags for d in graph.descendants(n)} - set(nodes))
        lines += [f"{d.qualified} (below {', '.join(q for q in hold.nodes)})" for d in below]
    return lines


@app.command(rich_help_panel=OPERATE)
def hold(
    selector: Annotated[
        str,
        typer.Argument(
            metavar="SELECTOR",
            show_default=False,
            help="a DAG (dag_id, instance/dag_id), a task (instance/dag_id:task_id), instance:NAME or "
            "lineage:NAMESPACE/JOB",
        ),
    ],
    reason: ReasonOpt,
    start: Annotated[
        str | None, typer.Option("--from", metavar="PARTITION", show_default="open", help="first partition held")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="PARTITION", show_default="open", help="last partition held")
    ] = None,
    downstream: Annotated[bool, typer.Option("--downstream", help="hold every DAG below it too")] = False,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", show_default="until released", help="expiry (ISO 8601)")
    ] = None,
    by: ByOpt = None,
    deps: DepsOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Hold part of the graph: the leading watcher triggers and clears nothing it covers until `release-hold`."""
    try:
        parsed = parse_selector(selector)
    except ValueError as exc:
        fail(str(exc))
    if not reason.strip():
        fail("--reason must say why (it is shown to everyone who asks why a run waits)")
    low, high = _partition("--from", start), _partition("--to", end)
    if low is not None and high is not None and low > high:
        fail(f"--from {low} is after --to {high}: swap them")
    now = datetime.now(UTC)
    expiry = _time("--until", until) if until is not None else None
    if expiry is not None and expiry <= now:
        fail(f"--until {expiry.isoformat()} is already past; leave it out to hold until released")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps)
    graph = _graph(settings)
    try:
        nodes = resolve_selector(parsed, graph)
    except LookupError as exc:
        fail(f"{exc}; `coordinator graph` lists the DAGs of {settings.deps}")
    who = who_acts(by, settings)
    record = Hold(
        id=new_id(HOLD_ID_PREFIX), selector=parsed, nodes=tuple(n.qualified for n in nodes), from_partition=low,
        to_partition=high, downstream=downstream, reason=reason.strip(), by=who, created_at=now, until=expiry,
    )  # fmt: skip
    covers = _covers(record, graph)
    entry = HistoryEntry(id=new_id(), action=HistoryAction.HOLD, by=who, at=now, why=record.reason, target=selector,
                         affected=tuple(covers), hold=record.id)  # fmt: skip
    run_async(lambda: _with_store(settings, lambda store: _create_hold(store, settings.keys, record, entry)))
    out.print(f"hold {record.id}: {len(covers)} DAG(s) held for {record.span()} by {who}: {record.reason}")
    for line in covers:
        out.print(f"  {line}")
    out.print(f"release with: coordinator release-hold {record.id}")


async def _with_store(settings: Settings, work: Callable[[EtcdStore], Awaitable[T]]) -> T:
    async with await _connect(settings) as store:
        return await work(store)


@dataclass(frozen=True)
class Released:
    hold: Hold
    already: bool


async def _release(store: EtcdStore, keys: KeyLayout, hold_id: str, who: str, why: str, now: datetime) -> Released:
    """**Create-only, then compare-and-swap**: the hold marked released; LookupError when there is no such hold."""
    key = keys.hold_key(hold_id)
    for _ in range(5):
        kv = await store.get(key)
        if kv is None:
            raise LookupError(f"there is no hold {hold_id}; `coordinator holds --all` lists them")
        found, problem = parse_hold(kv.value)
        if found is None:
            raise StoreError(f"{key} holds an unreadable value ({problem}); delete it to release it")
        if found.released_at is not None:
            return Released(found, already=True)
        released = found.model_copy(update={"released_at": now, "released_by": who, "release_reason": why or None})
        if (await store.cas(key, dump_record(released), kv.mod_revision)).succeeded:
            entry = HistoryEntry(id=new_id(), action=HistoryAction.RELEASE, by=who, at=now, why=why, target=hold_id,
                                 affected=(f"{found.selector.text} {found.span()}",), hold=hold_id)  # fmt: skip
            await append_history(store, keys, entry)
            return Released(released, already=False)
    raise StoreError(f"{key} kept changing; run `coordinator release-hold {hold_id}` again")


@app.command("release-hold", rich_help_panel=OPERATE)
def release_hold(
    hold_id: Annotated[str, typer.Argument(metavar="HOLD", help="the hold's id (`coordinator holds`)")],
    reason: Annotated[str, typer.Option("--reason", metavar="WHY", show_default="none", help="why (recorded)")] = "",
    by: ByOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Release a hold: the leading watcher then starts each run it held, once (not those another hold still holds:
    they are named)."""
    if not NAME_RE.match(hold_id):
        fail(f"{hold_id!r} is not a hold id (like {HOLD_ID_PREFIX}3fa2c1d0); `coordinator holds` lists them")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    who, now = who_acts(by, settings), datetime.now(UTC)

    async def work(store: EtcdStore) -> tuple[Released, list[InTheWay]] | str:
        try:
            done = await _release(store, settings.keys, hold_id, who, reason.strip(), now)
        except LookupError as exc:
            return str(exc)
        if done.already:
            return done, []
        index, _ = await read_holds(store, settings.keys)
        graph = await _graph_in_force(store, settings)
        return done, still_in_the_way(done.hold, index.holds.values(), graph, now)

    answer = run_async(lambda: _with_store(settings, work))
    if isinstance(answer, str):
        fail(answer)
    done, others = answer
    if done.already:
        at = done.hold.released_at.isoformat(timespec="seconds") if done.hold.released_at else "?"
        out.print(f"hold {hold_id} was released already ({at} by {done.hold.released_by}): nothing to do")
        return
    what = f"released hold {hold_id} ({done.hold.selector.text}, {done.hold.span()})"
    if not others:
        out.print(f"{what}: the leading watcher starts each run it held, once")
        return
    # **Still in the way**: saying "starts each run" while another hold covers them sends the operator to wait for
    # runs that will not come.
    out.print(f"{what}: the leading watcher starts each run it held, once, except the runs another hold still holds:")
    for other in others:
        h = other.hold
        below = " and every DAG below" if h.downstream else ""
        out.print(f"  hold {h.id} ({h.selector.text}{below}, {h.span()}, by {h.by}: {h.reason}) still holds "
                  f"{_names(other.dags)}: those runs stay held until `coordinator release-hold {h.id}`",
                  markup=False, soft_wrap=True)  # fmt: skip


#: DAGs named in a line of ``release-hold`` before "and N more": a downstream hold can cover hundreds.
NAMED_DAGS = 8


def _names(dags: tuple[NodeId, ...]) -> str:
    shown = ", ".join(str(d) for d in dags[:NAMED_DAGS])
    return shown + (f" and {len(dags) - NAMED_DAGS} more" if len(dags) > NAMED_DAGS else "")


async def _graph_in_force(store: EtcdStore, settings: Settings) -> Graph | None:
    """The graph the leader holds against (the adopted one, ``core.graph_diff.adopted_graph``), else the local file
    when it is valid, else None (``still_in_the_way`` then compares the holds' recorded DAGs only): ``release-hold``
    needs no dependencies file, so neither may be required."""
    key = settings.keys.config_key("graph")
    view = (await load(store, settings.keys, {Family.CONFIG}, Scope(keys=(key,)))).view
    if view.activation is not None:
        adopted = adopted_graph(view.activation, f"the adopted graph ({key})")
        if adopted is not None:
            return adopted
    try:
        return load_spec(settings.deps)
    except (SpecError, OSError):
        return None


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"--format must be text or json, not {fmt!r}")


@app.command(rich_help_panel=INSPECT)
def holds(
    every: Annotated[bool, typer.Option("--all", help="released and expired holds too")] = False,
    fmt: FormatOpt = "text",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """List the holds that stand (with --all, every hold recorded)."""
    _check_format(fmt)
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    index, loaded = run_async(lambda: _with_store(settings, lambda store: read_holds(store, settings.keys)))
    for _, key, problem in loaded.problems:
        err.print(f"warning: {key}: {problem}")
    now = datetime.now(UTC)
    found = [h for h in index.holds.values() if every or h.standing(now)]
    found.sort(key=lambda h: (h.created_at, h.id))
    if fmt == "json":
        typer.echo(json.dumps([{**h.model_dump(mode="json"), "standing": h.standing(now)} for h in found], indent=2))
        return
    if not found:
        out.print("no hold stands" if not every else "no hold recorded")
        return
    for h in found:
        state = "standing" if h.standing(now) else ("released" if h.released_at else "expired")
        down = " and below" if h.downstream else ""
        out.print(f"{h.id}  {state}  {h.selector.text}{down}  {h.span()}  since "
                  f"{h.created_at.isoformat(timespec='seconds')} by {h.by}: {h.reason}")  # fmt: skip


@app.command(rich_help_panel=INSPECT)
def history(
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", show_default="everything", help="from this time on")
    ] = None,
    fmt: FormatOpt = "text",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """The audit trail of incident actions (hold, release, rerun, retract): who, when, why, what it affected."""
    _check_format(fmt)
    start = _time("--since", since) if since is not None else None
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    index, loaded = run_async(lambda: _with_store(settings, lambda store: read_history(store, settings.keys)))
    for _, key, problem in loaded.problems:
        err.print(f"warning: {key}: {problem}")
    entries = index.since(start)
    if fmt == "json":
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        out.print("no history entry" + (f" since {start.isoformat()}" if start else ""))
        return
    for e in entries:
        hold_part = f" [{e.hold}]" if e.hold else ""
        out.print(f"{e.at.isoformat(timespec='seconds')}  {e.action}{hold_part}  {e.target}  by {e.by}: {e.why}")
        for line in e.affected:
            out.print(f"    {line}")


@dataclass(frozen=True)
class Retracted:
    record: RunRecord
    previous: RunRecord
    revision: int
    hold: Hold
    ran: tuple[str, ...]
    withdrawn: tuple[str, ...] = ()


def _withdrawn(old: RunRecord, who: str, now: datetime) -> RunRecord:
    """**Retract**: a new attempt of the same run, failed."""
    return RunRecord(state=RunState.FAILED, run_id=old.run_id, clear_number=old.clear_number + 1, updated_at=now,
                     source=f"{RETRACT_SOURCE}{who}", start_date=old.start_date, end_date=now)  # fmt: skip


async def _retract(
    store: EtcdStore, keys: KeyLayout, graph: Graph, node: NodeId, partition: str, who: str, why: str, now: datetime
) -> Retracted | str:  # fmt: skip
    """**Retract**: what it did, or why it did nothing (a message). The hold is written first: a user who may not
    write holds (a plugin's, which may write its own run states) is refused before anything changes."""
    key = keys.run_key(node, partition)
    found = await store.get(key)
    current = parse_run_record(found.value)[0] if found is not None else None
    if found is None or current is None or current.state is not RunState.SUCCESS:
        state = current.state if current is not None else "absent"
        return f"{node.qualified} {partition} is {state}, not a success: nothing to retract"
    success_rev = found.mod_revision
    selector = Selector(kind=SelectorKind.DAG, text=node.qualified, dag=node.qualified)
    record = Hold(
        id=new_id(HOLD_ID_PREFIX), selector=selector, nodes=(node.qualified,), from_partition=partition,
        to_partition=partition, downstream=True, reason=f"retract: {why}", by=who, created_at=now,
        retracted=f"{node.qualified}@{partition}",
    )  # fmt: skip
    created = await store.cas(keys.hold_key(record.id), dump_record(record), 0)
    if not created.succeeded:
        raise StoreError(f"hold id {record.id} is taken already; run the command again (a new id is drawn)")

    def propose(old: RunRecord | None) -> RunRecord | None:
        return _withdrawn(old, who, now) if old is not None and old.state is RunState.SUCCESS else None

    done = await write_run_record(store, key, propose, max_rounds=5)
    if done.status is not RunWriteStatus.WRITTEN or done.previous is None or done.record is None:
        # Changed meanwhile (a new attempt started): nothing withdrawn, so the hold is taken back.
        await _release(store, keys, record.id, who, "retract withdrew nothing: the state changed meanwhile", now)
        state = done.previous.state if done.previous is not None else "absent"
        return f"{node.qualified} {partition} became {state} meanwhile: nothing retracted, nothing held"
    withdrawn = await _permits_to_withdraw(store, keys, graph, node, partition, success_rev)
    ran = await _ran_on(store, keys, graph, node, partition, success_rev)
    ran += await _delivered_from(store, keys, node, done.previous.run_id)
    affected = (f"{node.qualified}@{partition} success (revision {success_rev}) withdrawn", *_covers(record, graph),
                *(f"permit withdrawn: {line}" for line in withdrawn),
                *(f"ran on it: {line}" for line in ran))  # fmt: skip
    entry = HistoryEntry(id=new_id(), action=HistoryAction.RETRACT, by=who, at=now, why=why,
                         target=f"{node.qualified}@{partition}", affected=affected, hold=record.id)  # fmt: skip
    await append_history(store, keys, entry)
    return Retracted(done.record, done.previous, done.revision, record, ran, withdrawn)


def _below(graph: Graph, node: NodeId, partition: str) -> list[tuple[NodeId, str]]:
    """Every (DAG, partition) below ``node``'s ``partition`` through the grids, each once, nearest first."""
    todo, seen = [(node, partition)], set[tuple[NodeId, str]]()
    found: list[tuple[NodeId, str]] = []
    while todo:
        up, at = todo.pop(0)
        for down in graph.downstreams.get(up, ()):
            for target in graph.target_partitions(down, up, at):
                if (down, target) not in seen:
                    seen.add((down, target))
                    todo.append((down, target))
                    found.append((down, target))
    return found


async def _permits_to_withdraw(
    store: EtcdStore, keys: KeyLayout, graph: Graph, node: NodeId, partition: str, since_rev: int
) -> tuple[str, ...]:  # fmt: skip
    """**Permits not used**: the granted permits below whose run has not started, one line each (read only: the
    leading watcher withdraws them)."""
    found: list[str] = []
    for down, target in _below(graph, node, partition):
        if down not in graph.scheduled:
            continue
        kv = await store.get(keys.trigger_key(down, target))
        ledger = parse_trigger_record(kv.value)[0] if kv is not None else None
        if kv is None or ledger is None or kv.mod_revision < since_rev or ledger.status is not TriggerStatus.DONE:
            continue
        if await store.get(keys.run_key(down, target)) is None:
            found.append(f"{down.qualified} {target} (generation {ledger.trigger_count}; its run has not started)")
    return tuple(found)


async def _ran_on(
    store: EtcdStore, keys: KeyLayout, graph: Graph, node: NodeId, partition: str, since_rev: int
) -> tuple[str, ...]:  # fmt: skip
    """**Retract**: the dependent runs the ledger says were triggered on or after the withdrawn success, each with
    its current state (the partitions that map to ``partition`` through the grids)."""
    todo = [(node, partition)]
    seen: set[tuple[NodeId, str]] = set()
    found: list[str] = []
    while todo:
        up, at = todo.pop()
        for down in graph.downstreams.get(up, ()):
            for target in graph.target_partitions(down, up, at):
                if (down, target) in seen:
                    continue
                seen.add((down, target))
                todo.append((down, target))
                kv = await store.get(keys.trigger_key(down, target))
                ledger = parse_trigger_record(kv.value)[0] if kv is not None else None
                if kv is None or ledger is None or kv.mod_revision < since_rev:
                    continue
                run = await store.get(keys.run_key(down, target))
                if run is None and down in graph.scheduled:
                    continue  # **Permits not used**: listed apart, its run will wait

                record = parse_run_record(run.value)[0] if run is not None else None
                state = record.state if record is not None else "no state yet"
                found.append(f"{down.qualified} {target} ({ledger.action} {ledger.run_id}, {ledger.status}; "
                             f"now {state})")  # fmt: skip
    return tuple(sorted(found))


async def _delivered_from(store: EtcdStore, keys: KeyLayout, node: NodeId, run_id: str) -> tuple[str, ...]:
    """**Retract**: the asset events the withdrawn run produced (recorded with its DAG and run id) that were delivered
    into other deployments, each with the copy it became there (semantics `asset-exactly-once`): they ran their
    consumers on the retracted fact too. Read through the one loader: the run's instance's events, the deliveries."""
    assets = AssetKeys(keys.prefix)
    scope = Scope(prefixes=(f"{assets.events}{node.instance}/", assets.deliveries))
    index = (await load(store, keys, {Family.ASSETS}, scope)).assets
    if index is None:
        return ()
    ours: set[tuple[str, str, int]] = set()
    for (source, uri, event_id), held in index.events.items():
        if source != node.instance or held.source_dag_id != node.dag_id:
            continue
        fact = parse_value(AssetEventFact, held.value)[0]
        if fact is not None and fact.source_run_id == run_id:
            ours.add((source, uri, event_id))
    found = [
        f"asset event {event_id} of {uri} delivered to {target} ({entry.status})"
        for (target, source, uri, event_id), entry in index.ledger.items()
        if (source, uri, event_id) in ours
    ]
    return tuple(sorted(found))


@app.command(rich_help_panel=OPERATE)
def retract(
    dag_id: Annotated[str, typer.Argument(metavar="DAG", help="DAG id, or instance/dag_id", show_default=False)],
    partition: Annotated[
        str,
        typer.Option(
            "--partition", "-p", metavar="PARTITION", help="the partition whose success is wrong", show_default=False
        ),
    ],
    reason: ReasonOpt,
    by: ByOpt = None,
    deps: DepsOpt = None,
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Withdraw a wrong success: DAG's state for the partition is no longer a success, everything below it for that
    partition is held, and the dependent runs that already ran on it are listed (clear them with `rerun`)."""
    canonical = _partition("--partition", partition)
    assert canonical is not None
    if not reason.strip():
        fail("--reason must say why (it is recorded and shown with the hold)")
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps)
    graph = _graph(settings)
    try:
        NodeId.parse(dag_id)
    except ValueError as exc:
        fail(str(exc))
    node = graph.resolve(dag_id)
    if node is None:
        fail(f"DAG {dag_id!r} is not in the graph (or its dag_id is in several instances: write instance/dag_id); "
             f"`coordinator graph` lists the DAGs of {settings.deps}")  # fmt: skip
    who, now = who_acts(by, settings), datetime.now(UTC)
    done = run_async(lambda: _with_store(
        settings, lambda store: _retract(store, settings.keys, graph, node, canonical, who, reason.strip(), now)
    ))  # fmt: skip
    if isinstance(done, str):
        fail(done, EXIT_FAILURE)
    out.print(f"retracted {node.qualified} {canonical}: was success (run {done.previous.run_id}, attempt "
              f"{done.previous.clear_number}); now failed (attempt {done.record.clear_number}) at revision "
              f"{done.revision}")  # fmt: skip
    out.print(f"hold {done.hold.id}: {node.qualified} and every DAG below it held for {canonical}")
    if done.withdrawn:
        out.print("permits withdrawn by the leading watcher (the scheduled run had not started; it will wait):")
        for line in done.withdrawn:
            out.print(f"  {line}")
    if done.ran:
        out.print("already ran on the retracted success:")
        for line in done.ran:
            out.print(f"  {line}")
        out.print(f"once fixed, rerun it and what ran on it: coordinator rerun {node.qualified} --from {canonical} "
                  f"--to {canonical}")  # fmt: skip
    elif not done.withdrawn:
        out.print("no dependent run was triggered on it")
    out.print(f"when the fix is in: coordinator release-hold {done.hold.id}")
