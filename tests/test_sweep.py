"""The watcher loop's sweep over every partition (``watcher/sweep.py``'s **Sweep**), against a real etcd: a slice per
turn of the queue, newest partitions first, the same actions as one pass over everything, the watch's keys planned
between two slices, and the term's full pass (``watcher/triggers.py``'s **Start and settle**) only once every slice
was planned leading."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import NodeId, RunRecord, RunState, dump_record
from coordinator.etcd import EtcdStore
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.watcher import sweep as sweep_module
from coordinator.watcher.keys import AllPartitions, DagKey, NextSlice
from coordinator.watcher.service import Watcher

A, B = NodeId("default", "a"), NodeId("default", "b")
#: Five partitions, oldest first; with a slice of two facts a sweep takes P5+P4, P3+P2, then P1.
PARTS = [f"2026-11-0{day}T00:00:00Z" for day in range(1, 6)]
NEW = "2026-10-01T00:00:00Z"  # a partition written during a sweep: older than all, so no slice would reach it


def success() -> bytes:
    return dump_record(RunRecord(state=RunState.SUCCESS, run_id="r"))


def due(plan_actions: Any) -> list[str]:
    """The partitions of the plan's triggers of ``b``, in the plan's order."""
    return [a.partition for a in plan_actions if isinstance(a, Trigger) and a.node == B]


async def loaded_watcher(
    store: EtcdStore, settings: Settings, deps: Path, *, b_done: bool = False, identity: str = "w1"
) -> Watcher:
    """``a`` succeeded in every partition of PARTS (``b`` too with ``b_done``: nothing due), the graph adopted before
    (so a standby plans ``b`` due); a watcher with its view loaded."""
    keys = settings.keys
    graph = load_spec(deps)
    activation = adopt(graph.shapes, graph.digest, None, revision=1, by="test")
    assert activation is not None
    await store.put(keys.config_key("graph"), dump_activation(activation))
    for partition in PARTS:
        await store.put(keys.run_key(A, partition), success())
        if b_done:
            await store.put(keys.run_key(B, partition), success())
    watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id=identity)
    await watcher.load()
    return watcher


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_module, "SWEEP_SLICE_FACTS", 2)


@pytest.fixture
def deps(tmp_path: Path) -> Path:
    path = tmp_path / "dependencies.json"
    path.write_text(json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": ["a"]}}}))
    return path


@pytest.mark.usefixtures("small_slices")
def test_a_sweep_plans_the_newest_partitions_first_a_slice_per_turn_and_finds_what_one_pass_finds(
    etcd_settings: EtcdSettings,
    etcd_endpoint: str,
    etcd_prefix: str,
    deps: Path,
    arun: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A standby's sweep: the first pass plans the two newest partitions only and queues ``NextSlice``; each turn
    plans the next slice with the view free in between; together the slices find exactly the one-shot pass's
    triggers; one ``dirty=all`` line ends it, and only then is the standby's warm work complete."""
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            watcher = await loaded_watcher(store, settings, deps)
            triggers, queue = watcher.triggers, watcher.triggers.controller.queue
            whole = await triggers.reconcile([AllPartitions])  # one-shot: every partition in one pass
            assert sorted(due(whole.actions)) == PARTS
            triggers.warm.complete, triggers.warm.due = False, set()

            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="coordinator.watcher.triggers"):
                queue.add(AllPartitions)
                slices = [due((await triggers.reconcile(queue.get_nowait(), sweep=True)).actions)]
                assert slices == [PARTS[3:]] and not triggers.warm.complete
                while (keys := queue.get_nowait()) != []:
                    assert keys == [NextSlice] and not watcher.view_lock.locked()  # the view is free between slices
                    slices.append(due((await triggers.reconcile(keys, sweep=True)).actions))
            assert slices == [PARTS[3:], PARTS[1:3], PARTS[:1]]
            assert triggers.sweeper.current is None and triggers.warm.complete
            assert triggers.warm.due == {DagKey(B, p) for p in PARTS}
            ended = [r.getMessage() for r in caplog.records if "dirty=all" in r.getMessage()]
            assert len(ended) == 1 and "partitions=5 actions=5 triggers=5" in ended[0] and "slices=3" in ended[0]

    arun(main())


