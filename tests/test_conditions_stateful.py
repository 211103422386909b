"""The state machine of test_planner_stateful on random graphs with CONDITION GROUPS (``any``, ``at_least``, some with
a cutoff; semantics `condition-groups`), with crashes, clears, lost answers, restarts and a clock that moves forward,
against an independent model.

The model judges by definition: a group holds when enough members are satisfied (fresh, or failed for a "finished"
member); an attempt consumed the required
upstreams' generations current when it STARTED (as in the base model) and, of each group, the members
its trigger recorded, each of which the model checks was satisfied at that generation when the coordinator decided
the run: a member satisfied later was not consumed and never stales it; a consumed member with a new generation does.
Every trigger must hold in the model. A group with a cutoff (6 hours after the partition's start) holds from then on
with its ``min`` fresh members; with ``late: rerun`` an attempt that consumed fewer members than the group needs is
stale once the group has them all. The clock is the machine's, passed to the planner as ``now``. No planner or
condition code is used by the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from coordinator.core.actions import Resume, Trigger
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.planner import plan, plan_changes
from coordinator.core.spec.loader import parse_spec
from tests.support.examples import examples
from tests.support.world import World
from tests.test_planner_stateful import PARTITIONS, PlannerMachine

#: A group as drawn: (need, members, cutoff as (min, late) or None, the members with "condition": "finished").
Group = tuple[int, list[str], tuple[int, str] | None, list[str]]
Shape = dict[str, tuple[list[str], list[Group]]]
CUTOFF_H = 6


@st.composite
def conditioned(draw: st.DrawFn) -> Shape:
    """Random acyclic graph, 3..6 nodes; a dependent's upstreams split into required ones and up to two groups
    (any, or at_least n of k, the latter sometimes with a cutoff), each of 2..3 members, some of them "finished"
    edges (a failure satisfies them; those DAGs go through the planner's general edge-by-edge path)."""
    size = draw(st.integers(min_value=3, max_value=6))
    names = [f"d{i}" for i in range(size)]
    shape: Shape = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=5))
        groups: list[Group] = []
        while len(ups) >= 2 and len(groups) < 2 and draw(st.booleans()):
            k = draw(st.integers(min_value=2, max_value=min(3, len(ups))))
            members, ups = ups[:k], ups[k:]
            need = draw(st.integers(min_value=1, max_value=k))
            cut = None
            if need > 1 and draw(st.booleans()):
                cut = (draw(st.integers(min_value=1, max_value=need - 1)), draw(st.sampled_from(["rerun", "ignore"])))
            finished = [m for m in members if draw(st.sampled_from([False, False, True]))]
            groups.append((need, members, cut, finished))
        if ups or groups:
            shape[names[i]] = (ups, groups)
    if not any(groups for _, groups in shape.values()):
        shape[names[2]] = ([], [(1, [names[0], names[1]], None, [])])
    return shape


