"""``doctor``'s checks of what the watcher keeps in etcd: retention, intents, the trigger budget, the plan checkpoint
and the values the read model left out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coordinator.core.error_backoff import retry_stamp
from coordinator.core.first_work import changed_after
from coordinator.core.flaps import release_command
from coordinator.core.model import NodeId, TriggerStatus
from coordinator.core.view import View
from coordinator.diagnosis.model import (
    MAX_LISTED,
    Check,
    CheckStatus,
    DoctorFacts,
)


def retention_check(f: DoctorFacts) -> Check:
    if f.floor_error is not None:
        return Check(
            name="retention",
            status=CheckStatus.FAIL,
            summary=f.floor_error,
            fix="`coordinator prune --before DATE` rewrites the floor",
        )
    if f.floor is None:
        return Check(
            name="retention", status=CheckStatus.OK, summary="no retention floor: every partition is plannable"
        )
    return Check(name="retention", status=CheckStatus.OK, summary=f.floor.describe())


def intents_check(view: View, only: str | None, graph: frozenset[NodeId] | None = None) -> Check:
    """Refused and unconfirmed triggers of the DAGs of the graph (``graph``: None = every DAG counts). Those of a DAG
    removed from the graph are history: the planner never resumes an intent of a DAG outside its graph, so they
    never fail doctor; they are named (and kept: should the DAG come back, its intent is resumed, never re-decided,
    which exactly-once needs)."""
    failed: list[str] = []
    pending: list[str] = []
    removed: list[str] = []
    for (node, partition), fact in sorted(view.ledger.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        if only is not None and node.instance != only:
            continue
        if graph is not None and node not in graph and fact.status is not TriggerStatus.DONE:
            removed.append(f"{node} {partition} ({fact.status}): {node} is no longer in the graph, nothing retries it")
        elif fact.status is TriggerStatus.ERROR:
            retry_at = fact.record.retry_at  # semantics `trigger-errors`: the key's backoff says when
            when = f" (next try at {retry_stamp(retry_at)})" if retry_at is not None else ""
            failed.append(f"{node} {partition}: {fact.record.last_error or 'unknown error'}{when}")
        elif fact.status is TriggerStatus.PENDING:
            pending.append(f"{node} {partition}")
    if failed:
        return Check(
            name="intents",
            status=CheckStatus.FAIL,
            summary=f"{len(failed)} trigger(s) Airflow refused (each retried with its own backoff, doubling up to "
            f"COORDINATOR_ERROR_RETRY_S), {len(pending)} pending",
            details=tuple(failed[:MAX_LISTED])
            + ((f"... and {len(failed) - MAX_LISTED} more",) if len(failed) > MAX_LISTED else ())
            + _listed(removed),
            fix="each line says what Airflow answered and when the leader tries again; fix that (DAG missing, not "
            "partitioned, permission) and the leader retries at that try, at once when the graph changes for that "
            "DAG or a hold on it is released; `coordinator why DAG -p PARTITION` explains one",
        )
    if pending:
        return Check(
            name="intents",
            status=CheckStatus.WARN,
            summary=f"{len(pending)} trigger(s) not confirmed yet (normal while the leader works)",
            details=tuple(pending[:MAX_LISTED]) + _listed(removed),
            fix="if they stay: is a watcher leading? (see the leader check)",
        )
    if removed:
        dags = sorted({line.split(" ", 1)[0] for line in removed})
        return Check(name="intents", status=CheckStatus.OK,
                     summary=f"no pending or failed triggers of the graph's DAGs; {len(removed)} unfinished intent(s) "
                             f"of DAG(s) removed from the graph ({', '.join(dags)}) are history: nothing retries "
                             "them unless the DAG returns to the graph", details=_listed(removed))  # fmt: skip
    return Check(name="intents", status=CheckStatus.OK, summary="no pending or failed triggers")


def _listed(lines: Sequence[str]) -> tuple[str, ...]:
    """At most MAX_LISTED lines, then how many more."""
    more = (f"... and {len(lines) - MAX_LISTED} more",) if len(lines) > MAX_LISTED else ()
    return tuple(lines[:MAX_LISTED]) + more


def budget_check(view: View) -> Check:
    """Semantics `trigger-budget`: an instance the trigger budget holds starts nothing new until it is released."""
    states = sorted(view.budget_states().items())
    stopped = {i: s for i, s in states if s.stopped}
    dags = {f"{i}/{d}": (i, d, b) for i, s in states for d, b in s.stopped_dags().items()}  # semantics `budget-per-dag`
    if not stopped and not dags:
        return Check(name="trigger budget", status=CheckStatus.OK, summary="no instance is held by the trigger budget")
    what = [f"{len(stopped)} instance(s): {', '.join(stopped)}"] if stopped else []
    what += [f"{len(dags)} DAG(s): {', '.join(dags)}"] if dags else []
    fixes = ["`coordinator release INSTANCE`"] if stopped else []
    fixes += ["`coordinator release INSTANCE --dag DAG`"] if dags else []
    return Check(
        name="trigger budget",
        status=CheckStatus.WARN,
        summary=f"held by the trigger budget: {'; '.join(what)}",
        details=tuple(s.describe(i) for i, s in stopped.items()) + tuple(b.describe(i, d) for i, d, b in dags.values()),
        fix=f"check the held runs (`coordinator status`), then {' or '.join(fixes)}",
    )


def checkpoint_check(view: View) -> Check:
    """Semantics `checkpoint-first`: what a watcher starting now would plan before its full pass."""
    name = "plan checkpoint"
    if view.checkpoint_key in view.problems:
        return Check(name=name, status=CheckStatus.WARN, summary=view.problems[view.checkpoint_key],
                     fix=f"delete it (`etcdctl del {view.checkpoint_key}`): the leader records a new one once its "
                         "work is settled (COORDINATOR_CHECKPOINT_INTERVAL_S)")  # fmt: skip
    checkpoint = view.checkpoint
    if checkpoint is None:
        return Check(name=name, status=CheckStatus.OK,
                     summary="none recorded yet: a watcher starting now plans every partition before its first "
                             "trigger")  # fmt: skip
    changed = len(changed_after(view, checkpoint.revision))
    summary = (f"{checkpoint.describe()}: a watcher starting now plans first the {changed} DAG partition(s) "
               "written since (and every partition 5 s later), unless the graph changed")  # fmt: skip
    return Check(name=name, status=CheckStatus.OK, summary=summary)


def bad_values_check(view: View, found: Mapping[str, str]) -> Check:
    """Every key the read model left out (the adopted graph's has a check of its own)."""
    problems = [f"{key}: {problem}" for key, problem in found.items() if key != view.graph_key]
    if not problems:
        return Check(name="values", status=CheckStatus.OK, summary="every key under the prefix parses")
    return Check(
        name="values",
        status=CheckStatus.WARN,
        summary=f"{len(problems)} key(s) hold values the coordinator cannot read (ignored)",
        details=tuple(problems[:MAX_LISTED]),
        fix="rewrite them in the documented format (docs/keys.md) or delete them",
    )


def flaps_check(view: View, only: str | None) -> Check:
    """Semantics `flap-held`: each run state the leader holds because it flapped fails, with the command that releases
    it; its dependents are triggered or cleared for nothing until then."""
    held = [(n, p, f) for n, p, f in view.standing_flaps() if only is None or n.instance == only]
    if not held:
        return Check(name="flapping run states", status=CheckStatus.OK,
                     summary="no run state is held for flapping")  # fmt: skip
    return Check(
        name="flapping run states",
        status=CheckStatus.FAIL,
        summary=f"{len(held)} run state(s) held because they flap: their dependents are not triggered or cleared for "
        "them",
        details=tuple(flap.record.describe(node, partition) for node, partition, flap in held[:MAX_LISTED])
        + ((f"... and {len(held) - MAX_LISTED} more",) if len(held) > MAX_LISTED else ()),
        fix="find the writer that rewrites each key with another run (`coordinator history`, the audit's "
        "`audit.repaired` lines, an outside writer or an older plugin), stop it, then "
        + "; ".join(f"`{release_command(node, partition)}`" for node, partition, _ in held[:MAX_LISTED]),
    )
