"""A deadline on a task, on real watchers, a real etcd and the fake Airflow (semantics rule 13 "Task deadlines").

``03`` (daily) is expected one hour after its partition starts, judged on its task ``load``: the task ends 90
minutes in, after the deadline, while the DAG run is still running. ``07`` is ``03``'s ``on_late_of`` handler.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId, partition_datetime
from tests.scenario.conftest import Stack, wait_for
from tests.scenario.test_crash_points import crashed
from tests.scenario.test_deadlines import FAST, HANDLER, TARGET, TTL, handler_runs, passes, put_run, today, transition

pytestmark = pytest.mark.scenario

TASK = "load"


def put_task(stack: Stack, partition: str, state: str, **times: str) -> None:
    """What the plugin writes when the named task instance changes state (``tasks/...``, the run-state format)."""
    record = {"state": state, "run_id": f"scheduled__{partition}", "source": "airflow-plugin", "try_number": 1,
              **times}  # fmt: skip
    stack.etcd.put(stack.keys.task_key(NodeId(DEFAULT_INSTANCE, TARGET), TASK, partition), json.dumps(record))


def test_a_task_ending_after_its_deadline_is_late_while_the_run_runs_and_alerts_once_across_a_leader_kill(
    stack: Stack,
) -> None:
    """The task succeeded 30 min after its deadline and the run still runs: recorded ``late`` with the task named;
    the leader dies right after recording it (exit 86), the standby runs the handler exactly once; the graph names
    the task for the plugin and ``status`` shows it."""
    p = today()
    stack.set_deps({"version": 1, "dags": {
        TARGET: {"partitions": {"cron": "0 0 * * *"}, "expected_by": {"after_start": "1h", "task": TASK, "from": p}},
        HANDLER: {"on_late_of": TARGET},
    }})  # fmt: skip
    start = partition_datetime(p)
    put_run(stack, TARGET, p, "running", start_date=(start + timedelta(minutes=10)).isoformat())
    put_task(stack, p, "success", start_date=(start + timedelta(minutes=20)).isoformat(),
             end_date=(start + timedelta(minutes=90)).isoformat())  # fmt: skip
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-deadline-transition", **FAST)
    graph = json.loads(stack.etcd.get(stack.keys.config_key("graph")) or b"{}")
    assert graph["upstream_tasks"] == {f"default/{TARGET}": [TASK]}
    second = stack.start_watcher("second", ttl=TTL, ready="loaded", **FAST)
    crashed(first, "after-deadline-transition")
    before = transition(stack, p)
    assert before is not None and (before["state"], before["task"], before["alerted"]) == ("late", TASK, False)

    def alerted() -> bool:
        record = transition(stack, p)
        return record is not None and record["alerted"] is True

    wait_for(alerted, f"{TARGET} {p} late to be alerted")
    passes(second)
    after = transition(stack, p)
    assert after is not None and (after["sequence"], after["state"]) == (1, "late")
    runs = stack.fake.runs(HANDLER)
    assert len(runs) == 1, runs
    assert [r.client for r in handler_runs(stack)] == [second.name]
    conf = runs[0].conf["coordinator"]["deadline"]
    assert (conf["dag"], conf["partition"], conf["state"], conf["task"]) == (f"default/{TARGET}", p, "late", TASK)
    assert json.loads(stack.etcd.get(stack.run_key(TARGET, p)) or b"{}")["state"] == "running"
    assert not second.lines(r"deadline\.transition "), "the standby recorded the transition again"
    rows = {(r["dag"], r["partition"]): r for r in stack.status_json()["deadlines"]}
    assert (rows[(TARGET, p)]["state"], rows[(TARGET, p)]["task"]) == ("late", TASK)
