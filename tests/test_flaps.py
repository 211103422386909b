"""Semantics `flap-held`: a run state whose success comes back to a run's attempt it had recorded, after another run's,
is held as an upstream. The detector's example table (``core/flaps.py``), the planner waiting on a record and starting
each dependent once at its release (through the real intent protocol, tests/support/world.py), the view's reading of
the records, the leader's flap gate (``watcher/flap_gate.py``) and doctor's check."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.actions import Plan, Resume, Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.flaps import FlapRecord, Seen, flap_record, observe, release_command
from coordinator.core.model import KeyLayout, RunRecord, RunState, TriggerAction, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.diagnosis.model import CheckStatus
from coordinator.diagnosis.state_checks import flaps_check
from coordinator.etcd import KV, CasResult, DeleteResult, EtcdStore
from coordinator.page.service import dependencies_page
from coordinator.runtime.health import watcher_state
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.watcher.flap_gate import FlapGate
from tests.support.world import P1, P2, SEVEN, World, n

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1)
PIPES = [f"0{i}_pipeline" for i in range(2, 8)]


def run(seq: str) -> list[tuple[str, int, int]]:
    """``"A0 B0 A0"`` -> (run, attempt, minute) per success, a minute apart."""
    return [(word[0], int(word[1:]), minute) for minute, word in enumerate(seq.split())]


@pytest.mark.parametrize(
    ("seq", "flap_at", "runs"),
    [
        ("A0 B0 A0", 2, ("A", "B")),  # the audit's alternation of the issue: the same attempts, again and again
        ("A0 B0 B0 A0", 3, ("A", "B")),  # B rewritten, then A back
        ("A1 B0 A0", 2, ("A", "B")),  # an older attempt of A comes back over B
        ("A0 M0 A1 M0", 3, ("M", "A")),  # the mark comes back after the clear of A: rewritten by someone
        ("A0 B0 C0 A0", 3, ("A", "B", "C")),
        ("A0 A1 A2", None, ()),  # clears of one run: each a new attempt
        ("A0 B0 A1", None, ()),  # a mark, then a clear of A (a new attempt): explained
        ("A0 A0", None, ()),  # a rewrite of the same attempt with no other run between: not an alternation
        ("A0 B0 C0 D0", None, ()),  # new runs only (deleted and made again): each a real new run
    ],
)
def test_observe_finds_a_b_a_and_nothing_an_airflow_action_explains(
    seq: str, flap_at: int | None, runs: tuple[str, ...]
) -> None:
    """**A, B, A**: a flap exactly when a run's attempt already recorded comes back after another run's success."""
    history: tuple[Seen, ...] = ()
    found_at, found = None, None
    for i, (run_id, attempt, minute) in enumerate(run(seq)):
        at = T0 + timedelta(minutes=minute)
        history, flap = observe(history, Seen(run_id, attempt, 100 + i, at), at, WINDOW)
        if flap is not None and found_at is None:
            found_at, found = i, flap
    assert found_at == flap_at
    if found is not None:
        assert flap_record(found, T0, "w1", WINDOW).run_ids == runs


def test_observe_forgets_what_is_older_than_the_window_and_before_a_release() -> None:
    """**The window** and **From the release**: A, B an hour and more before A again, or at or before the released
    record's revision, make no flap; the same generation seen twice counts once."""
    late = T0 + WINDOW + timedelta(minutes=2)
    history, _ = observe((), Seen("A", 0, 10, T0), T0, WINDOW)
    history, _ = observe(history, Seen("B", 0, 11, T0 + timedelta(minutes=1)), T0, WINDOW)
    assert observe(history, Seen("A", 0, 12, late), late, WINDOW)[1] is None
    assert observe(history, Seen("A", 0, 12, T0), T0, WINDOW, since_rev=11)[1] is None
    assert observe(history, Seen("B", 0, 11, T0), T0, WINDOW)[1] is None  # a relist brings the same generation
    assert observe(history, Seen("A", 0, 12, T0), T0, WINDOW)[1] is not None  # the control


def flapped(world: World, partition: str = P1) -> int:
    """The leader's record of 01's flap (A, B) in ``partition``, as the flap gate writes it; its revision."""
    record = FlapRecord(run_ids=("A", "B"), generations=(1, 2, 3), detected_at=T0, by="w1", window_s=3600)
    return world.write(world.keys.flap_key(n("01_pipeline"), partition), dump_record(record))


def released(world: World, partition: str = P1) -> int:
    record = FlapRecord(run_ids=("A", "B"), generations=(1, 2, 3), detected_at=T0, by="w1", released_at=T0,
                        released_by="alice")  # fmt: skip
    return world.write(world.keys.flap_key(n("01_pipeline"), partition), dump_record(record))


