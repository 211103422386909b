"""The real planner and the real intent protocol against an independent reference model, over random graphs and
random histories (the test world performs the protocol of coordinator/core/intent.py, crashing after the intent or
after the Airflow call).

The reference model knows what the planner cannot see directly: which upstream generations each attempt actually
read (the generations current when the attempt STARTED). From that it computes freshness by definition. An operator's
``rerun --no-cascade`` (semantics `no-cascade-once`) is modelled by what it means, not by how the planner finds it:
the model notes, when the rerun's success is written, that this generation stands for the one it replaces. The planner
may be conservative (rerun when unsure) but never optimistic, never duplicates, and never stalls.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.core.actions import Trigger
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout, NodeId, RunState, TriggerStatus
from coordinator.core.no_cascade import NoCascadeRecord, dump_no_cascade
from coordinator.core.planner import plan, plan_changes
from coordinator.core.view import View
from tests.support.examples import examples
from tests.support.world import P1, P2, World, make_graph

PARTITIONS = (P1, P2)


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    """A random acyclic graph: edges only from lower to higher index, 2..6 nodes."""
    size = draw(st.integers(min_value=2, max_value=6))
    names = [f"d{i}" for i in range(size)]
    edges: dict[str, list[str]] = {}
    for i in range(1, size):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3))
        if ups:
            edges[names[i]] = ups
    if not edges:
        edges[names[1]] = [names[0]]
    return make_graph(edges)


class PlannerMachine(RuleBasedStateMachine):
    world: World
    #: (node, partition) -> {upstream: generation} the attempt now on record actually read.
    consumed: dict[tuple[NodeId, str], dict[NodeId, int | None]]
    #: (node, partition) -> (the no-cascade rerun's success generation, the generation it stands for).
    stands_for: dict[tuple[NodeId, str], tuple[int, int]]
    #: (node, partition) -> (the attempt a no-cascade rerun started, the generation it replaces), until it finishes.
    rerunning: dict[tuple[NodeId, str], tuple[int, int]]

    @initialize(graph=dags())
    def setup(self, graph: Graph) -> None:
        self.world = World(graph)
        self.world.adopt()
        self.consumed = {}
        self.stands_for = {}
        self.rerunning = {}

    # -- the reference model ------------------------------------------------------------------------------------
    def gen(self, node: NodeId, partition: str) -> int | None:
        fact = self.world.view.runs.get((node, partition))
        return fact.rev if fact is not None and fact.record.state is RunState.SUCCESS else None

    def model_fresh(self, node: NodeId, partition: str) -> bool:
        fact = self.world.view.runs.get((node, partition))
        if fact is None or fact.record.state is not RunState.SUCCESS:
            return False
        spec = self.world.graph.dags[node]
        if spec.is_root:
            return True
        read = self.consumed.get((node, partition), {})
        return all(self.model_fresh(up, partition) and self.read_current(up, partition, read.get(up))
                   for up in spec.upstreams)  # fmt: skip

    def read_current(self, up: NodeId, partition: str, read: int | None) -> bool:
        """An attempt that read ``read`` of ``up`` is current: it read the current generation, or the one a
        no-cascade rerun's success (the current one) stands for."""
        gen = self.gen(up, partition)
        waived = self.stands_for.get((up, partition)) if self.models_no_cascade() else None
        return read == gen or (gen is not None and waived == (gen, read))

    def begin_attempt(self, node: NodeId, partition: str) -> None:
        self.consumed[(node, partition)] = {up: self.gen(up, partition) for up in self.world.graph.dags[node].upstreams}

    # -- what pipelines and users do ----------------------------------------------------------------------------
    @rule(data=st.data(), ok=st.booleans())
    def root_runs(self, data: st.DataObject, ok: bool) -> None:
        """A root's scheduled run (or a user's clear of it) completes."""
        root = data.draw(st.sampled_from(self.world.graph.roots))
        partition = data.draw(st.sampled_from(PARTITIONS))
        fact = self.world.view.runs.get((root, partition))
        attempt = fact.record.clear_number + 1 if fact is not None else 0
        self.world.state(root.dag_id, partition, RunState.RUNNING, clear_number=attempt)
        self.world.state(root.dag_id, partition, RunState.SUCCESS if ok else RunState.FAILED, clear_number=attempt)

    @precondition(lambda self: any(r.state == "queued" for r in self.world.airflow.values()))
    @rule(data=st.data())
    def airflow_starts_a_run(self, data: st.DataObject) -> None:
        """Airflow starts one queued run (created or cleared by the coordinator)."""
        node, partition = data.draw(st.sampled_from(self.world.queued()))
        self.begin_attempt(node, partition)
        self.world.start(node.dag_id, partition)

    @precondition(lambda self: any(r.state == "running" for r in self.world.airflow.values()))
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def airflow_finishes_a_run(self, data: st.DataObject, ok: bool) -> None:
        """One running run ends in success (mostly) or failure."""
        running = sorted(at for at, r in self.world.airflow.items() if r.state == "running")
        node, partition = data.draw(st.sampled_from(running))
        attempt = self.world.airflow[(node, partition)].clear_number
        self.world.finish(node.dag_id, partition, ok)
        self.note_finish(node, partition, attempt, ok)

    def note_finish(self, node: NodeId, partition: str, attempt: int, ok: bool = True) -> None:
        """The model's part of a run's end: a no-cascade rerun's success stands for the generation it replaced."""
        started = self.rerunning.pop((node, partition), None) if self.models_no_cascade() else None
        if started is not None and started[0] == attempt and ok:  # the no-cascade rerun's success
            self.stands_for[(node, partition)] = (self.world.rev, started[1])

    def models_no_cascade(self) -> bool:
        """This machine's model knows no-cascade reruns (machines built on it with a model of their own do not)."""
        return hasattr(self, "stands_for")

    @precondition(lambda self: self.models_no_cascade())
    @rule(data=st.data())
    def operator_reruns_without_cascade(self, data: st.DataObject) -> None:
        """`rerun --no-cascade` of a run that succeeded: the record, then the clear (a root's next attempt succeeds at
        once; a coordinator-made run starts and finishes through Airflow)."""
        done = sorted(at for at, f in self.world.view.runs.items() if f.record.state is RunState.SUCCESS)
        if not done:
            return
        node, partition = data.draw(st.sampled_from(done))
        fact = self.world.view.runs[(node, partition)]
        waiver = NoCascadeRecord(run_id=fact.run_id, clear_number=fact.clear_number, replaces=fact.rev)
        self.world.write(self.world.keys.no_cascade_key(node, partition), dump_no_cascade(waiver))
        if self.world.graph.dags[node].is_root or (node, partition) not in self.world.airflow:
            attempt = fact.clear_number + 1
            self.world.state(node.dag_id, partition, RunState.RUNNING, fact.run_id, attempt)
            self.begin_attempt(node, partition)
            gen = self.world.state(node.dag_id, partition, RunState.SUCCESS, fact.run_id, attempt)
            self.stands_for[(node, partition)] = (gen, fact.rev)
            return
        if self.world.airflow[(node, partition)].state != "success":
            return
        self.begin_attempt(node, partition)
        self.world.user_clears(node, partition)
        self.rerunning[(node, partition)] = (self.world.airflow[(node, partition)].clear_number, fact.rev)

    @precondition(lambda self: any(r.state in ("success", "failed") for r in self.world.airflow.values()))
    @rule(data=st.data())
    def user_clears_a_run(self, data: st.DataObject) -> None:
        """A user clears a finished coordinator-made run in the UI: a new attempt starts at once."""
        done = sorted(at for at, r in self.world.airflow.items() if r.state in ("success", "failed"))
        node, partition = data.draw(st.sampled_from(done))
        self.begin_attempt(node, partition)
        self.world.user_clears(node, partition)

    # -- what the watcher does ------------------------------------------------------------------------------------
    @rule(
        crash=st.sampled_from(["none", "none", "after_intent", "after_effect", "lost_answer"]), keep=st.integers(0, 5)
    )
    def watcher_pass(self, crash: str, keep: int) -> None:
        """One reconcile pass; optionally the watcher dies in the middle of applying its actions, or one Airflow
        answer is lost and the call retried."""
        actions = plan(self.world.graph, self.world.view).actions
        for i, action in enumerate(actions):
            if isinstance(action, Trigger):
                self.check_trigger_is_safe(action)
                if self.models_no_cascade():
                    self.check_trigger_is_needed(action)
            if crash == "lost_answer" and i == keep:
                self.world.apply_action(action, lose_answer=True)
                continue
            if crash != "none" and i == keep:
                self.world.apply_action(
                    action, crash_after_intent=crash == "after_intent", crash_after_effect=crash == "after_effect"
                )
                return  # killed: the rest of the plan is never applied
            self.world.apply_action(action)

    @rule()
    def watcher_restarts_from_snapshot(self) -> None:
        """Restart or compaction: the view is rebuilt from the latest values only, and plans the same."""
        before = plan(self.world.graph, self.world.view).actions
        rebuilt = View(KeyLayout())
        view = self.world.view
        items = [
            *((view.keys.run_key(n, p), f.record.model_dump_json().encode(), f.rev) for (n, p), f in view.runs.items()),
            *(
                (view.keys.trigger_key(n, p), f.record.model_dump_json().encode(), f.mod_rev)
                for (n, p), f in view.ledger.items()
            ),
        ]
        items += [
            (view.keys.no_cascade_key(n, p), dump_no_cascade(f.record), f.rev) for (n, p), f in view.no_cascade.items()
        ]
        if view.activation is not None:
            items.append((view.graph_key, view.activation.model_dump_json().encode(), view.activation_rev))
        rebuilt.load(self.world.rev, items)
        self.world.view = rebuilt
        assert plan(self.world.graph, rebuilt).actions == before

    # -- invariants -----------------------------------------------------------------------------------------------
    def check_trigger_is_safe(self, action: Trigger) -> None:
        for up in self.world.graph.dags[action.node].upstreams:
            assert self.model_fresh(up, action.partition), f"{action.node} triggered while {up} is not fresh"

    def check_trigger_is_needed(self, action: Trigger) -> None:
        """Where the planner knows exactly what D's success read (its ledger's inputs are what the attempt read, and
        the success is that attempt's), it never reruns a D the model calls fresh: in particular not after a
        no-cascade rerun of an upstream (semantics `no-cascade-once`)."""
        at = (action.node, action.partition)
        ledger, read, fact = self.world.view.ledger.get(at), self.consumed.get(at), self.world.view.runs.get(at)
        if ledger is None or read is None or fact is None or fact.rev <= ledger.intent_rev:
            return
        if any(ledger.input(up.qualified) != read.get(up) for up in self.world.graph.dags[action.node].upstreams):
            return
        assert not self.model_fresh(*at), f"{action.node} {action.partition} rerun although fresh in the model"

    @invariant()
    def planner_is_never_optimistic(self) -> None:
        """Whatever the planner calls fresh really read its upstreams' current generations."""
        if not hasattr(self, "world"):
            return
        verdicts = plan(self.world.graph, self.world.view).verdicts
        for (node, partition), verdict in verdicts.items():
            if verdict.fresh:
                assert self.model_fresh(node, partition), f"{node} {partition} fresh in planner, stale in model"

    @invariant()
    def fast_paths_plan_the_same_actions(self) -> None:
        """The watcher's fast paths (no verdicts; only what changed) decide exactly what a full explained pass does."""
        if not hasattr(self, "world"):
            return
        graph, view = self.world.graph, self.world.view
        full = plan(graph, view).actions
        assert plan(graph, view, explain=False).actions == full
        changed = {p: set(nodes) for p, nodes in view.partitions.items()}
        assert plan_changes(graph, view, changed).actions == full

    @invariant()
    def never_two_triggers_for_the_same_inputs(self) -> None:
        """Each (DAG, partition, inputs) reaches Airflow at most once."""
        if not hasattr(self, "world"):
            return
        seen = Counter((e[0], e[1], tuple(sorted(e[3].items()))) for e in self.world.effects)
        dupes = [k for k, c in seen.items() if c > 1]
        assert not dupes, dupes

    def teardown(self) -> None:
        """After quiescence every DAG whose upstreams are fresh is fresh or failed (nothing stalls)."""
        if not hasattr(self, "world"):
            return
        world = self.world
        world.quiesce(self.begin_attempt, max_rounds=200, after_finish=self.note_finish)
        # An intent may stay unconfirmed only while an upstream is not fresh (it was recorded just before the
        # upstream failed or was cleared; it completes once the upstream is fresh again).
        unconfirmed = [
            (node, p)
            for (node, p), f in world.view.ledger.items()
            if f.record.status is not TriggerStatus.DONE
            and all(self.model_fresh(up, p) for up in world.graph.dags[node].upstreams)
        ]
        assert not unconfirmed, f"intents left unconfirmed after quiescence: {unconfirmed}"
        for node in world.graph.topo_order:
            spec = world.graph.dags[node]
            if spec.is_root:
                continue
            for partition in PARTITIONS:
                if all(self.model_fresh(up, partition) for up in spec.upstreams):
                    fact = world.view.runs.get((node, partition))
                    state = fact.record.state if fact is not None else None
                    assert self.model_fresh(node, partition) or state is RunState.FAILED, (
                        f"{node} {partition} stalled: {plan(world.graph, world.view).verdicts[(node, partition)]}"
                    )


PlannerMachine.TestCase.settings = settings(
    # CI replays the same examples every run (a red build must be reproducible); developers explore new ones.
    derandomize=bool(os.environ.get("CI")),
    # HYPOTHESIS_MAX_EXAMPLES=2000 for a longer search before a change to the planner or the intent protocol.
    max_examples=examples(150),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPlannerAgainstModel = PlannerMachine.TestCase
TestPlannerAgainstModel.__doc__ = "Random graphs and histories: never optimistic, never duplicated, never stalled."
