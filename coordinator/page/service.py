"""Serve the dependencies page: read one snapshot of etcd, plan, render. No web framework and no Airflow here.

Rules:
- **Read-only, one load.** Read-only, never a write; the one decision (``core/decide.py``: first adoption, activation,
  retention floor) and the same ``why`` as ``coordinator status`` and the watcher. One request is one connection and one
  load (``informer.read_model.load``: one model built, by the informer every reader loads through) after the two keys
  that say what to load. What it reads, at one revision:
  a. the activation and the floor, then only the keys the partition's decision reads (``plan_scope.partition_reads``:
     keys are laid out per DAG, so a few point reads per DAG, never the whole prefix), and the newest partitions of
     a few roots for the picker: the cost of a request is the graph's size, not the store's;
  b. the whole prefix only before the first adoption (it counts the whole history);
  c. with either, the leader's recorded deadline transitions of the partition (``{prefix}/deadlines/...``): a
     paused DAG or an unreachable instance is a cause only the leader sees, and the page shows its judgement as
     ``status`` does (``deadline_report.leader_status``); and the live watchers' presence (a root's predicted
     start needs each instance's Airflow major version), in the same load;
  d. for a graph with deadlines, the newest run states of each DAG a deadline's ETA may learn a duration from
     (``learning_dags``), walked back to its latest 20 successes: the learned durations are exactly those
     ``status`` computes from the whole store (one ranged read per DAG, rarely two). The walk stops after
     ``LEARN_MAX_PAGES`` pages (200 run states): a DAG with fewer dated successes there learns from those only.
  e. the shared assets drawn as nodes (``page.assets``) come from the recorded asset events and the delivery
     ledger (``{prefix}/assets/``, ``{prefix}/deliveries/``) as this process's asset index holds them
     (``page.asset_feed``: loaded at the first view, then kept current by a watch), not from a read per view: those
     prefixes grow with the history until retention runs. So they stand at the watch's revision, not the partition's.
  f. for a graph with OpenLineage jobs, the chosen partition's lineage records (``explain.lineage``), over the
     same connection.
  g. operators' holds (``{prefix}/holds/``) through the informer (``informer.holds.read_holds``), over the
     same connection: a DAG a standing hold covers for the partition drawn says "held by H: REASON" (``page.holds``);
     and the audit trail's ``HISTORY_ROWS`` newest entries in one ranged read (``read_history``'s ``newest``), shown
     below the details (``page.history``; a role that may not read ``history/`` is told so, the page still drawn).
- **The adopted graph.** The graph drawn is the one the leading watcher adopted (``{prefix}/config/graph`` records every
  DAG's sources), so the page shows what the watcher acts on; before a watcher recorded it, the ``COORDINATOR_DEPS``
  file.
- **Failures are pages.** Every failure is a page that says what is wrong and what to do (etcd unreachable, no graph, a
  bad partition), with an HTTP status for it; never a traceback, never a secret (endpoints and credentials are not
  shown).
- **Authenticated by the caller.** The caller (the Airflow plugin's FastAPI app, later the watcher's listener)
  authenticates the user first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from coordinator.core.adoption import is_first_adoption
from coordinator.core.deadline.learning import LEARN_SAMPLES
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.states import deadline_states, task_targets
from coordinator.core.decide import decide
from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    any_partition,
)
from coordinator.core.partition import is_partition, is_segment_only
from coordinator.core.plan_scope import partition_reads
from coordinator.core.planner import partitions_to_plan
from coordinator.core.view import View
from coordinator.errors import ConfigError, CoordinatorError, SpecError
from coordinator.explain.deadlines import leader_status
from coordinator.explain.lineage import LineageState, lineage_states
from coordinator.informer import Informer
from coordinator.informer.holds import read_history, read_holds
from coordinator.informer.presence_value import airflow_majors
from coordinator.informer.read_model import READERS, Scope, StoreModel, load
from coordinator.page.access import Access, restrict
from coordinator.page.asset_feed import shared_assets
from coordinator.page.assets import AssetNode
from coordinator.page.history import HISTORY_ROWS, TrailRead, history_panel, refused
from coordinator.page.holds import with_holds
from coordinator.page.model import PICKER_PARTITIONS, PageModel, build_page, graph_from_activation
from coordinator.page.render import render_message, render_page
from coordinator.page.select import Selection
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.runtime.spec_file import load_spec

if TYPE_CHECKING:
    from coordinator.etcd import EtcdStore
    from coordinator.etcd.types import KV

log = logging.getLogger(__name__)
TITLE = "Dependencies"


@dataclass(frozen=True, slots=True)
class PageResponse:
    status: int
    html: str


@dataclass(frozen=True, slots=True)
class PartitionRead:
    """What one request read (**Read-only, one load** (a)): the view of one partition, the graph, the partitions to
    offer."""

    view: View
    graph: Graph | None
    partition: str | None
    partitions: list[str]
    #: The leader's recorded deadline transitions read with it (``{prefix}/deadlines/...``, **Read-only, one load**
    #: (c)).
    recorded: Mapping[tuple[NodeId, str], DeadlineRecord] = field(default_factory=dict)
    #: Each instance's Airflow major version from the watchers' presence (a root's predicted start, as ``status``).
    majors: Mapping[str, int] = field(default_factory=dict)
    #: The shared assets from the recorded asset events and the delivery ledger (**Read-only, one load** (e)).
    assets: tuple[AssetNode, ...] = ()
    #: The OpenLineage nodes' states in the partition drawn (**Read-only, one load** (f)); None when they could not be
    #: read.
    lineage: tuple[LineageState, ...] | None = ()
    #: Operators' holds as recorded (**Read-only, one load** (g)).
    holds: tuple[Hold, ...] = ()
    #: The audit trail's newest entries (**Read-only, one load** (g)).
    trail: TrailRead = field(default_factory=TrailRead)

    @classmethod
    def of(cls, model: StoreModel, graph: Graph | None, partition: str | None, partitions: list[str],
           assets: tuple[AssetNode, ...], lineage: tuple[LineageState, ...] | None,
           holds: tuple[Hold, ...], trail: TrailRead) -> PartitionRead:  # fmt: skip
        return cls(model.view, graph, partition, partitions, model.recorded, airflow_majors(model.watchers), assets,
                   lineage, holds, trail)  # fmt: skip


async def read_partition(settings: Settings, etcd: EtcdSettings | None, partition: str | None) -> PartitionRead:
    """**Read-only, one load**: the activation and the floor, then one load of the keys the chosen partition's decision
    reads, all at one revision; the whole prefix (**Read-only, one load** (b)) before a first adoption."""
    from coordinator.etcd import EtcdStore  # the gRPC import only when the page is asked for

    keys = settings.keys
    async with await EtcdStore.connect(etcd or settings.etcd()) as store:
        heads_view = View(keys)
        revision, heads = await store.get_many([heads_view.graph_key, heads_view.floor_key])
        # Into the view the one way a model is filled (the informer); the same keys go into the one load below.
        Informer(heads_view).load_items(revision, sorted((kv.key, kv.value, kv.mod_revision) for kv in heads))
        graph = choose_graph(heads_view, settings)
        assets = await shared_assets(etcd or settings.etcd(), keys.prefix)
        held, _ = await read_holds(store, keys)  # **Read-only, one load** (g)
        holds = tuple(held.holds.values())
        trail = await _trail(store, keys)
        if graph is None or is_first_adoption(heads_view):
            # **Read-only, one load** (b): the whole prefix, presence and deadlines with it.
            model = await load(store, keys, READERS)
            offered = partitions_to_plan(graph, model.view) if graph else []
            lineage = await _lineage(store, settings, graph, partition or (offered[-1] if offered else None))
            return PartitionRead.of(model, graph, partition, offered, assets, lineage, holds, trail)
        offered = await _newest_partitions(store, keys, graph, revision)
        chosen = partition or (offered[-1] if offered else None)
        wanted: list[str] = []
        learned: list[KV] = []
        if chosen is not None:
            reads = partition_reads(graph, chosen)
            wanted = [
                key
                for node, p in sorted(reads.nodes)
                for key in (keys.run_key(node, p), keys.trigger_key(node, p),
                            keys.config_key(f"backfill/{node.instance}/{node.dag_id}/{p}"))
            ]  # fmt: skip
            wanted += [keys.task_key(node, task, p) for node, task, p in sorted(reads.tasks)]
            # Semantics `flap-held`: a flapping upstream's record holds what reads it (the DAGs with dependents only).
            below = graph.downstreams
            wanted += [keys.flap_key(node, p) for node, p in sorted(reads.nodes) if below.get(node)]
            wanted += [keys.deadline_key(node, chosen) for node, spec in graph.dags.items() if spec.expected_by]
            # A task deadline is judged on its task's state (semantics `deadlines-judged`): read it like an edge's task.
            wanted += [keys.task_key(node, task, chosen) for node, task in sorted(task_targets(graph).items())]
            learned = await _learning_history(store, keys, graph, revision)
        # **Read-only, one load**: the one load, into the indexes every reader's has (the view, the recorded deadline
        # transitions, the presence): the partition's keys at the heads' revision, the walks' and the heads' as read.
        scope = Scope((keys.watchers,), tuple(wanted), revision)
        model = await load(store, keys, READERS, scope, given=[*heads, *learned])
        lineage = await _lineage(store, settings, graph, chosen)
    return PartitionRead.of(model, graph, chosen, offered, assets, lineage, holds, trail)


async def _trail(store: EtcdStore, keys: KeyLayout) -> TrailRead:
    """**Read-only, one load** (g): the audit trail's newest entries, newest first, or that the role may not read it
    (``page.history``'s **Said, not failed**)."""
    index, loaded = await read_history(store, keys, newest=HISTORY_ROWS, skip=refused)
    if loaded.unread:
        return TrailRead(unread=True)
    return TrailRead(tuple(reversed(index.since(None))), unreadable=len(loaded.problems))


async def _lineage(
    store: EtcdStore, settings: Settings, graph: Graph | None, partition: str | None
) -> tuple[LineageState, ...] | None:
    """**Read-only, one load** (f): the lineage nodes' states in ``partition``; None when they could not be read (the
    page draws the rest: semantics `lineage-upstreams` says the job only in a node's detail)."""
    if graph is None or not graph.lineage_jobs or partition is None:
        return ()
    try:
        return tuple(await lineage_states(store, settings.keys, graph, [partition]))
    except CoordinatorError as exc:
        log.warning("page.lineage_unread error=%s", exc)
        return None


#: Run states read per page of a walk back through one DAG's partitions for its learned duration
#: (**Read-only, one load** (d)).
LEARN_PAGE = 2 * LEARN_SAMPLES
#: DAGs walked at once (each walk is one ranged read, rarely two).
LEARN_CONCURRENCY = 32
#: Pages of one walk at most: a DAG with few dated successes (mostly failures, or runs recorded without dates) would
#: otherwise be read back to its first partition on every page view. 5 pages = 200 run states, ten times what a
#: duration learns from; beyond it the page learns from what it read (``status`` reads everything).
LEARN_MAX_PAGES = 5


def learning_dags(graph: Graph) -> set[NodeId]:
    """**Read-only, one load** (d): the DAGs whose learned duration a deadline's ETA may use (semantics
    `deadlines-judged`; ``core.deadline.learning``'s **ETA** and **Expected duration**): every DAG with ``expected_by``
    but no fixed duration, and every ancestor of one with ``expected_by`` (an upstream's duration delays the ETA; a DAG
    without ``expected_by`` has no fixed duration)."""
    cone: set[NodeId] = set()
    work = [node for node, spec in graph.dags.items() if spec.expected_by is not None]
    while work:
        node = work.pop()
        if node not in cone:
            cone.add(node)
            work += graph.dags[node].upstreams
    return {
        node
        for node in cone
        if (rule := graph.dags[node].expected_by) is None or rule.duration is None or rule.task is not None
    }


async def _learning_history(store: EtcdStore, keys: KeyLayout, graph: Graph, revision: int) -> list[KV]:
    """**Read-only, one load** (d): for each learning DAG, its newest run states back to its latest ``LEARN_SAMPLES``
    successes with a start and an end (or its oldest), so the learned durations are those ``status`` computes from
    everything."""
    gate = asyncio.Semaphore(LEARN_CONCURRENCY)

    async def walk(node: NodeId) -> list[KV]:
        base = f"{keys.runs}{node.instance}/{node.dag_id}/"
        found: list[KV] = []
        learned, below = 0, None
        async with gate:
            for _ in range(LEARN_MAX_PAGES):
                page = await store.newest(base, LEARN_PAGE, revision=revision, below=below)
                found += page
                learned += sum(1 for kv in page if _learns(kv.value))
                if len(page) < LEARN_PAGE or learned >= LEARN_SAMPLES:
                    break
                below = page[-1].key
        return found

    walks = await asyncio.gather(*(walk(node) for node in sorted(learning_dags(graph))))
    return [kv for found in walks for kv in found]


def _learns(value: bytes) -> bool:
    """A success with a start and an end: what ``core.deadline.learning``'s **Expected duration** learns from (a bad
    value learns nothing)."""
    try:
        record = RunRecord.model_validate_json(value)
    except ValidationError:
        return False
    return record.state is RunState.SUCCESS and record.start_date is not None and record.end_date is not None


#: Root DAGs whose newest run states name the partitions the picker offers (one small ranged read each).
PICKER_ROOTS = 5


async def _newest_partitions(store: EtcdStore, keys: KeyLayout, graph: Graph, revision: int) -> list[str]:
    """The newest partitions of the graph's first roots (in graph order), oldest first; older ones are typed into
    the URL (``?partition=``)."""
    roots = list(graph.roots[:PICKER_ROOTS]) or list(graph.topo_order[:1])
    found: set[str] = set()
    for node in roots:
        base = f"{keys.runs}{node.instance}/{node.dag_id}/"
        for key in await store.newest_keys(base, PICKER_PARTITIONS, revision=revision):
            found.add(key[len(base) :])
    timed = sorted(p for p in found if is_partition(p) and not is_segment_only(p))[-PICKER_PARTITIONS:]
    return timed + sorted(p for p in found if is_segment_only(p))[:PICKER_PARTITIONS]


def choose_graph(view: View, settings: Settings) -> Graph | None:
    """**The adopted graph**; raise SpecError when only the file is left and it is invalid."""
    adopted = graph_from_activation(view.activation, f"adopted by the watcher ({view.graph_key})")
    if adopted is not None:
        return adopted
    if settings.deps.is_file():
        return load_spec(settings.deps)
    return None


async def dependencies_page(
    partition: str | None,
    node: str | None,
    *,
    instance: str,
    ui_base: str = "",
    settings: Settings | None = None,
    etcd: EtcdSettings | None = None,
    query: Mapping[str, str] | None = None,
    access: Access | None = None,
) -> PageResponse:
    """The page for one request (**Read-only, one load**, **The adopted graph** and **Failures are pages**). ``etcd``:
    the connection settings when the caller resolved them itself (the plugin's, which may come from an Airflow
    connection); else ``settings.etcd()``. ``query``: the request's parameters, for the filters and the page of a large
    graph (``page.select``). ``access``: what the user may read (``page.access``); None draws everything (a caller that
    authorized the whole graph)."""
    try:
        settings = settings or Settings()
        settings.etcd()
    except (ValidationError, ConfigError) as exc:
        log.warning("page.config_error error=%s", type(exc).__name__)
        return PageResponse(503, render_message(TITLE, f"The coordinator is not configured here: {_first(exc)}"))
    chosen: str | None = None
    if partition:
        try:
            chosen = any_partition(partition)
        except ValueError as exc:
            return PageResponse(400, render_message(TITLE, str(exc)))
    try:
        read = await read_partition(settings, etcd, chosen)
    except CoordinatorError as exc:
        log.warning("page.etcd_error error=%s", exc)
        return PageResponse(503, render_message(TITLE, "etcd cannot be read right now; try again in a moment."))
    except SpecError as exc:
        return PageResponse(503, render_message(TITLE, "dependencies file is invalid: " + "; ".join(exc.problems)))
    view, graph, chosen, partitions = read.view, read.graph, read.partition, read.partitions
    if graph is None:
        return PageResponse(
            200,
            render_message(
                TITLE,
                "No dependency graph yet: start a watcher (it records the graph it adopts in etcd) or set "
                "COORDINATOR_DEPS for the api-server.",
            ),
        )
    if chosen is None and partitions:
        chosen = partitions[-1]
    decision = decide(graph, view, [chosen] if chosen is not None else [], now=datetime.now(UTC),
                      history=settings.history_choice, limit=settings.first_start_limit)  # fmt: skip
    # Deadlines are judged at the decision's clock, like `status` (semantics `deadlines-judged`).
    deadlines = (
        deadline_states(graph, view, decision.now, partitions=[chosen], majors=read.majors)
        if chosen is not None
        else {}
    )
    # Paused DAGs and unreachable instances only the leader sees: its recorded judgement, as `status` shows it.
    deadlines = {at: leader_status(status, read.recorded.get(at)) for at, status in deadlines.items()}
    model = replace(build_page(graph, view, decision.plan, chosen, partitions, deadlines, decision.now),
                    assets=read.assets)  # fmt: skip
    model = with_holds(model, graph, read.holds, decision.now)  # "held by H: REASON"
    model = replace(model, history=history_panel(read.trail, read.holds, decision.now))  # the audit trail
    if read.lineage:  # semantics `lineage-upstreams`: an OpenLineage node says its job, last event
        model = with_lineage(model, read.lineage)
    if access is not None:
        model = restrict(model, access)  # decided on the whole graph, drawn only where the user may read
    selected: NodeId | None = None
    if node:
        try:
            selected = NodeId.parse(node)
        except ValueError:
            selected = None
    asset = (query or {}).get("asset") or None  # ?asset=source:uri, the shared asset's detail panel
    page = render_page(model, selected=selected, instance=instance, ui_base=ui_base, title=TITLE,
                       selection=Selection.parse(query or {}), selected_asset=asset)  # fmt: skip
    return PageResponse(200, page)


def with_lineage(model: PageModel, states: Sequence[LineageState]) -> PageModel:
    """Each OpenLineage node's detail leads with its job and last event (the line ``why`` and ``status`` print)."""
    said = {state.node: state.describe() for state in states}
    nodes = tuple(replace(n, why=(said[n.node], *n.why)) if n.node in said else n for n in model.nodes)
    return replace(model, nodes=nodes)


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc)
