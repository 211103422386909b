"""``doctor``'s checks of the graph and the watchers that run it: the graph, its warnings, the leader, the standbys,
the graphs the watchers run, asset routes and instances without an Airflow (:mod:`coordinator.diagnosis`'s
**What watchers saw**)."""

from __future__ import annotations

from coordinator.core.assets import route_warnings
from coordinator.core.graph import Graph
from coordinator.core.lineage.mapping import entry_for
from coordinator.core.model import NodeId
from coordinator.core.spec.near_misses import near_miss_references
from coordinator.diagnosis.model import (
    MAX_LISTED,
    Check,
    CheckStatus,
    DoctorFacts,
    skipped,
)
from coordinator.informer.presence_value import (
    RECONCILE_ONCE,
    different_graphs_text,
    graph_digests,
    last_reconcile_once,
    started_text,
)


def graph_check(f: DoctorFacts) -> Check:
    view = f.view if f"{f.prefix}/config/graph" not in f.unreadable else None
    adopted = view.activation if view is not None else None
    local = f.local_graph
    local_text = f"{f.deps}: valid, digest {local.digest}, {len(local.dags)} DAGs" if local else f"{f.deps}: invalid"
    if view is not None and view.graph_key in view.problems:
        return Check(
            name="graph",
            status=CheckStatus.FAIL,
            summary=f"{view.graph_key}: {view.problems[view.graph_key]}",
            fix="start a watcher: its next pass rewrites the value from dependencies.json",
        )
    if local is None:
        details = tuple((f.local_error or "").splitlines()[:10])
        summary = f"{f.deps} is invalid"
        if adopted is not None:
            summary += f"; the watchers keep the adopted graph (digest {adopted.digest})"
        return Check(
            name="graph",
            status=CheckStatus.FAIL,
            summary=summary,
            details=details,
            fix=f"correct {f.deps} (`coordinator validate {f.deps}` lists every problem), or point --deps / "
            "COORDINATOR_DEPS at the right file",
        )
    if view is None:
        return Check(name="graph", status=CheckStatus.OK, summary=f"{local_text} (adopted graph not read)")
    if adopted is None:
        return Check(
            name="graph",
            status=CheckStatus.WARN,
            summary=f"{local_text}; no graph adopted under {f.prefix} yet",
            fix="start a watcher (`coordinator watch`, or unpause the 00_watcher DAG): its first pass adopts the file",
        )
    if adopted.digest != local.digest:
        return Check(
            name="graph",
            status=CheckStatus.WARN,
            summary=f"{local_text}; the adopted graph differs (digest {adopted.digest}, revision "
            f"{view.activation_rev}, by {adopted.adopted_by or '?'})",
            fix="`coordinator diff` shows the difference; the leading watcher adopts the local file on its next pass "
            "if it reads this same file",
        )
    return Check(
        name="graph",
        status=CheckStatus.OK,
        summary=f"{local_text}; adopted at revision {view.activation_rev} by {adopted.adopted_by or '?'}",
    )


def graph_warnings_check(f: DoctorFacts) -> Check:
    """The local file's and the running watchers' graph warnings: an upstream declared nowhere whose name is close to
    a declared DAG's is a root that never runs, and its dependent waits for ever (``spec.near_misses``'s
    **Near misses**)."""
    name = "graph warnings"
    local = f.local_graph
    lines = [w.format(local.source) for w in near_miss_references(local)] if local is not None else []
    # A watcher's warning that the local file repeats is said once, by the file's line.
    lines += [f"watcher {w.id}: {text}" for w in f.watchers for text in w.graph_warnings if text not in lines]
    if lines:
        return Check(name=name, status=CheckStatus.WARN,
                     summary=f"{len(lines)} upstream reference(s) look misspelt: a DAG declared nowhere is a root "
                             "that never runs, so what waits for it never starts", details=tuple(lines[:MAX_LISTED]),
                     fix=f"correct the name in {f.deps} (`coordinator validate {f.deps}` lists each with its path); "
                         "running watchers reload the file on their own")  # fmt: skip
    if local is None and not f.watchers:
        return skipped(name, "no valid graph to check")
    return Check(name=name, status=CheckStatus.OK, summary="no upstream looks misspelt")


def leader_check(f: DoctorFacts) -> Check:
    once = last_reconcile_once(f.watchers)
    if f.leader is None and once is not None:
        return Check(
            name="leader",
            status=CheckStatus.OK,
            summary=f"no watcher leads between passes; the last `reconcile` pass ({once.id}) ran at "
            f"{once.started_at.isoformat(timespec='seconds')}",
        )
    if f.leader is None:
        return Check(
            name="leader",
            status=CheckStatus.FAIL,
            summary="no watcher is leading: nothing will be triggered",
            fix="start one: `coordinator watch` (with the same --etcd/--prefix/--deps), or unpause the 00_watcher DAG",
        )
    started = started_text(f.watchers, f.leader.identity)
    return Check(
        name="leader",
        status=CheckStatus.OK,
        summary=f"{f.leader.identity} leads since revision {f.leader.since_revision}{started}",
    )


