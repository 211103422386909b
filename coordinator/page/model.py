"""What the dependencies page shows, as typed values: each DAG's place in the drawing and its state for a partition.

Rules:
- **Pure, the planner states.** Pure: the graph, a view (a snapshot of etcd) and the planner's verdicts in, a
  :class:`PageModel` out. The states are the planner's, exactly as ``coordinator status`` and ``coordinator why`` report
  them (same ``plan``, same ``why``), so the page can never disagree with the CLI.
- **One state per DAG.** One state per DAG, the most urgent first: a trigger Airflow refused (error), a trigger not
  started yet, an attempt running or queued, due, failed, succeeded (fresh), stale, waiting (on whom), not run.
- **Layered layout.** Layout: columns by topological depth (a DAG sits right of every source), rows ordered by the mean
  row of the sources (one barycentre pass: few crossings, deterministic), left to right.
- **Nothing secret.** Nothing secret is shown: states, run ids, inputs, attempts and the last error as recorded in etcd.
- **A group is one joint.** A DAG's condition group (semantics `condition-groups`) is one :class:`PageJoint` with its
  rule in words (``any``, ``2 of 3``, ``cutoff 6h``): its members' edges end at the joint, and one edge goes on to the
  dependent. The detail of the DAG says where each member stands (``explain.groups``, the lines ``why`` prints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from coordinator.core.actions import Plan, Verdict
from coordinator.core.activation import Activation
from coordinator.core.conditions import GroupRule, GroupSpec, clock_text
from coordinator.core.deadline.states import DeadlineStatus
from coordinator.core.duration import format_shift
from coordinator.core.graph import DagSpec, Graph
from coordinator.core.graph_diff import adopted_graph
from coordinator.core.model import NodeId
from coordinator.core.view import RunFact, View
from coordinator.explain.report import row_status, why
from coordinator.page.assets import AssetNode
from coordinator.page.history import HistoryPanel
from coordinator.page.layout import layered

#: Partitions offered by the picker: recent ones are what operators look at; older ones are typed into the URL.
PICKER_PARTITIONS = 30


class NodeState(StrEnum):
    ERROR = "error"
    TRIGGERED = "triggered"  # triggered by the coordinator, not started in Airflow yet
    RUNNING = "running"
    QUEUED = "queued"
    DUE = "due"
    HELD = "held"  # due, and an operator's standing hold keeps it back (``page.holds``)
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    STALE = "stale"
    WAITING = "waiting"
    NOT_RUN = "not run"

    @property
    def moving(self) -> bool:
        """A cascade is under way: the page refreshes itself while any DAG is in one of these."""
        return self in (NodeState.TRIGGERED, NodeState.RUNNING, NodeState.QUEUED, NodeState.DUE)


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """The coordinator's last trigger of a DAG for the partition (the ledger entry)."""

    run_id: str
    status: str
    action: str
    inputs: tuple[tuple[str, int], ...]
    attempts: int
    trigger_count: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PageNode:
    node: NodeId
    column: int
    row: int
    state: NodeState
    summary: str
    waiting_on: tuple[NodeId, ...]
    why: tuple[str, ...]
    run_id: str | None
    run_state: str | None
    attempt: int | None
    ledger: LedgerInfo | None
    #: For a failure handler: the DAGs whose failures it handles (it "waits" for one of them to fail).
    failure_sources: tuple[NodeId, ...] = ()
    #: For a DAG with ``expected_by``: its deadline status for the partition (semantics `deadlines-judged`).
    deadline: DeadlineStatus | None = None


@dataclass(frozen=True, slots=True)
class PageEdge:
    source: NodeId
    target: NodeId
    on_failure: bool
    #: The index of the target's condition group the edge belongs to (**A group is one joint**); None: a plain edge.
    group: int | None = None


@dataclass(frozen=True, slots=True)
class PageJoint:
    """One condition group of ``target`` (**A group is one joint**): ``index`` among its groups, its rule in words."""

    target: NodeId
    index: int
    label: str
    members: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class PageModel:
    partition: str | None
    partitions: tuple[str, ...]
    revision: int
    nodes: tuple[PageNode, ...]
    edges: tuple[PageEdge, ...]
    graph_source: str
    problems: tuple[str, ...] = ()
    #: DAGs left out because the user may not read them (``page.access``).
    hidden: int = 0
    #: Shared assets (semantics `assets-by-route` and `asset-exactly-once`, ``page.assets``), drawn as nodes of the
    #: graph after the DAGs.
    assets: tuple[AssetNode, ...] = ()
    #: Shared assets left out because the user may read no DAG of any instance they name (``page.access``).
    hidden_assets: int = 0
    #: The condition groups, each drawn as one joint (**A group is one joint**).
    joints: tuple[PageJoint, ...] = ()
    #: The audit trail's newest entries (``page.history``); None: not read.
    history: HistoryPanel | None = None

    @property
    def moving(self) -> bool:
        return any(n.state.moving for n in self.nodes)

    def get(self, node: NodeId) -> PageNode | None:
        return next((n for n in self.nodes if n.node == node), None)


def graph_from_activation(activation: Activation | None, source: str) -> Graph | None:
    """The adopted graph as the activation records it (edges, grids, offsets: ``graph_diff.adopted_graph``, the one
    ``status`` falls back on), so the page decides on the graph the watcher acts on; None when it cannot be rebuilt
    (an entry that predates edge recording, see docs/keys.md)."""
    if activation is None or not activation.nodes:
        return None
    return adopted_graph(activation, source)


