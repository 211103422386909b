"""Watchers killed at chosen points of cascades, over and over: zero lost, zero duplicated triggers.

Each cascade starts with one kill at a protocol point, dealt from a shuffled deck so that every point is hit:
- ``after-intent`` and ``after-airflow-call``: a watcher armed with that crash point (``crash_at``) dies
  there by itself, exactly (exit status 86): an intent recorded with no Airflow call yet; an Airflow call applied
  and answered but not confirmed.
- ``lost-response``: SIGKILL while Airflow has applied a call and holds its answer back.
- ``random``: SIGKILL 0-400 ms into the cascade.
For the two kills after an applied call, the DAGs being triggered are paused meanwhile (their runs stay queued and
report no state), so the successor can only learn from Airflow itself that the call already happened. Half of the
cascades get a second SIGKILL (``random``) of the successor. At every death the test records where the
protocol stood (the ledger's unfinished intents and whether Airflow already applied each) and checks it matches the
point aimed at; at the end, that every kill happened as planned and each unfinished intent was completed, not decided
again, with exact counts from the fake Airflow. The seed is printed; replay with ``SCENARIO_SEED=<n>``.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from coordinator.watcher.faults import CRASH_EXIT_CODE
from tests.scenario.conftest import (
    DOWNSTREAM,
    FAN_IN,
    JOIN,
    LAST,
    ROOT_DAG,
    Stack,
    WatcherProc,
    new_partition,
    wait_for,
)

pytestmark = pytest.mark.scenario

#: 1 s, the shortest lease: a restarted watcher waits out its killed predecessor's lease before it may act.
TTL = 1
#: How long the fake holds an applied call's answer for a ``lost-response`` kill: ample time to see it and kill.
HOLD_S = 1.5
#: The final quiet window: longer than every retry interval of a watcher in this harness (the 1 s error retry,
#: COORDINATOR_ERROR_RETRY_S; at most 1.6 s between Airflow attempts, the actuator's exponential backoff from 0.2 s
#: before its 5th try; the reconcile loop's 2 s idle wake-up), so a retry still due would show up as activity.
QUIET_S = 2.5
CRASH_POINTS = ("after-intent", "after-airflow-call")
#: Kills after Airflow applied a call: the successor must read the effect back (the target DAGs are paused).
APPLIED_KILLS = ("after-airflow-call", "lost-response")
FIRST_KILLS = (*CRASH_POINTS, "lost-response", "random")


@dataclass(frozen=True)
class Kill:
    """One watcher death and where the trigger protocol stood at that moment (read after the death)."""

    mode: str
    watcher: WatcherProc
    partition: str
    unfinished: Mapping[str, dict[str, Any]]  # DAG -> its ledger record, for intents not done at the death
    applied: frozenset[str]  # the DAGs among those whose Airflow call had already taken effect

    def describe(self) -> str:
        return (f"{self.mode} of {self.watcher.name} (exit {self.watcher.proc.returncode}): "
                f"unfinished {sorted(self.unfinished)}, applied {sorted(self.applied)}")  # fmt: skip


class Chaos:
    """Kills the current watcher at chosen points, starts its successor, and records every death."""

    def __init__(self, stack: Stack, rng: random.Random, attempt: int, endpoint: str) -> None:
        self.stack = stack
        self.rng = rng
        self.attempt = attempt  # the attempt (clear number) the cascades under attack create
        self.endpoint = endpoint  # the Airflow endpoint of their calls: trigger or clear
        self.planned: Counter[str] = Counter()
        self.kills: list[Kill] = []
        self.watcher = stack.start_watcher("k0", ttl=TTL)

    def deck(self, n: int) -> list[str]:
        """``n`` first-kill points, each of FIRST_KILLS about equally often, in random order."""
        cards = [FIRST_KILLS[i % len(FIRST_KILLS)] for i in range(n)]
        self.rng.shuffle(cards)
        return cards

    def strike(self, partition: str, start: Callable[[], object], first: str) -> None:
        """Start ``partition``'s cascade with ``start``, kill at ``first``, maybe once more at random."""
        self.planned[first] += 1
        held = first in APPLIED_KILLS
        for dag in FAN_IN if held else ():
            self.stack.fake.set_paused(dag, True)
        if first in CRASH_POINTS:
            self.watcher.stop()  # a clean stop (it resigns): not a kill; its successor is armed
            self.watcher = self.stack.start_watcher(self._name(), ttl=TTL, crash_at=first)
        elif first == "lost-response":
            self.stack.fake.delay_next(1, HOLD_S, endpoint=self.endpoint, after=True)
        start()
        if first in CRASH_POINTS:
            wait_for(lambda: not self.watcher.alive, f"{self.watcher.name} to crash at {first}")
        elif first == "lost-response":
            wait_for(lambda: self._progress(partition)[1], "an applied call whose answer is held", interval=0.005)
            self.watcher.kill9()
        else:
            time.sleep(self.rng.uniform(0.0, 0.4))
            self.watcher.kill9()
        kill = self._died(first, partition)
        if held:
            wait_for(lambda: not set(self._progress(partition)[0]) & set(kill.unfinished), "the successor's confirms")
            for dag in FAN_IN:
                self.stack.fake.set_paused(dag, False)
        if self.rng.random() < 0.5:
            self.planned["random"] += 1
            time.sleep(self.rng.uniform(0.0, 0.4))
            self.watcher.kill9()
            self._died("random", partition)

    def _name(self) -> str:
        return f"k{len(self.stack.watchers)}"

    def _progress(self, partition: str) -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
        """The unfinished intents of ``partition`` and which of them Airflow already applied."""
        unfinished = {}
        for dag in DOWNSTREAM:
            record = self.stack.ledger(dag, partition)
            if record is not None and record["status"] != "done":
                unfinished[dag] = record
        applied = {
            dag
            for dag in unfinished
            if any(run.clear_number >= self.attempt for run in self.stack.fake_runs(dag, partition))
        }
        return unfinished, frozenset(applied)

    def _died(self, mode: str, partition: str) -> Kill:
        dead = self.watcher
        assert not dead.alive
        self.stack.wait_answered()  # its last requests may still be applied by the fake
        unfinished, applied = self._progress(partition)
        kill = Kill(mode, dead, partition, unfinished, applied)
        self.kills.append(kill)
        check_kill(self.stack, kill)
        self.watcher = self.stack.start_watcher(self._name(), ttl=TTL)
        return kill

    def report(self, seed: int) -> str:
        return f"{len(self.kills)} kills (seed {seed}):\n" + "\n".join(k.describe() for k in self.kills)


