"""Issue 27's three deadline failures on a real watcher, a real etcd and the fake Airflow 3 (semantics rule 13).

Each graph is on a daily grid whose point is an hour or two before the test's clock (``recent_daily``), so the
partition under test is recent whatever the time of day, and ``from`` leaves older partitions without a deadline.
The run states are written with ``put`` as an outside writer would (``etcdctl put``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.scenario.conftest import Stack, wait_for
from tests.scenario.test_deadlines import FAST, HANDLER, ROOT, TARGET, handler_runs, passes, transition

pytestmark = pytest.mark.scenario


def recent_daily(hours_ago: int) -> tuple[dict[str, Any], str, datetime]:
    """A daily grid whose latest point is ``hours_ago`` hours before now (whole minutes): its partitions block, the
    partition and its instant."""
    point = (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(second=0, microsecond=0)
    grid = {"partitions": {"cron": f"{point.minute} {point.hour} * * *"}}
    return grid, point.strftime("%Y-%m-%dT%H:%M:%SZ"), point


def put(stack: Stack, dag: str, partition: str, **value: Any) -> None:
    stack.etcd.put(stack.run_key(dag, partition), json.dumps(value))


def recorded(stack: Stack, partition: str, dag: str, state: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        record = transition(stack, partition, dag)
        return record if record is not None and record["state"] == state and record["alerted"] else None

    return wait_for(found, f"{dag} {partition} to be recorded {state}")


def test_airflow3_root_not_yet_started_is_not_at_risk(stack: Stack) -> None:
    """A daily root due an hour ago on Airflow 3, with no state yet, leaves its dependent (due in three hours) on
    time: the root starts at its logical date, not a day later; status shows that start and its source."""
    grid, p, point = recent_daily(1)
    stack.set_deps({"version": 1, "dags": {
        ROOT: grid,
        TARGET: {"upstreams": ROOT, **grid, "expected_by": {"after_start": "4h", "warn": "30m", "from": p}},
        HANDLER: {"on_late_of": TARGET},
    }})  # fmt: skip
    watcher = stack.start_watcher("w1", **FAST)
    passes(watcher, 10)

    def row() -> dict[str, Any] | None:
        rows = {(r["dag"], r["partition"]): r for r in stack.status_json()["deadlines"]}
        found = rows.get((TARGET, p))
        return found if found is not None and found["start_source"] == "airflow_version" else None

    shown = wait_for(row, "status to predict the root's start from the Airflow version")
    assert shown["state"] == "on_time"
    assert (shown["start_of"], datetime.fromisoformat(shown["start"])) == (f"default/{ROOT}@{p}", point)
    assert transition(stack, p) is None, transition(stack, p)
    assert handler_runs(stack) == []
    text = stack.cli("why", TARGET, "-p", p).stdout
    assert f"start: default/{ROOT}@{p} starts {point:%Y-%m-%d %H:%M}Z (airflow_version)" in text, text


def test_outside_writer_success_without_end_date_after_the_deadline_is_late(stack: Stack) -> None:
    """A success written as docs/keys.md's outside-writer example (``updated_at``, no ``end_date``) after the
    deadline turns the recorded ``missed`` into ``late``, by ``updated_at`` minus the deadline, not ``on_time``."""
    grid, p, point = recent_daily(2)
    stack.set_deps({"version": 1, "dags": {
        ROOT: {**grid, "expected_by": {"after_start": "30m", "from": p}},
        HANDLER: {"on_late_of": ROOT},
    }})  # fmt: skip
    stack.start_watcher("w1", **FAST)
    recorded(stack, p, ROOT, "missed")
    written = datetime.now(UTC).replace(microsecond=0)
    put(stack, ROOT, p, state="success", run_id=f"ext__{p}", clear_number=0, updated_at=written.isoformat(),
        source="my-job")  # fmt: skip
    record = recorded(stack, p, ROOT, "late")
    assert datetime.fromisoformat(record["eta"]) == written
    assert datetime.fromisoformat(record["deadline"]) == point + timedelta(minutes=30)
    rows = {(r["dag"], r["partition"]): r for r in stack.status_json()["deadlines"]}
    assert rows[(ROOT, p)]["state"] == "late"
    assert [r.conf["coordinator"]["deadline"]["state"] for r in stack.fake.runs(HANDLER)] == ["missed", "late"]


def test_at_risk_on_time_at_risk_alerts_once(stack: Stack) -> None:
    """A dependent at_risk, back on_time, then at_risk again in the same partition runs its handler once: the second
    at_risk is recorded (sequence 3, ``repeat``) and not alerted again."""
    grid, p, _ = recent_daily(1)
    stack.set_deps({"version": 1, "dags": {
        ROOT: {**grid, "expected_by": {"after_start": "60d", "duration": "30d", "from": p}},
        TARGET: {"upstreams": ROOT, **grid, "expected_by": {"after_start": "20d", "warn": "1h", "from": p}},
        HANDLER: {"on_late_of": TARGET},
    }})  # fmt: skip
    watcher = stack.start_watcher("w1", **FAST)
    now = datetime.now(UTC).replace(microsecond=0)
    # The root takes 30 days from its start: started now, the dependent's 20-day deadline is at risk; an attempt
    # that started 29 days ago ends tomorrow, on time; a new attempt started now puts it at risk again.
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=0, start_date=now.isoformat())
    recorded(stack, p, TARGET, "at_risk")
    earlier = now - timedelta(days=29)
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=1, start_date=earlier.isoformat())
    recorded(stack, p, TARGET, "on_time")
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=2, start_date=now.isoformat())
    record = recorded(stack, p, TARGET, "at_risk")
    passes(watcher)
    assert (record["sequence"], record["repeat"]) == (3, True)
    # Runs created, not requests: on a loaded machine a trigger may time out and be sent again (same run id).
    assert stack.fake.creates(HANDLER) == 1, handler_runs(stack)
    assert len(watcher.lines(rf"deadline\.transition dag=default/{TARGET} partition={p} .*repeat=True")) == 1


def test_a_lost_handler_answer_then_a_flap_still_alerts_once(stack: Stack) -> None:
    """The at_risk handler's run is created but its answer lost, and Airflow keeps failing while the dependent goes
    back on_time: the on_time record waits until the handler is confirmed, so at_risk again is a repeat, not a second
    handler run (``watcher/deadline_alerts.py``'s **A failed alert holds its record**)."""
    grid, p, _ = recent_daily(1)
    stack.set_deps({"version": 1, "dags": {
        ROOT: {**grid, "expected_by": {"after_start": "60d", "duration": "30d", "from": p}},
        TARGET: {"upstreams": ROOT, **grid, "expected_by": {"after_start": "20d", "warn": "1h", "from": p}},
        HANDLER: {"on_late_of": TARGET},
    }})  # fmt: skip
    watcher = stack.start_watcher("w1", **FAST)
    now = datetime.now(UTC).replace(microsecond=0)
    stack.fake.fail_next(1, 500, endpoint="trigger", dag_id=HANDLER, after=True)  # created, answer lost
    # Then refused for a while: 403, which Airflow answers (5xx would make the instance unreachable and block 01).
    stack.fake.fail_next(10, 403, endpoint="trigger", dag_id=HANDLER)
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=0, start_date=now.isoformat())
    first = wait_for(
        lambda: (r := transition(stack, p, TARGET)) is not None and r["state"] == "at_risk" and r, "at_risk recorded"
    )
    assert not first["alerted"], "the handler's answer was not lost"
    earlier = now - timedelta(days=29)
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=1, start_date=earlier.isoformat())
    back = recorded(stack, p, TARGET, "on_time")
    assert "at_risk" in back["alerted_states"], back
    put(stack, ROOT, p, state="running", run_id=f"scheduled__{p}", clear_number=2, start_date=now.isoformat())
    again = recorded(stack, p, TARGET, "at_risk")
    passes(watcher)
    assert (first["sequence"], again["sequence"], again["repeat"]) == (1, 3, True)
    assert stack.fake.creates(HANDLER) == 1, handler_runs(stack)
    assert len(handler_runs(stack)) >= 5, "the lost and refused triggers were not retried"