def spec_of(shape: Shape) -> str:
    dags: dict[str, object] = {}
    for name, (ups, groups) in shape.items():
        items: list[object] = list(ups)
        for need, names, cut, finished in groups:
            members = [{"dag": m, "condition": "finished"} if m in finished else m for m in names]
            item: dict[str, object] = {"any": members} if need == 1 else {"at_least": need, "of": members}
            if cut is not None:
                item |= {"cutoff": f"{CUTOFF_H}h", "min": cut[0], "late": cut[1]}
            items.append(item)
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
    groups: dict[NodeId, list[tuple[int, list[NodeId], tuple[int, str] | None]]]
    #: (dependent, member) pairs whose member edge is "condition": "finished".
    finished: set[tuple[NodeId, NodeId]]
    #: The machine's clock, passed to the planner as ``now``.
    now: datetime
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
            NodeId("default", d): [(need, [NodeId("default", m) for m in ms], cut) for need, ms, cut, _ in groups]
            for d, (_, groups) in shape.items()
        }
        self.finished = {
            (NodeId("default", d), NodeId("default", m)) for d, (_, gs) in shape.items() for *_, fs in gs for m in fs
        }
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self._pending: dict[tuple[NodeId, str], tuple[dict[NodeId, int | None], int]] = {}

    # -- the independent model -----------------------------------------------------------------------------------
    def cutoff_passed(self, partition: str) -> bool:
        start = datetime.strptime(partition, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return self.now >= start + timedelta(hours=CUTOFF_H)

    def member_gen(self, node: NodeId, member: NodeId, partition: str) -> int | None:
        """The generation that satisfies ``member`` of ``node``'s group: a fresh success, or with "finished" a
        failure too; None: not satisfied."""
        fact = self.world.view.runs.get((member, partition))
        if fact is None:
            return None
        if (node, member) in self.finished and fact.record.state is RunState.FAILED:
            return fact.rev
        return fact.rev if self.model_fresh(member, partition) else None

    def model_holds(self, node: NodeId, partition: str) -> bool:
        if not all(self.model_fresh(up, partition) for up in self.required.get(node, [])):
            return False
        for need, members, cut in self.groups.get(node, []):
            count = sum(self.member_gen(node, m, partition) is not None for m in members)
            if count < need and not (cut is not None and self.cutoff_passed(partition) and count >= cut[0]):
                return False
        return True

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
        for need, group, cut in self.groups[node]:
            fresh = {m: gen for m in group if (gen := self.member_gen(node, m, partition)) is not None}
            if any(m in members and members[m] != gen for m, gen in fresh.items()):
                return False
            consumed = sum(m in members for m in group)
            if cut is not None and cut[1] == "rerun" and consumed < need <= len(fresh):
                return False  # it ran at its cutoff; the late members are in: once more
        return True

    def begin_attempt(self, node: NodeId, partition: str) -> None:
        self.consumed[(node, partition)] = {up: self.gen(up, partition) for up in self.required.get(node, [])}
        self.member_reads[(node, partition)] = dict(self.decided.get((node, partition), {}))

    def before_trigger(self, action: Trigger) -> None:
        """Every trigger holds in the model and records every required upstream and satisfied members only, each at
        its current generation. (The planner may leave out a member the model finds satisfied: it is conservative
        about a member's own freshness, as the base model allows; that member then counts as not consumed.)"""
        node, partition = action.node, action.partition
        assert self.model_holds(node, partition), f"{node} {partition} triggered while its condition does not hold"
        names = {m.qualified: m for _, group, _ in self.groups.get(node, []) for m in group}
        required = {up.qualified: self.gen(up, partition) for up in self.required.get(node, [])}
        assert {k: v for k, v in action.inputs.items() if k not in names} == required, (node, partition, action)
        members = {names[k]: v for k, v in action.inputs.items() if k in names}
        for m, gen in members.items():
            assert gen == self.member_gen(node, m, partition), f"{node} consumed {m} at {gen}: not satisfied so"
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

    # -- time, and the base machine's watcher and invariants at the machine's clock --------------------------------
    @rule(hours=st.sampled_from([1, 3, 6]))
    def time_passes(self, hours: int) -> None:
        """The clock moves forward (up to the second partition's cutoff and beyond); nothing is written."""
        if self.now < datetime(2026, 1, 2, 12, tzinfo=UTC):
            self.now += timedelta(hours=hours)

    @rule(
        crash=st.sampled_from(["none", "none", "after_intent", "after_effect", "lost_answer"]), keep=st.integers(0, 5)
    )
    def watcher_pass(self, crash: str, keep: int) -> None:
        """One reconcile pass at the machine's clock; optionally the watcher dies while applying it, or one answer is
        lost."""
        actions = plan(self.world.graph, self.world.view, now=self.now).actions
        for i, action in enumerate(actions):
            if crash == "lost_answer" and i == keep:
                self.world.apply_action(action, lose_answer=True)
                continue
            if crash != "none" and i == keep:
                self.world.apply_action(
                    action, crash_after_intent=crash == "after_intent", crash_after_effect=crash == "after_effect"
                )
                return
            self.world.apply_action(action)

    @invariant()
    def planner_is_never_optimistic(self) -> None:
        """Whatever the planner calls fresh at the machine's clock is fresh in the model."""
        if not hasattr(self, "world"):
            return
        for (node, partition), verdict in plan(self.world.graph, self.world.view, now=self.now).verdicts.items():
            if verdict.fresh:
                assert self.model_fresh(node, partition), f"{node} {partition} fresh in planner, stale in model"

    @invariant()
    def fast_paths_plan_the_same_actions(self) -> None:
        """Without verdicts and incrementally, the planner decides at the clock what a full pass decides."""
        if not hasattr(self, "world"):
            return
        graph, view, now = self.world.graph, self.world.view, self.now
        full = plan(graph, view, now=now).actions
        assert plan(graph, view, explain=False, now=now).actions == full
        changed = {p: set(nodes) for p, nodes in view.partitions.items()}
        assert plan_changes(graph, view, changed, now=now).actions == full

    @invariant()
    def inlined_path_decides_as_the_general_one(self) -> None:
        """The inlined judgement of plain groups (``Graph.plain_grouped``) gives the general edge-by-edge path's plan
        and freshness."""
        if not hasattr(self, "world"):
            return
        graph, view, now = self.world.graph, self.world.view, self.now
        general = dataclasses.replace(graph)
        general.__dict__["plain_grouped"] = frozenset()  # the cached property, switched off for this copy
        fast, slow = plan(graph, view, now=now), plan(general, view, now=now)
        assert fast.actions == slow.actions
        assert {k: v.fresh for k, v in fast.verdicts.items()} == {k: v.fresh for k, v in slow.verdicts.items()}

    @invariant()
    def never_two_triggers_for_the_same_inputs(self) -> None:
        """Each (DAG, partition, inputs) reaches Airflow at most once."""
        if not hasattr(self, "world"):
            return
        seen = Counter((e[0], e[1], tuple(sorted(e[3].items()))) for e in self.world.effects)
        assert not [k for k, c in seen.items() if c > 1]

    def quiesce(self, max_rounds: int) -> None:
        """World.quiesce at the machine's clock."""
        world = self.world
        for _ in range(max_rounds):
            for action in plan(world.graph, world.view, now=self.now).actions:
                world.apply_action(action)
            moved = False
            for node, partition in world.queued():
                self.begin_attempt(node, partition)
                world.start(node.dag_id, partition)
                moved = True
            for at, run in sorted(world.airflow.items()):
                if run.state == "running":
                    world.finish(at[0].dag_id, at[1], ok=True)
                    moved = True
            if not moved and not plan(world.graph, world.view, now=self.now).actions:
                return

    def teardown(self) -> None:
        """After quiescence every DAG whose condition holds is fresh or failed, and no intent is left unconfirmed."""
        if not hasattr(self, "world"):
            return
        world = self.world
        self.quiesce(max_rounds=200)
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
                    verdict = plan(world.graph, world.view, now=self.now).verdicts.get((node, partition))
                    assert self.model_fresh(node, partition) or state is RunState.FAILED, f"stalled: {verdict}"


ConditionMachine.TestCase.settings = settings(
    derandomize=bool(os.environ.get("CI")),
    max_examples=examples(150),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConditionsAgainstModel = ConditionMachine.TestCase
TestConditionsAgainstModel.__doc__ = (
    "any and at_least groups: never early, never optimistic, consumed exactly, never duplicated, never stalled."
)
