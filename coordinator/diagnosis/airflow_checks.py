"""``doctor``'s checks of each Airflow instance: its probe, its DAGs, the plugin's records and unknown instances."""

from __future__ import annotations

from dataclasses import dataclass, field
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


def keys_check(p: InstanceCheck) -> Check:
    """Each keyed dependent's Airflow DAG accepts the ``partition_key`` it is triggered with
    (``coordinator.core.key_acceptance``): fail when one refuses for certain, warn for a custom timetable."""
    name = f"partition keys {p.instance}"
    if p.keys_refused or p.keys_unsure:
        refused, unsure = p.keys_refused, p.keys_unsure
        said = []
        if refused:
            said.append(f"{len(refused)} keyed dependent(s) whose Airflow DAG refuses a partition_key: "
                        f"{', '.join(refused)}")  # fmt: skip
        if unsure:
            said.append(f"{len(unsure)} on a custom timetable that may refuse it: {', '.join(unsure)}")
        return Check(
            name=name,
            status=CheckStatus.FAIL if refused else CheckStatus.WARN,
            summary="; ".join(said) + " (each trigger of theirs would be refused)",
            details=p.keys_said,
            fix="each line says what to set, and where; then run `coordinator doctor` again",
        )
    return Check(
        name=name,
        status=CheckStatus.OK,
        summary=f"the DAGs of all {p.keyed_checked} keyed dependent(s) accept a partition_key",
    )


@dataclass
class _Writes:
    """One instance's run states by who wrote them: the plugin's latest start, and the audit's repairs."""

    plugin: bool = False
    #: The latest start of a run the plugin recorded (None: none with a start date).
    plugin_last: datetime | None = None
    #: When each run the audit wrote (``source: audit:<instance>``, because etcd lacked its state) started.
    repairs: list[datetime] = field(default_factory=list)

    def repaired_since_plugin(self, now: datetime) -> int:
        """Repairs of runs that started after the plugin's last record, within the recent window."""
        after = self.plugin_last
        return sum(1 for at in self.repairs if now - at <= RECENT_RECORDS and (after is None or at > after))


def _writes_by_instance(view: View) -> dict[str, _Writes]:
    found: dict[str, _Writes] = {}
    for fact in view.runs.values():
        writer, _, inst = (fact.source or "").partition(":")
        if writer == "airflow-plugin":
            w = found.setdefault(inst, _Writes())
            w.plugin = True
            if fact.start_date is not None and (w.plugin_last is None or fact.start_date > w.plugin_last):
                w.plugin_last = fact.start_date
        elif writer == "audit" and fact.start_date is not None:
            found.setdefault(inst, _Writes()).repairs.append(fact.start_date)
    return found


#: Repairs after the plugin's last record that make ``plugin records`` fail rather than warn: one can be a write the
#: plugin lost to an etcd blip; runs going on without it cannot.
STOPPED_AFTER_REPAIRS = 2


def plugin_records_check(f: DoctorFacts, view: View, now: datetime) -> Check:
    """Per instance: the plugin recorded runs recently (ok); it wrote before but the leader's audit has been writing
    the states of runs that started since (it stopped writing: fail from STOPPED_AFTER_REPAIRS repairs, warn below);
    it wrote nothing recently (warn: quiet is normal if no DAG ran, or the plugin is not installed)."""
    instances = sorted({p.instance for p in f.instances})
    writes = _writes_by_instance(view)
    fix = (
        "in that Airflow's environment run `coordinator check-plugin` (installed? COORDINATOR_ETCD_ENDPOINTS, "
        "COORDINATOR_PREFIX and COORDINATOR_INSTANCE set for the scheduler?)"
    )

    def seen_text(i: str) -> str:
        w = writes.get(i, _Writes())
        repaired = w.repaired_since_plugin(now)
        after = f"; the audit wrote {repaired} run state(s) of runs that started since" if repaired else ""
        if not w.plugin:
            return f"{i}: no plugin record{after}"
        at = w.plugin_last
        return (f"{i}: last run started {at.isoformat(timespec='seconds')}" if at is not None else f"{i}: seen") + after

    details = tuple(seen_text(i) for i in instances)
    stopped = [i for i in instances if writes.get(i, _Writes()).plugin and writes[i].repaired_since_plugin(now) > 0]
    if stopped:
        counts = {i: writes[i].repaired_since_plugin(now) for i in stopped}
        failing = any(count >= STOPPED_AFTER_REPAIRS for count in counts.values())
        listed = ", ".join(f"{i} ({count} run state(s))" for i, count in counts.items())
        return Check(
            name="plugin records",
            status=CheckStatus.FAIL if failing else CheckStatus.WARN,
            summary=f"the plugin stopped writing in {', '.join(stopped)}: the leader's audit wrote the states of runs "
            f"that started after its last record, {listed}, so each hop there waits for the audit "
            "(COORDINATOR_AUDIT_INTERVAL_S)",
            details=details,
            fix=fix + "; it clears at the plugin's next record",
        )
    quiet = [i for i in instances if not writes.get(i, _Writes()).plugin or _old(writes[i].plugin_last, now)]
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
        fix=fix + "; quiet is normal if no DAG ran",
    )


def _old(at: datetime | None, now: datetime) -> bool:
    """A plugin record whose run started longer ago than the recent window (a record without a start counts as
    recent: time unknown)."""
    return at is not None and now - at > RECENT_RECORDS


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
