"""A full pass without verdicts: the DAGs of one partition in topological order, a settled one passed over.

Role: the loop of the watcher's full pass (``core.planner.plan`` with ``explain=False`` over every DAG of a
partition), which after a start meets one (DAG, partition) pair per DAG and day, nearly all settled. It answers those
in a few inlined lookups and leaves every other DAG to the planner's ``act``.

Rules:
- **A settled DAG is passed over.** A DAG judged by the per-DAG path (``Graph.plain_inputs``) whose run succeeded
  after its last intent (its ledger done, or none), each upstream fresh and consumed at the generation its ledger
  records (semantics `root-fresh`, `fresh-consumed`), gets no call: the same answer ``act`` gives (no action), at a
  fraction of its cost. Any other outcome of those lookups, and every DAG outside ``plain_inputs``, is ``act``'s,
  from the start: this module only ever says "nothing to do", never a decision of its own.
- **The same answer as ``act``.** The actions are ``act``'s, in topological order, whichever DAGs were passed over;
  freshness found here is kept by position and never written into the planner's memo, so ``act`` words its own
  verdicts as before.
- **Pure.** No I/O, clock or logging (``coordinator.core``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from coordinator.core.actions import Action
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.view import LedgerFact, RunFact

#: Enum members read for every DAG of every partition, as module constants: ``RunState.SUCCESS`` is a descriptor call
#: in Python 3.11 (~45 ns).
_SUCCESS, _DONE = RunState.SUCCESS, TriggerStatus.DONE


def act_all(
    graph: Graph,
    nodes: Sequence[NodeId],
    act: Callable[[NodeId], Action | None],
    runs: Mapping[NodeId, RunFact],
    ledgers: Mapping[NodeId, LedgerFact],
    known: Mapping[NodeId, bool],
    actions: list[Action],
) -> None:
    """``act`` of each of ``nodes`` in turn, its actions appended to ``actions``; when ``nodes`` is every DAG
    (``graph.topo_order``), a settled one is passed over without the call (**A settled DAG is passed over**).

    ``runs`` and ``ledgers`` are the partition's facts by DAG; ``known`` is ``act``'s freshness memo (read, never
    written: an upstream judged by ``act`` counts as fresh here only when ``act`` found it so)."""
    if nodes is not graph.topo_order:
        for node in nodes:
            action = act(node)
            if action is not None:
                actions.append(action)
        return
    # Freshness and generation by position in the topological order, of the DAGs judged here (None: judged by
    # ``act``, whose memo is ``known``, or not at all). List slots where a memo keyed by DAG costs a hash each.
    fresh: list[bool | None] = [None] * len(nodes)
    gens = [0] * len(nodes)
    for i, (node, ups) in enumerate(graph.pass_order):
        fact = runs.get(node)
        ledger = ledgers.get(node)
        if ups is not None and not ups:  # a root: fresh exactly when it succeeded (semantics `root-fresh`)
            if fact is not None and fact.state is _SUCCESS:
                fresh[i], gens[i] = True, fact.rev
            else:
                fresh[i] = False
            if ledger is None or ledger.status is _DONE:
                continue  # ``act``: a root never acts while its ledger is done (or it has none)
        elif (
            ups is not None
            and fact is not None
            and fact.state is _SUCCESS
            and (ledger is None or ledger.status is _DONE)
        ):
            # ``_compute_fresh`` of the per-DAG path, only while each step says fresh; any other outcome is left to
            # ``act``, which judges (and words) it from the start.
            rev = fact.rev
            if ledger is None:
                names: tuple[str, ...] = ()
                revs: tuple[int, ...] = ()
            elif rev > (ledger.recorded_intent_rev or ledger.mod_rev):
                names, revs = ledger.input_names, ledger.input_revs
            else:
                ups = ()  # triggered since it succeeded: ``act`` says so
            for j, up, key in ups:
                up_fresh = fresh[j]
                if up_fresh is None:  # judged by ``act`` (its memo), or not yet: ``act``'s
                    up_fact = runs.get(up)
                    if not known.get(up) or up_fact is None:
                        break
                    gen = up_fact.rev
                elif up_fresh:
                    gen = gens[j]
                else:
                    break
                if key in names:
                    if revs[names.index(key)] != gen:
                        break
                elif rev <= gen:
                    break
            else:
                if ups:
                    fresh[i], gens[i] = True, rev
                    continue
        action = act(node)
        if action is not None:
            actions.append(action)
