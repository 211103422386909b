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
- **Compiled where built.** Where the compiled module is built, ``core/_settled.c``'s ``SettledWalk`` runs this loop
  over the compact facts in place (at the estate the sweep after a start meets 1.8 million pairs; this loop spends
  about a microsecond on each); its rules say how it keeps this loop's answers. ``_walk`` below stays the
  definition, and runs where the module is not built (the release's pure wheel). ``full_pass`` gives either; the
  compiled one is kept for the next pass over the same graph.
- **Pure.** No I/O, clock or logging (``coordinator.core``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from coordinator.core.actions import Action
from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, RunState, TriggerStatus
from coordinator.core.view import LedgerFact, RunFact

#: Enum members read for every DAG of every partition, as module constants: ``RunState.SUCCESS`` is a descriptor call
#: in Python 3.11 (~45 ns).
_SUCCESS, _DONE = RunState.SUCCESS, TriggerStatus.DONE

#: One partition's walk of every DAG: its facts by DAG (run states, ledger entries), ``act``'s freshness memo (read,
#: never written: an upstream judged by ``act`` counts as fresh here only when ``act`` found it so), ``act``, and the
#: list its actions are appended to.
FullPass = Callable[
    [
        Mapping[NodeId, RunFact],
        Mapping[NodeId, LedgerFact],
        Mapping[NodeId, bool],
        Callable[[NodeId], Action | None],
        list[Action],
    ],
    None,
]


def _compiled() -> Callable[[Any, RunState, TriggerStatus], Any] | None:
    """The compiled ``SettledWalk`` type; None where the module is not built, or was built from a source before it."""
    try:
        from coordinator.core import _native
    except ImportError:
        return None
    return getattr(_native, "SettledWalk", None)


_COMPILED = _compiled()


#: The last compiled walk made, with the order it reads: the watcher plans a sweep in slices of about a partition each
#: (``watcher/sweep.py``), and the walk reads its order and finds its DAGs' slots once, not once a slice. One entry: a
#: process plans one graph at a time, and a new graph's order replaces it.
_last: tuple[object, FullPass] | None = None


def full_pass(graph: Graph) -> FullPass:
    """The walk of every DAG of ``graph`` (``topo_order``), one partition a call, a settled DAG passed over without
    ``act`` (**A settled DAG is passed over**): the compiled one where built (the last one made, for the same
    order), else ``_walk``."""
    global _last
    if _COMPILED is None:
        return partial(_walk, graph)
    order = graph.pass_order
    last = _last  # read once: another thread may replace it, never half
    if last is not None and last[0] is order:
        return last[1]
    walk: FullPass = _COMPILED(order, _SUCCESS, _DONE).walk
    _last = (order, walk)
    return walk


def _walk(
    graph: Graph,
    runs: Mapping[NodeId, RunFact],
    ledgers: Mapping[NodeId, LedgerFact],
    known: Mapping[NodeId, bool],
    act: Callable[[NodeId], Action | None],
    actions: list[Action],
) -> None:
    """Every DAG of ``graph.pass_order`` in turn, a settled one passed over, any other's ``act`` appended: the
    definition of **A settled DAG is passed over** (``core/_settled.c`` does the same in C)."""
    nodes = graph.topo_order
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
