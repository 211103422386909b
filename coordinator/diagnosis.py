"""``coordinator doctor``'s verdicts: facts gathered by the shell in, one :class:`Check` per line out.

Rules:
1. Pure: :func:`diagnose` takes :class:`DoctorFacts` (what the CLI probed: settings and their sources, etcd's answers,
   the view, the leader, the watchers' presence records, each instance's probe) and the time; no I/O here.
2. Checks come in a fixed order (configuration, etcd, permissions, etcd alarms, graph, graph warnings, leader,
   standbys, watcher graphs, instances, DAGs, instances without Airflow, plugin records, unknown instances,
   retention, intents, trigger budget, plan checkpoint, bad values). A check whose premise failed is ``skip``, never
   a second failure for the same cause (etcd down is one failure, not ten).
3. Every ``fail`` and ``warn`` carries ``fix``: the exact setting or command that resolves it. Secrets never appear:
   a secret setting shows where it comes from, never its value.
4. ``ok`` and ``warn`` pass; any ``fail`` makes the command exit 1. The JSON form (:func:`to_json`) is stable and
   documented in docs/operations.md; fields are only ever added.
5. A watcher's own start check of each Airflow instance (``coordinator.presence``) shows here too; so do the graph
   each watcher runs (watchers on different digests fail: a failover would change the graph) and the warnings of the
   graphs in force (an upstream declared nowhere whose name is close to a DAG's: "did you mean").
6. Under a role that may read only part of the prefix (``coordinator roles``), a check whose keys the user may not
   read is ``skip`` naming them, never judged on missing facts; a user that may read but not write gets a warning
   (doctor's own role is read-only), not a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from coordinator.core.assets import TargetAssets, route_warnings
from coordinator.core.first_work import changed_after
from coordinator.core.graph import Graph
from coordinator.core.lineage.ignored import IgnoredJob, did_you_mean
from coordinator.core.lineage.mapping import entry_for
from coordinator.core.model import NodeId, TriggerStatus
from coordinator.core.retention import RetentionFloor
from coordinator.core.spec.near_misses import near_miss_references
from coordinator.core.view import View
from coordinator.presence import (
    RECONCILE_ONCE,
    InstanceCheck,
    LeaderFact,
    WatcherPresence,
    different_graphs_text,
    graph_digests,
    last_reconcile_once,
    started_text,
)

#: Plugin records older than this do not count as "seen recently": two days covers a daily DAG's weekend gap.
RECENT_RECORDS = timedelta(hours=48)
#: Failed or pending intents listed by name; the rest are counted.
MAX_LISTED = 5
#: Jobs the OpenLineage receiver ignored, listed with a did-you-mean; the rest are counted.
MAX_IGNORED_LISTED = 10
JSON_VERSION = 1


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Check(BaseModel):
    """One line of ``doctor``: what was checked, the verdict, and for warn/fail the fix (rule 3)."""

    model_config = ConfigDict(frozen=True)
    name: str
    status: CheckStatus
    summary: str
    fix: str | None = None
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingSource:
    """One setting as ``doctor`` shows it: the value (or, for a secret, only that it is set) and where it came from."""

    name: str
    shown: str
    source: str


@dataclass
class DoctorFacts:
    """Everything the shell probed (rule 1). ``None`` means not reached (an earlier step failed)."""

    settings: Sequence[SettingSource]
    prefix: str
    config_error: str | None = None
    etcd_endpoints: str = ""
    etcd_revision: int | None = None
    etcd_error: str | None = None
    #: The read of the prefix worked / a write would be allowed (None: not asked); the error when refused.
    read_ok: bool | None = None
    write_ok: bool | None = None
    permission_error: str | None = None
    #: Key families (keys or prefixes of ``coordinator.roles.key_families``) this user may not read (rule 6).
    unreadable: tuple[str, ...] = ()
    etcd_user: str | None = None
    #: etcd's raised alarms (None: not asked, or ``alarms_error`` says why) and the etcdctl words that reach the
    #: same cluster as this user (endpoints, user, TLS files), for the fix of the "etcd alarms" check.
    etcd_alarms: Sequence[EtcdAlarm] | None = None
    alarms_error: str | None = None
    etcdctl: str = "etcdctl"
    deps: str = "dependencies.json"
    local_graph: Graph | None = None
    local_error: str | None = None
    view: View | None = None
    leader: LeaderFact | None = None
    watchers: Sequence[WatcherPresence] = ()
    #: Every key the read model left out, with why (``StoreModel.bad_values``: the view's and its indexes').
    bad_values: Mapping[str, str] = field(default_factory=dict)
    floor: RetentionFloor | None = None
    floor_error: str | None = None
    #: Instances to check (``--instance`` narrows it) and what probing each found.
    instances: Sequence[InstanceCheck] = ()
    only_instance: str | None = None
    #: Semantics rule 16a: what each target of the local graph's asset routes holds, or why it could not be read.
    asset_targets: Mapping[str, TargetAssets] = field(default_factory=dict)
    asset_errors: Mapping[str, str] = field(default_factory=dict)
    #: Semantics rule 18: what the OpenLineage receiver answered (None: the local graph maps no OpenLineage job).
    lineage: LineageProbe | None = None


@dataclass(frozen=True)
class EtcdAlarm:
    """An alarm etcd raised (``etcdctl alarm list``): its name (NOSPACE, CORRUPT) and the member, in hex."""

    name: str
    member: str


@dataclass(frozen=True)
class LineageProbe:
    """The receiver's ``GET /api/v1/lineage/status`` as doctor saw it (``url`` empty: COORDINATOR_LINEAGE_URL unset)."""

    url: str
    #: HTTP status, 0 when nothing answered.
    status: int = 0
    error: str | None = None
    token: str | None = None
    #: instance -> "writable", "denied" or why etcd did not say.
    instances: Mapping[str, str] = field(default_factory=dict)
    #: The jobs it answered ``ignored`` for lately and still would (its rule 8), of the token's namespaces.
    ignored: tuple[IgnoredJob, ...] = ()


