"""``doctor``'s check of the scheduled dependents (semantics `scheduled-permit`): how many permits are granted and how
many of their runs wait in Airflow for one, the oldest named with its run and since when."""

from __future__ import annotations

from coordinator.core.graph import Graph
from coordinator.core.view import View
from coordinator.diagnosis.model import MAX_LISTED, Check, CheckStatus


def permits_check(graph: Graph, view: View, only: str | None) -> Check:
    """Granted permits (a done ledger entry of a scheduled DAG) and waiting runs (a run in progress of a scheduled
    DAG with no granted permit), oldest first. Informative: a run waits for as long as its upstreams have not
    succeeded, which is the point."""
    scheduled = {node for node in graph.scheduled if only is None or node.instance == only}
    granted = sum(1 for (node, _), entry in view.ledger.items() if node in scheduled and entry.permit_granted)
    waiting: list[tuple[str, str]] = []
    for (node, partition), fact in view.runs.items():
        if node not in scheduled or not fact.state.active:
            continue
        found = view.ledger.get((node, partition))
        if found is None or not found.permit_granted:
            since = fact.start_date.isoformat() if fact.start_date is not None else "an unknown time"
            waiting.append((since, f"{node} {partition}: run {fact.run_id} waits in Airflow since {since}"))
    waiting.sort()
    lines = tuple(line for _, line in waiting[:MAX_LISTED])
    more = (f"... and {len(waiting) - MAX_LISTED} more",) if len(waiting) > MAX_LISTED else ()
    return Check(
        name="scheduled dependents",
        status=CheckStatus.OK,
        summary=f"{len(graph.scheduled)} scheduled DAG(s): {granted} permit(s) granted, {len(waiting)} run(s) waiting "
        "in Airflow for one",
        details=lines + more,
        fix=None
        if not waiting
        else "a waiting run goes on once its upstreams succeed: `coordinator why DAG -p "
        "PARTITION` says what it waits for",
    )
