"""A trigger Airflow refuses (400: the DAG is not partitioned and does not accept a partition_key) is retried with a
per-key exponential backoff up to COORDINATOR_ERROR_RETRY_S, never once a second (semantics `trigger-errors`): counted
as POSTs at the fake Airflow, through a real watcher and real etcd. The ledger, status, why and doctor say when the
next try is; a graph change that touches the DAG tries again at once, and the run is created exactly once."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.scenario.conftest import Stack, new_partition, wait_for
from tests.scenario.test_flaps import audit_rounds

pytestmark = pytest.mark.scenario

ROOT, ROLLUP = "daily_source", "daily_rollup"
#: The test's cap (the default is 30 s): the same code, a window a test can afford.
CAP_S = 4.0
#: How long the refusals are counted.
WINDOW_S = 20.0
#: The most POSTs the window may see: the first, then steps of at least 0.5, 1, 2, 2, 2... s (each step drawn in
#: [d/2, d] of 1, 2, 4, 4... s): ten more fit in 19.5 s; slack of two for a step that began just before the window. A
#: retry every second (the defect) made twenty.
MAX_POSTS = 13


def _graph(key_format: str | None) -> dict[str, Any]:
    rollup: dict[str, Any] = {"cron": "0 0 * * *"}
    if key_format is not None:
        rollup["key_format"] = key_format  # triggered with a partition_key
    return {"version": 1, "dags": {
        ROOT: {"partitions": {"cron": "0 0 * * *"}},
        ROLLUP: {"partitions": rollup, "upstreams": [ROOT]},
    }}  # fmt: skip


def test_a_refused_trigger_backs_off_per_key_and_a_graph_change_retries_at_once(stack: Stack) -> None:
    """A dependent Airflow refuses a partition_key for: at most MAX_POSTS POSTs in WINDOW_S (a retry per second made
    20); the ledger records retry_at and a growing error count, status/why/doctor name the next try; the graph changed
    to trigger it by logical date while a try of the old one is in flight (its refusal recorded after the adoption) is
    tried at once with its backoff started over, creates the run once, and nothing moves over three audit rounds."""
    fake = stack.fake
    fake.add_dag(ROOT)
    fake.add_dag(ROLLUP)
    fake.set_partitioned(ROLLUP, False)
    stack.set_deps(_graph("%Y-%m-%dT%H:%M:%S"))
    # The held try below waits for the adoption: no client timeout may end it first, however slow the machine.
    watcher = stack.start_watcher(COORDINATOR_ERROR_RETRY_S=str(CAP_S), COORDINATOR_AIRFLOW_TIMEOUT_S="120",
                                  COORDINATOR_AUDIT_INTERVAL_S="1")  # fmt: skip
    p = new_partition()
    stack.trigger_root(p, ROOT)

    wait_for(lambda: fake.calls("trigger", ROLLUP) >= 1, "the first refused POST")
    started = time.monotonic()
    time.sleep(WINDOW_S)  # a rate needs a window
    posts = fake.calls("trigger", ROLLUP)
    elapsed = time.monotonic() - started
    print(f"POSTs of the refused trigger: {posts} in {elapsed:.1f} s (cap {CAP_S:g} s)")
    assert all(r.status == 400 for r in fake.requests("trigger", ROLLUP) if r.status is not None)
    assert posts <= MAX_POSTS, f"{posts} POSTs in {WINDOW_S:g} s: not backing off"

    ledger = stack.ledger(ROLLUP, p)
    assert ledger is not None and ledger["status"] == "error", ledger
    assert "not a partitioned Dag" in ledger["last_error"], ledger
    assert ledger["errors"] >= 3 and ledger["retry_at"], ledger

    def status_says_the_ledger_time() -> bool:
        # Read between two reads of the entry: a try may land in between (then read again).
        entry = stack.ledger(ROLLUP, p)
        row = next(r for r in stack.status_json(p)["rows"] if r["dag"].endswith(ROLLUP))
        return entry == stack.ledger(ROLLUP, p) and row["next_try"] == entry["retry_at"][:19] + "Z"  # to the second

    wait_for(status_says_the_ledger_time, "status's next_try, the ledger's retry_at")
    why = stack.cli("why", ROLLUP, "-p", p).stdout
    assert "next try at" in why, why
    doctor = stack.cli("doctor", check=False).stdout
    assert "next try at" in doctor and "not a partitioned Dag" in doctor, doctor

    # The graph changed so that the DAG is triggered by logical date while a try of the old one waits at Airflow: its
    # refusal is recorded after the adoption was written, by an attempt planned under the old definition.
    before = stack.ledger(ROLLUP, p)
    assert before is not None and before["tried_under"] > 0, before  # the definition its tries were planned under
    gate = fake.hold_next(1, endpoint="trigger", dag_id=ROLLUP)
    wait_for(lambda: fake.held() == 1, "a try of the old definition, held at Airflow")
    stack.set_deps(_graph(None))
    adopted = watcher.wait_log(r"graph\.adopted .*first=False")
    adoption_rev = int(re.search(r"revision=(\d+)", adopted).group(1))  # type: ignore[union-attr]
    fake.fail_next(1, status=400, endpoint="trigger", dag_id=ROLLUP)  # the next try: refused once more
    gate.set()
    stack.wait_success(ROLLUP, p)
    stack.wait_confirmed(p, (ROLLUP,))
    audit_rounds(stack, watcher, 3)
    assert fake.creates(ROLLUP) == 1
    accepted = [r for r in fake.requests("trigger", ROLLUP) if r.status == 200]
    assert len(accepted) == 1, accepted

    lines = watcher.log().splitlines()
    after = lines[next(i for i, line in enumerate(lines) if adopted in line) + 1 :]
    written = r"actuator\.error_recorded .*revision=(\d+)"
    recorded = [int(m.group(1)) for line in after if (m := re.search(written, line))]
    errors = [line for line in after if "actuator.error " in line]
    assert len(errors) == 2 and len(recorded) == 2, errors
    # The held try's refusal, recorded after the adoption...
    assert "not a partitioned Dag" in errors[0] and recorded[0] > adoption_rev, (errors, recorded, adoption_rev)
    # ...then a try at once with its backoff started over: the refusal injected into it waits the first step (0.5 to
    # 1 s), not the key's next one (2 to 4 s, had it waited out its retry_at).
    assert "injected fault 400" in errors[1], errors
    retry_in = float(re.search(r"retry_in_s=([\d.]+)", errors[1]).group(1))  # type: ignore[union-attr]
    assert retry_in <= 1.0, errors[1]
    done = stack.ledger(ROLLUP, p)
    assert done is not None and done["status"] == "done", done
    assert done.get("retry_at") is None and done.get("tried_under") is None, done


def test_a_released_hold_retries_a_refused_trigger_at_once_with_its_backoff_started_over(stack: Stack) -> None:
    """A refused trigger held by an operator is not tried while held; the release tries it at once, counted as the
    first error again (errors 1, not one more); once the DAG is fixed in Airflow the next step creates the run once."""
    fake = stack.fake
    fake.add_dag(ROOT)
    fake.add_dag(ROLLUP)
    fake.set_partitioned(ROLLUP, False)
    stack.set_deps(_graph("%Y-%m-%dT%H:%M:%S"))
    watcher = stack.start_watcher(COORDINATOR_ERROR_RETRY_S="600")
    p = new_partition()
    stack.trigger_root(p, ROOT)
    wait_for(lambda: ((stack.ledger(ROLLUP, p) or {}).get("errors") or 0) >= 3, "three refusals in a row")

    out = stack.cli("hold", ROLLUP, "--reason", "fixing its schedule", "--by", "ops").stdout
    held = out.splitlines()[0].split()[1].rstrip(":")
    watcher.wait_log(rf"hold\.held dag=default/{ROLLUP} partition={p} hold={held}")  # its next step found it held
    posts = fake.calls("trigger", ROLLUP)
    errors = stack.ledger(ROLLUP, p)["errors"]  # type: ignore[index]
    assert errors >= 3

    stack.command("release-hold", held, "--reason", "try again", "--by", "ops", "--etcd", stack.endpoint,
                  "--prefix", stack.prefix)  # fmt: skip
    wait_for(lambda: fake.calls("trigger", ROLLUP) > posts, "the try the release started")
    wait_for(lambda: (stack.ledger(ROLLUP, p) or {}).get("errors") == 1, "the backoff started over")

    fake.set_partitioned(ROLLUP, True)  # fixed in Airflow: tried at its next step (about a second now)
    stack.wait_success(ROLLUP, p)
    stack.wait_confirmed(p, (ROLLUP,))
    stack.settle()
    assert fake.creates(ROLLUP) == 1
    assert len([r for r in fake.requests("trigger", ROLLUP) if r.status == 200]) == 1