def diagnose(facts: DoctorFacts, now: datetime) -> list[Check]:
    """Every check, in the order of rule 2."""
    checks = [_configuration(facts), _etcd(facts)]
    reached = facts.etcd_revision is not None
    checks.append(_permissions(facts) if reached else _skipped("etcd permissions", "etcd not reached"))
    checks.append(_alarms(facts) if reached else _skipped("etcd alarms", "etcd not reached"))
    checks.append(_graph(facts))
    checks.append(_graph_warnings(facts))
    if reached and facts.view is not None:
        checks += [
            _unless_unreadable(facts, "leader", ("leader", "watchers/"), lambda: _leader(facts)),
            _unless_unreadable(facts, "standbys", ("leader", "watchers/"), lambda: _standbys(facts)),
            _unless_unreadable(facts, "watcher graphs", ("watchers/",), lambda: _watcher_graphs(facts)),
        ]
    else:
        checks += [_skipped("leader", "etcd not reached"), _skipped("standbys", "etcd not reached"),
                   _skipped("watcher graphs", "etcd not reached")]  # fmt: skip
    for probe in facts.instances:
        checks += [_instance(probe, facts), _dags(probe)]
    if facts.local_graph is not None and facts.local_graph.external_instances:
        checks.append(_external(facts.local_graph, facts.only_instance))
    if facts.local_graph is not None and facts.local_graph.asset_routes:
        checks.append(_asset_routes(facts.local_graph, facts))
    if facts.lineage is not None:
        checks.append(_with_ignored(_lineage(facts.lineage), facts.lineage, facts.local_graph))
    if reached and facts.view is not None:
        view = facts.view
        checks += [
            _unless_unreadable(facts, "plugin records", ("runs/",), lambda: _plugin_records(facts, view, now)),
            _unless_unreadable(facts, "unknown instances", ("runs/",), lambda: _unknown_instances(facts, view)),
            _unless_unreadable(facts, "retention", ("config/retention",), lambda: _retention(facts)),
            _unless_unreadable(
                facts, "intents", ("triggers/",), lambda: _intents(view, facts.only_instance, _graph_nodes(facts))
            ),
            _unless_unreadable(facts, "trigger budget", ("config/budget/",), lambda: _budget(view)),
            _unless_unreadable(facts, "plan checkpoint", ("config/checkpoint",), lambda: _checkpoint(view)),
            _bad_values(view, facts.bad_values),
        ]
    return checks


