"""The plan checkpoint (semantics rule 19): what a start plans first from it (``core/first_work.py``), the view's fact
of it, when the leader's trigger work is settled (``watcher/triggers.py`` rule 5), and the job that records it
through the executor against a real etcd (fenced by the term)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.core import first_work as first_work_module
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.checkpoint import PlanCheckpoint
from coordinator.core.first_work import first_work
from coordinator.core.floor import RetentionFloor, dump_floor
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    parse_value,
)
from coordinator.core.spec.loader import parse_spec
from coordinator.core.task_facts import TaskRecord
from coordinator.core.view import View
from coordinator.errors import LeadershipLost
from coordinator.etcd import EtcdStore
from coordinator.manager.queue import WorkQueue
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.watcher.checkpoint import RECHECK_S, CheckpointJob
from coordinator.watcher.keys import AllPartitions, DagKey, TriggerKey
from coordinator.watcher.service import Watcher

A, B, C = NodeId("default", "a"), NodeId("default", "b"), NodeId("default", "c")
P1, P2, P3 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"
DIGEST = "d1"
AT = datetime(2026, 11, 24, tzinfo=UTC)
KEYS = KeyLayout("/cp")


def run(state: RunState = RunState.SUCCESS) -> bytes:
    return dump_record(RunRecord(state=state, run_id="r"))


def ledger(status: TriggerStatus) -> bytes:
    return dump_record(TriggerRecord(status=status, action=TriggerAction.CREATE, run_id="coordinator__x"))


def checkpoint(revision: int, digest: str = DIGEST) -> bytes:
    return dump_record(PlanCheckpoint(revision=revision, digest=digest, watcher="w1", at=AT))


def view_of(*writes: tuple[str, bytes]) -> View:
    """A view with ``writes`` applied at revisions 1, 2, 3... in order."""
    view = View(KEYS)
    for revision, (key, value) in enumerate(writes, start=1):
        view.apply(key, value, revision)
    return view


def test_a_start_plans_first_only_what_changed_after_the_checkpoint_and_unfinished_intents() -> None:
    """Run states, ledger entries, task states and backfills written after the checkpoint's revision, and a pending
    ledger entry written before it, are planned first; everything settled before it is not."""
    view = view_of(
        (KEYS.run_key(A, P1), run()),  # 1: settled before the checkpoint
        (KEYS.trigger_key(B, P1), ledger(TriggerStatus.DONE)),  # 2: settled
        (KEYS.trigger_key(C, P1), ledger(TriggerStatus.PENDING)),  # 3: an intent in flight: planned as a resume
        (KEYS.config_key("checkpoint"), checkpoint(3)),  # 4
        (KEYS.run_key(A, P2), run()),  # 5: after
        (KEYS.trigger_key(B, P2), ledger(TriggerStatus.DONE)),  # 6: after
        (KEYS.task_key(C, "load", P3), dump_record(TaskRecord(state=RunState.SUCCESS, run_id="r", try_number=1))),
        (KEYS.config_key(f"backfill/default/a/{P3}"), b"{}"),  # 8: a backfill request after
    )
    work = first_work(view, DIGEST, first_adoption=False)
    assert not work.everything, work.reason
    assert work.keys == {(C, P1), (A, P2), (B, P2), (C, P3), (A, P3)}
    assert "planned through revision 3 by w1" in work.reason


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("none", "no plan checkpoint"),
        ("unreadable", "unreadable plan checkpoint"),
        ("other graph", "the checkpoint was planned with another graph"),
        ("first adoption", "the first adoption is still to make"),
        ("activation after", "the activation changed after the checkpoint"),
        ("floor after", "the retention floor changed after the checkpoint"),
        ("ahead of the store", "the checkpoint is ahead of the store"),
    ],
)
def test_a_start_plans_everything_at_once_when_the_checkpoint_cannot_say_what_changed(case: str, reason: str) -> None:
    """No checkpoint, an unreadable one, another graph's, a first adoption to make, an activation or floor written
    after it, or one ahead of the store: every partition is planned at once, and the log line says why."""
    writes = [(KEYS.run_key(A, P1), run())]
    digest = "other" if case == "other graph" else DIGEST
    if case == "unreadable":
        writes.append((KEYS.config_key("checkpoint"), b'{"revision": "x"}'))
    elif case != "none":
        writes.append((KEYS.config_key("checkpoint"), checkpoint(99 if case == "ahead of the store" else 2)))
    if case == "activation after":
        graph = parse_spec(json.dumps({"version": 1, "dags": {"a": {}}}), "deps")
        activation = adopt(graph.shapes, graph.digest, None, revision=1)
        assert activation is not None
        writes.append((KEYS.config_key("graph"), dump_activation(activation)))
    if case == "floor after":
        writes.append((KEYS.config_key("retention"), dump_floor(RetentionFloor(before=P1))))
    view = view_of(*writes)
    work = first_work(view, DIGEST if case != "other graph" else digest, first_adoption=case == "first adoption")
    assert work.everything and reason in work.reason, work
    assert work.keys == frozenset()


def test_a_long_downtime_plans_everything_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """More changed keys than MAX_FIRST_KEYS after the checkpoint: every partition at once (cheaper than per key)."""
    monkeypatch.setattr(first_work_module, "MAX_FIRST_KEYS", 2)
    view = view_of(
        (KEYS.config_key("checkpoint"), checkpoint(1)),
        (KEYS.run_key(A, P1), run()),
        (KEYS.run_key(A, P2), run()),
        (KEYS.run_key(A, P3), run()),
    )
    work = first_work(view, DIGEST, first_adoption=False)
    assert work.everything and "3 keys changed after the checkpoint (more than 2)" in work.reason


def test_the_view_holds_the_checkpoint_names_a_bad_value_and_forgets_a_deleted_one() -> None:
    """The checkpoint key is a fact of the view (held for a relist); an unparsable value is a problem and no
    checkpoint (the start says unreadable); a delete leaves none; none of it re-plans a partition."""
    view = View(KEYS)
    key = KEYS.config_key("checkpoint")
    assert view.apply(key, checkpoint(5), 7) == set()
    assert view.checkpoint == parse_value(PlanCheckpoint, checkpoint(5))[0] and view.checkpoint_rev == 7
    assert view.known()[key] == 7
    assert view.apply(key, b"{not json", 8) == set()
    assert view.checkpoint is None and view.checkpoint_rev == 8
    assert "unparsable plan checkpoint" in view.problems[key]
    assert first_work(view, DIGEST, first_adoption=False).reason == "unreadable plan checkpoint"
    view.apply(key, None, 9)
    assert view.checkpoint is None and view.checkpoint_rev == 0 and key not in view.problems


def test_the_queue_tells_whether_work_of_a_kind_is_queued_running_or_delayed() -> None:
    """``holds`` sees a key queued, in processing and (unless ``delayed=False``) waiting for its delayed add."""
    queue: WorkQueue[TriggerKey] = WorkQueue()
    is_dag: Callable[[TriggerKey], bool] = lambda key: type(key) is DagKey  # noqa: E731
    key = DagKey(A, P1)
    assert not queue.holds(is_dag)
    queue.add(key)
    assert queue.holds(is_dag)
    assert queue.get_nowait() == [key] and queue.holds(is_dag)  # processing
    queue.done(key)
    assert not queue.holds(is_dag)
    queue.add_after(key, 60)
    assert queue.holds(is_dag) and not queue.holds(is_dag, delayed=False)


def spec_file(tmp_path: Path) -> Path:
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "dags": {"a": {}, "b": {"upstreams": ["a"]}}}))
    return deps


def test_the_leaders_work_is_settled_only_after_a_full_pass_with_nothing_waiting_and_the_job_records_it(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path, arun: Callable[..., Any]
) -> None:
    """Against a real etcd: no settled revision before the term's full pass, nor while a DAG key is queued, running or
    delayed, nor while a failed pass waits; then the revision of the last pass, which the job records once (a second
    round writes nothing), and a round of an ended term writes nothing and raises LeadershipLost."""
    deps = spec_file(tmp_path)
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")
    keys = settings.keys

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.run_key(A, P1), run(RunState.RUNNING))  # nothing is due: no action to wait for
            watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w1")
            await watcher.load()
            triggers, queue = watcher.triggers, watcher.triggers.controller.queue
            assert await watcher.election.acquire(timeout=5)
            triggers.take_warm_work()  # no checkpoint: every partition at once
            assert queue.get_nowait() == [AllPartitions]
            assert triggers.settled_through() is None  # the full pass has not run yet
            plan = await triggers.reconcile([AllPartitions], act=False)
            assert triggers.settled_through() is None  # a pass that does not act is not the leader's
            async with watcher.following():  # the adoption it writes comes back through the informer
                plan = await triggers.reconcile([AllPartitions])
            # The adoption come back through the watch asks for every partition again: not settled until planned.
            assert queue.get_nowait() == [AllPartitions] and triggers.settled_through() is None
            plan = await triggers.reconcile([AllPartitions])
            assert triggers.settled_through() == plan.revision > 0

            queue.add_after(AllPartitions, 60)  # the periodic resync does not unsettle
            assert triggers.settled_through() == plan.revision
            queue.add_rate_limited(AllPartitions)  # a failed pass waits for its retry
            assert triggers.settled_through() is None
            queue.forget(AllPartitions)  # (as after the retried pass)
            assert triggers.settled_through() == plan.revision

            job = CheckpointJob(watcher.executor, watcher.view, triggers.settled_through,
                                lambda: watcher.graphs.graph.digest, "w1", interval_s=30)  # fmt: skip
            assert await job.run_once(AT) is None
            stored = await store.get(keys.config_key("checkpoint"))
            assert stored is not None
            recorded = parse_value(PlanCheckpoint, stored.value)[0]
            assert recorded == PlanCheckpoint(revision=plan.revision, digest=watcher.graphs.graph.digest,
                                              watcher="w1", at=AT)  # fmt: skip
            assert await job.run_once(AT) is None  # nothing new to say: no second write
            again = await store.get(keys.config_key("checkpoint"))
            assert again is not None and again.mod_revision == stored.mod_revision

            queue.add(DagKey(B, P1))  # a change not planned yet
            assert triggers.settled_through() is None
            assert await job.run_once(AT) == RECHECK_S  # unsettled: nothing written, looked at again soon
            assert queue.get_nowait() == [DagKey(B, P1)]  # being planned, or its action in flight
            assert triggers.settled_through() is None
            queue.done(DagKey(B, P1))
            assert triggers.settled_through() == plan.revision
            queue.add_rate_limited(DagKey(B, P1), max_s=60)  # an action waiting out its error delay
            assert triggers.settled_through() is None

            await store.delete(keys.leader)  # the term ends: another watcher leads
            await store.put(keys.leader, b"someone else")
            newer = CheckpointJob(watcher.executor, watcher.view, lambda: plan.revision + 1,
                                  lambda: watcher.graphs.graph.digest, "w1", interval_s=30)  # fmt: skip
            with pytest.raises(LeadershipLost):
                await newer.run_once(AT)
            last = await store.get(keys.config_key("checkpoint"))
            assert last is not None and last.mod_revision == stored.mod_revision

    arun(main())


def test_doctor_says_what_a_start_would_plan_first_and_names_an_unreadable_checkpoint() -> None:
    """``doctor``'s plan checkpoint line: none yet (every partition first), the checkpoint with the number of DAG
    partitions written since it, an unparsable value as a warning with the command that deletes it, and skipped
    for a user who may not read the key."""
    from coordinator.diagnosis import CheckStatus, DoctorFacts, diagnose

    def check(view: View, unreadable: tuple[str, ...] = ()) -> Any:
        facts = DoctorFacts(settings=[], prefix="/cp", etcd_revision=9, view=view, unreadable=unreadable)
        return next(c for c in diagnose(facts, AT) if c.name == "plan checkpoint")

    none = check(view_of((KEYS.run_key(A, P1), run())))
    assert none.status is CheckStatus.OK and "plans every partition before its first trigger" in none.summary
    recorded = check(view_of((KEYS.config_key("checkpoint"), checkpoint(0)), (KEYS.run_key(A, P1), run()),
                             (KEYS.run_key(B, P2), run())))  # fmt: skip
    assert recorded.status is CheckStatus.OK, recorded
    assert "planned through revision 0 by w1" in recorded.summary and "plans first the 2 DAG" in recorded.summary
    bad = check(view_of((KEYS.config_key("checkpoint"), b"[]")))
    assert bad.status is CheckStatus.WARN and "unparsable plan checkpoint" in bad.summary
    assert bad.fix is not None and "etcdctl del /cp/config/checkpoint" in bad.fix
    hidden = check(view_of(), unreadable=("/cp/config/checkpoint",))
    assert hidden.status is CheckStatus.SKIP