def test_a_standing_flap_holds_every_dependent_with_the_runs_and_the_release_command() -> None:
    """While 01's record stands, two more successes of 01 (A, then B again) trigger and clear nothing; 02's verdict
    waits naming the runs and the complete release command; the release reruns 02..07 once each, then nothing."""
    world = World(SEVEN)
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, "A")
    world.settle()
    world.state("01_pipeline", P1, RunState.SUCCESS, "B")
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}
    flapped(world)
    world.state("01_pipeline", P1, RunState.SUCCESS, "A")
    world.settle()
    world.state("01_pipeline", P1, RunState.SUCCESS, "B")
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 2)}
    plan = world.plan()
    assert plan.actions == ()
    verdict = plan.verdicts[(n("02_pipeline"), P1)]
    assert "02_pipeline waits: 01_pipeline for 2026-01-01T00:00:00Z is held" in verdict.summary
    assert "runs A, B" in verdict.summary
    assert f"`{release_command(n('01_pipeline'), P1)}`" in verdict.summary
    assert release_command(n("01_pipeline"), P1) == (
        "coordinator release-flap default/01_pipeline -p 2026-01-01T00:00:00Z --reason 'fixed'"
    )
    released(world)
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 3)}
    assert world.plan().actions == ()


def test_a_flap_holds_only_its_partition_and_not_the_flapping_dag_itself() -> None:
    """A record for P2 holds nothing in P1, and a DAG without the flapping one upstream decides as before."""
    world = World(SEVEN)
    world.adopt()
    flapped(world, P2)
    world.state("01_pipeline", P1, RunState.SUCCESS, "A")
    world.settle()
    assert world.counts() == {"01_pipeline": 0, **dict.fromkeys(PIPES, 1)}
    world.state("01_pipeline", P2, RunState.SUCCESS, "A")
    world.settle()
    assert world.counts(P2) == {"01_pipeline": 0, **dict.fromkeys(PIPES, 0)}


def test_the_view_reads_flap_records_and_reports_bad_ones() -> None:
    """A record is a fact of its DAG and partition; a deleted one is gone; a malformed key or an unparsable value is
    a problem and holds nothing."""
    world = World(SEVEN)
    rev = flapped(world)
    assert [(node, p, flap.rev) for node, p, flap in world.view.standing_flaps()] == [(n("01_pipeline"), P1, rev)]
    released(world)
    assert world.view.standing_flaps() == [] and (n("01_pipeline"), P1) in world.view.flaps
    world.write(world.keys.flap_key(n("01_pipeline"), P1), None)
    assert world.view.flaps == {}
    bad = world.keys.flap_key(n("01_pipeline"), P2)
    world.write(bad, b'{"run_ids": []}')
    assert world.view.flaps == {} and "unparsable flap record" in world.view.problems[bad]
    world.write(world.keys.flaps + "default/01_pipeline", b"{}")
    assert "malformed flap key" in world.view.problems[world.keys.flaps + "default/01_pipeline"]


def test_doctor_fails_while_a_flap_stands_and_the_gauge_counts_it() -> None:
    """doctor's `flapping run states` check fails naming the DAG, the partition, the runs and the release command;
    released, it passes; the state gauge counts standing records."""
    world = World(SEVEN)
    assert flaps_check(world.view, None).status is CheckStatus.OK
    flapped(world)
    check = flaps_check(world.view, None)
    assert check.status is CheckStatus.FAIL
    assert "01_pipeline 2026-01-01T00:00:00Z: its run state alternated between runs A, B" in check.details[0]
    assert check.fix is not None and release_command(n("01_pipeline"), P1) in check.fix
    assert flaps_check(world.view, "other").status is CheckStatus.OK  # doctor --instance other
    state = watcher_state(world.view, leading=True, in_flight=0, graph=SEVEN, graph_invalid=False)
    assert state.flaps_held == 1
    released(world)
    assert flaps_check(world.view, None).status is CheckStatus.OK
    assert watcher_state(world.view, leading=True, in_flight=0, graph=SEVEN, graph_invalid=False).flaps_held == 0


@dataclass
class Store:
    """The executor's fenced writer as the gate sees it: compare-and-swap writes, recorded."""

    world: World
    writes: list[tuple[str, int]] = field(default_factory=list)
    refuse: bool = False

    async def get(self, key: str) -> KV | None:  # pragma: no cover - the gate never reads
        raise AssertionError("the gate writes from its view")

    async def cas(self, key: str, value: bytes, expected_mod_revision: int) -> CasResult:
        self.writes.append((key, expected_mod_revision))
        if self.refuse:
            return CasResult(False, self.world.rev, None)
        return CasResult(True, self.world.write(key, value), None)

    async def delete_unchanged(self, items: object) -> DeleteResult:  # pragma: no cover
        raise AssertionError("the gate deletes nothing")


def trigger(dag: str, partition: str = P1) -> Trigger:
    return Trigger(n(dag), partition, {"default/01_pipeline": 9}, TriggerAction.CLEAR, "r", "why", 9, 0, 1)


