"""``doctor``'s checks of each Airflow instance: its probe, its DAGs, the plugin's records and unknown instances."""

from __future__ import annotations

from datetime import datetime

from coordinator.core.model import NodeId
from coordinator.core.view import View
from coordinator.diagnosis.model import (
    RECENT_RECORDS,
    Check,
    CheckStatus,
    DoctorFacts,
    skipped,
)
from coordinator.informer.presence_value import (
    InstanceCheck,
)

#: The fix when a watcher reports an instance refusing it (``coordinator/airflow/gate.py``).
REFUSING_FIX = (
    "correct the watcher's credentials for that instance (COORDINATOR_AIRFLOW_PASSWORD_FILE, or the instances file's "
    "password_file / token_file; a Kubernetes Secret: update it): the watcher reads the file again at its next try "
    "(see 'next try at'), no restart needed; a 429 passes by itself"
)


def instance_check(p: InstanceCheck, f: DoctorFacts) -> Check:
    name = f"airflow {p.instance}"
    watcher_notes = tuple(
        f"watcher {w.id} at start: {c.describe()}"
        for w in f.watchers
        for c in w.instances
        if c.instance == p.instance and not c.ok
    )
    refusing = tuple(
        f"watcher {w.id}: {r.describe()}" for w in f.watchers for r in w.refusing if r.instance == p.instance
    )
    if refusing:
        # A running watcher is held back by this instance now: what it sees matters more than doctor's own probe
        # (which may use other settings).
        summary = f"{p.instance} refuses the watcher's credentials; {refusing[0]}"
        return Check(name=name, status=CheckStatus.FAIL, summary=summary, details=refusing[1:] + watcher_notes,
                     fix=REFUSING_FIX)  # fmt: skip
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


def dags_check(p: InstanceCheck) -> Check:
    name = f"dags {p.instance}"
    if p.error is not None or p.read is False:
        return skipped(name, f"airflow {p.instance} not usable")
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


def plugin_records_check(f: DoctorFacts, view: View, now: datetime) -> Check:
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


def unknown_instances_check(f: DoctorFacts, view: View) -> Check:
    graph = f.local_graph
    known: set[str] = set(graph.instances) if graph is not None else set()
    if view.activation is not None:
        known |= {NodeId.parse(q).instance for q in view.activation.nodes}
    if not known:
        return skipped("unknown instances", "no graph to compare with")
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