def _unless_unreadable(f: DoctorFacts, name: str, needs: Sequence[str], check: Callable[[], Check]) -> Check:
    """Rule 6: a check whose keys this user may not read is skipped, saying which, instead of judged on nothing."""
    missing = [f"{f.prefix}/{n}" for n in needs if f"{f.prefix}/{n}" in f.unreadable]
    if missing:
        return _skipped(name, f"user {f.etcd_user} may not read {', '.join(missing)}")
    return check()


def passed(checks: Iterable[Check]) -> bool:
    return all(c.status is not CheckStatus.FAIL for c in checks)


def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    """The stable JSON form (rule 4)."""
    return {
        "version": JSON_VERSION,
        "ok": passed(checks),
        "checks": [
            {"name": c.name, "status": str(c.status), "summary": c.summary, "fix": c.fix, "details": list(c.details)}
            for c in checks
        ],
    }


def to_text(checks: Sequence[Check]) -> list[str]:
    """One line per check (``[ok]``, ``[warn]``, ``[fail]``, ``[skip]``), details and the fix indented under it."""
    lines: list[str] = []
    for c in checks:
        lines.append(f"[{c.status}] {c.name}: {c.summary}")
        lines += [f"       {d}" for d in c.details]
        if c.fix:
            lines.append(f"       fix: {c.fix}")
    failed = sum(c.status is CheckStatus.FAIL for c in checks)
    warned = sum(c.status is CheckStatus.WARN for c in checks)
    lines.append(f"{failed} failure(s), {warned} warning(s)" if failed or warned else "everything looks right")
    return lines


# -- the checks ------------------------------------------------------------------------------------------------


def _asset_routes(graph: Graph, f: DoctorFacts) -> Check:
    """Each asset route against its targets: the asset exists there and a DAG there schedules on it (rule 16a)."""
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


def _lineage(p: LineageProbe) -> Check:
    """Semantics rule 18d: the receiver answers, knows doctor's token, and may write each instance it serves."""
    name = "lineage receiver"
    if not p.url:
        return Check(name=name, status=CheckStatus.WARN,
                     summary="dependencies.json maps OpenLineage jobs, and the receiver's address is not set",
                     fix="set COORDINATOR_LINEAGE_URL (and COORDINATOR_LINEAGE_TOKEN_FILE, a producer's token) so "
                         "doctor can check `coordinator lineage serve`")  # fmt: skip
    if p.status == 0:
        return Check(name=name, status=CheckStatus.FAIL, summary=f"{p.url} did not answer: {p.error}",
                     fix="start `coordinator lineage serve` there, or correct COORDINATOR_LINEAGE_URL")  # fmt: skip
    if p.status in (401, 403):
        return Check(name=name, status=CheckStatus.FAIL, summary=f"{p.url} refused the token ({p.status})",
                     fix="COORDINATOR_LINEAGE_TOKEN_FILE must hold a token whose sha256 is in the receiver's tokens "
                         "file (`coordinator lineage token NAME --namespace NAMESPACE` makes one)")  # fmt: skip
    if p.status != 200:
        return Check(name=name, status=CheckStatus.FAIL, summary=f"{p.url} answered {p.status}: {p.error}",
                     fix="see the receiver's log")  # fmt: skip
    bad = {i: verdict for i, verdict in sorted(p.instances.items()) if verdict != "writable"}
    if bad:
        return Check(name=name, status=CheckStatus.FAIL,
                     summary=f"the receiver's etcd user may not write {', '.join(bad)}",
                     fix="give the receiver's user its role: `coordinator roles` (runs/ and lineage/ of each instance "
                         "it serves)", details=tuple(f"{i}: {v}" for i, v in bad.items()))  # fmt: skip
    return Check(
        name=name,
        status=CheckStatus.OK,
        summary=f"{p.url} answers; token {p.token!r} known; may write {', '.join(sorted(p.instances)) or '-'}",
    )