def check_kill(stack: Stack, kill: Kill) -> None:
    """The death happened the way it was meant to, at the protocol point it aimed at."""
    code = kill.watcher.proc.returncode
    if kill.mode in CRASH_POINTS:
        assert code == CRASH_EXIT_CODE, f"{kill.describe()}:\n{kill.watcher.tail()}"
        assert kill.watcher.lines(rf"fault\.crash point={kill.mode} hit=1 "), kill.describe()
    else:
        assert code == -9, f"{kill.describe()}: it was not alive to be killed:\n{kill.watcher.tail()}"
    if kill.mode == "after-intent":
        assert kill.unfinished and not kill.applied, kill.describe()
        assert not [r for r in stack.fake.requests() if r.client == kill.watcher.name], "it called Airflow"
    elif kill.mode in ("after-airflow-call", "lost-response"):
        assert kill.applied, kill.describe()


def check_completed(stack: Stack, kills: list[Kill]) -> None:
    """Every intent a death left unfinished is done now, and it is the same intent (decided once, completed later)."""
    for kill in kills:
        for dag, before in kill.unfinished.items():
            after = stack.ledger(dag, kill.partition)
            assert after is not None and after["status"] == "done", (kill.describe(), dag, after)
            assert after["requested_at"] == before["requested_at"], (kill.describe(), dag, "decided again")


def seeded() -> tuple[int, random.Random]:
    seed = int(os.environ.get("SCENARIO_SEED") or random.randrange(2**32))
    print(f"SCENARIO_SEED={seed}")
    return seed, random.Random(seed)


def test_kills_during_cascades_lose_and_repeat_nothing(stack: Stack) -> None:
    """8 cascades with 1-2 kills each at chosen protocol points all complete, every DAG created once, never cleared.
    Slow by design: every kill starts a successor that waits out the dead leader's 1 s lease, 8-16 times."""
    seed, rng = seeded()
    stack.fake.run_duration_s = 0.03
    chaos = Chaos(stack, rng, attempt=0, endpoint="trigger")
    partitions = [new_partition() for _ in range(8)]
    for p, first in zip(partitions, chaos.deck(len(partitions)), strict=True):
        chaos.strike(p, lambda p=p: stack.trigger_root(p), first)  # type: ignore[misc]
        stack.wait_success(LAST, p)
    for p in partitions:
        stack.wait_confirmed(p)
    stack.settle(quiet=QUIET_S)
    print(chaos.report(seed))

    assert Counter(k.mode for k in chaos.kills) == chaos.planned
    assert {k.mode for k in chaos.kills} >= set(FIRST_KILLS)
    assert chaos.watcher.alive
    check_completed(stack, chaos.kills)
    for p in partitions:
        assert stack.succeeded(ROOT_DAG, p)
        stack.assert_once(p)
        stack.assert_order(p)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == len(partitions), dag
        assert stack.fake.clears(dag) == 0, dag


