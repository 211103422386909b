"""The state machine of test_planner_stateful on random graphs with CONDITION GROUPS (``any``, ``at_least``; semantics
`condition-groups`), with crashes, clears, lost answers and restarts, against an independent model.

The model judges by definition: a group holds when enough members are fresh; an attempt consumed the required
upstreams' generations current when it STARTED (as in the base model) and, of each group, the members
its trigger recorded, each of which the model checks was satisfied at that generation when the coordinator decided
the run: a member satisfied later was not consumed and never stales it; a consumed member with a new generation does.
Every trigger must hold in the model. No planner or condition code is used by the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize

from coordinator.core.actions import Resume, Trigger
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from tests.support.world import World
from tests.test_planner_stateful import PARTITIONS, PlannerMachine

Shape = dict[str, tuple[list[str], list[tuple[int, list[str]]]]]


@st.composite
def conditioned(draw: st.DrawFn) -> Shape:
    """Random acyclic graph, 3..6 nodes; a dependent's upstreams split into required ones and up to two groups
    (any, or at_least n of k), each of 2..3 members."""
    size = draw(st.integers(min_value=3, max_value=6))
    names = [f"d{i}" for i in range(size)]
    shape: Shape = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=5))
        groups: list[tuple[int, list[str]]] = []
        while len(ups) >= 2 and len(groups) < 2 and draw(st.booleans()):
            k = draw(st.integers(min_value=2, max_value=min(3, len(ups))))
            members, ups = ups[:k], ups[k:]
            groups.append((draw(st.integers(min_value=1, max_value=k)), members))
        if ups or groups:
            shape[names[i]] = (ups, groups)
    if not any(groups for _, groups in shape.values()):
        shape[names[2]] = ([], [(1, [names[0], names[1]])])
    return shape


def spec_of(shape: Shape) -> str:
    dags: dict[str, object] = {}
    for name, (ups, groups) in shape.items():
        items: list[object] = list(ups)
        for need, members in groups:
            items.append({"any": members} if need == 1 else {"at_least": need, "of": members})
        dags[name] = {"upstreams": items}
    return json.dumps({"version": 1, "dags": dags})


@dataclass
class HookedWorld(World):
    """The tiny world with a hook around every trigger the actuator applies (the model's account of decisions)."""

    before: Callable[[Trigger], object] | None = None
    after: Callable[[Trigger], object] | None = None
    hooks: list[int] = field(default_factory=list)

    def apply_action(
        self,
        action: Trigger | Resume,
        crash_after_intent: bool = False,
        crash_after_effect: bool = False,
        lose_answer: bool = False,
    ) -> None:
        if isinstance(action, Trigger) and self.before is not None:
            self.before(action)
        super().apply_action(action, crash_after_intent, crash_after_effect, lose_answer)
        if isinstance(action, Trigger) and self.after is not None:
            self.after(action)


class ConditionMachine(PlannerMachine):
    required: dict[NodeId, list[NodeId]]
    groups: dict[NodeId, list[tuple[int, list[NodeId]]]]
    #: (node, partition) -> the members the last recorded trigger consumed, as the model judged them then.
    decided: dict[tuple[NodeId, str], dict[NodeId, int | None]]
    #: (node, partition) -> the members the attempt on record consumed (its trigger's, see ``decided``).
    member_reads: dict[tuple[NodeId, str], dict[NodeId, int | None]]

    @initialize(shape=conditioned())
    def setup(self, shape: Shape) -> None:  # type: ignore[override]
        world = HookedWorld(parse_spec(spec_of(shape)))
        world.before, world.after = self.before_trigger, self.after_trigger
        self.world = world
        self.world.adopt()
        self.consumed, self.decided, self.member_reads = {}, {}, {}
        self.required = {NodeId("default", d): [NodeId("default", u) for u in ups] for d, (ups, _) in shape.items()}
        self.groups = {
            NodeId("default", d): [(need, [NodeId("default", m) for m in ms]) for need, ms in groups]
            for d, (_, groups) in shape.items()
        }
        self._pending: dict[tuple[NodeId, str], tuple[dict[NodeId, int | None], int]] = {}

    # -- the independent model -----------------------------------------------------------------------------------
    def model_holds(self, node: NodeId, partition: str) -> bool:
        if not all(self.model_fresh(up, partition) for up in self.required.get(node, [])):
            return False
        return all(
            sum(self.model_fresh(m, partition) for m in members) >= need for need, members in self.groups.get(node, [])
        )

    def model_fresh(self, node: NodeId, partition: str) -> bool:
        fact = self.world.view.runs.get((node, partition))
        if fact is None or fact.record.state is not RunState.SUCCESS:
            return False
        if node not in self.required:  # a root
            return True
        if not self.model_holds(node, partition):
            return False
        read = self.consumed.get((node, partition), {})
        if any(read.get(up) != self.gen(up, partition) for up in self.required[node]):
            return False
        members = self.member_reads.get((node, partition), {})
        return all(
            m not in members or not self.model_fresh(m, partition) or members[m] == self.gen(m, partition)
            for _, group in self.groups[node]
            for m in group
        )

    def begin_attempt(self, node: NodeId, partition: str) -> None:
        self.consumed[(node, partition)] = {up: self.gen(up, partition) for up in self.required.get(node, [])}
        self.member_reads[(node, partition)] = dict(self.decided.get((node, partition), {}))

    def before_trigger(self, action: Trigger) -> None:
        """Every trigger holds in the model and records every required upstream and satisfied members only, each at
        its current generation. (The planner may leave out a member the model finds satisfied: it is conservative
        about a member's own freshness, as the base model allows; that member then counts as not consumed.)"""
        node, partition = action.node, action.partition
        assert self.model_holds(node, partition), f"{node} {partition} triggered while its condition does not hold"
        names = {m.qualified: m for _, group in self.groups.get(node, []) for m in group}
        required = {up.qualified: self.gen(up, partition) for up in self.required.get(node, [])}
        assert {k: v for k, v in action.inputs.items() if k not in names} == required, (node, partition, action)
        members = {names[k]: v for k, v in action.inputs.items() if k in names}
        for m, gen in members.items():
            assert self.model_fresh(m, partition) and gen == self.gen(m, partition), f"{node} consumed stale {m}"
        ledger = self.world.view.ledger.get((node, partition))
        self._pending[(node, partition)] = (dict(members), ledger.mod_rev if ledger is not None else 0)

    def after_trigger(self, action: Trigger) -> None:
        """The decision counts once its intent is recorded (a lost compare-and-swap records nothing)."""
        at = (action.node, action.partition)
        members, rev = self._pending.pop(at)
        ledger = self.world.view.ledger.get(at)
        if ledger is not None and ledger.mod_rev != rev and ledger.record.inputs == action.inputs:
            self.decided[at] = members

    def check_trigger_is_safe(self, action: Trigger) -> None:
        """Checked by ``before_trigger`` for every trigger the world applies, the teardown's included."""

    def teardown(self) -> None:
        """After quiescence every DAG whose condition holds is fresh or failed, and no intent is left unconfirmed."""
        if not hasattr(self, "world"):
            return
        world = self.world
        world.quiesce(self.begin_attempt, max_rounds=200)
        unconfirmed = [
            at
            for at, f in world.view.ledger.items()
            if f.record.status is not TriggerStatus.DONE and self.model_holds(*at)
        ]
        assert not unconfirmed, f"intents left unconfirmed after quiescence: {unconfirmed}"
        for node in world.graph.topo_order:
            if node not in self.required:
                continue
            for partition in PARTITIONS:
                if self.model_holds(node, partition):
                    fact = world.view.runs.get((node, partition))
                    state = fact.record.state if fact is not None else None
                    assert self.model_fresh(node, partition) or state is RunState.FAILED, (
                        f"{node} {partition} stalled: {plan(world.graph, world.view).verdicts.get((node, partition))}"
                    )


ConditionMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "150")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConditionsAgainstModel = ConditionMachine.TestCase
TestConditionsAgainstModel.__doc__ = (
    "any and at_least groups: never early, never optimistic, consumed exactly, never duplicated, never stalled."
)
