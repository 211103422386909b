"""Liveness and readiness of one watcher process, for its HTTP probes (``/healthz``, ``/readyz``).

Rules:
- **Alive** = the reconcile loop keeps turning. It beats on every turn, at least every 2 s (it wakes that often to
  notice a changed dependencies.json); no beat for STALL_S means a wedged event loop or pass: ``/healthz`` answers 503
  and the orchestrator restarts the process. Waiting for etcd is no stall (every etcd call has a deadline), so an etcd
  outage never gets watchers restarted. Before the loop turns, the view loads: that is alive for up to the start timeout
  (``COORDINATOR_START_TIMEOUT_S``, sized for the largest estates), then ``start_timeout``; a big store's load is never
  taken for a stall.
- **Ready** = every instance of the graph in force has an Airflow configured, the view is loaded and etcd answered
  the active probe within READY_WITHIN_S, and its last probe did not fail. An instance without an Airflow
  (``core.instance_coverage``) is a configuration mistake no wait repairs: ``/readyz`` answers 503
  ``instances_missing`` naming the instances and what to set, from the start and after a reload of the graph that
  names a new one; a fixed graph (reloaded) or instances file (read at start: a restart, which the chart's checksum
  annotation makes a rollout) makes it ready again. The watch stream is no evidence: a hung etcd (stopped process,
  partition) keeps the TCP connection open and silent, exactly like a quiet store. So :func:`probe_etcd` sends a
  cheap linearizable read every PROBE_INTERVAL_S with a PROBE_TIMEOUT_S deadline. Standbys are ready too: readiness
  says the process could take over, not that it leads.
- **One writer thread.** The event loop writes, the listener's thread reads: single attribute reads and writes, atomic
  under the GIL.
- **etcd's alarms.** etcd's own alarms: every ALARM_INTERVAL_S the probe also reads etcd's alarm list. While NOSPACE or
  CORRUPT is raised etcd refuses every write, so nothing can be triggered or recorded: ``/readyz`` answers 503
  ``etcd_alarm`` naming it, ``coordinator_etcd_alarm{alarm}`` is 1, and the log has one ERROR line when it is raised
  (``etcd.alarm_raised``, with the fix) and one INFO line when it clears (``etcd.alarm_cleared``), not one per refused
  write. A list the user may not read changes nothing (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.core.graph import Graph
from coordinator.core.instance_coverage import Unconfigured
from coordinator.core.model import TriggerStatus
from coordinator.core.view import View
from coordinator.errors import CoordinatorError
from coordinator.runtime.metrics import Metrics, WatcherState
from coordinator.runtime.settings import DEFAULT_START_TIMEOUT_S

log = logging.getLogger(__name__)


class RaisedAlarm(Protocol):
    """One alarm etcd raised (``coordinator.etcd.types.Alarm``)."""

    @property
    def name(self) -> str: ...

    @property
    def member(self) -> str: ...


class ProbedStore(Protocol):
    """What the probe asks of the store (``coordinator.etcd.EtcdStore``), so this module needs no etcd adapter: the
    adapter depends on the runtime's settings and retries, never the other way round."""

    async def ping(self, key: str, timeout_s: float) -> int: ...

    async def alarms(self, timeout_s: float) -> Sequence[RaisedAlarm]: ...


#: 60 s without a turn of the reconcile loop: ~30 times its longest idle wait (2 s), and 6 times the cold-start target
#: of the largest estates (a view of a million keys loaded and planned in 10 s), so only a wedged process trips it.
STALL_S = 60.0
#: One probe a second: a hung etcd is seen within about PROBE_INTERVAL_S + PROBE_TIMEOUT_S.
PROBE_INTERVAL_S = 1.0
#: A linearizable read takes milliseconds; 2 s covers a loaded etcd's fsync stalls and a leader election.
PROBE_TIMEOUT_S = 2.0
#: The alarm list goes through etcd's raft log (one small entry each): every 5 s is cheap, and a full etcd is named
#: within seconds of its first refused write.
ALARM_INTERVAL_S = 5.0
#: What an operator does about a raised alarm (docs/howto/etcd.md, "When etcd refuses writes").
ALARM_FIX = ("`coordinator doctor` prints the commands: compact, defragment every member, `etcdctl alarm disarm`; "
             "raise --quota-backend-bytes if the data needs the space")  # fmt: skip

