"""The incremental deadline pass (``coordinator.core.deadline.cache``, semantics rule 13: "an incremental pass equals
a full pass"): after every random change of facts, clock, paused DAGs and unreachable instances, the cache's statuses,
transitions, counts and least slack are exactly those of a full ``deadline_states`` pass from scratch."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from coordinator.core.deadline import learning as deadline_learning
from coordinator.core.deadline.cache import DeadlineCache
from coordinator.core.deadline.eta import CauseReason, Eta
from coordinator.core.deadline.learning import LEARN_SAMPLES
from coordinator.core.deadline.records import DeadlineRecord, transitions
from coordinator.core.deadline.states import DeadlineState, DeadlineStatus, Judgement, deadline_states
from coordinator.core.graph import Graph
from coordinator.core.model import PARTITION_FORMAT, KeyLayout, NodeId
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import ALL, View
from coordinator.errors import SpecError
from tests.support.examples import examples

P0 = datetime(2026, 1, 5, tzinfo=UTC)
KEYS = KeyLayout()
NAMES = ("default/n0", "b/n1", "default/n2", "default/n3", "b/n4", "default/n5")
GRIDS = {"daily": "0 0 * * *", "six": "0 */6 * * *", "none": None}
DAYS = [P0 + timedelta(days=d) for d in range(-25, 4)]
SIX = [P0 + timedelta(hours=6 * k) for k in range(-12, 16)]
CLOCK = st.sampled_from([0, 1, 5, 29, 30, 31, 59, 60, 61, 180, 360, 720, 1439, 1440, 1441, 2000, 4000])  # minutes


def key(at: datetime) -> str:
    return at.strftime(PARTITION_FORMAT)


def node(name: str) -> NodeId:
    return NodeId.parse(name)


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """Up to six DAGs in two instances: daily, six-hourly and ungridded, joined by plain edges, offsets and shifts,
    some scheduled dependents, with ``expected_by`` of every anchor, fixed, learned or no duration, some on a task."""
    dags: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for i, name in enumerate(NAMES):
        kind = draw(st.sampled_from(sorted(GRIDS)))
        kinds[name] = kind
        body: dict[str, Any] = {}
        if GRIDS[kind] is not None:
            body["partitions"] = {"cron": GRIDS[kind]}
        ups = draw(st.lists(st.sampled_from(NAMES[:i]), unique=True, max_size=2)) if i else []
        edges: list[Any] = []
        for up in ups:
            style = draw(st.sampled_from(["plain", "offset", "shift"]))
            if style == "offset" and GRIDS[kind] is not None and GRIDS[kinds[up]] is not None:
                edges.append({"dag": up, "offset": draw(st.sampled_from([-1, 1]))})
            elif style == "shift":
                edges.append({"dag": up, "shift": draw(st.sampled_from(["-1d", "-6h", "0h"]))})
            else:
                edges.append(up)
        if edges:
            body["upstreams"] = edges
            if draw(st.integers(0, 2)) == 0:  # semantics `permit-deadlines`: its running run may only wait
                body["runs"] = "scheduled"
        if i == len(NAMES) - 1 or draw(st.booleans()):
            anchor = draw(st.sampled_from(["after_end", "after_start", "at"]))
            rule: dict[str, Any] = (
                {"at": f"{draw(st.integers(0, 23)):02d}:00", "day_offset": draw(st.integers(0, 1))}
                if anchor == "at"
                else {anchor: f"{draw(st.integers(0, 30))}h"}
            )
            rule["warn"] = f"{draw(st.sampled_from([0, 30, 90, 240]))}m"
            duration = draw(st.sampled_from([None, "learned", "45m", "3h"]))
            if duration is not None:
                rule["duration"] = duration
            if draw(st.integers(0, 5)) == 0:
                rule["from"] = key(P0 + timedelta(days=draw(st.integers(-1, 2))))
            if draw(st.integers(0, 3)) == 0:  # a task deadline (rule 8), on the task ``writes`` records
                rule["task"] = "t"
            body["expected_by"] = rule
        dags[name] = body
    try:
        return parse_spec(json.dumps({"version": 1, "instances": {"b": {}}, "dags": dags}))
    except SpecError:
        assume(False)
        raise


def points(graph: Graph, dag: NodeId) -> list[datetime]:
    grid = graph.dags[dag].grid
    if grid is None:
        return sorted({*DAYS, *SIX})
    return DAYS if grid.cron == GRIDS["daily"] else SIX


def run_value(
    state: str, start: datetime | None, end: datetime | None, updated: datetime | None = None, run_id: str = "r"
) -> bytes:
    value: dict[str, Any] = {"state": state, "run_id": run_id, "clear_number": 0, "source": "test"}
    if start is not None:
        value["start_date"] = start.isoformat()
    if end is not None:
        value["end_date"] = end.isoformat()
    if updated is not None:
        value["updated_at"] = updated.isoformat()
    return json.dumps(value).encode()


def applied(view: View, key: str, value: bytes | None, rev: int) -> set[tuple[NodeId, str]]:
    """``view.apply`` of one key, and the (DAG, partition) pairs the informer's changes name for it, as the deadline
    controller takes them (``watcher/deadlines.py``'s **One view, one change set**): a DAG's run, task or ledger key,
    or every DAG the view holds in a partition whose backfill changed."""
    partitions = view.apply(key, value, rev)
    at = view.node_of(key)
    if at is not None:
        return {at}
    return {(dag, p) for p in partitions if p != ALL for dag in view.partitions.get(p, ())}


@st.composite
def writes(
    draw: st.DrawFn, graph: Graph, now: datetime, written: list[tuple[NodeId, datetime]]
) -> tuple[str, bytes | None]:
    """One etcd write a watcher could see: a run state, a task state, a ledger entry or a backfill put, or a run state
    deleted. Half of them rewrite a (DAG, partition) written before (``written``): a failure retried into a success,
    a success rerun, so that a cause or an ETA in the middle of a chain changes, not only appears."""
    if written and draw(st.booleans()):
        dag, at = draw(st.sampled_from(written))
    else:
        dag = node(draw(st.sampled_from(NAMES)))
        # Often a partition written before for another DAG: facts line up along a chain (a failure above a running
        # DAG above a status), which independent draws over ~30 points rarely give.
        shared = [at for _, at in written if at in points(graph, dag)]
        at = (
            draw(st.sampled_from(shared))
            if shared and draw(st.booleans())
            else draw(st.sampled_from(points(graph, dag)))
        )
        written.append((dag, at))
    partition = key(at)
    kind = draw(st.sampled_from(["run", "run", "run", "run", "ledger", "task", "backfill", "delete"]))
    if kind == "delete":
        return KEYS.run_key(dag, partition), None
    if kind == "backfill":  # indexes the partition for the DAG (an ungridded descendant's scope), no run fact
        return KEYS.config_key(f"backfill/{dag.instance}/{dag.dag_id}/{partition}"), b"{}"
    if kind == "ledger":
        status = draw(st.sampled_from(["done", "error", "pending"]))
        return KEYS.trigger_key(dag, partition), json.dumps(
            {"status": status, "action": "create", "run_id": "r", "inputs": {}}
        ).encode()
    state = draw(st.sampled_from(["queued", "running", "success", "success", "failed"]))
    start = draw(st.sampled_from([None, at, at + timedelta(hours=3), now - timedelta(minutes=20)]))
    end = None
    if state in ("success", "failed"):
        end = (start or at) + timedelta(minutes=draw(st.sampled_from([10, 50, 200, 3000])))
    # An outside writer's times (updated_at stands in for a missing start or end) and a manual run (which teaches no
    # start offset) as well as the plugin's.
    updated = draw(st.sampled_from([None, None, at + timedelta(hours=1), now - timedelta(minutes=5)]))
    value = run_value(state, start, end, updated, draw(st.sampled_from(["r", "r", "manual__x"])))
    if kind == "task":
        return KEYS.task_key(dag, "t", partition), value
    return KEYS.run_key(dag, partition), value


def full_counts(statuses: dict[tuple[NodeId, str], DeadlineStatus]) -> tuple[Counter[tuple[str, str, str]], Any]:
    counts = Counter((n.instance, n.dag_id, str(s.state)) for (n, _), s in statuses.items())
    slacks = [s.slack for s in statuses.values() if not s.succeeded]
    return counts, min(slacks) if slacks else None


def check(cache: DeadlineCache, view: View, now: datetime, paused: frozenset[NodeId], unreachable: frozenset[str],
          recorded: dict[tuple[NodeId, str], DeadlineRecord], record_changes: set[tuple[NodeId, str]],
          counts: Counter[tuple[str, str, str]], update: Any) -> None:  # fmt: skip
    """The cache agrees with a pass from scratch on statuses, transitions, counts and least slack."""
    full = deadline_states(cache.graph, view, now, paused=paused, unreachable=unreachable, majors=cache.majors)
    assert cache.statuses() == full
    expected = transitions(full, recorded)
    assert cache.transitions(recorded, record_changes) == expected
    if update.full:
        counts.clear()
    for instance, dag, state, n in update.counts:
        counts[(instance, dag, state)] = n
    want, slack = full_counts(full)
    event("statuses" if full else "no statuses")
    event("a step moved a state by the clock alone" if update.timed else "no clock-only change")
    if expected:
        event("transitions")
    if any(s.state is DeadlineState.BLOCKED for s in full.values()):
        event("blocked")
    if any(s.state is DeadlineState.AT_RISK for s in full.values()):
        event("at_risk")
    if any(s.task is not None and s.state is not DeadlineState.MISSED for s in full.values()):
        event("a task deadline not missed")
    if any(s.cause is not None and s.cause.reason is CauseReason.NOT_STARTED for s in full.values()):
        event("at_risk because a root has not started")
    assert +counts == want
    assert update.min_slack == slack
    # The shell records some of the transitions (others lose their compare-and-swap and wait for the next pass).
    record_changes.clear()
    for i, change in enumerate(expected):
        if i % 3 != 2:
            at = (change.status.node, change.status.partition)
            recorded[at] = DeadlineRecord(state=change.status.state, deadline=change.status.deadline,
                                          sequence=change.sequence, changed_at=now)  # fmt: skip
            record_changes.add(at)


@settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(st.data())
def test_incremental_pass_equals_full_pass(data: st.DataObject) -> None:
    """After every step of random fact writes, clock jumps (small and across deadlines and warn points), paused and
    unreachable changes and relists, the cache's statuses, transitions, counts and least slack equal a full pass."""
    # Half the examples learn from the latest 4 successes instead of 20, so that random writes often cross the edge
    # of a DAG's learning window (``cache``'s **Learned durations from facts**) and not only add to a short history.
    # The window is learning's alone: the full pass and the cache's kept samples (``learning.Samples``) both read it.
    window = data.draw(st.sampled_from([4, LEARN_SAMPLES]))
    with patch.object(deadline_learning, "LEARN_SAMPLES", window):
        run_sequence(data)


def run_sequence(data: st.DataObject) -> None:
    graph = data.draw(graphs())
    now = P0 + timedelta(hours=data.draw(st.integers(0, 40)))
    view = View(KEYS)
    written: list[tuple[NodeId, datetime]] = []
    rev = 1
    for _ in range(data.draw(st.integers(0, 60))):
        k, value = data.draw(writes(graph, now, written))
        rev += 1
        view.apply(k, value, rev)
    paused: frozenset[NodeId] = frozenset()
    unreachable: frozenset[str] = frozenset()
    # The start sources: none known (window end), Airflow 3 (at the partition), or one instance of each.
    cache = DeadlineCache(graph, majors=data.draw(st.sampled_from([{}, {"default": 3}, {"default": 2, "b": 3}])))
    recorded: dict[tuple[NodeId, str], DeadlineRecord] = {}
    record_changes: set[tuple[NodeId, str]] = set()
    counts: Counter[tuple[str, str, str]] = Counter()
    update = cache.rebuild(view, now)
    check(cache, view, now, paused, unreachable, recorded, record_changes, counts, update)
    for _ in range(data.draw(st.integers(1, 12))):
        touched: set[tuple[NodeId, str]] = set()
        for _ in range(data.draw(st.integers(0, 4))):
            k, value = data.draw(writes(graph, now, written))
            rev += 1
            touched |= applied(view, k, value, rev)
        now += timedelta(minutes=data.draw(CLOCK))
        if data.draw(st.integers(0, 4)) == 0:
            paused = paused ^ {node(data.draw(st.sampled_from(NAMES)))}
        if data.draw(st.integers(0, 6)) == 0:
            unreachable = unreachable ^ {data.draw(st.sampled_from(["default", "b"]))}
        # A relist: the change set is unknown (None).
        changed = None if data.draw(st.integers(0, 15)) == 0 else touched
        update = cache.update(view, now, changed, paused=paused, unreachable=unreachable)
        check(cache, view, now, paused, unreachable, recorded, record_changes, counts, update)


@pytest.mark.parametrize("middle", [None, "running", "queued"])
def test_a_cause_that_changes_in_the_middle_of_a_chain_reaches_the_bottom(middle: str | None) -> None:
    """The walk below a changed fact stops only where what dependents read did not change: a root's failure that
    turns into a success (and back) clears (and restores) the cause of every status two hops below, through a
    middle DAG with no run, or a running or queued one (whose ETA is its own, but whose cause comes from above)."""
    rule = {"after_end": "30h", "warn": "30m"}
    dags: dict[str, Any] = {"n0": {"partitions": {"cron": GRIDS["daily"]}, "expected_by": rule}}
    dags["n1"] = {**dags["n0"], "upstreams": ["n0"]}
    dags["n2"] = {**dags["n0"], "upstreams": ["n1"]}
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}))
    root, partition, now = node("default/n0"), key(P0 - timedelta(days=1)), P0 + timedelta(hours=3)
    view = View(KEYS)
    view.apply(KEYS.run_key(root, partition), run_value("failed", P0, P0 + timedelta(minutes=10)), 2)
    if middle is not None:
        view.apply(KEYS.run_key(node("default/n1"), partition), run_value(middle, P0, None), 3)
    cache = DeadlineCache(graph)
    cache.rebuild(view, now)
    bottom = (node("default/n2"), partition)
    assert cache.statuses()[bottom].state is DeadlineState.BLOCKED
    for rev, state in enumerate(("success", "failed", "success"), start=4):
        changed = applied(view, KEYS.run_key(root, partition), run_value(state, P0, P0 + timedelta(minutes=20)), rev)
        now += timedelta(minutes=1)
        cache.update(view, now, changed)
        assert cache.statuses() == deadline_states(graph, view, now)
        assert (cache.statuses()[bottom].state is DeadlineState.BLOCKED) == (state == "failed")


