"""The words ``why`` uses for the upstream runs a DAG's run in flight was decided on: which run (run id, attempt) of
each upstream the trigger used (semantics `consumed-by-ledger`, `group-consumed`).

Rules:
- **Pure.** (graph, view, node, partition) in, one line out (or None); no I/O.
- **Only while a run is in flight.** A trigger not yet confirmed, a run asked for and not started, or a run queued or
  running: the time a reader asks which upstream data the run reads. A finished run's story is the planner's
  (up to date, or stale with the newer result named, ``core.newer_input``).
- **From the ledger, named by the view.** The ledger records each input's generation (an etcd revision); the view's
  fact of that upstream names the run at that revision. When the upstream has moved on since (a rerun, another
  Airflow run of the partition), the line says the revision the trigger used and what the upstream holds now, never a
  run it did not use. A run with no trigger of the coordinator's behind it (a schedule's, a user's) says so: what it
  reads is recorded nowhere.
"""

from __future__ import annotations

from coordinator.core.graph import Graph
from coordinator.core.model import NodeId, TriggerStatus, task_input_key
from coordinator.core.view import LedgerFact, RunFact, View

#: Inputs named one by one; a rollup over many partitions says how many more.
SHOWN = 5


def used_runs_line(graph: Graph, view: View, node: NodeId, partition: str) -> str | None:
    """``its trigger at revision 20 used a/up run R, attempt 1 (success at revision 14)`` for a run of ``node`` in
    flight (**Only while a run is in flight**), the words of a run no trigger is behind, None otherwise."""
    ledger = view.ledger.get((node, partition))
    spec = graph.dags.get(node)
    fact = view.runs.get((node, partition))
    if spec is None or spec.is_root:
        return None
    if ledger is None:
        if fact is not None and fact.state.active:
            return "a run the coordinator did not trigger: which upstream runs it reads is not recorded"
        return None
    if not ledger.input_names or not _in_flight(ledger, fact):
        return None
    words: list[str] = []
    named: set[str] = set()
    for edge in spec.all_edges():
        for q in graph.source_partitions(node, edge.source, partition):
            key = task_input_key(edge.source, edge.task, q, partition)
            rev = ledger.input(key)
            if rev is None or key in named:
                continue
            named.add(key)
            what = str(edge.source) if edge.task is None else f"{edge.source} task {edge.task}"
            if q != partition:
                what += f" {q}"
            up = view.runs.get((edge.source, q)) if edge.task is None else view.tasks.get((edge.source, edge.task, q))
            words.append(_used(what, rev, up))
    # Inputs of a graph that changed since the trigger: their revision is all there is to say.
    words += [f"{key} (revision {rev})" for key, rev in ledger.inputs.items() if key not in named]
    more = f" and {len(words) - SHOWN} more" if len(words) > SHOWN else ""
    return f"its trigger at revision {ledger.intent_rev} used " + "; ".join(words[:SHOWN]) + more


def _in_flight(ledger: LedgerFact, fact: RunFact | None) -> bool:
    if ledger.status is TriggerStatus.PENDING:
        return True
    if ledger.status is not TriggerStatus.DONE:
        return False  # refused: nothing runs (``why`` prints the error)
    return fact is None or fact.rev < ledger.intent_rev or fact.state.active


def _used(what: str, rev: int, fact: RunFact | None) -> str:
    """``a/up run R, attempt 1 (success at revision 14)``, or the revision and what the upstream holds now."""
    if fact is not None and fact.rev == rev:
        return f"{what} run {fact.run_id}, attempt {fact.clear_number} ({fact.state} at revision {rev})"
    if fact is None:
        return f"{what} at revision {rev} (no longer in the store)"
    return (
        f"{what} at revision {rev} (a result it no longer holds: now run {fact.run_id}, attempt {fact.clear_number}, "
        f"{fact.state} at revision {fact.rev})"
    )