def _with_ignored(check: Check, p: LineageProbe, graph: Graph | None) -> Check:
    """The receiver's check with the jobs it ignored lately (its rule 8), each with a did-you-mean against the local
    mapping. A close match is probably a typo in dependencies.json: the check warns; jobs with none are listed only
    (a producer that sends every job, dbt's tests and its invocation job included, is normal)."""
    if not p.ignored:
        return check
    mapping = graph.lineage_jobs if graph is not None else ()
    lines: list[str] = []
    typos = 0
    for job in p.ignored[:MAX_IGNORED_LISTED]:
        seen = f"{job.count} event(s), last {job.last_seen.isoformat(timespec='seconds')}"
        close = did_you_mean(job, mapping)
        typos += bool(close)
        hint = (
            "; did you mean " + " or ".join(f"{e.namespace}/{e.job} ({e.label})" for e in close) + "?" if close else ""
        )
        lines.append(f"ignored {job.name}: {seen}: {job.why}{hint}")
    if len(p.ignored) > MAX_IGNORED_LISTED:
        lines.append(f"... and {len(p.ignored) - MAX_IGNORED_LISTED} more (the receiver's status answer lists them)")
    details = (*check.details, *lines)
    if check.status is not CheckStatus.OK or not typos:
        return check.model_copy(update={"details": details})
    return check.model_copy(update={
        "status": CheckStatus.WARN,
        "summary": f"{check.summary}; {typos} ignored job(s) are close to a mapped one (a typo in dependencies.json?)",
        "details": details,
        "fix": 'correct "job" in that "openlineage" entry of dependencies.json to the name the producer sends '
               "(dbt-ol: {database}.{schema}.{project}.{model}.build.run), then `coordinator validate`",
    })  # fmt: skip


def _external(graph: Graph, only: str | None) -> Check:
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


def _skipped(name: str, why: str) -> Check:
    return Check(name=name, status=CheckStatus.SKIP, summary=f"not checked: {why}")


def _configuration(f: DoctorFacts) -> Check:
    details = tuple(f"{s.name} = {s.shown}  ({s.source})" for s in f.settings)
    if f.config_error is not None:
        return Check(
            name="configuration",
            status=CheckStatus.FAIL,
            summary=f.config_error,
            details=details,
            fix="correct the setting named above (flag, COORDINATOR_* variable or the file it names)",
        )
    return Check(name="configuration", status=CheckStatus.OK, summary="settings read", details=details)


def _etcd(f: DoctorFacts) -> Check:
    if f.etcd_revision is not None:
        return Check(
            name="etcd", status=CheckStatus.OK, summary=f"{f.etcd_endpoints} answered (revision {f.etcd_revision})"
        )
    if f.config_error is not None and not f.etcd_endpoints:
        return _skipped("etcd", "the configuration is invalid")
    if "authentication failed" in (f.etcd_error or ""):
        fix = "set COORDINATOR_ETCD_USERNAME and COORDINATOR_ETCD_PASSWORD (or _PASSWORD_FILE) to a user of that etcd"
        return Check(name="etcd", status=CheckStatus.FAIL, summary=f.etcd_error or "", fix=fix)
    if "does not speak TLS" in (f.etcd_error or ""):  # an https:// endpoint of a plain etcd (coordinator.etcd.wire)
        plain = f.etcd_endpoints.replace("https://", "http://")
        return Check(name="etcd", status=CheckStatus.FAIL, summary=f.etcd_error or "",
                     fix=f"COORDINATOR_ETCD_ENDPOINTS={plain} (or --etcd {plain}), or enable TLS on etcd and keep "
                         "https://")  # fmt: skip
    return Check(
        name="etcd",
        status=CheckStatus.FAIL,
        summary=f.etcd_error or f"no answer from {f.etcd_endpoints}",
        fix="start etcd there, or point the coordinator at it: --etcd http://HOST:2379 or "
        "COORDINATOR_ETCD_ENDPOINTS=http://HOST:2379 (the same value in Airflow's environment for the plugin)",
    )


