"""The watcher's Prometheus metrics: one typed object over a registry of its own.

The only module that imports ``prometheus_client`` (an import-linter contract); the HTTP listener serves
:meth:`Metrics.wsgi_app`. Rules:
- **One registry each.** One registry per :class:`Metrics`, never the library's global one: tests and several watchers
  in one process each count their own.
- **Counted where it happens.** Events are counted where they happen, through hooks the shell already has a place for
  (the Airflow client's ``on_request``, ``on_auth_failure`` and ``on_refusal``, the actuator's ``on_result``, the etcd
  store's ``on_error``); state (leader, revision, view size, pending intents) is read at scrape time from one callable
  returning a :class:`WatcherState`, so no hot path keeps a gauge up to date. A reader that fails skips its gauges for
  that scrape instead of failing the scrape.
- **Bounded labels.** Label values are bounded: configured instance names, auth method names, HTTP methods and status
  codes, action and result names, etcd operation names and gRPC codes. Never a DAG id, partition or run id (those would
  grow the series without bound).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from coordinator import __version__

log = logging.getLogger(__name__)

# The *_created series double the series count of every counter and no alert here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Airflow calls: a healthy API answers in 10-100 ms; the client's timeout is 10 s by default.
AIRFLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Reconcile passes: an incremental pass plans a few DAGs in about a millisecond; a full pass over a large store
#: takes seconds.
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The alarms etcd defines (its AlarmType, NONE aside): each always has a series, 0 while not raised.
ETCD_ALARMS = ("NOSPACE", "CORRUPT")

#: Lateness of a late success: a minute to a day.
LATENESS_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
#: A permit's delay after its newest upstream succeeded: the watcher's part is a fraction of a second, a rerun's clear
#: in Airflow seconds; beyond a minute something held it (a hold, the budget, no leader).
PERMIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class WatcherState:
    """What the state gauges show, read at scrape time (**Counted where it happens**)."""

    leader: bool
    watch_revision: int
    view_keys: int
    view_partitions: int
    bad_values: int
    pending_intents: int
    failed_intents: int
    actions_in_flight: int
    graph_digest: str
    graph_dags: int
    graph_invalid: bool
    #: Watcher services with a live presence key (``informer/presence.py``'s **Counted services**), this one included.
    watchers: int = 0
    #: Run states held because they flap (semantics `flap-held`): standing records in the view.
    flaps_held: int = 0
    #: Scheduled dependents (semantics `scheduled-permit`): permits granted (done ledger entries) and runs in progress
    #: that wait in Airflow for one (no granted permit).
    permits_granted: int = 0
    permits_waiting: int = 0


class Metrics:
    """Every metric of one watcher process. Counting methods are thread-safe (the library locks)."""

    def __init__(self) -> None:
        """Register every metric.

        Long because it is one table of declarations (name, help, labels, buckets), in the order of the metrics
        reference; each is one statement and none depends on another."""
        self.registry = CollectorRegistry()
        r = self.registry
        # Memory, CPU, open files and start time of this process; Python's version and GC: what an operator looks
        # at first when a watcher misbehaves.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("coordinator_build", "Version of the coordinator package.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.triggers = Counter(
            "coordinator_triggers",
            "Actions the actuator finished, by Airflow instance, action (create, clear, resume) and result (ok, "
            "conflict: the ledger moved under it, error: recorded on the ledger and retried, skipped: nothing to do).",
            ["instance", "action", "result"],
            registry=r,
        )
        self.triggers_held = Gauge(
            "coordinator_triggers_held",
            "New runs the trigger budget held when it stopped an Airflow instance or DAGs of it beyond their "
            "allowance (semantics `trigger-budget`, summed), 0 when nothing is held: non-zero until "
            "`coordinator release INSTANCE` (or `--dag DAG`) or a raised COORDINATOR_TRIGGER_BUDGET.",
            ["instance"],
            registry=r,
        )
        self.held_actions = Gauge(
            "coordinator_held_actions",
            "Triggers and clears the leader kept back because an operator's hold covers their DAG and partition "
            "(`coordinator hold SELECTOR --reason WHY`), as of its last pass: non-zero until "
            "`coordinator release-hold HOLD` (each held run then starts once) or the hold's --until.",
            registry=r,
        )
        self.trigger_budget_used = Gauge(
            "coordinator_trigger_budget_used",
            "New runs the leader started in the trigger budget's window for an Airflow instance, as counted in etcd "
            "(semantics `trigger-budget`): the instance is held when the next would pass its ceiling, "
            "COORDINATOR_TRIGGER_BUDGET.",
            ["instance"],
            registry=r,
        )
        # Semantics `lineage-upstreams`: the OpenLineage receiver (``coordinator lineage serve``) counts into the same
        # registry.
        self.lineage_events = Counter(
            "coordinator_lineage_events",
            "OpenLineage events the receiver answered 2xx for, by outcome (accepted: the run state written; recorded: "
            "kept in the run's record only; duplicate: a copy already recorded; ignored: no mapping names the job).",
            ["outcome"],
            registry=r,
        )
        self.lineage_refused = Counter(
            "coordinator_lineage_refused",
            "Requests the OpenLineage receiver refused, by reason (invalid_json, invalid_event, invalid_name, "
            "unknown_spec, unmapped_name, no_partition, unauthorized, forbidden, too_large, unsupported_encoding, "
            "not_found, etcd_denied: the receiver's etcd role does not cover the instance, unavailable: etcd did not "
            "answer, the client retries).",
            ["reason"],
            registry=r,
        )
        self.lineage_ignored_jobs = Gauge(
            "coordinator_lineage_ignored_jobs",
            "Distinct OpenLineage jobs (namespace, job) the receiver answered 'ignored' for lately (the last 100 "
            "remembered) that the mapping in force still does not map: a job mistyped in dependencies.json's "
            '"openlineage" shows here. Its status answer and `coordinator doctor` name them, with a did-you-mean.',
            registry=r,
        )
        self.lineage_seconds = Histogram(
            "coordinator_lineage_request_seconds",
            "Time from a lineage request's arrival to its answer (2xx only once the facts are in etcd).",
            buckets=AIRFLOW_BUCKETS,
            registry=r,
        )
        # Semantics `assets-by-route`, `asset-exactly-once`: assets shared across deployments.
        self.asset_events_delivered = Counter(
            "coordinator_asset_events_delivered",
            "Asset events delivered into another Airflow (confirmed in the delivery ledger), by source and target.",
            ["source", "target"],
            registry=r,
        )
        self.asset_events_skipped = Counter(
            "coordinator_asset_events_skipped",
            "Asset deliveries given up on an operator's request (coordinator skip-event), by source and target.",
            ["source", "target"],
            registry=r,
        )
        self.asset_delivery_failures = Counter(
            "coordinator_asset_delivery_failures",
            "Delivery attempts that ended in an error recorded on the ledger (retried), by target instance.",
            ["target"],
            registry=r,
        )
        self.asset_events_pending = Gauge(
            "coordinator_asset_events_pending",
            "Recorded asset events not yet delivered, per target instance, as of the last asset round.",
            ["target"],
            registry=r,
        )
        self.asset_listing_stopped = Gauge(
            "coordinator_asset_listing_stopped",
            "1 while the last listing of a source instance's asset events stopped at an event its Airflow answers 500 "
            "for (apache/airflow#71360: a consumer run of that event has not started), else 0. Later events of that "
            "instance wait for it.",
            ["instance"],
            registry=r,
        )
        self.airflow_requests = Counter(
            "coordinator_airflow_requests",
            "HTTP requests to Airflow's REST API, by instance, method and status (a code, or timeout / error when "
            "no answer came).",
            ["instance", "method", "status"],
            registry=r,
        )
        self.airflow_auth_failures = Counter(
            "coordinator_airflow_auth_failures",
            "Authentication failures towards Airflow, by instance and auth method: a credential that could not be "
            "obtained or refreshed (login refused, token file unreadable, exec command failed, token service down), "
            "or a request refused with 401/403 after its one refresh (see the instance's error in `status`).",
            ["instance", "method"],
            registry=r,
        )
        self.airflow_seconds = Histogram(
            "coordinator_airflow_request_seconds",
            "Duration of HTTP requests to Airflow's REST API, answered or not.",
            ["instance", "method"],
            buckets=AIRFLOW_BUCKETS,
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "coordinator_reconcile_seconds",
            "Duration of reconcile passes (planning and handing actions to the actuator, not the actions).",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.etcd_errors = Counter(
            "coordinator_etcd_errors",
            "Failed etcd requests (after the store's brief retries), broken watch streams (op=watch) and failed "
            "readiness probes (op=probe), by operation and gRPC code.",
            ["op", "code"],
            registry=r,
        )
        self.relists = Counter(
            "coordinator_watch_relists",
            "Watch resumptions that found their revision compacted and re-read the prefix.",
            registry=r,
        )
        self.malformed = Counter(
            "coordinator_malformed_values",
            "Values skipped because they could not be parsed (counted each time one is read: at load and per change).",
            registry=r,
        )
        self.etcd_up = Gauge(
            "coordinator_etcd_up", "1 if the last etcd probe was answered in time, else 0.", registry=r
        )
        self.etcd_last_success = Gauge(
            "coordinator_etcd_last_success_timestamp_seconds",
            "Unix time of the last etcd probe answered in time.",
            registry=r,
        )
        self.etcd_revision = Gauge(
            "coordinator_etcd_revision", "etcd's current revision, as of the last answered probe.", registry=r
        )
        self.etcd_alarm = Gauge(
            "coordinator_etcd_alarm",
            "1 while etcd has the alarm raised (NOSPACE: the database reached --quota-backend-bytes; CORRUPT), else 0: "
            "etcd refuses every write meanwhile, so nothing is triggered or recorded. As of the last probe that read "
            "etcd's alarm list; `coordinator doctor` prints the fix.",
            ["alarm"],
            registry=r,
        )
        self.instance_up = Gauge(
            "coordinator_instance_up",
            "1 if the watcher's last check of the Airflow instance passed (reachable, login, permissions), else 0.",
            ["instance"],
            registry=r,
        )
        self.instance_missing = Gauge(
            "coordinator_instance_missing",
            "1 while the graph in force has DAGs (or asset routes) in the instance and no Airflow is configured for it "
            "(no entry in the instances file; for default, no COORDINATOR_AIRFLOW_URL either): /readyz answers 503 "
            "instances_missing meanwhile. 0 once a reloaded graph no longer needs it; absent for every other instance.",
            ["instance"],
            registry=r,
        )
        self.airflow_reachable_gauge = Gauge(
            "coordinator_airflow_reachable",
            "1 while the Airflow instance answers the watcher's requests, 0 after several consecutive requests got no "
            "answer, a timeout or a 5xx (coordinator.watcher.reachability); absent until the instance was asked.",
            ["instance"],
            registry=r,
        )
        self.airflow_refusing_gauge = Gauge(
            "coordinator_airflow_refusing",
            "1 while the Airflow instance refuses the watcher's credentials (a login refused, a 401, a 403 to a "
            "credential it never accepted) or throttles it (429 with Retry-After), else 0: its calls wait out one "
            "backoff (COORDINATOR_AIRFLOW_REFUSED_BACKOFF_S, doubling up to _MAX_S) and its intents stay pending; "
            "`coordinator doctor` names the fix. Absent until the instance first refused.",
            ["instance"],
            registry=r,
        )
        self.airflow_refusing_since = Gauge(
            "coordinator_airflow_refusing_since_timestamp_seconds",
            "Unix time of the first refusal of the instance's current refusing spell, 0 while it accepts.",
            ["instance"],
            registry=r,
        )
        self.airflow_backoff_seconds = Gauge(
            "coordinator_airflow_backoff_seconds",
            "The backoff step the refusing instance's calls are waiting out, 0 while it accepts.",
            ["instance"],
            registry=r,
        )
        self.instance_check_failures = Counter(
            "coordinator_instance_check_failures",
            "Checks of an Airflow instance (at start) that failed: unreachable, login refused, missing permission.",
            ["instance"],
            registry=r,
        )
        # Deadlines (semantics `deadlines-judged`). ``dag`` is a label here, unlike **Bounded labels**: the series are
        # bounded by the DAGs that declare an ``expected_by`` (each a promise someone alerts on), never by partitions.
        self.deadline_partitions = Gauge(
            "coordinator_deadline_partitions",
            "Partitions in each deadline state (on_time, late, missed, at_risk, blocked) per DAG with an expected_by, "
            "as of the leader's last deadline pass.",
            ["instance", "dag", "state"],
            registry=r,
        )
        self.deadline_misses = Counter(
            "coordinator_deadline_misses",
            "Transitions into missed (a deadline passed without a success), by instance.",
            ["instance"],
            registry=r,
        )
        self.deadline_min_slack = Gauge(
            "coordinator_deadline_min_slack_seconds",
            "The smallest slack (deadline minus predicted finish, or minus now) of any partition not yet succeeded; "
            "negative: behind.",
            registry=r,
        )
        self.deadline_lateness = Histogram(
            "coordinator_deadline_lateness_seconds",
            "How late a late success ended after its deadline (observed once, at its transition to late).",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.audit_repairs = Counter(
            "coordinator_audit_repairs",
            "Run states the leader's audit wrote because etcd lacked them, by instance: where the plugin writes, a "
            "steady rise means it stopped writing (doctor's 'plugin records' names the instance).",
            ["instance"],
            registry=r,
        )
        self.permit_delay = Histogram(
            "coordinator_permit_delay_seconds",
            "Scheduled dependents: from the end of the newest upstream run a permit was granted for to the grant "
            "(observed once per grant, by the leader), by instance.",
            ["instance"],
            buckets=PERMIT_BUCKETS,
            registry=r,
        )
        self._state: Callable[[], WatcherState] | None = None
        r.register(_StateCollector(self))

    # -- hooks (**Counted where it happens**)
    # -----------------------------------------------------------------------------------

    def bind_state(self, reader: Callable[[], WatcherState]) -> None:
        """Read the state gauges from ``reader`` at every scrape (called from the listener's thread)."""
        self._state = reader

    def airflow_request(self, instance: str, method: str, status: str, seconds: float) -> None:
        self.airflow_requests.labels(instance, method, status).inc()
        self.airflow_seconds.labels(instance, method).observe(seconds)

    def airflow_auth_failure(self, instance: str, method: str) -> None:
        self.airflow_auth_failures.labels(instance, method).inc()

    def action_result(self, instance: str, action: str, result: str) -> None:
        self.triggers.labels(instance, action, result).inc()

    def permit_granted(self, instance: str, delay_s: float) -> None:
        self.permit_delay.labels(instance).observe(max(0.0, delay_s))

    def audit_repaired(self, instance: str, count: int) -> None:
        self.audit_repairs.labels(instance).inc(count)

    def instance_checked(self, instance: str, ok: bool) -> None:
        """One check of an Airflow instance (coordinator.watcher.instance_check)."""
        self.instance_up.labels(instance).set(ok)
        if not ok:
            self.instance_check_failures.labels(instance).inc()

    def instances_missing(self, missing: Iterable[str], before: Iterable[str]) -> None:
        """The graph's instances without an Airflow (coordinator.watcher.coverage): each 1, and 0 for those of
        ``before`` no longer missing."""
        now = set(missing)
        for name in sorted(now | set(before)):
            self.instance_missing.labels(name).set(name in now)

    def airflow_reachable(self, instance: str, reachable: bool) -> None:
        """An instance's reachability changed (coordinator.watcher.reachability)."""
        self.airflow_reachable_gauge.labels(instance).set(reachable)

    def airflow_refusing(self, instance: str, since: float | None, step_s: float) -> None:
        """An instance's refusal changed (``watcher/refusals.py``): ``since`` (Unix time) None when it accepts."""
        self.airflow_refusing_gauge.labels(instance).set(since is not None)
        self.airflow_refusing_since.labels(instance).set(since or 0.0)
        self.airflow_backoff_seconds.labels(instance).set(step_s if since is not None else 0.0)

    def deadline_pass(self, counts: Iterable[tuple[str, str, str, int]], min_slack: float | None) -> None:
        """One deadline pass: (instance, dag, state, partitions) counts replace the last pass's, and the least slack."""
        self.deadline_partitions.clear()
        for instance, dag, state, count in counts:
            self.deadline_partitions.labels(instance, dag, state).set(count)
        if min_slack is not None:
            self.deadline_min_slack.set(min_slack)

    def deadline_counts(self, changes: Iterable[tuple[str, str, str, int]], min_slack: float | None) -> None:
        """An incremental deadline pass: only the (instance, dag, state) counts that moved (0: the label goes)."""
        for instance, dag, state, count in changes:
            if count:
                self.deadline_partitions.labels(instance, dag, state).set(count)
            else:
                with suppress(KeyError):  # never set (a state that came and went between two scrapes)
                    self.deadline_partitions.remove(instance, dag, state)
        if min_slack is not None:
            self.deadline_min_slack.set(min_slack)

    def deadline_transition(self, instance: str, state: str, lateness: float | None) -> None:
        if state == "missed":
            self.deadline_misses.labels(instance).inc()
        if state == "late" and lateness is not None:
            self.deadline_lateness.observe(lateness)

    def asset_round(self, pending: Mapping[str, int]) -> None:
        """One asset round: the pending counts per target replace the last round's."""
        self.asset_events_pending.clear()
        for target, count in pending.items():
            self.asset_events_pending.labels(target).set(count)

    def etcd_error(self, op: str, code: str) -> None:
        self.etcd_errors.labels(op, code).inc()

    def etcd_probe(self, revision: int | None) -> None:
        """One readiness probe's outcome: etcd's revision when it answered in time, None when not."""
        self.etcd_up.set(revision is not None)
        if revision is not None:
            self.etcd_revision.set(revision)
            self.etcd_last_success.set(time.time())

    def etcd_alarms(self, raised: Iterable[str]) -> None:
        """etcd's alarm list as last read: each alarm etcd defines is 1 when raised, else 0 (so an alert can also see
        it clear). Label values are etcd's alarm names, a closed set."""
        active = set(raised)
        for name in sorted(active | set(ETCD_ALARMS)):
            self.etcd_alarm.labels(name).set(name in active)

    def lineage_ignored_source(self, count: Callable[[], int]) -> None:
        """``coordinator_lineage_ignored_jobs`` is ``count()`` at each scrape (the receiver's memory, filtered by the
        mapping in force then: a fixed file clears it without another event)."""
        self.lineage_ignored_jobs.set_function(count)

    def wsgi_app(self) -> Callable[..., Iterable[bytes]]:
        """The library's exposition app for this registry (text or OpenMetrics by Accept header, gzip)."""
        app: Callable[..., Iterable[bytes]] = make_wsgi_app(self.registry)
        return app


class _StateCollector:
    """The state gauges, read from the watcher at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        reader = self._metrics._state
        if reader is None:
            return []
        try:
            s = reader()
        except Exception as exc:  # a scrape must never fail because one reader raced the event loop
            log.warning("metrics.state_failed error=%r", exc)
            return []
        gauges = [
            ("coordinator_leader", "1 while this watcher leads (acts), 0 on a standby.", s.leader),
            ("coordinator_watch_revision", "The etcd revision the watcher's view has reached.", s.watch_revision),
            ("coordinator_view_keys", "Run-state, ledger and backfill keys held in the view.", s.view_keys),
            ("coordinator_view_partitions", "Partitions with at least one fact in the view.", s.view_partitions),
            ("coordinator_view_bad_values", "Keys whose current value is malformed (see `status`).", s.bad_values),
            ("coordinator_pending_intents", "Ledger intents not confirmed yet (pending or failed).", s.pending_intents),
            ("coordinator_failed_intents", "Ledger intents whose last attempt failed (retried).", s.failed_intents),
            ("coordinator_actions_in_flight", "Actions the actuator is performing now.", s.actions_in_flight),
            ("coordinator_graph_dags", "DAGs in the dependencies.json in force.", s.graph_dags),
            ("coordinator_graph_invalid", "1 while dependencies.json on disk is invalid (the last valid graph stays "
             "in force).", s.graph_invalid),
            ("coordinator_watchers", "Watcher services with a live presence key, this one included: the leader and "
             "its warm standbys. Below 2, the leader's death stops triggers until one restarts.", s.watchers),
            ("coordinator_flaps_held", "Run states (DAG and partition) held because they flap: their success came "
             "back to a run's attempt already recorded after another run's, which no Airflow run explains (semantics "
             "flap-held). Their dependents are not triggered or cleared until `coordinator release-flap DAG -p "
             "PARTITION`; `coordinator doctor` names each.", s.flaps_held),
            ("coordinator_permits_granted", "Scheduled dependents: permits granted (one per DAG and partition, the "
             "newest generation).", s.permits_granted),
            ("coordinator_permits_waiting", "Scheduled dependents: runs in progress in Airflow whose wait has no "
             "granted permit yet.", s.permits_waiting),
        ]  # fmt: skip
        families: list[Metric] = [GaugeMetricFamily(name, text, value=float(v)) for name, text, v in gauges]
        graph = InfoMetricFamily("coordinator_graph", "Digest of the dependencies.json in force.")
        graph.add_metric([], {"digest": s.graph_digest})
        families.append(graph)
        return families