def test_the_gate_holds_at_once_records_once_and_hands_over_to_the_planner() -> None:
    """A, B, A seen by the leader: the same pass keeps back the triggers of 01's dependents in P1 (not a resume, not
    P2), writes the record create-only once, and once the view shows it the planner holds instead."""
    world = World(SEVEN)
    store = Store(world)
    gate = FlapGate(world.view, store, world.keys, "w1", WINDOW)
    for minute, run_id in enumerate(("A", "B", "A")):
        world.state("01_pipeline", P1, RunState.SUCCESS, run_id)
        gate.observe(SEVEN, {P1: {n("01_pipeline")}}, T0 + timedelta(minutes=minute))
    assert list(gate.pending) == [(n("01_pipeline"), P1)]
    store.refuse = True  # the write fails: held in memory all the same, written at the next pass
    resume = Resume(n("03_pipeline"), P1, None, "complete")  # type: ignore[arg-type]
    plan = Plan(1, (trigger("02_pipeline"), resume, trigger("02_pipeline", P2)))
    kept = asyncio.run(gate.admit(SEVEN, plan, T0))
    assert kept.actions == (resume, trigger("02_pipeline", P2))
    store.refuse = False
    asyncio.run(gate.admit(SEVEN, Plan(1, ()), T0))
    key = world.keys.flap_key(n("01_pipeline"), P1)
    assert store.writes == [(key, 0), (key, 0)]
    flap = world.view.flaps[(n("01_pipeline"), P1)]
    assert flap.record.run_ids == ("A", "B") and flap.record.by == "w1"
    assert asyncio.run(gate.admit(SEVEN, plan, T0)).actions == plan.actions  # the planner holds from here
    assert gate.pending == {} and len(store.writes) == 2


def test_after_a_release_the_gate_counts_only_what_came_after_it() -> None:
    """**From the release**: the successes before the release make no flap; A, B, A after it does, and the record is
    written over the released one at the revision the view holds."""
    world = World(SEVEN)
    store = Store(world)
    gate = FlapGate(world.view, store, world.keys, "w1", WINDOW)
    for run_id in ("A", "B"):
        world.state("01_pipeline", P1, RunState.SUCCESS, run_id)
        gate.observe(SEVEN, {P1: {n("01_pipeline")}}, T0)
    rev = released(world)
    for run_id in ("A", "B"):
        world.state("01_pipeline", P1, RunState.SUCCESS, run_id)
        gate.observe(SEVEN, {P1: {n("01_pipeline")}}, T0)
    assert gate.pending == {}
    world.state("01_pipeline", P1, RunState.SUCCESS, "A")
    gate.observe(SEVEN, {P1: {n("01_pipeline")}}, T0)
    asyncio.run(gate.admit(SEVEN, Plan(1, ()), T0))
    assert store.writes == [(world.keys.flap_key(n("01_pipeline"), P1), rev)]
    assert world.view.flaps[(n("01_pipeline"), P1)].record.standing


def test_the_guides_release_command_is_the_one_doctor_and_why_print() -> None:
    """The release command docs/howto/incidents.md and docs/semantics.md show is what ``release_command`` prints for
    their example (the scenario runs that command as printed)."""
    docs = Path(__file__).resolve().parents[1] / "docs"
    guide = (docs / "howto" / "incidents.md").read_text(encoding="utf-8")
    assert f"`{release_command(n('default/orders_asset_consumer'), '2026-11-27T00:00:00Z')}`" in guide
    semantics = (docs / "semantics.md").read_text(encoding="utf-8")
    assert f"`{release_command(n('default/01_pipeline'), '2026-11-27T00:00:00Z')}`" in semantics


def test_the_dependencies_page_reads_the_record_and_draws_what_status_says(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """Against a real etcd, the page's per-partition read takes the flap record of an upstream: g, stale after r's
    second success, is drawn due without it and not due while r's record stands."""
    keys = KeyLayout(etcd_prefix)
    graph = parse_spec(json.dumps({"version": 1, "dags": {"r": {}, "g": {"upstreams": ["r"]}}}), "flap.json")
    activation = adopt(graph.shapes, graph.digest, None, 1, sources=graph.dags)
    assert activation is not None

    async def write(*items: tuple[str, bytes]) -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key, value in items:
                await store.put(key, value)

    success = RunState.SUCCESS
    arun(write((keys.config_key("graph"), dump_activation(activation)),
               (keys.run_key(n("r"), P1), dump_record(RunRecord(state=success, run_id="A"))),
               (keys.run_key(n("g"), P1), dump_record(RunRecord(state=success, run_id="g1"))),
               (keys.run_key(n("r"), P1), dump_record(RunRecord(state=success, run_id="B")))))  # fmt: skip
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")

    def drawn() -> str:
        answer = asyncio.run(asyncio.wait_for(dependencies_page(P1, None, instance="default", settings=settings), 30))
        assert answer.status == 200
        return dict(re.findall(r'data-dag="default/([^"]+)" data-state="([^"]+)"', answer.html))["g"]

    assert drawn() == "due"
    record = FlapRecord(run_ids=("A", "B"), generations=(2, 4), detected_at=T0, by="w1")
    arun(write((keys.flap_key(n("r"), P1), dump_record(record))))
    assert drawn() != "due"