def _permissions(f: DoctorFacts) -> Check:
    user = f.etcd_user or "(no user: etcd auth off)"
    roles_fix = "`coordinator roles` prints the etcdctl commands of each component's role"
    if f.read_ok and f.unreadable:
        return Check(
            name="etcd permissions",
            status=CheckStatus.WARN,
            summary=f"user {user} may read only part of {f.prefix}/ (a plugin's or writer's role?): the checks "
            "that need the rest are not checked",
            details=tuple(f"may not read {family}" for family in f.unreadable),
            fix=f"run doctor as a user with the doctor role (read of {f.prefix}/); {roles_fix}",
        )
    if f.read_ok and f.write_ok is False:
        return Check(
            name="etcd permissions",
            status=CheckStatus.WARN,
            summary=f"user {user} may read {f.prefix}/ but not write it: enough for doctor, status, why and the page; "
            "not for a watcher, prune or backfill",
            fix=f"give the watcher's, prune's and backfill's processes the users of their roles; {roles_fix}",
        )
    if f.read_ok:
        return Check(
            name="etcd permissions", status=CheckStatus.OK, summary=f"user {user} may read and write {f.prefix}/"
        )
    role = "ROLE"
    return Check(
        name="etcd permissions",
        status=CheckStatus.FAIL,
        summary=f"user {user} may not read {f.prefix}/: {f.permission_error or 'refused'}",
        fix=f"etcdctl role grant-permission {role} read --prefix=true {f.prefix}/ (then `etcdctl user "
        f"grant-role {f.etcd_user or 'USER'} {role}`), or set COORDINATOR_ETCD_USERNAME / COORDINATOR_ETCD_PASSWORD"
        f"(_FILE) to a user that has it; {roles_fix}",
    )


def _alarms(f: DoctorFacts) -> Check:
    """etcd's own alarms: while NOSPACE or CORRUPT is raised etcd refuses every write, so nothing moves. The fix is
    etcd's documented procedure (its maintenance guide, "Space quota"; "Data corruption")."""
    name = "etcd alarms"
    if f.etcd_alarms is None:
        return Check(name=name, status=CheckStatus.WARN, summary=f"etcd's alarm list could not be read: "
                     f"{f.alarms_error or 'not asked'}",
                     fix=f"{f.etcdctl} alarm list (as a user that may)")  # fmt: skip
    if not f.etcd_alarms:
        return Check(name=name, status=CheckStatus.OK, summary="no alarm raised: etcd accepts writes")
    raised = sorted({a.name for a in f.etcd_alarms})
    where = tuple(f"{a.name} on member {a.member}" for a in f.etcd_alarms)
    summary = f"alarm {', '.join(raised)} raised: etcd refuses every write, so nothing is triggered or recorded"
    ctl = f.etcdctl
    if "NOSPACE" in raised:
        rev = f.etcd_revision if f.etcd_revision is not None else "REVISION"
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            summary=f"{summary} (NOSPACE: the database reached etcd's --quota-backend-bytes)",
            details=(
                *where,
                f"compact to the current revision ({rev}), defragment every member, then disarm: {ctl} compact "
                f"{rev}; {ctl} defrag --cluster; {ctl} alarm disarm",
                "then keep it from coming back (after the disarm: these write): `coordinator prune --older-than "
                "DURATION` retires old partitions, etcd's --auto-compaction-retention drops old history; if the "
                "data itself needs the space, raise --quota-backend-bytes on every member (8 GiB at most)",
            ),
            fix=f"{ctl} compact {rev} && {ctl} defrag --cluster && {ctl} alarm disarm",
        )
    return Check(
        name=name,
        status=CheckStatus.FAIL,
        summary=f"{summary} (CORRUPT: a member's data differs from the others')",
        details=(*where, "etcd's procedure: find the member whose hash differs, replace it (member remove, then add "
                 "it back with an empty data dir: it copies a healthy member's data), then disarm"),
        fix=f"{ctl} endpoint hashkv --cluster; after replacing that member: {ctl} alarm disarm",
    )  # fmt: skip


def _graph(f: DoctorFacts) -> Check:
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


