"""The one decision: (graph, view, partitions, now) -> the plan, with every partition's state and reason.

The watcher, ``status``, ``why``, ``reconcile --dry-run``, ``backfill`` and the dependencies page all decide here and
nowhere else, so none of them can skip a step the others take (semantics `one-decision`). Rules, in the order of
semantics `one-decision`:

a. **Activation first.** The activation comes first and from the view: a FIRST adoption (``adoption.is_first_adoption``)
   is decided with ``adoption.first_adoption`` (paused: nothing is activated, so only backfill requests can act;
   semantics `adoption-flood-guard`); otherwise the activation the leader would write for this graph
   (``activation.adopt``: new or changed DAGs are active from the view's revision), or the view's own when nothing
   changed. A caller that already adopted (the leading watcher wrote the activation, or holds a first adoption it
   decided) passes that :class:`Adoption` instead of re-deciding it: the decision is the same, the history is not
   re-counted on every pass.
b. **Then the plan.** Then the planner (``planner.plan`` for whole partitions, ``planner.plan_changes`` for what
   changed): the planner's rules unchanged.
c. **Then retention.** Then retention, from the floor IN the view (``View.floor``, read at the same revision as the
   facts): the triggers of retired decisions are dropped and their verdicts say so (semantics `retired-inert`).
d. **Now as an input.** ``now`` is an input: the core never reads a clock. The plan depends on it only through a
   condition group's cutoff (semantics `group-cutoff`: past it, a group holds with its ``min`` members); ``status``
   and the page judge deadlines (semantics `deadlines-judged`, ``core/deadline/states.py``) at the same
   ``Decision.now``.
e. **Pure.** no I/O, no clock, no logging. The same graph, view, partitions and now give the same :class:`Decision`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from coordinator.core.actions import Plan
from coordinator.core.activation import Activation, adopt
from coordinator.core.adoption import (
    DEFAULT_FIRST_START_LIMIT,
    FirstAdoption,
    HistoryChoice,
    first_adoption,
    is_first_adoption,
)
from coordinator.core.floor import RetentionFloor
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId
from coordinator.core.planner import plan, plan_changes
from coordinator.core.retention import Retirement
from coordinator.core.view import View


@dataclass(frozen=True, slots=True)
class Adoption:
    """**Activation first**: the activation decisions are planned against, and the first adoption when there is one."""

    activation: Activation | None
    #: Set when no graph was ever adopted under the prefix (semantics `first-adoption`): paused when ``activation`` is
    #: None.
    first: FirstAdoption | None = None

    @property
    def paused(self) -> bool:
        return self.first is not None and self.first.paused


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided: the plan (retention applied), the adoption it was planned against, the floor, the time."""

    plan: Plan
    adoption: Adoption
    floor: RetentionFloor | None
    now: datetime
    #: The floor's retired decisions for this graph (None: no floor), for checks that plan nothing (backfill).
    retirement: Retirement | None = None

    def why_retired(self, node: NodeId, partition: str) -> str | None:
        """None when a decision of ``node`` for ``partition`` is live; else why retention retires it
        (**Then retention**)."""
        return self.retirement.why_retired(node, partition) if self.retirement is not None else None


def adoption_for(
    graph: Graph,
    view: View,
    history: HistoryChoice | None = None,
    limit: int = DEFAULT_FIRST_START_LIMIT,
    *,
    by: str = "",
) -> Adoption:
    """**Activation first**: what the leader would plan against on this view (a first adoption decided, or the change
    adopted)."""
    if is_first_adoption(view):
        first = first_adoption(graph, view, history or HistoryChoice(), limit, by=by)
        return Adoption(first.activation, first)
    proposed = adopt(graph.shapes, graph.digest, view.activation, view.revision, by, sources=graph.dags)
    return Adoption(proposed if proposed is not None else view.activation)


def decide(
    graph: Graph,
    view: View,
    partitions: Iterable[str] | None = None,
    *,
    now: datetime,
    history: HistoryChoice | None = None,
    limit: int = DEFAULT_FIRST_START_LIMIT,
    adoption: Adoption | None = None,
    explain: bool = True,
    changed: Mapping[str, Iterable[NodeId]] | None = None,
    skip: Iterable[str] = (),
    retirement: Retirement | None = None,
) -> Decision:
    """Every rule of the module. ``partitions``: planned whole (every known one when None); ``changed`` instead: only
    the DAGs whose facts changed and what depends on them (``plan_changes``; ``skip``: partitions the caller plans whole
    in the same pass). ``explain=False``: actions only, no verdicts (the watcher's passes). ``retirement``: a memo of
    the floor's retired decisions for this graph that the caller keeps (it must be for ``view.floor``)."""
    adopted = adoption if adoption is not None else adoption_for(graph, view, history, limit)
    # A paused first adoption activates nothing; the view's activation is None then too (**Activation first**).
    active = adopted.activation
    if changed is not None:
        result = plan_changes(graph, view, changed, activation=active, skip=skip, now=now)
    else:
        result = plan(graph, view, partitions, activation=active, explain=explain, now=now)
    floor = view.floor
    if floor is None:
        retirement = None
    else:
        if retirement is None or retirement.floor != floor or retirement.graph is not graph:
            retirement = Retirement(graph, floor)
        result = retirement.apply(result)
    return Decision(result, adopted, floor, now, retirement)
