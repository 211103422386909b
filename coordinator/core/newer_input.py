"""The words of a stale reason when an upstream has a result newer than what its dependent last ran with (semantics
`fresh-consumed`, `consumed-by-ledger`, `consumed-by-order`, `group-fresh`): the reason the planner gives, that a
trigger records and ``why`` and the watcher's ``actuator.intent`` log print.

Rules:
- **Pure.** Facts in, one sentence out; no I/O, no clock.
- **Again only when it is.** "succeeded again" only when the dependent's last trigger recorded an earlier generation
  of that upstream (a success again, semantics `consumed-by-ledger`). A last run that recorded none of it (the
  upstream came later, or was added to the graph since) says "without it"; a success the coordinator did not trigger
  records nothing (semantics `consumed-by-order`: a first success cannot be told from a rerun there), and the
  sentence says so rather than guess.
- **Which run.** The upstream's result is named by its revision and by its run (run id, attempt), as the view holds
  it: the run the decision used.
"""

from __future__ import annotations

from coordinator.core.facts import RunFact
from coordinator.core.model import NodeId, RunState


def newer_input(
    which: str, result: RunFact | None, gen: int, node: NodeId, own_rev: int, recorded: int | None, triggered: bool
) -> str:
    """Why ``node``'s last run (its success at ``own_rev``) does not count ``which``'s result at ``gen`` (``result``:
    that result's fact, to name its run); ``recorded``: the generation of ``which`` ``node``'s last trigger used (None:
    none), ``triggered``: whether that trigger is what ``node``'s success came from (**Again only when it is**)."""
    failed = result is not None and result.state is RunState.FAILED
    run = f" (run {result.run_id}, attempt {result.clear_number})" if result is not None and result.rev == gen else ""
    if recorded is not None and triggered:
        verb = "finished again (failed)" if failed else "succeeded again"
        return f"{which} {verb} at revision {gen}{run} after {node} last ran (which used revision {recorded})"
    verb = "failed" if failed else "succeeded"
    if triggered:
        return f"{which} {verb} at revision {gen}{run}, after {node} last ran without it (revision {own_rev})"
    return (
        f"{which} {verb} at revision {gen}{run}, after {node} last succeeded (revision {own_rev}) in a run the "
        "coordinator did not trigger"
    )