def layout(graph: Graph) -> dict[NodeId, tuple[int, int]]:
    """Node -> (column, row): **Layered layout** (``page.layout``, which also places the shared assets after the
    DAGs)."""
    sources = {node: (*spec.upstreams, *spec.on_failure_of) for node, spec in graph.dags.items()}
    return layered(graph.topo_order, sources)


#: ``report.row_status``'s words in the page's (the legend's colours).
_PAGE_STATE = {
    "trigger failed": NodeState.ERROR, "triggering": NodeState.TRIGGERED, "triggered": NodeState.TRIGGERED,
    "rerun requested": NodeState.TRIGGERED, "running": NodeState.RUNNING, "queued": NodeState.QUEUED,
    "due": NodeState.DUE, "held": NodeState.HELD, "failed": NodeState.FAILED, "success": NodeState.SUCCEEDED,
    "stale": NodeState.STALE, "waiting": NodeState.WAITING, "not run": NodeState.NOT_RUN,
    "waiting in Airflow": NodeState.WAITING, "permit granted": NodeState.TRIGGERED,
}  # fmt: skip


def classify(verdict: Verdict | None, fact: RunFact | None, spec: DagSpec) -> NodeState:
    """**One state per DAG**: ``status``'s one state of the row (``report.row_status``), in the page's words."""
    handler = spec.is_failure_handler or spec.is_late_handler
    if verdict is None:
        return NodeState.WAITING if handler else NodeState.NOT_RUN
    status = row_status(verdict, fact.rev if fact is not None else None, handler=handler, scheduled=spec.scheduled)
    return _PAGE_STATE.get(status, NodeState.NOT_RUN)


def _ledger(verdict: Verdict | None) -> LedgerInfo | None:
    if verdict is None or verdict.ledger is None:
        return None
    rec = verdict.ledger.record
    return LedgerInfo(
        run_id=rec.run_id,
        status=str(rec.status),
        action=str(rec.action),
        inputs=tuple(sorted(rec.inputs.items())),
        attempts=rec.attempts,
        trigger_count=rec.trigger_count,
        last_error=rec.last_error,
    )


def build_page(
    graph: Graph,
    view: View,
    plan_result: Plan,
    partition: str | None,
    partitions: list[str] | None = None,
    deadlines: Mapping[tuple[NodeId, str], DeadlineStatus] | None = None,
    now: datetime | None = None,
) -> PageModel:
    """The page for ``partition`` (None: no run state yet; every DAG not run) from a plan that covered it (decided
    at ``now``, which the groups' cutoff lines read)."""
    places = layout(graph)
    nodes: list[PageNode] = []
    for node in graph.topo_order:
        verdict = plan_result.verdicts.get((node, partition)) if partition is not None else None
        fact = view.runs.get((node, partition)) if partition is not None else None
        col, row = places[node]
        nodes.append(
            PageNode(
                node=node,
                column=col,
                row=row,
                state=classify(verdict, fact, graph.dags[node]),
                summary=verdict.summary if verdict is not None else f"{node} has no run state for this partition",
                waiting_on=verdict.blocked_by if verdict is not None else (),
                why=tuple(why(graph, plan_result, node, partition, view, now)) if partition is not None else (),
                run_id=fact.record.run_id if fact is not None else None,
                run_state=str(fact.record.state) if fact is not None else None,
                attempt=fact.record.clear_number if fact is not None else None,
                ledger=_ledger(verdict),
                failure_sources=graph.dags[node].on_failure_of,
                deadline=(deadlines or {}).get((node, partition)) if partition is not None else None,
            )
        )
    joints, grouped = _joints(graph)
    edges = [
        PageEdge(src, spec.node, on_failure, None if on_failure else grouped.get((src, spec.node)))
        for spec in graph.dags.values()
        for on_failure, sources in ((False, spec.upstreams), (True, spec.on_failure_of))
        for src in sources
    ]
    recent = partitions if partitions is not None else view.all_partitions()
    return PageModel(
        partition=partition,
        partitions=tuple(reversed(recent[-PICKER_PARTITIONS:])),
        revision=view.revision,
        nodes=tuple(nodes),
        edges=tuple(sorted(edges, key=lambda e: (e.target, e.source))),
        graph_source=graph.source,
        problems=tuple(f"{key}: {problem}" for key, problem in sorted(view.problems.items())),
        joints=tuple(sorted(joints, key=lambda j: (j.target, j.index))),
    )


def joint_label(group: GroupSpec) -> str:
    """A group's rule in a few words: ``any``, ``2 of 3``, with ``cutoff 6h`` or ``cutoff 06:00`` when it has one."""
    label = "any" if group.rule is GroupRule.ANY else f"{group.need} of {len(group.members)}"
    if group.cutoff is not None:
        label += f", cutoff {format_shift(group.cutoff)}"
    elif group.at_time is not None:
        label += f", cutoff {clock_text(group.at_time)}"
    return label


def _joints(graph: Graph) -> tuple[list[PageJoint], dict[tuple[NodeId, NodeId], int]]:
    """Every group as a joint, and the group index of each (member, target) edge."""
    joints: list[PageJoint] = []
    index: dict[tuple[NodeId, NodeId], int] = {}
    for spec in graph.dags.values():
        for i, group in enumerate(spec.groups):
            members = tuple(sorted({up for up, _ in group.members}))
            joints.append(PageJoint(spec.node, i, joint_label(group), members))
            index.update({(up, spec.node): i for up in members})
    return joints, index


def state_counts(model: PageModel) -> Mapping[NodeState, int]:
    counts: dict[NodeState, int] = {}
    for node in model.nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    return counts
