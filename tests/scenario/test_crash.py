"""kill -9 of the watcher at random points of cascades, over and over: zero lost, zero duplicated triggers.

Each kill picks one of three moments: a random delay (0-400 ms), right after the watcher recorded an intent (before
its Airflow call), or right after Airflow applied the call while its answer is held back (a lost response: the
effect happened, the ledger still says pending). A fresh watcher is started after every kill; it must wait out the
killed one's lease (1 s) before acting. The seed is printed; replay with ``SCENARIO_SEED=<n>``.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter

import pytest

from tests.scenario.conftest import DOWNSTREAM, JOIN, LAST, ROOT_DAG, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario

#: 1 s, the shortest lease: a restarted watcher waits out its killed predecessor's lease before it may act.
TTL = 1
_ACT = re.compile(r"node=(\S+ partition=\S+)")


class Chaos:
    """Kills the current watcher at a chosen moment and starts its successor; counts what it did."""

    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.modes: Counter[str] = Counter()
        self.watcher = stack.start_watcher("k0", ttl=TTL)

    @property
    def kills(self) -> int:
        return sum(self.modes.values())

    def strike(self, partition: str, attempt: int, endpoint: str) -> None:
        """1-2 kills while ``partition``'s cascade (runs at ``attempt``, calls to ``endpoint``) is in progress."""
        for _ in range(self.rng.randint(1, 2)):
            mode = self.rng.choice(("random", "after_intent", "lost_response"))
            if mode == "random":
                time.sleep(self.rng.uniform(0.0, 0.4))
            elif mode == "after_intent":
                self._wait_next_intent(partition, attempt)
                time.sleep(self.rng.uniform(0.0, 0.05))
            else:
                self.stack.fake.delay_next(1, 0.4, endpoint=endpoint, after=True)
                self._wait_effect_unconfirmed(partition, attempt)
            self.watcher.kill9()
            self.modes[mode] += 1
            self.watcher = self.stack.start_watcher(f"k{self.kills}", ttl=TTL)

    def _done(self, partition: str, attempt: int) -> bool:
        return self.stack.succeeded(LAST, partition, attempt) or not self.watcher.alive

    def _wait_next_intent(self, partition: str, attempt: int) -> None:
        seen = len(self.watcher.lines(r"actuator\.intent"))
        wait_for(
            lambda: len(self.watcher.lines(r"actuator\.intent")) > seen or self._done(partition, attempt),
            "the next intent",
        )

    def _wait_effect_unconfirmed(self, partition: str, attempt: int) -> None:
        def unconfirmed() -> bool:
            for dag in DOWNSTREAM:
                runs = self.stack.fake_runs(dag, partition)
                ledger = self.stack.ledger(dag, partition)
                if runs and runs[0].clear_number >= attempt and ledger and ledger["status"] == "pending":
                    return True
            return self._done(partition, attempt)

        wait_for(unconfirmed, "an Airflow call applied but not confirmed", interval=0.005)


def completed_for_predecessor(watcher: WatcherProc) -> int:
    """Airflow calls this watcher completed for intents it did not record itself (left by a killed predecessor)."""
    mine = {m.group(1) for m in map(_ACT.search, watcher.lines(r"actuator\.intent")) if m}
    done = {m.group(1) for m in map(_ACT.search, watcher.lines(r"actuator\.(created|cleared)")) if m}
    return len(done - mine)


def summary(stack: Stack, chaos: Chaos, seed: int) -> str:
    inherited = sum(completed_for_predecessor(w) for w in stack.watchers)
    already = sum(len(w.lines(r"result=already_exists|actuator\.already_cleared")) for w in stack.watchers)
    return (
        f"{chaos.kills} kills {dict(chaos.modes)} (seed {seed}): {inherited} intents completed by a successor, "
        f"{already} Airflow calls found already applied"
    )


def seeded() -> tuple[int, random.Random]:
    seed = int(os.environ.get("SCENARIO_SEED") or random.randrange(2**32))
    print(f"SCENARIO_SEED={seed}")
    return seed, random.Random(seed)


def test_kill9_during_cascades_loses_and_repeats_nothing(stack: Stack) -> None:
    """10 cascades with 1-2 SIGKILLs each all complete, every DAG created once per partition and never cleared."""
    seed, rng = seeded()
    stack.fake.run_duration_s = 0.03
    chaos = Chaos(stack, rng)
    partitions = [new_partition() for _ in range(10)]
    for p in partitions:
        stack.trigger_root(p)
        chaos.strike(p, 0, "trigger")
        stack.wait_success(LAST, p)
    stack.settle()
    print(summary(stack, chaos, seed))

    assert chaos.watcher.alive
    for p in partitions:
        assert stack.succeeded(ROOT_DAG, p)
        stack.assert_once(p)
        stack.assert_order(p)
    for dag in DOWNSTREAM:
        assert stack.fake.creates(dag) == len(partitions), dag
        assert stack.fake.clears(dag) == 0, dag


def test_kill9_during_clear_cascades_clears_each_dag_once(stack: Stack) -> None:
    """Reruns after a root clear, with 1-2 SIGKILLs each, clear every dependent exactly once (never twice)."""
    seed, rng = seeded()
    stack.fake.run_duration_s = 0.03
    partitions = [new_partition() for _ in range(5)]
    stack.start_watcher("setup")
    for p in partitions:
        stack.trigger_root(p)
    for p in partitions:
        stack.wait_success(LAST, p)
    stack.settle()
    stack.watchers[0].stop()

    chaos = Chaos(stack, rng)
    for p in partitions:
        stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
        chaos.strike(p, 1, "clear")
        stack.wait_success(LAST, p, attempt=1)
    stack.settle()
    print(summary(stack, chaos, seed))

    assert chaos.watcher.alive
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