def _leader(f: DoctorFacts) -> Check:
    once = last_reconcile_once(f.watchers)
    if f.leader is None and once is not None:
        return Check(
            name="leader",
            status=CheckStatus.OK,
            summary=f"no watcher leads between passes; the last `reconcile --once` pass ({once.id}) ran at "
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


def _graph_warnings(f: DoctorFacts) -> Check:
    """The local file's and the running watchers' graph warnings: an upstream declared nowhere whose name is close to
    a declared DAG's is a root that never runs, and its dependent waits for ever (``spec.near_misses`` rule 4)."""
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
        return _skipped(name, "no valid graph to check")
    return Check(name=name, status=CheckStatus.OK, summary="no upstream looks misspelt")


def _watcher_graphs(f: DoctorFacts) -> Check:
    """Every watcher service plans with the same graph: a standby started with another dependencies.json would take
    its graph into force when it takes over (and the leader's back when it returns)."""
    name = "watcher graphs"
    digests = graph_digests(f.watchers)
    if not digests:
        return _skipped(name, "no running watcher says which graph it runs (none runs, or an older version)")
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


def _graph_nodes(f: DoctorFacts) -> frozenset[NodeId] | None:
    """The DAGs of the local file and of the adopted graph (None when neither is known): a DAG in neither was removed,
    and no watcher plans it any more."""
    if f.local_graph is None and (f.view is None or f.view.activation is None):
        return None
    nodes = set(f.local_graph.dags) if f.local_graph is not None else set()
    if f.view is not None and f.view.activation is not None:
        nodes |= {NodeId.parse(q) for q in f.view.activation.nodes}
    return frozenset(nodes)


def _standbys(f: DoctorFacts) -> Check:
    leader = f.leader.identity if f.leader is not None else None
    standbys = sorted(w.id for w in f.watchers if w.id != leader and w.mode != RECONCILE_ONCE)
    if leader is None and not standbys:
        return _skipped("standbys", "no watcher service runs (see the leader check)")
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


def _instance(p: InstanceCheck, f: DoctorFacts) -> Check:
    name = f"airflow {p.instance}"
    watcher_notes = tuple(
        f"watcher {w.id} at start: {c.describe()}"
        for w in f.watchers
        for c in w.instances
        if c.instance == p.instance and not c.ok
    )
    if not p.ok:
        return Check(name=name, status=CheckStatus.FAIL, summary=p.describe(), fix=p.fix, details=watcher_notes)
    perms = ", ".join(
        f"{what} {'yes' if allowed else 'not checked (Airflow 2)' if allowed is None else 'no'}"
        for what, allowed in (("read", p.read), ("trigger", p.trigger), ("clear", p.clear))
    )
    summary = f"{p.describe()}; {perms} (on {p.dags_checked} DAG(s))"
    if watcher_notes:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            summary=summary,
            details=watcher_notes,
            fix="the watcher's own settings differ from these: give it the same instance settings and restart it",
        )
    return Check(name=name, status=CheckStatus.OK, summary=summary)


def _dags(p: InstanceCheck) -> Check:
    name = f"dags {p.instance}"
    if p.error is not None or p.read is False:
        return _skipped(name, f"airflow {p.instance} not usable")
    if p.missing:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            summary=f"{len(p.missing)} DAG(s) of the graph are not in Airflow: {', '.join(p.missing)}",
            fix="deploy their files to that Airflow's dags folder (or give the user's role read access to them); a "
            "misspelled name in dependencies.json: `coordinator validate`",
            details=(f"paused too: {', '.join(p.paused)}",) if p.paused else (),
        )
    if p.paused:
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            summary=f"{len(p.paused)} DAG(s) of the graph are paused (their runs wait queued): {', '.join(p.paused)}",
            fix=" ; ".join(f"airflow dags unpause {d}" for d in p.paused)
            + " (or the toggle in the UI; a root with a schedule starts a run at once when unpaused)",
        )
    return Check(name=name, status=CheckStatus.OK, summary=f"all {p.dags_checked} DAG(s) exist and are unpaused")


def _plugin_records(f: DoctorFacts, view: View, now: datetime) -> Check:
    instances = sorted({p.instance for p in f.instances})
    # The view keeps no updated_at (RunFact is slim): the attempt's start date tells when the plugin last saw a run
    # start; a record without one counts as recent (time unknown).
    latest: dict[str, datetime | None] = {}
    for fact in view.runs.values():
        source = fact.source or ""
        if source.startswith("airflow-plugin:"):
            inst = source.split(":", 1)[1]
            seen = latest.get(inst, fact.start_date)
            if seen is None or fact.start_date is None:
                latest[inst] = None
            else:
                latest[inst] = max(seen, fact.start_date)
    quiet = [i for i in instances if i not in latest or ((at := latest[i]) is not None and now - at > RECENT_RECORDS)]

    def seen_text(i: str) -> str:
        if i not in latest:
            return f"{i}: no plugin record"
        at = latest[i]
        return f"{i}: last run started {at.isoformat(timespec='seconds')}" if at is not None else f"{i}: seen"

    details = tuple(seen_text(i) for i in instances)
    if not quiet:
        return Check(
            name="plugin records",
            status=CheckStatus.OK,
            summary=f"the plugin recorded runs recently for {', '.join(instances) or 'no instance'}",
            details=details,
        )
    return Check(
        name="plugin records",
        status=CheckStatus.WARN,
        summary=f"no run state from the Airflow plugin in the last {RECENT_RECORDS.total_seconds() / 3600:g} h for "
        f"{', '.join(quiet)}",
        details=details,
        fix="in that Airflow's environment run `coordinator check-plugin` (installed? COORDINATOR_ETCD_ENDPOINTS, "
        "COORDINATOR_PREFIX and COORDINATOR_INSTANCE set for the scheduler?); quiet is normal if no DAG ran",
    )