def test_a_scheduled_run_waiting_for_its_permit_follows_its_upstreams_eta() -> None:
    """Semantics `permit-deadlines`: a scheduled dependent's running run that waits for its permit takes its ETA
    from its upstream, so a change of the upstream's ETA alone (it starts, with a long expected duration) reaches it in
    an incremental pass as in a full one: on time, then at risk."""
    rule = {"after_start": "20h", "warn": "30m"}
    dags: dict[str, Any] = {"n0": {"partitions": {"cron": GRIDS["daily"]}, "expected_by": {**rule, "duration": "30h"}}}
    dags["n1"] = {"partitions": {"cron": GRIDS["daily"]}, "upstreams": ["n0"], "runs": "scheduled", "expected_by": rule}
    graph = parse_spec(json.dumps({"version": 1, "dags": dags}))
    partition, now = key(P0), P0 + timedelta(minutes=5)
    view = View(KEYS)
    view.apply(KEYS.run_key(node("default/n1"), partition), run_value("running", P0, None), 2)  # it waits
    cache = DeadlineCache(graph)
    cache.rebuild(view, now)
    waiting = (node("default/n1"), partition)
    assert cache.statuses() == deadline_states(graph, view, now)
    changed = applied(view, KEYS.run_key(node("default/n0"), partition), run_value("running", now, None), 3)
    now += timedelta(minutes=1)
    cache.update(view, now, changed)
    assert cache.statuses() == deadline_states(graph, view, now)
    assert cache.statuses()[waiting].state is DeadlineState.AT_RISK