@pytest.mark.usefixtures("small_slices")
def test_a_change_the_watch_brings_during_a_sweep_is_planned_with_the_next_slice(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, deps: Path, arun: Callable[..., Any]
) -> None:
    """After the first slice, a's success in a partition the sweep will never reach arrives through the real watch:
    the next turn hands out ``NextSlice`` and that DAG key together, and that pass plans b's trigger there while the
    sweep still has partitions left: the event waited for one slice, not for the whole plan."""
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            watcher = await loaded_watcher(store, settings, deps)
            triggers, queue = watcher.triggers, watcher.triggers.controller.queue
            reflector = asyncio.create_task(watcher.reflect(watcher.view.revision))
            try:
                queue.add(AllPartitions)
                assert due((await triggers.reconcile(queue.get_nowait(), sweep=True)).actions) == PARTS[3:]
                await store.put(settings.keys.run_key(A, NEW), success())
                for _ in range(200):  # the reflector applies the event and queues its key
                    if queue.holds(lambda key: key == DagKey(A, NEW)):
                        break
                    await asyncio.sleep(0.02)
                keys = queue.get_nowait()
                assert set(keys) == {NextSlice, DagKey(A, NEW)}, keys
                assert due((await triggers.reconcile(keys, sweep=True)).actions) == [*PARTS[1:3], NEW]
                assert triggers.sweeper.current is not None and triggers.sweeper.current.todo == PARTS[:1]
            finally:
                reflector.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reflector

    arun(main())


def test_a_sweep_is_the_terms_full_pass_only_when_every_slice_was_led_in_this_term(
    etcd_settings: EtcdSettings,
    etcd_endpoint: str,
    etcd_prefix: str,
    deps: Path,
    arun: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leading: no settled revision while the sweep is under way, the last slice's revision once it ends. A sweep
    begun before the term (a takeover mid-sweep) goes on but is not the term's full pass; an ``AllPartitions``
    mid-sweep starts it over, newest partitions first."""
    monkeypatch.setattr(sweep_module, "SWEEP_SLICE_FACTS", 4)  # two facts per partition here: two partitions
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")

    async def turn(watcher: Watcher) -> list[str]:
        """One turn of the loop's reconcile: the ready keys, planned; the partitions the pass planned whole."""
        before = list(watcher.triggers.sweeper.current.todo) if watcher.triggers.sweeper.current is not None else []
        keys = watcher.triggers.controller.queue.get_nowait()
        await watcher.triggers.reconcile(keys, sweep=True)
        after = watcher.triggers.sweeper.current.todo if watcher.triggers.sweeper.current is not None else []
        return [p for p in (before if AllPartitions not in keys else PARTS) if p not in after]

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            watcher = await loaded_watcher(store, settings, deps, b_done=True)  # nothing due: no Airflow needed
            triggers, queue = watcher.triggers, watcher.triggers.controller.queue
            assert await watcher.election.acquire(timeout=5)
            triggers.take_warm_work()  # no checkpoint: AllPartitions now
            assert sorted(await turn(watcher)) == PARTS[3:]
            assert triggers.settled_through() is None  # partitions not reached yet
            queue.add(AllPartitions)  # (a graph change, a failed pass's retry, a resync): start over
            assert sorted(await turn(watcher)) == PARTS[3:]
            assert triggers.sweeper.current is not None and triggers.sweeper.current.todo == PARTS[:3]
            assert sorted(await turn(watcher)) == PARTS[1:3]
            assert triggers.settled_through() is None
            await turn(watcher)
            assert triggers.sweeper.current is None and triggers.settled_through() == watcher.view.revision

            queue.add(AllPartitions)  # the next resync, then a takeover in its middle
            await turn(watcher)
            assert triggers.settled_through() is None  # a sweep under way, though the term's full pass has run
            triggers.take_warm_work()
            queue.done_all(queue.get_nowait())  # its AllPartitions left out: the old sweep goes on to its end
            while triggers.sweeper.current is not None:
                queue.add(NextSlice)
                await turn(watcher)
            assert not triggers.led_full_pass and triggers.settled_through() is None

    arun(main())


def test_the_pass_summary_counts_passes_until_said_then_starts_again() -> None:
    """The minute's summary line counts the passes since the last one, names their revisions, and says nothing when
    no pass ran (watcher/pass_summary.py)."""
    from coordinator.watcher.sweep import PassCounts, PassSummary

    summary = PassSummary()
    assert summary.line(in_flight=0, errors=0) is None
    summary.add(7, PassCounts(2, 2, 0, 2, 0.001), leading=True)
    summary.add(9, PassCounts(0, 0, 0, 0, 0.003), leading=True)
    summary.planned_everything()
    assert summary.line(in_flight=1, errors=0) == (
        "reconcile.summary passes=2 full=1 revisions=7..9 actions=2 triggers=2 resumes=0 submitted=2 in_flight=1 "
        "errors=0 leader=True plan_ms_max=3.0"
    )
    assert summary.line(in_flight=0, errors=0) is None
