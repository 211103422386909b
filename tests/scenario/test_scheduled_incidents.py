"""Scheduled dependents under the incident controls, through a real watcher, a real etcd and the fake Airflow
(semantics `scheduled-permit`, `permit-retracted`): ``plan rerun`` lists the scheduled run a rerun clears and the
rerun clears exactly that, once; ``rerun --no-cascade`` leaves it; ``retract`` of the upstream's success withdraws a
permit whose run has not started, and the fix grants it once; a deadline on a scheduled DAG whose run waits is
predicted from its upstreams as for a triggered DAG. Every cascade is followed by audit rounds that move nothing.

The set-up is ``test_scheduled``'s: 01 (root) -> 02 (``"runs": "scheduled"``, its run waits until the test, acting as
the wait task, sees the permit) -> 03 (triggered)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId
from tests.scenario.conftest import ROOT_DAG, Stack, WatcherProc, new_partition, wait_for
from tests.scenario.test_holds import hold_id, ops
from tests.scenario.test_scheduled import BELOW, DOWN, WAITING_S, granted, permit, quiet, schedule, spec
from tests.scenario.test_scheduled import the_wait_goes_on as goes_on

pytestmark = pytest.mark.scenario

DAGS = (ROOT_DAG, DOWN, BELOW)
#: The leader's REST audit every second: "nothing moves afterwards" is judged over several of its rounds.
AUDIT = {"COORDINATOR_AUDIT_INTERVAL_S": "1"}


def audit_rounds(stack: Stack, watcher: WatcherProc, more: int) -> None:
    """Until the leader's REST audit made ``more`` further rounds, then until nothing moves (``quiet``: the waiting
    runs never end by themselves)."""
    rounds = len(watcher.lines(r"audit checked="))
    wait_for(lambda: len(watcher.lines(r"audit checked=")) >= rounds + more, f"{more} more audit rounds")
    quiet(stack)


def calls(stack: Stack) -> dict[str, tuple[int, int]]:
    """DAG -> (runs created, runs cleared) as the fake Airflow saw the calls (the scheduler's runs included)."""
    return {d: (stack.fake.creates(d), stack.fake.clears(d)) for d in DAGS}


def ran_once(stack: Stack, partition: str) -> tuple[WatcherProc, str]:
    """01 succeeds for ``partition``, 02's scheduled run waits and goes on with permit 1, 03 runs: the state every
    rerun starts from. The watcher, and 02's run id."""
    stack.set_deps(json.dumps(spec()))
    stack.fake.set_duration(DOWN, WAITING_S)
    watcher = stack.start_watcher(**AUDIT)
    run_id = schedule(stack, partition)
    stack.trigger_root(partition)
    goes_on(stack, partition, run_id, 1)
    stack.wait_success(BELOW, partition)
    quiet(stack)
    return watcher, run_id


def plan(stack: Stack, partition: str, *extra: str) -> set[tuple[str, str]]:
    """(DAG, step) of each run ``plan rerun 01`` lists."""
    found = json.loads(stack.cli("plan", "rerun", ROOT_DAG, "--from", partition, "--to", partition, "--format", "json",
                                 *extra).stdout)  # fmt: skip
    return {(r["dag"], r["step"]) for r in found["runs"]}


def rerun(stack: Stack, partition: str, *extra: str) -> str:
    return stack.cli("rerun", ROOT_DAG, "--from", partition, "--to", partition, *extra, "--yes", airflow=True).stdout


def moved(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[tuple[str, str]]:
    """(DAG, create|clear) for every counter that moved."""
    steps = {(d, "create") for d in DAGS if after[d][0] > before[d][0]}
    return steps | {(d, "clear") for d in DAGS if after[d][1] > before[d][1]}


def test_plan_rerun_lists_the_scheduled_run_and_the_rerun_clears_exactly_that_once(stack: Stack) -> None:
    """``plan rerun 01`` lists 01, 02 (Airflow's own scheduled run) and 03 as clears; the rerun then clears exactly
    those, each once: 02's run waits for permit 2 and goes on; three audit rounds later nothing more moved."""
    p = new_partition()
    watcher, run_id = ran_once(stack, p)
    planned = plan(stack, p)
    assert planned == {(ROOT_DAG, "clear"), (DOWN, "clear"), (BELOW, "clear")}, planned
    before = calls(stack)
    rerun(stack, p)
    goes_on(stack, p, run_id, 2)
    stack.wait_success(BELOW, p, attempt=1)
    quiet(stack)
    assert moved(before, calls(stack)) == planned
    assert calls(stack) == {ROOT_DAG: (1, 1), DOWN: (1, 1), BELOW: (1, 1)}
    audit_rounds(stack, watcher, 3)
    assert calls(stack) == {ROOT_DAG: (1, 1), DOWN: (1, 1), BELOW: (1, 1)}, "something moved after the cascade"
    assert granted(stack, p, 2) and [r.run_id for r in stack.fake.runs(DOWN)] == [run_id]


def test_rerun_no_cascade_leaves_the_scheduled_run_and_its_permit(stack: Stack) -> None:
    """``--no-cascade``: the preview lists 01 alone, 01 reruns, 02's run is not cleared and its permit stays
    generation 1, over three audit rounds."""
    p = new_partition()
    watcher, _ = ran_once(stack, p)
    assert plan(stack, p, "--no-cascade") == {(ROOT_DAG, "clear")}
    rerun(stack, p, "--no-cascade")
    stack.wait_success(ROOT_DAG, p, attempt=1)
    quiet(stack)
    audit_rounds(stack, watcher, 3)
    assert calls(stack) == {ROOT_DAG: (1, 1), DOWN: (1, 0), BELOW: (1, 0)}
    assert granted(stack, p, 1)
    ledger = stack.ledger(DOWN, p)
    assert ledger is not None and ledger["trigger_count"] == 1 and "withdrawn" not in ledger


def test_retract_withdraws_a_permit_whose_run_has_not_started_and_the_fix_grants_it_once(stack: Stack) -> None:
    """01's success grants 02's permit before Airflow made 02's run; retract of 01 lists it, the leader withdraws it
    (``granted`` false, the reason kept); the run the timetable then makes waits over three audit rounds, which leave
    the retraction standing, and ``status`` says it waits; once 01 is rerun and the hold released, permit 2 is
    granted once, 02's run goes on without being cleared, 03 runs once."""
    p = new_partition()
    stack.set_deps(json.dumps(spec()))
    stack.fake.set_duration(DOWN, WAITING_S)
    watcher = stack.start_watcher(**AUDIT)
    stack.trigger_root(p)
    wait_for(lambda: granted(stack, p, 1), "permit 1 granted before 02's run exists")
    quiet(stack)

    out = stack.cli("retract", ROOT_DAG, "-p", p, "--reason", "empty file", "--by", "carol").stdout
    assert "permits withdrawn by the leading watcher" in out and f"default/{DOWN} {p} (generation 1" in out, out
    assert "already ran on the retracted success" not in out, out
    hold = hold_id(out.splitlines()[1])
    off = wait_for(lambda: (found := permit(stack, p)) is not None and not found.granted and found, "the withdrawal")
    assert off.generation == 1 and off.withdrawn is not None and f"{ROOT_DAG} is no longer a success" in off.withdrawn
    # The line is logged after the write returns: the store can show the withdrawal first.
    wait_for(lambda: watcher.lines(rf"actuator\.permit_withdrawn node=\S*{DOWN} "), "the withdrawal's line")
    assert len(watcher.lines(rf"actuator\.permit_withdrawn node=\S*{DOWN} ")) == 1

    run_id = schedule(stack, p)  # Airflow's timetable makes the run now: it waits
    audit_rounds(stack, watcher, 3)
    found = permit(stack, p)
    assert found is not None and not found.granted and found.generation == 1
    assert (stack.run_record(DOWN, p) or {})["state"] == "running"
    root = stack.run_record(ROOT_DAG, p) or {}
    assert (root["state"], root["source"]) == ("failed", "retract:carol"), "the audit put the old success back"
    assert calls(stack) == {ROOT_DAG: (1, 0), DOWN: (1, 0), BELOW: (0, 0)}
    # ``status`` reads the store afresh (a snapshot, as a restarted watcher): the withdrawn permit is not "granted"
    (row,) = [r for r in stack.status_json(p)["rows"] if r["dag"] in (DOWN, f"default/{DOWN}")]
    assert row["status"] == "waiting in Airflow", row

    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")  # the fix: 01 runs again, held below
    wait_for(lambda: (stack.run_record(ROOT_DAG, p) or {}).get("state") == "success", "01 fixed")
    quiet(stack)
    assert not granted(stack, p, 2)
    ops(stack, "release-hold", hold)
    goes_on(stack, p, run_id, 2)
    stack.wait_success(BELOW, p)
    quiet(stack)
    audit_rounds(stack, watcher, 3)
    assert calls(stack) == {ROOT_DAG: (1, 1), DOWN: (1, 0), BELOW: (1, 0)}, "something ran twice"
    assert len(watcher.lines(rf"actuator\.permit_granted node=\S*{DOWN} ")) == 2
    assert len(watcher.lines(rf"actuator\.permit_withdrawn node=\S*{DOWN} ")) == 1


def test_retract_lists_a_scheduled_run_that_started_and_leaves_its_permit(stack: Stack) -> None:
    """A scheduled run that already went on with its permit ran on the retracted success: retract lists it with the
    runs that ran on it and the permit stays granted (its run is cleared once by the rerun after the fix)."""
    p = new_partition()
    watcher, _ = ran_once(stack, p)
    out = stack.cli("retract", ROOT_DAG, "-p", p, "--reason", "empty file", "--by", "carol").stdout
    assert "already ran on the retracted success" in out and f"default/{DOWN} {p}" in out, out
    assert "permits withdrawn" not in out, out
    audit_rounds(stack, watcher, 3)
    assert granted(stack, p, 1) and not watcher.lines(r"actuator\.permit_withdrawn ")
    assert calls(stack) == {ROOT_DAG: (1, 0), DOWN: (1, 0), BELOW: (1, 0)}


# -- deadlines ---------------------------------------------------------------------------------------------------

DAILY = {"partitions": {"cron": "0 0 * * *"}}
FAST = {"COORDINATOR_DEADLINE_INTERVAL_S": "0.2"}


def deadline_graph(runs: str | None, root_rule: dict[str, Any] | None = None) -> dict[str, Any]:
    """01 -> 02 on a daily grid, 02 expected 20 days after its partition starts; 02 ``runs`` as given."""
    down: dict[str, Any] = {"upstreams": ROOT_DAG, **DAILY, "expected_by": {"after_start": "20d", "warn": "1h"}}
    if runs is not None:
        down["runs"] = runs
    root = {**DAILY, **({"expected_by": root_rule} if root_rule else {})}
    return {"version": 1, "dags": {ROOT_DAG: root, DOWN: down}}


def today() -> str:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deadline(stack: Stack, partition: str) -> dict[str, Any] | None:
    raw = stack.etcd.get(stack.keys.deadline_key(NodeId(DEFAULT_INSTANCE, DOWN), partition))
    return None if raw is None else json.loads(raw)


def put_run(stack: Stack, dag: str, partition: str, state: str, **extra: str) -> None:
    record = {"state": state, "run_id": f"scheduled__{partition}", "source": "test", **extra}
    stack.etcd.put(stack.run_key(dag, partition), json.dumps(record))


@pytest.mark.parametrize("runs", [None, "scheduled"])
def test_a_deadline_is_predicted_and_blocked_alike_whether_triggered_or_scheduled(
    stack: Stack, runs: str | None
) -> None:
    """01 running with an expected 30 days makes 02 at_risk (ETA after 01's) and 01 failed makes it blocked by 01,
    the same for a triggered 02 (no run yet) and a scheduled 02 whose run waits in Airflow; ``why`` says both."""
    p = today()
    stack.set_deps(deadline_graph(runs, {"after_start": "60d", "duration": "30d"}))
    watcher = stack.start_watcher("w1", **FAST)
    if runs == "scheduled":  # its timetable made the run: it waits
        started = datetime.now(UTC).replace(microsecond=0).isoformat()
        put_run(stack, DOWN, p, "running", start_date=started)
    root_started = datetime.now(UTC).replace(microsecond=0)
    put_run(stack, ROOT_DAG, p, "running", start_date=root_started.isoformat())
    risk = wait_for(lambda: (r := deadline(stack, p)) is not None and r["state"] == "at_risk" and r, "02 at_risk")
    assert datetime.fromisoformat(risk["eta"]) > datetime.fromisoformat(risk["deadline"])
    put_run(stack, ROOT_DAG, p, "failed")
    blocked = wait_for(lambda: (r := deadline(stack, p)) is not None and r["state"] == "blocked" and r, "02 blocked")
    assert blocked["cause"] == f"default/{ROOT_DAG}@{p} failed", blocked
    text = stack.cli("why", DOWN, "-p", p).stdout
    assert "deadline: blocked" in text and f"cause: default/{ROOT_DAG}@{p} failed" in text, text
    assert watcher.alive, watcher.tail()