#: Not ready when etcd's last answer is older than this, even if no probe has failed yet (one may be hanging).
READY_WITHIN_S = 5.0


@dataclass(frozen=True)
class Verdict:
    """A probe's answer: ``reason`` is a stable word for machines, ``detail`` a sentence for people."""

    ok: bool
    reason: str
    detail: str


class Health:
    """What the probes answer from; ``clock`` is monotonic seconds."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    ) -> None:
        self.clock = clock
        self.started_at = self.beat_at = clock()
        self.start_timeout_s = start_timeout_s
        self.loaded = False
        self.etcd_ok_at: float | None = None
        self.etcd_error: str | None = None
        #: etcd's raised alarms as last read (**etcd's alarms**), e.g. ("NOSPACE",); empty when none.
        self.alarms: tuple[str, ...] = ()
        self.alarms_unreadable = False
        #: Instances of the graph in force with no Airflow configured (**Ready**); None when every one has one.
        self.unconfigured: Unconfigured | None = None

    def beat(self) -> None:
        self.beat_at = self.clock()

    def view_loaded(self) -> None:
        """The view is loaded: ready once etcd answers, and alive while the loop beats from now on (**Alive**)."""
        self.loaded = True
        self.beat()

    def etcd_answered(self) -> None:
        self.etcd_ok_at = self.clock()
        self.etcd_error = None

    def etcd_failed(self, error: str) -> None:
        self.etcd_error = error

    def liveness(self) -> Verdict:
        if not self.loaded:
            loading = self.clock() - self.started_at
            if loading > self.start_timeout_s:
                return Verdict(False, "start_timeout", f"the view has been loading for {loading:.0f} s (limit "
                               f"{self.start_timeout_s:g} s: COORDINATOR_START_TIMEOUT_S)")  # fmt: skip
            return Verdict(True, "ok", "starting: loading the view")
        idle = self.clock() - self.beat_at
        if idle > STALL_S:
            return Verdict(
                False, "stalled", f"the reconcile loop has not turned for {idle:.0f} s (limit {STALL_S:g} s)"
            )
        return Verdict(True, "ok", "the reconcile loop turns")

    def readiness(self) -> Verdict:
        missing = self.unconfigured
        if missing is not None:  # first: a mistake to fix, said before anything that only needs time
            return Verdict(False, "instances_missing", f"{missing.detail}; fix: {missing.fix}")
        if not self.loaded:
            return Verdict(False, "loading", "the view is not loaded from etcd yet")
        ok_at, error = self.etcd_ok_at, self.etcd_error
        if error is not None:
            return Verdict(False, "etcd_unavailable", f"etcd did not answer the last probe: {error}")
        age = None if ok_at is None else self.clock() - ok_at
        if age is None or age > READY_WITHIN_S:
            since = "ever" if age is None else f"for {age:.1f} s"
            return Verdict(False, "etcd_unavailable", f"etcd has not answered a probe {since} (limit "
                           f"{READY_WITHIN_S:g} s)")  # fmt: skip
        raised = self.alarms
        if raised:
            return Verdict(False, "etcd_alarm", f"etcd refuses writes: alarm {', '.join(raised)} raised "
                           f"({_ALARM_MEANING.get(raised[0], 'see etcdctl alarm list')}); {ALARM_FIX}")  # fmt: skip
        return Verdict(True, "ok", f"view loaded; etcd answered {age:.1f} s ago")


_ALARM_MEANING = {"NOSPACE": "database space exceeded: --quota-backend-bytes reached",
                  "CORRUPT": "a member's data differs from the others'"}  # fmt: skip


async def probe_etcd(store: ProbedStore, key: str, health: Health, metrics: Metrics, stop: asyncio.Event) -> None:
    """Ask etcd every PROBE_INTERVAL_S, each time with a PROBE_TIMEOUT_S deadline, until ``stop`` (**Ready**); its
    alarm list every ALARM_INTERVAL_S (**etcd's alarms**)."""
    alarms_due = health.clock()
    while not stop.is_set():
        try:
            # The gRPC deadline ends the call; the outer timeout only backs it up (e.g. a re-login that hangs).
            async with asyncio.timeout(PROBE_TIMEOUT_S + 0.5):
                revision = await store.ping(key, PROBE_TIMEOUT_S)
        except TimeoutError:
            metrics.etcd_error("probe", "timeout")
            _failed(health, metrics, f"no answer within {PROBE_TIMEOUT_S:g} s")
        except CoordinatorError as exc:  # the store already counted it (op=probe)
            _failed(health, metrics, str(exc))
        except Exception as exc:  # a probe must never take the watcher down; not ready is the safe answer
            metrics.etcd_error("probe", type(exc).__name__)
            _failed(health, metrics, repr(exc))
        else:
            if health.etcd_error is not None:
                log.info("health.etcd_answered revision=%d", revision)
            health.etcd_answered()
            metrics.etcd_probe(revision)
            if health.clock() >= alarms_due:
                alarms_due = health.clock() + ALARM_INTERVAL_S
                await _read_alarms(store, health, metrics)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PROBE_INTERVAL_S)


