"""The preview of a rerun's whole cascade (``coordinator plan rerun``), decided by the planner that decides for real.

``rerun TARGET --from D --to D`` clears TARGET's runs for those partitions; the watcher then reruns what depends on
them, depth by depth, across every deployment. This module says what that would do, without doing it: on a copy of
the view it applies a hypothetical new success of each target run and asks the one decision (``core/decide.py``,
semantics `one-decision`) what it would trigger; each planned run gets a hypothetical trigger and success in turn,
until the planner plans nothing new.

Rules:
- **The planner decides.** Nothing here judges freshness or dueness: every run listed is an action of
  ``decide(...)`` on the hypothetical view, minus what the same decision plans on the real view (already due,
  whatever the rerun does). With ``no_cascade`` the hypothetical record is written first, as ``rerun --no-cascade``
  writes it (semantics `no-cascade-once`), so the same planner waives what the watcher would waive.
- **Depth by depth.** Depth 0 are the target runs; depth k + 1 are the runs the planner plans once every run of depth
  k has a new success. A join waits for its last upstream (the planner's rule), so each run is listed once, at the
  depth where it would be started.
- **Running runs.** A run of the cascade that is queued or running now is assumed to end first (its own attempt, a
  success): the planner then decides whether it is cleared again, and the preview says "cleared after it ends". A
  target run that is running now is not cleared by ``rerun`` (it says so): rerun it after it ends.
- **Targets without a run.** A target partition with no run state has nothing to clear; it is listed as skipped.
- **Deadlines that move.** The deadline predictor (``core.deadline.states.deadline_states``) judges every DAG with an
  ``expected_by`` in the partitions the cascade touches twice: on the real view, and on the view as it would be just
  after the clears (targets queued again, every run of the cascade not run yet); each status whose state or ETA
  differs is listed.
- **Holds in the way.** With the standing holds (``core.holds.HoldSet``), each listed run a hold covers names it: the
  watcher would not start it until a release.
- **Outside the graph.** A DAG the graph does not name (the plugin records its runs all the same) has no edge of the
  graph from it: its clear cascades only through Airflow's asset schedules. :func:`preview_outside` lists its runs
  cleared at depth 0, each DAG that schedules on an asset it produces (as the caller read them from Airflow, in its
  instance or where a route of the graph carries the asset) at depth 1, started by Airflow for the same partition (an
  asset-triggered run stands for its source run's partition), and, for those the graph names, their cascade through
  the graph from depth 2, decided as for any rerun.
- **Pure.** No I/O, no clock (``now`` is an argument), no logging; the caller's view is never changed (a copy is).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from coordinator.core.actions import Trigger
from coordinator.core.deadline.states import DeadlineStatus, deadline_states
from coordinator.core.decide import Adoption, adoption_for, decide
from coordinator.core.graph import Graph
from coordinator.core.holds import HoldSet
from coordinator.core.model import (
    NodeId,
    RunRecord,
    RunState,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.core.no_cascade import NoCascadeRecord, dump_no_cascade
from coordinator.core.view import View

#: The ``source`` of the hypothetical run states (never written anywhere).
PREVIEW_SOURCE = "plan-rerun"
#: Depths beyond this stop the preview: a graph is acyclic, so only a planner bug could loop; say so rather than hang.
MAX_DEPTH = 1000


class Step(StrEnum):
    """What the rerun would do to one run."""

    CLEAR = "clear"  # the rerun command clears it (a target), or the watcher clears the existing run
    CREATE = "create"  # the watcher creates the run (none exists for the partition)
    SKIP = "skip"  # a target the rerun does not clear (no run, or running now)


@dataclass(frozen=True, slots=True)
class RunPreview:
    """One run of the cascade."""

    node: NodeId
    partition: str
    depth: int
    step: Step
    #: Who acts: ``rerun`` for the targets, ``watcher`` for the cascade.
    by: str
    reason: str
    run_id: str | None = None
    #: The run is queued or running now: the watcher clears it after it ends (**Running runs**).
    running: bool = False
    #: The hold that would keep it from starting (``Hold.describe``), if any (**Holds in the way**).
    held_by: str | None = None


@dataclass(frozen=True, slots=True)
class DeadlineMove:
    """A deadline status the rerun would change (**Deadlines that move**)."""

    node: NodeId
    partition: str
    before: DeadlineStatus
    after: DeadlineStatus


@dataclass(frozen=True, slots=True)
class RerunPreview:
    """What ``rerun`` of ``targets`` would do: the runs by depth, the deadlines that move, the partitions skipped."""

    targets: tuple[tuple[NodeId, str], ...]
    no_cascade: bool
    runs: tuple[RunPreview, ...]
    deadlines: tuple[DeadlineMove, ...] = ()
    revision: int = 0

    @property
    def cleared(self) -> tuple[RunPreview, ...]:
        """The target runs ``rerun`` clears itself."""
        return tuple(r for r in self.runs if r.depth == 0 and r.step is Step.CLEAR)

    @property
    def cascade(self) -> tuple[RunPreview, ...]:
        """The runs the watcher would start after the clears."""
        return tuple(r for r in self.runs if r.depth > 0)

    def counts(self) -> dict[str, int]:
        """Per instance: how many runs would be cleared or created (targets included), skipped targets apart."""
        found: dict[str, int] = {}
        for run in self.runs:
            if run.step is not Step.SKIP:
                found[run.node.instance] = found.get(run.node.instance, 0) + 1
        return dict(sorted(found.items()))

    def by_instance(self) -> dict[str, dict[int, list[RunPreview]]]:
        """instance -> depth -> runs, in order (the text output's grouping)."""
        grouped: dict[str, dict[int, list[RunPreview]]] = {}
        for run in sorted(self.runs, key=lambda r: (r.node.instance, r.depth, r.node.dag_id, r.partition)):
            grouped.setdefault(run.node.instance, {}).setdefault(run.depth, []).append(run)
        return grouped


@dataclass(frozen=True, slots=True)
class AssetConsumer:
    """A DAG that Airflow runs when the rerun DAG emits ``uri`` again (its asset schedule; **Outside the graph**)."""

    node: NodeId
    uri: str


@dataclass
class _Hypothesis:
    """The copy of the view the preview writes to; ``written`` collects the (DAG, partition) written since the last
    plan (what the next ``decide(changed=...)`` plans)."""

    view: View
    written: dict[str, set[NodeId]] = field(default_factory=dict)

    def write(self, key: str, value: bytes | None) -> int:
        rev = self.view.revision + 1
        self.view.apply(key, value, rev)
        return rev

    def run(self, node: NodeId, partition: str, record: RunRecord) -> None:
        self.write(self.view.keys.run_key(node, partition), dump_record(record))
        self.written.setdefault(partition, set()).add(node)

    def succeed(self, node: NodeId, partition: str, run_id: str, clear_number: int) -> None:
        record = RunRecord(state=RunState.SUCCESS, run_id=run_id, clear_number=clear_number, source=PREVIEW_SOURCE)
        self.run(node, partition, record)

    def trigger(self, action: Trigger) -> None:
        """The watcher's intent, confirmed, then the run's success: what a triggered run leaves in the store."""
        record = TriggerRecord(
            status=TriggerStatus.DONE, action=action.action, run_id=action.run_id, inputs=dict(action.inputs),
            reason=action.reason, cause_rev=action.cause_rev, trigger_count=action.trigger_count,
        )  # fmt: skip
        self.write(self.view.keys.trigger_key(action.node, action.partition), dump_record(record))
        fact = self.view.runs.get((action.node, action.partition))
        same = fact is not None and fact.run_id == action.run_id
        self.succeed(action.node, action.partition, action.run_id, fact.clear_number + 1 if fact and same else 0)

    def plan(self, graph: Graph, now: datetime, adopted: Adoption) -> list[Trigger]:
        changed, self.written = self.written, {}
        actions = decide(graph, self.view, now=now, adoption=adopted, changed=changed).plan.actions
        return [a for a in actions if isinstance(a, Trigger)]


def preview(
    graph: Graph,
    view: View,
    targets: Sequence[tuple[NodeId, str]],
    *,
    now: datetime,
    no_cascade: bool = False,
    holds: HoldSet | None = None,
    adoption: Adoption | None = None,
) -> RerunPreview:
    """Every rule of the module: what ``rerun`` of ``targets`` (DAG, partition) would clear and what the watcher would
    then start, by depth."""
    adopted = adoption if adoption is not None else adoption_for(graph, view)
    baseline = {
        (a.node, a.partition) for a in decide(graph, view, now=now, adoption=adopted, explain=False).plan.actions
    }
    hypo = _Hypothesis(copy.deepcopy(view))
    runs, wave = _clear_targets(hypo, view, targets, no_cascade)
    runs += _cascade(hypo, graph, wave, baseline, now, adopted)
    if holds:
        runs = [_held(r, holds) for r in runs]
    moves = _deadline_moves(graph, view, runs, now)
    return RerunPreview(tuple(sorted(set(targets))), no_cascade, tuple(runs), moves, view.revision)


def preview_outside(
    graph: Graph,
    view: View,
    targets: Sequence[tuple[NodeId, str]],
    consumers: Sequence[AssetConsumer],
    *,
    now: datetime,
    holds: HoldSet | None = None,
) -> RerunPreview:
    """**Outside the graph**: what ``rerun`` of ``targets`` (runs of a DAG the graph does not name) would clear, what
    Airflow would start through the asset schedules of ``consumers``, and what the watcher would start after them."""
    adopted = adoption_for(graph, view)
    baseline = {
        (a.node, a.partition) for a in decide(graph, view, now=now, adoption=adopted, explain=False).plan.actions
    }
    hypo = _Hypothesis(copy.deepcopy(view))
    runs, wave = _clear_targets(hypo, view, targets, no_cascade=False)
    started: list[tuple[NodeId, str]] = []
    for source, partition in wave:
        for consumer in sorted(set(consumers), key=lambda c: (c.node, c.uri)):
            known = consumer.node in graph.dags
            why = f"scheduled on {consumer.uri}: Airflow starts it when {source} emits the asset again"
            why += "" if known else "; the graph does not name it, so nothing after it is known"
            runs.append(RunPreview(consumer.node, partition, 1, Step.CREATE, "airflow", why))
            at = (consumer.node, partition)
            if known and at not in started:
                if at not in hypo.view.runs:  # its first run: the cascade starts from a success of it
                    hypo.succeed(consumer.node, partition, f"asset_triggered__{PREVIEW_SOURCE}", 0)
                started.append(at)
    after = _cascade(hypo, graph, started, baseline, now, adopted)
    runs += [replace(run, depth=run.depth + 1) for run in after]
    if holds:
        runs = [_held(r, holds) if r.node in graph.dags else r for r in runs]
    moves = _deadline_moves(graph, view, [r for r in runs if r.node in graph.dags], now)
    return RerunPreview(tuple(sorted(set(targets))), False, tuple(runs), moves, view.revision)


def _clear_targets(
    hypo: _Hypothesis, view: View, targets: Sequence[tuple[NodeId, str]], no_cascade: bool
) -> tuple[list[RunPreview], list[tuple[NodeId, str]]]:
    """Depth 0: each target cleared (its no-cascade record written first, as the command writes it), or skipped when
    it has not run or runs now (as ``view``, the store before the rerun, says); returns the previews and the cleared
    targets, the first wave."""
    runs: list[RunPreview] = []
    wave: list[tuple[NodeId, str]] = []
    for node, partition in sorted(set(targets)):
        fact = view.runs.get((node, partition))
        if fact is None:
            runs.append(RunPreview(node, partition, 0, Step.SKIP, "rerun", "has not run: nothing to clear"))
            continue
        if fact.state.active:
            why = f"is {fact.state} now (run {fact.run_id}): rerun it after it ends"
            runs.append(RunPreview(node, partition, 0, Step.SKIP, "rerun", why, fact.run_id, running=True))
            continue
        if no_cascade:  # semantics `no-cascade-once`: written before the clear, as the command writes it
            waiver = NoCascadeRecord(
                run_id=fact.run_id,
                clear_number=fact.clear_number,
                replaces=fact.rev if fact.state is RunState.SUCCESS else None,
                by=PREVIEW_SOURCE,
            )
            hypo.write(view.keys.no_cascade_key(node, partition), dump_no_cascade(waiver))
        why = f"{fact.state} (run {fact.run_id}): cleared" + (" without its cascade" if no_cascade else "")
        runs.append(RunPreview(node, partition, 0, Step.CLEAR, "rerun", why, fact.run_id))
        wave.append((node, partition))
    return runs, wave


def _cascade(
    hypo: _Hypothesis,
    graph: Graph,
    wave: list[tuple[NodeId, str]],
    baseline: set[tuple[NodeId, str]],
    now: datetime,
    adopted: Adoption,
) -> list[RunPreview]:
    """What the watcher starts after the cleared targets, depth by depth, until a depth starts nothing new (what it
    would start anyway, ``baseline``, is not the rerun's)."""
    runs: list[RunPreview] = []
    seen = set(wave)
    triggers: dict[tuple[NodeId, str], Trigger] = {}
    depth = 0
    while wave:
        if depth >= MAX_DEPTH:
            raise RuntimeError(f"the rerun preview did not settle after {MAX_DEPTH} depths")
        planned, kept = _settle(hypo, graph, wave, seen, triggers, now, adopted)
        depth += 1
        fresh = [a for a in planned if (a.node, a.partition) not in baseline and (a.node, a.partition) not in seen]
        fresh.sort(key=lambda a: (graph.topo_index.get(a.node, 0), a.node, a.partition))
        wave = []
        rerun_nodes = {node for node, _ in seen}
        for action in fresh:
            at = (action.node, action.partition)
            seen.add(at)
            # The planner's reason names hypothetical revisions: say instead which reruns it follows.
            after = sorted(str(up) for up in graph.dags[action.node].upstreams if up in rerun_nodes)
            why = f"after {', '.join(after)} rerun" if after else "after the rerun"
            if at in kept:
                why += "; running now: cleared after it ends"
            runs.append(
                RunPreview(action.node, action.partition, depth, Step(action.action.value), "watcher", why,
                           action.run_id, running=at in kept)
            )  # fmt: skip
            wave.append(at)
            triggers[at] = action
    return runs


def _settle(
    hypo: _Hypothesis,
    graph: Graph,
    wave: list[tuple[NodeId, str]],
    seen: set[tuple[NodeId, str]],
    triggers: dict[tuple[NodeId, str], Trigger],
    now: datetime,
    adopted: Adoption,
) -> tuple[list[Trigger], dict[tuple[NodeId, str], RunRecord]]:
    """One depth: the wave's runs succeed and the watcher plans again; returns its triggers and the running runs it
    clears again (**Running runs**)."""
    # **Running runs**: the runs right below the wave that are running end first, as their own attempt.
    ending = _end_running(hypo, graph, wave, seen)
    for node, partition in wave:
        action = triggers.get((node, partition))
        if action is not None:  # the watcher's trigger, then the run's success
            hypo.trigger(action)
        else:  # a target: its next attempt succeeds
            fact = hypo.view.runs[(node, partition)]
            hypo.succeed(node, partition, fact.run_id, fact.clear_number + 1)
    changed = {p: set(nodes) for p, nodes in hypo.written.items()}
    planned = hypo.plan(graph, now, adopted)
    again = {(a.node, a.partition) for a in planned}
    kept = {at: record for at, record in ending.items() if at in again}
    if len(kept) < len(ending):  # a running run that is not cleared again keeps running: plan without its end
        for (node, partition), was in ending.items():
            if (node, partition) not in kept:
                hypo.run(node, partition, was)
        hypo.written = changed
        planned = hypo.plan(graph, now, adopted)
    return planned, kept


def _end_running(
    hypo: _Hypothesis, graph: Graph, wave: Iterable[tuple[NodeId, str]], seen: set[tuple[NodeId, str]]
) -> dict[tuple[NodeId, str], RunRecord]:
    """**Running runs**: each queued or running run of a DAG right below ``wave`` ends (a success of its own attempt)
    before the wave's new successes land; returns their records as they are now (to put back if the planner does not
    clear them again)."""
    ending: dict[tuple[NodeId, str], RunRecord] = {}
    downstreams = graph.downstreams
    for node, partition in wave:
        for child in downstreams.get(node, ()):
            for p in graph.target_partitions(child, node, partition):
                fact = hypo.view.runs.get((child, p))
                if fact is None or not fact.state.active or (child, p) in ending or (child, p) in seen:
                    continue
                ending[(child, p)] = fact.record
                hypo.succeed(child, p, fact.run_id, fact.clear_number)
    return ending


def _held(run: RunPreview, holds: HoldSet) -> RunPreview:
    hold = holds.held_by(run.node, run.partition)
    if hold is None:
        return run
    return RunPreview(run.node, run.partition, run.depth, run.step, run.by, run.reason, run.run_id, run.running,
                      hold.describe())  # fmt: skip


def _deadline_moves(graph: Graph, view: View, runs: Sequence[RunPreview], now: datetime) -> tuple[DeadlineMove, ...]:
    """**Deadlines that move**."""
    acting = [r for r in runs if r.step is not Step.SKIP]
    if not acting or not any(spec.expected_by is not None for spec in graph.dags.values()):
        return ()
    partitions = sorted({r.partition for r in acting})
    pending = _Hypothesis(copy.deepcopy(view))
    for run in acting:
        fact = view.runs.get((run.node, run.partition))
        if run.depth == 0 and fact is not None:
            queued = RunRecord(state=RunState.QUEUED, run_id=fact.run_id, clear_number=fact.clear_number + 1)
            pending.run(run.node, run.partition, queued)
        else:
            pending.write(view.keys.run_key(run.node, run.partition), None)
    before = deadline_states(graph, view, now, partitions=partitions)
    after = deadline_states(graph, pending.view, now, partitions=partitions)
    moves = [
        DeadlineMove(node, partition, before[(node, partition)], status)
        for (node, partition), status in sorted(after.items())
        if (node, partition) in before
        and (before[(node, partition)].state, before[(node, partition)].eta) != (status.state, status.eta)
    ]
    return tuple(moves)