def _unknown_instances(f: DoctorFacts, view: View) -> Check:
    graph = f.local_graph
    known: set[str] = set(graph.instances) if graph is not None else set()
    if view.activation is not None:
        known |= {NodeId.parse(q).instance for q in view.activation.nodes}
    if not known:
        return _skipped("unknown instances", "no graph to compare with")
    found: dict[str, int] = {}
    for node, _ in view.runs:
        if node.instance not in known:
            found[node.instance] = found.get(node.instance, 0) + 1
    if not found:
        return Check(
            name="unknown instances",
            status=CheckStatus.OK,
            summary=f"every run state belongs to an instance of the graph ({', '.join(sorted(known))})",
        )
    listed = ", ".join(f"{name!r} ({count} run state(s))" for name, count in sorted(found.items()))
    return Check(
        name="unknown instances",
        status=CheckStatus.FAIL,
        summary=f"run states recorded for instance(s) the graph does not know: {listed}; no watcher reads them",
        fix=f"in that Airflow set COORDINATOR_INSTANCE to the name dependencies.json uses ({', '.join(sorted(known))}),"
        " or name that instance in dependencies.json",
    )


def _retention(f: DoctorFacts) -> Check:
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


def _intents(view: View, only: str | None, graph: frozenset[NodeId] | None = None) -> Check:
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
            failed.append(f"{node} {partition}: {fact.record.last_error or 'unknown error'}")
        elif fact.status is TriggerStatus.PENDING:
            pending.append(f"{node} {partition}")
    if failed:
        return Check(
            name="intents",
            status=CheckStatus.FAIL,
            summary=f"{len(failed)} trigger(s) Airflow refused (retried slowly), {len(pending)} pending",
            details=tuple(failed[:MAX_LISTED])
            + ((f"... and {len(failed) - MAX_LISTED} more",) if len(failed) > MAX_LISTED else ())
            + _listed(removed),
            fix="each line says what Airflow answered; fix that (DAG missing, paused, permission) and the leader "
            "retries on its own; `coordinator why DAG -p PARTITION` explains one",
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


def _budget(view: View) -> Check:
    """Semantics rule 15: an instance the trigger budget holds starts nothing new until it is released."""
    states = sorted(view.budget_states().items())
    held = {i: s for i, s in states if s.held}
    dags = {f"{i}/{d}": (i, d, b) for i, s in states for d, b in s.held_dags().items()}  # rule 15h
    if not held and not dags:
        return Check(name="trigger budget", status=CheckStatus.OK, summary="no instance is held by the trigger budget")
    what = [f"{len(held)} instance(s): {', '.join(held)}"] if held else []
    what += [f"{len(dags)} DAG(s): {', '.join(dags)}"] if dags else []
    fixes = ["`coordinator release INSTANCE`"] if held else []
    fixes += ["`coordinator release INSTANCE --dag DAG`"] if dags else []
    return Check(
        name="trigger budget",
        status=CheckStatus.WARN,
        summary=f"held by the trigger budget: {'; '.join(what)}",
        details=tuple(s.describe(i) for i, s in held.items()) + tuple(b.describe(i, d) for i, d, b in dags.values()),
        fix=f"check the held runs (`coordinator status`), then {' or '.join(fixes)}",
    )


def _checkpoint(view: View) -> Check:
    """Semantics rule 19: what a watcher starting now would plan before its full pass."""
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


def _bad_values(view: View, found: Mapping[str, str]) -> Check:
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