def test_kills_during_clear_cascades_clear_each_dag_once(stack: Stack) -> None:
    """Reruns after a root clear, with 1-2 kills each at chosen protocol points, clear every dependent exactly once.
    Slow by design: every kill starts a successor that waits out the dead leader's 1 s lease."""
    seed, rng = seeded()
    stack.fake.run_duration_s = 0.03
    partitions = [new_partition() for _ in range(4)]
    setup = stack.start_watcher("setup")
    for p in partitions:
        stack.trigger_root(p)
    for p in partitions:
        stack.wait_success(LAST, p)
        stack.wait_confirmed(p)
    stack.settle()
    setup.stop()

    chaos = Chaos(stack, rng, attempt=1, endpoint="clear")
    for p, first in zip(partitions, chaos.deck(len(partitions)), strict=True):
        chaos.strike(p, lambda p=p: stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}"), first)  # type: ignore[misc]
        stack.wait_success(LAST, p, attempt=1)
    for p in partitions:
        stack.wait_confirmed(p)
    stack.settle(quiet=QUIET_S)
    print(chaos.report(seed))

    assert Counter(k.mode for k in chaos.kills) == chaos.planned
    assert {k.mode for k in chaos.kills} >= set(FIRST_KILLS)
    assert chaos.watcher.alive
    check_completed(stack, chaos.kills)
    for p in partitions:
        stack.assert_once(p, clears=1)
        stack.assert_order(p, attempt=1)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == len(partitions), dag
        assert stack.fake.clears(dag) == len(partitions), dag


def test_intent_confirmed_after_a_crash_between_airflow_call_and_confirmation(stack: Stack) -> None:
    """A trigger whose Airflow call happened just before the watcher was killed ends 'done' in the ledger."""
    p = new_partition()
    first = stack.start_watcher("a", ttl=TTL)
    stack.fake.delay_next(1, 5.0, endpoint="trigger", dag_id="06_pipeline", after=True)  # applied, answer held
    stack.trigger_root(p)
    wait_for(lambda: stack.fake_runs("06_pipeline", p), "06 created")
    first.kill9()
    stack.start_watcher("b", ttl=TTL)
    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    row = next(r for r in stack.status_json(p)["rows"] if r["dag"] == "06_pipeline")
    assert row["last_trigger"]["status"] == "done", row


@pytest.mark.parametrize("action", ["create", "clear"])
def test_successor_completes_an_applied_but_unconfirmed_call_without_repeating_it(stack: Stack, action: str) -> None:
    """After a kill between an applied create/clear and its confirmation, the successor confirms it, never redoes it."""
    p = new_partition()
    first = stack.start_watcher("a", ttl=TTL)
    attempt = 0 if action == "create" else 1
    if action == "clear":
        stack.trigger_root(p)
        stack.wait_success(LAST, p)
        stack.settle()
    # Paused: the applied run stays queued, so only Airflow's own record can tell the call already happened.
    stack.fake.set_paused(JOIN, True)
    stack.fake.delay_next(1, 5.0, endpoint="trigger" if action == "create" else "clear", dag_id=JOIN, after=True)
    if action == "clear":
        stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    else:
        stack.trigger_root(p)
    wait_for(lambda: [r for r in stack.fake_runs(JOIN, p) if r.clear_number == attempt], f"{JOIN}'s {action} applied")
    assert (stack.ledger(JOIN, p) or {}).get("status") == "pending"
    first.kill9()

    second = stack.start_watcher("b", ttl=TTL)
    wait_for(lambda: (stack.ledger(JOIN, p) or {}).get("status") == "done", f"{JOIN}'s {action} confirmed")
    stack.fake.set_paused(JOIN, False)
    stack.wait_success(LAST, p, attempt)
    stack.settle()
    stack.assert_once(p, clears=attempt)
    assert second.lines(r"result=already_exists" if action == "create" else r"actuator\.already_cleared")
