"""``doctor``'s check of the OpenLineage receiver: its answer and the jobs it ignored, with a did-you-mean."""

from __future__ import annotations

from coordinator.core.graph import Graph
from coordinator.core.lineage.ignored import did_you_mean
from coordinator.diagnosis.model import (
    MAX_IGNORED_LISTED,
    Check,
    CheckStatus,
    LineageProbe,
)


def lineage_check(p: LineageProbe) -> Check:
    """Semantics `lineage-receiver`: the receiver answers, knows doctor's token, and may write each instance it
    serves."""
    name = "lineage receiver"
    if not p.url:
        return Check(name=name, status=CheckStatus.WARN,
                     summary="dependencies.json maps OpenLineage jobs, and the receiver's address is not set",
                     fix="set COORDINATOR_LINEAGE_URL (and COORDINATOR_LINEAGE_TOKEN_FILE, a producer's token) so "
                         "doctor can check the receiver (`coordinator lineage serve --tokens FILE`)")  # fmt: skip
    if p.status == 0:
        return Check(name=name, status=CheckStatus.FAIL, summary=f"{p.url} did not answer: {p.error}",
                     fix="start `coordinator lineage serve --tokens FILE` there, or correct "
                         "COORDINATOR_LINEAGE_URL")  # fmt: skip
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


def with_ignored(check: Check, p: LineageProbe, graph: Graph | None) -> Check:
    """The receiver's check with the jobs it ignored lately (``lineage/receiver.py``'s **Ignored jobs remembered**),
    each with a did-you-mean against the local mapping. A close match is probably a typo in dependencies.json: the check
    warns; jobs with none are listed only (a producer that sends every job, dbt's tests and its invocation job included,
    is normal)."""
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
