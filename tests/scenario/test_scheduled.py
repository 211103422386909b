"""Scheduled dependents through a real watcher (semantics `scheduled-permit`): the fake Airflow's scheduler makes the
dependent's runs, which wait (a long run) until the test, acting as the wait task, sees the permit granted and marks
the run a success. The watcher never creates a run of the DAG; it grants, and a rerun clears Airflow's own run once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId, partition_datetime
from coordinator.core.permit import Permit, parse_permit, permit_key
from tests.scenario.conftest import QUIET_S, ROOT_DAG, TIMEOUT, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario

DOWN, BELOW = "02_pipeline", "03_pipeline"
#: The scheduled DAG's run never ends by itself here: it is the wait (the test marks it when the permit is granted).
WAITING_S = 3600.0
TTL = 1


def spec() -> dict[str, Any]:
    return {
        "version": 1,
        "dags": {DOWN: {"upstreams": ROOT_DAG, "runs": "scheduled"}, BELOW: {"upstreams": DOWN}},
    }


def quiet(stack: Stack) -> None:
    """Until no etcd write and no Airflow request for a quiet period (``Stack.settle`` also waits for every run to
    end, and the scheduled DAG's other runs wait for ever here)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        before = (stack.etcd.revision(), len(stack.fake.requests()))
        time.sleep(QUIET_S)
        if (stack.etcd.revision(), len(stack.fake.requests())) == before:
            return
        assert time.monotonic() < deadline, "still busy"


def permit(stack: Stack, partition: str) -> Permit | None:
    raw = stack.etcd.get(permit_key(stack.keys, NodeId(DEFAULT_INSTANCE, DOWN), partition))
    return None if raw is None else parse_permit(raw)


def granted(stack: Stack, partition: str, generation: int) -> Permit | None:
    found = permit(stack, partition)
    return found if found is not None and found.granted and found.generation == generation else None


def schedule(stack: Stack, partition: str) -> str:
    """Airflow's scheduler makes the DAG's run of ``partition`` on its timetable; it starts and waits."""
    run_id = f"scheduled__{partition}"
    stack.fake.create_run(DOWN, run_id, partition_datetime(partition))
    wait_for(lambda: (r := stack.run_record(DOWN, partition)) is not None and r["state"] == "running", "it to wait")
    return run_id


def the_wait_goes_on(stack: Stack, partition: str, run_id: str, generation: int) -> None:
    """The wait task: once the permit of this generation is granted, the run goes on (and succeeds)."""
    wait_for(lambda: granted(stack, partition, generation), f"permit {generation} of {partition}")
    stack.fake.mark(DOWN, run_id, "success")


@pytest.fixture
def scheduled_stack(stack: Stack) -> Stack:
    stack.set_deps(json.dumps(spec()))
    stack.fake.set_duration(DOWN, WAITING_S)
    return stack


def test_a_scheduled_dependent_waits_for_its_permit_and_a_rerun_cascades_once(scheduled_stack: Stack) -> None:
    """The run waits while its upstream has not run; the upstream's success grants the permit (no run created, no
    clear); another day keeps waiting; a clear of the upstream clears Airflow's run once and grants generation 2;
    the triggered DAG below runs once per generation."""
    stack = scheduled_stack
    p, other = new_partition(), new_partition()
    stack.start_watcher()
    run_id = schedule(stack, p)
    other_run = schedule(stack, other)
    quiet(stack)
    assert permit(stack, p) is None and permit(stack, other) is None

    stack.trigger_root(p)
    the_wait_goes_on(stack, p, run_id, 1)
    stack.wait_success(BELOW, p)
    quiet(stack)
    assert stack.fake.creates(DOWN) == 2 and stack.fake.clears(DOWN) == 0  # the two the scheduler made
    ledger = stack.ledger(DOWN, p)
    assert ledger is not None and ledger["action"] == "create" and ledger["status"] == "done"
    assert permit(stack, other) is None and stack.run_record(DOWN, other)["state"] == "running"  # type: ignore[index]
    assert [r.run_id for r in stack.fake.runs(DOWN)] == [run_id, other_run]

    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    the_wait_goes_on(stack, p, run_id, 2)
    stack.wait_success(BELOW, p, attempt=1)
    quiet(stack)
    assert stack.fake.clears(DOWN) == 1 and stack.fake.creates(DOWN) == 2
    assert stack.fake.creates(BELOW) == 1 and stack.fake.clears(BELOW) == 1
    assert [r.run_id for r in stack.fake.runs(DOWN)] == [run_id, other_run]


def test_a_crash_after_the_intent_grants_once_after_restart(scheduled_stack: Stack) -> None:
    """Dead right after the grant's intent (exit 86): the successor completes the same intent, one grant."""
    stack = scheduled_stack
    p = new_partition()
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-intent")
    run_id = schedule(stack, p)
    stack.trigger_root(p)
    wait_for(lambda: not first.alive, "the watcher to crash after the intent")
    before = stack.ledger(DOWN, p)
    assert before is not None and before["status"] == "pending"
    found = permit(stack, p)
    assert found is not None and not found.granted  # written in the intent's transaction
    second: WatcherProc = stack.start_watcher("second", ttl=TTL)
    the_wait_goes_on(stack, p, run_id, 1)
    stack.wait_success(BELOW, p)
    quiet(stack)
    after = stack.ledger(DOWN, p)
    assert after is not None and after["status"] == "done" and after["requested_at"] == before["requested_at"]
    assert not second.lines(rf"actuator\.intent node=\S*{DOWN} ")
    assert len(second.lines(rf"actuator\.permit_granted node=\S*{DOWN} ")) == 1
    assert stack.fake.creates(DOWN) == 1 and stack.fake.clears(DOWN) == 0


def test_a_hold_keeps_the_permit_back_and_its_release_grants_it_once(scheduled_stack: Stack) -> None:
    """A hold on the scheduled DAG for P keeps its permit back while the upstream succeeds (its run keeps waiting);
    release-hold grants it once; `status` says "waiting in Airflow" meanwhile."""
    stack = scheduled_stack
    p = new_partition()
    stack.start_watcher()
    run_id = schedule(stack, p)
    held = stack.cli("hold", DOWN, "--from", p, "--to", p, "--reason", "check the inputs", "--by", "alice").stdout
    hold = held.splitlines()[0].split()[1].rstrip(":")
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    quiet(stack)
    assert permit(stack, p) is None and stack.ledger(DOWN, p) is None
    row = next(r for r in stack.status_json(p)["rows"] if r["dag"] == DOWN)
    assert (row["status"], row["held_by"]) == ("held", hold), row
    released = stack.command("release-hold", hold, "--reason", "fine", "--by", "alice", "--etcd", stack.endpoint,
                             "--prefix", stack.prefix)  # fmt: skip
    assert released.returncode == 0, released.stdout + released.stderr
    the_wait_goes_on(stack, p, run_id, 1)
    stack.wait_success(BELOW, p)
    quiet(stack)
    assert stack.fake.creates(DOWN) == 1 and stack.fake.clears(DOWN) == 0
