"""Escalation levels on real watchers, a real etcd and the fake Airflow (semantics rule 13 "Escalation").

The graph of ``test_deadlines.py`` with two levels on ``03``: ``warn`` (2 h slack) runs ``05``, ``page`` (no slack)
runs ``06``; ``07`` stays the DAG's own ``on_late_of`` handler.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator.core.model import DEFAULT_INSTANCE, NodeId
from tests.scenario.conftest import Stack, wait_for
from tests.scenario.test_crash_points import crashed
from tests.scenario.test_deadlines import FAST, HANDLER, ROOT, TARGET, TTL, graph, passes, put_run, today

pytestmark = pytest.mark.scenario

WARN, PAGE = "05_pipeline", "06_pipeline"


def levels_graph() -> dict[str, Any]:
    doc = graph()
    doc["dags"][TARGET]["expected_by"]["levels"] = [
        {"name": "warn", "slack": "2h", "handlers": [WARN]},
        {"name": "page", "handlers": [PAGE]},
    ]
    doc["dags"][WARN] = {}
    doc["dags"][PAGE] = {}
    return doc


def level_record(stack: Stack, partition: str, level: str) -> dict[str, Any] | None:
    raw = stack.etcd.get(stack.keys.deadline_level_key(NodeId(DEFAULT_INSTANCE, TARGET), partition, level))
    return None if raw is None else json.loads(raw)


def wait_level(stack: Stack, partition: str, level: str, state: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        record = level_record(stack, partition, level)
        return record if record is not None and record["state"] == state and record["alerted"] else None

    return wait_for(found, f"{TARGET} {partition} level {level} to be alerted {state}")


def test_each_level_alerts_once_across_a_leader_kill(stack: Stack) -> None:
    """A failed root blocks 03 at every level; the leader dies right after recording a level's transition (exit 86);
    the standby completes it: each level's handler and the DAG's own handler run exactly once, with distinct run ids
    naming the level, and the conf says which level fired."""
    stack.set_deps(levels_graph())
    p = today()
    first = stack.start_watcher("first", ttl=TTL, crash_at="after-deadline-level-transition", **FAST)
    second = stack.start_watcher("second", ttl=TTL, ready="loaded", **FAST)
    put_run(stack, ROOT, p, "failed")
    crashed(first, "after-deadline-level-transition")
    before = level_record(stack, p, "warn") or level_record(stack, p, "page")
    assert before is not None and before["state"] == "blocked" and before["alerted"] is False
    warn, page = wait_level(stack, p, "warn", "blocked"), wait_level(stack, p, "page", "blocked")
    passes(second)
    assert warn["sequence"] == page["sequence"] == 1
    assert warn["cause"] == page["cause"] == f"default/{ROOT}@{p} failed"
    for dag, level in ((WARN, "warn"), (PAGE, "page")):
        runs = stack.fake.runs(dag)
        assert len(runs) == 1, (dag, runs)
        assert runs[0].run_id.endswith(f"__{p}__{level}__1")
        conf = runs[0].conf["coordinator"]["deadline"]
        assert (conf["state"], conf["level"], conf["dag"]) == ("blocked", level, f"default/{TARGET}")
    assert len(stack.fake.runs(HANDLER)) == 1
    assert "level" not in stack.fake.runs(HANDLER)[0].conf["coordinator"]["deadline"]
    recorded = second.lines(r"deadline\.level_transition ")
    assert len(recorded) == 1 and "level=page " in recorded[0], "the standby re-recorded the warn level's transition"