def test_on_time_stays_until_its_warn_point_and_not_a_moment_longer() -> None:
    """An on-time prediction (a running upstream, or a root waiting for its window end) stays on time up to
    ``deadline - warn - ahead`` with no new fact, and is at risk right after it: ETA minus now never grows."""
    deadline = P0 + timedelta(hours=10)
    warn = timedelta(minutes=30)
    for eta in (Eta(timedelta(hours=2), P0 + timedelta(hours=3)), Eta(timedelta(hours=1), None),
                Eta(timedelta(0), P0 + timedelta(hours=4))):  # fmt: skip
        judgement = Judgement(node("default/n0"), key(P0), deadline, warn, eta=eta)
        until = judgement.stays_until(P0)
        assert until is not None
        for minutes in range(0, int((until - P0).total_seconds() // 60) + 1, 7):
            assert judgement.state(P0 + timedelta(minutes=minutes)) is DeadlineState.ON_TIME
        assert judgement.state(until) is DeadlineState.ON_TIME
        assert judgement.state(until + timedelta(microseconds=1)) is not DeadlineState.ON_TIME
        # The brief's bound now + (slack - warn) is never later than the exact instant.
        status = judgement.status(P0)
        assert P0 + timedelta(seconds=status.slack) - warn <= until


def test_deadline_index_keeps_the_unalerted_records() -> None:
    """The deadline index keeps the not-yet-alerted records as they are put, marked alerted and deleted, so
    ``alert_pending`` does not read every record (the records that moved are the watch's changes':
    tests/test_informer.py)."""
    from coordinator.core.model import dump_record
    from coordinator.informer import DeadlineIndex

    tracker = DeadlineIndex(KEYS)
    at = (node("default/c"), key(P0))
    record = DeadlineRecord(state=DeadlineState.BLOCKED, deadline=P0, changed_at=P0)
    tracker.apply(KEYS.deadline_key(*at), dump_record(record), 5)
    assert tracker.unalerted == {at}
    tracker.apply(KEYS.deadline_key(*at), dump_record(record.model_copy(update={"alerted": True})), 6)
    assert tracker.unalerted == set()
    tracker.apply(KEYS.deadline_key(*at), None, 7)
    assert at not in tracker.records and tracker.unalerted == set()


def test_incremental_metric_counts_set_only_what_moved() -> None:
    """An incremental pass sets the counts that moved and removes a (dag, state) label that fell to zero; the
    others keep their value."""
    from coordinator.runtime.metrics import Metrics

    metrics = Metrics()
    metrics.deadline_pass([("default", "c", "on_time", 3), ("default", "d", "on_time", 2)], 10.0)
    metrics.deadline_counts([("default", "c", "on_time", 2), ("default", "c", "blocked", 1)], -5.0)
    metrics.deadline_counts([("default", "c", "blocked", 0), ("default", "x", "late", 0)], None)

    def value(dag: str, state: str) -> float | None:
        labels = {"instance": "default", "dag": dag, "state": state}
        return metrics.registry.get_sample_value("coordinator_deadline_partitions", labels)

    assert (value("c", "on_time"), value("d", "on_time"), value("c", "blocked")) == (2.0, 2.0, None)
    assert metrics.registry.get_sample_value("coordinator_deadline_min_slack_seconds") == -5.0