async def _read_alarms(store: ProbedStore, health: Health, metrics: Metrics) -> None:
    """**etcd's alarms**: etcd's alarm list into the health, the gauge and one log line per change."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S + 0.5):
            found = await store.alarms(PROBE_TIMEOUT_S)
    except (TimeoutError, CoordinatorError) as exc:
        # Unanswered: the liveness probe tells that story. Refused (a role without it): the alarm stays unknown,
        # and writes refused under it still show as errors; said once, not every 5 s.
        if "PERMISSION_DENIED" in str(exc) and not health.alarms_unreadable:
            health.alarms_unreadable = True
            log.warning("etcd.alarms_unreadable error=%s", exc)
        return
    raised = tuple(sorted({a.name for a in found}))
    before = health.alarms
    for name in raised:
        if name not in before:
            members = ",".join(sorted(a.member for a in found if a.name == name))
            log.error("etcd.alarm_raised alarm=%s members=%s effect=%r fix=%r", name, members,
                      f"etcd refuses every write ({_ALARM_MEANING.get(name, name)}): nothing is triggered or "
                      "recorded until it is disarmed", ALARM_FIX)  # fmt: skip
    for name in before:
        if name not in raised:
            log.info("etcd.alarm_cleared alarm=%s", name)
    health.alarms = raised
    metrics.etcd_alarms(raised)


def _failed(health: Health, metrics: Metrics, error: str) -> None:
    if health.etcd_error is None:
        log.warning("health.etcd_unanswered error=%r", error)
    health.etcd_failed(error)
    metrics.etcd_probe(None)


def watcher_state(
    view: View, *, leading: bool, in_flight: int, graph: Graph, graph_invalid: bool, watchers: int = 0
) -> WatcherState:
    """The state gauges (coordinator.runtime.metrics), read in the listener's thread at scrape time
    (**One writer thread**).

    The ledger is copied before it is counted, partition by partition, each in one C-level call
    (``core.fact_index``'s **Safe iteration**): iterating the live dicts while the event loop changes them could fail.
    Counting costs about 0.1 s per million ledger keys (55 ms for 500,000, measured before the copy went per partition),
    once per scrape, in the listener's thread.
    """
    ledger = list(view.ledger.values())
    done = failed = 0
    for fact in ledger:
        status = fact.status
        if status is TriggerStatus.DONE:
            done += 1
        elif status is TriggerStatus.ERROR:
            failed += 1
    pending = len(ledger) - done
    granted, waiting = _permits(view, graph)
    return WatcherState(
        leader=leading,
        watch_revision=view.revision,
        view_keys=len(view.runs) + len(ledger) + len(view.backfills) + len(view.tasks),
        view_partitions=len(view.partitions),
        bad_values=len(view.problems),
        pending_intents=pending,
        failed_intents=failed,
        actions_in_flight=in_flight,
        graph_digest=graph.digest,
        graph_dags=len(graph.dags),
        graph_invalid=graph_invalid,
        watchers=watchers,
        flaps_held=sum(1 for flap in list(view.flaps.values()) if flap.record.standing),  # copied first, as the ledger
        permits_granted=granted,
        permits_waiting=waiting,
    )


def _permits(view: View, graph: Graph) -> tuple[int, int]:
    """Granted permits and runs waiting for one (semantics `scheduled-permit`); (0, 0), and no cost, without scheduled
    dependents. Copied before counted, as the ledger above."""
    scheduled = graph.scheduled
    if not scheduled:
        return 0, 0
    done = {at for at, fact in list(view.ledger.items()) if at[0] in scheduled and fact.permit_granted}
    waiting = sum(
        1 for at, fact in list(view.runs.items()) if at[0] in scheduled and fact.state.active and at not in done
    )
    return len(done), waiting