def standbys_check(f: DoctorFacts) -> Check:
    leader = f.leader.identity if f.leader is not None else None
    standbys = sorted(w.id for w in f.watchers if w.id != leader and w.mode != RECONCILE_ONCE)
    if leader is None and not standbys:
        return skipped("standbys", "no watcher service runs (see the leader check)")
    if standbys:
        return Check(
            name="standbys", status=CheckStatus.OK, summary=f"{len(standbys)} standby watcher(s): {', '.join(standbys)}"
        )
    return Check(
        name="standbys",
        status=CheckStatus.WARN,
        summary="no standby watcher: if the leader stops, nothing is triggered until it is back",
        fix="run a second `coordinator watch` on another host (it takes over within the leader TTL)",
    )


def watcher_graphs_check(f: DoctorFacts) -> Check:
    """Every watcher service plans with the same graph: a standby started with another dependencies.json would take
    its graph into force when it takes over (and the leader's back when it returns)."""
    name = "watcher graphs"
    digests = graph_digests(f.watchers)
    if not digests:
        return skipped(name, "no running watcher says which graph it runs (none runs, or an older version)")
    leader = f.leader.identity if f.leader is not None else None
    running = different_graphs_text(digests, leader)
    if len(digests) == 1:
        return Check(name=name, status=CheckStatus.OK, summary=f"every watcher runs the same graph: {running}")
    local = f"; {f.deps} here has digest {f.local_graph.digest}" if f.local_graph is not None else ""
    return Check(name=name, status=CheckStatus.FAIL,
                 summary=f"watchers run DIFFERENT graphs ({running}): a failover changes the graph in force{local}",
                 fix="start every watcher with the same dependencies file (--deps / COORDINATOR_DEPS) and restart "
                     "the odd one; `coordinator diff THEIR_FILE` shows how a file differs from the adopted "
                     "graph")  # fmt: skip


def graph_nodes(f: DoctorFacts) -> frozenset[NodeId] | None:
    """The DAGs of the local file and of the adopted graph (None when neither is known): a DAG in neither was removed,
    and no watcher plans it any more."""
    if f.local_graph is None and (f.view is None or f.view.activation is None):
        return None
    nodes = set(f.local_graph.dags) if f.local_graph is not None else set()
    if f.view is not None and f.view.activation is not None:
        nodes |= {NodeId.parse(q) for q in f.view.activation.nodes}
    return frozenset(nodes)


def asset_routes_check(graph: Graph, f: DoctorFacts) -> Check:
    """Each asset route against its targets: the asset exists there and a DAG there schedules on it
    (semantics `asset-routes`)."""
    routes = graph.asset_routes
    problems = [f"{name}: {error}" for name, error in sorted(f.asset_errors.items())]
    warnings = route_warnings(routes, f.asset_targets)
    if problems:
        return Check(name="asset routes", status=CheckStatus.FAIL,
                     summary=f"{len(problems)} target instance(s) of the asset routes could not be read",
                     fix="configure each target in COORDINATOR_INSTANCES_FILE and give the watcher's user read access "
                         "to its assets", details=tuple(problems + warnings))  # fmt: skip
    if warnings:
        return Check(name="asset routes", status=CheckStatus.WARN,
                     summary=f"{len(warnings)} problem(s) in {len(routes)} asset route(s)",
                     fix="declare the asset in a DAG of the target (schedule=[Asset(...)]) or correct the route's "
                         "pattern in dependencies.json", details=tuple(warnings))  # fmt: skip
    return Check(name="asset routes", status=CheckStatus.OK,
                 summary=f"{len(routes)} asset route(s): every target knows its assets and a DAG there schedules on "
                         "them")  # fmt: skip


def external_check(graph: Graph, only: str | None) -> Check:
    """The instances without an Airflow (``"kind": "external"``): named, never asked (their DAGs' run states come from
    the OpenLineage receiver or ``coordinator mark``)."""
    names = sorted(n for n in graph.external_instances if only is None or n == only)
    mapped = frozenset(node for node in graph.dags if entry_for(graph.lineage_jobs, node) is not None)
    details = []
    for name in names:
        dags = [node for node in graph.dags if node.instance == name]
        details.append(f"{name}: {len(dags)} DAG(s), {sum(n in mapped for n in dags)} of them mapped to OpenLineage "
                       "jobs; the others are written by `coordinator mark` (or nothing)")  # fmt: skip
    return Check(name="instances without Airflow", status=CheckStatus.OK,
                 summary=f"{', '.join(names) or '-'}: \"kind\": \"external\" in {graph.source}, not asked "
                         "(nothing is triggered there)", details=tuple(details))  # fmt: skip
