"""The watcher and the manager read one clock (``manager/controller.py``'s ``wall_clock``, ``manager/periodic.py``'s
**Clock**) and hand its time to everything else, so a test drives time by handing a pass its ``now``."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import coordinator.manager
import coordinator.watcher
from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.holds import Hold, Selector, SelectorKind
from coordinator.core.model import NodeId, RunRecord, RunState, dump_record
from coordinator.etcd import EtcdStore
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.watcher.keys import AllPartitions, DagKey
from coordinator.watcher.service import Watcher

PACKAGES = [Path(coordinator.watcher.__file__).parent, Path(coordinator.manager.__file__).parent]
#: The one place that reads the time of day: the clock itself.
CLOCK = ("controller.py", "wall_clock")
#: Reads of the time of day (durations on ``time.monotonic``/``perf_counter`` are not a time anything is judged at).
WALL = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"), ("time", "time"),
        ("time", "time_ns")}  # fmt: skip


def wall_clock_reads(source: str, filename: str) -> list[int]:
    """The lines of ``source`` that name a wall-clock read (called or handed on as a default), outside the clock."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (filename, node.name) == CLOCK:
            allowed |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and (node.value.id, node.attr) in WALL
        and node.lineno not in allowed
    ]


def test_no_module_of_the_watcher_or_the_manager_reads_the_wall_clock_but_the_clock() -> None:
    """Under coordinator/watcher/ and coordinator/manager/ only ``wall_clock`` names datetime.now, date.today or
    time.time: everything else is handed the time (or the clock)."""
    found = [
        f"{path.parent.name}/{path.name}:{line}"
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
        for line in wall_clock_reads(path.read_text(), path.name)
    ]
    assert found == []


def test_the_clock_check_catches_a_read_and_a_clock_handed_on_and_spares_the_clock() -> None:
    """The check above finds ``datetime.now(UTC)`` and ``clock=time.time``, and not a ``now`` parameter nor the
    clock's own body."""
    assert wall_clock_reads("x = datetime.now(UTC)\n", "triggers.py") == [1]
    assert wall_clock_reads("def f(clock=time.time):\n    return clock()\n", "budget.py") == [1]
    assert wall_clock_reads("def f(now):\n    return now - delay\n", "budget.py") == []
    assert wall_clock_reads("def wall_clock():\n    return datetime.now(UTC)\n", "controller.py") == []


A, B = NodeId("default", "a"), NodeId("default", "b")
PARTS = ["2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]
#: Far from the machine's clock either way: a pass judged on the wall clock would decide otherwise.
NOW = datetime(2031, 1, 1, tzinfo=UTC)


def hold_until(until: datetime) -> bytes:
    hold = Hold(
        id="h-clock", selector=Selector(kind=SelectorKind.DAG, text="b", dag="default/b"), nodes=("default/b",),
        reason="incident", by="alice", created_at=NOW - timedelta(days=1), until=until,
    )  # fmt: skip
    return hold.model_dump_json().encode()


def test_a_pass_driven_at_an_injected_now_judges_a_holds_expiry_at_that_now(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path, arun: Callable[..., Any]
) -> None:
    """A leading pass at ``now`` before a hold's ``until`` keeps its DAG's triggers back and asks for the keys again
    exactly at the expiry; the same pass at ``now`` past the ``until`` starts them, though on the machine's clock the
    hold still stands (it ends in 2031)."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": ["a"]}}}))
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")
    keys = settings.keys
    expiry = NOW + timedelta(minutes=30)

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            graph = load_spec(deps)
            activation = adopt(graph.shapes, graph.digest, None, revision=1, by="test")
            assert activation is not None
            await store.put(keys.config_key("graph"), dump_activation(activation))
            for partition in PARTS:
                await store.put(keys.run_key(A, partition), dump_record(RunRecord(state=RunState.SUCCESS, run_id="r")))
            await store.put(keys.hold_key("h-clock"), hold_until(expiry))
            watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w1")
            await watcher.load()
            triggers, actuator = watcher.triggers, watcher.actuator
            assert await watcher.election.acquire(timeout=5)
            held = await triggers.reconcile([AllPartitions], now=NOW)
            assert held.actions == () and not actuator.holds()
            assert sorted(triggers.hold_gate.held_keys) == [DagKey(B, p) for p in PARTS]
            queue = triggers.controller.queue
            due_in = {key: at for key, at in queue._waiting_at.items() if isinstance(key, DagKey)}
            assert due_in.keys() == {DagKey(B, p) for p in PARTS}
            # Requeued at the expiry as seen from NOW, on the queue's monotonic clock.
            assert all(abs(at - queue._clock() - 30 * 60) < 5 for at in due_in.values())
            started = await triggers.reconcile([DagKey(B, p) for p in PARTS], now=expiry)
            assert [(a.node, a.partition) for a in started.actions if isinstance(a, Trigger)] == [(B, p) for p in PARTS]
            assert actuator.under_way(DagKey(B, PARTS[0])) and not triggers.hold_gate.held_keys

    arun(main())
