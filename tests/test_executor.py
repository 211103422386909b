"""The one executor (``coordinator/watcher/executor.py``): every leader write is fenced by the term (a write, an asset
round and an audit of a watcher whose term ended write nothing, against a real etcd and a fake Airflow), one error
vocabulary for both protocols, one driver loop, one bound on attempts in flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core import delivery, intent
from coordinator.core.actions import Trigger
from coordinator.core.assets import AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.effects import End, Ending, LedgerWritten, NotFound, RecordError, Refused, Transient
from coordinator.core.error_backoff import FIRST_S
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    parse_trigger_record,
    run_id_for,
)
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.errors import (
    AirflowAuthError,
    AirflowConflict,
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
    CoordinatorError,
    LeadershipLost,
)
from coordinator.etcd import KV, CasResult, DeleteResult, EtcdStore, Fence
from coordinator.manager import DONE, Result
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.audit import audit_once
from coordinator.watcher.executor import Executor, ExecutorPolicy, Ledger, NoAirflow, failure, result_of
from tests.support.asset_rig import AssetRig
from tests.support.fake_airflow import FakeAirflow

ORDERS = "s3://lake/orders"
PARTITION = "2026-01-01T00:00:00Z"
LD = datetime(2026, 1, 1, tzinfo=UTC)


async def ended_term(store: EtcdStore, leader: str) -> Fence:
    """A fence of a term that has ended: the leader key was taken over since (a new create revision)."""
    await store.put(leader, b"old")
    old = await store.get(leader)
    assert old is not None
    await store.delete(leader)
    await store.put(leader, b"new")
    return Fence(leader, old.create_revision)


def test_a_write_of_an_ended_term_is_refused_and_the_leader_steps_down(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """While the term holds, cas and delete_unchanged write; once it ended, both raise LeadershipLost, set
    ``leadership_lost`` and change nothing in etcd."""

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            leader, key = f"{etcd_prefix}/leader", f"{etcd_prefix}/config/x"
            await store.put(leader, b"me")
            held = await store.get(leader)
            assert held is not None
            fence = Fence(leader, held.create_revision)
            executor = Executor(store, {}, fence=lambda: fence)
            written = await executor.cas(key, b"v1", 0)
            assert written.succeeded and not executor.leadership_lost.is_set()

            await store.delete(leader)
            await store.put(leader, b"someone else")  # the term ended: another watcher leads
            before = await store.current_revision()
            with pytest.raises(LeadershipLost):
                await executor.cas(key, b"v2", written.revision)
            assert executor.leadership_lost.is_set()
            executor.leadership_lost.clear()
            with pytest.raises(LeadershipLost):
                await executor.delete_unchanged([(key, written.revision)])
            assert executor.leadership_lost.is_set()
            assert await store.current_revision() == before
            kv = await store.get(key)
            assert kv is not None and kv.value == b"v1"

    arun(main())


def test_writes_pinned_to_a_term_are_refused_in_a_later_term_of_the_same_watcher(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A round's writes pinned at its start (``pin``) are refused once that term ended, even though this watcher
    leads again (a new term, its own): nothing is written, ``leadership_lost`` is set; the executor's unpinned writes
    go on in the new term."""

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            leader, key = f"{etcd_prefix}/leader", f"{etcd_prefix}/config/x"
            terms: list[Fence] = []

            async def lead() -> None:
                await store.put(leader, b"me")
                kv = await store.get(leader)
                assert kv is not None
                terms.append(Fence(leader, kv.create_revision))

            await lead()
            executor = Executor(store, {}, fence=lambda: terms[-1])
            pinned = executor.pin()
            first = await pinned.cas(key, b"in the first term", 0)
            assert first.succeeded
            await store.delete(leader)  # the lease ran out ...
            await lead()  # ... and this watcher won the next term
            before = await store.current_revision()
            with pytest.raises(LeadershipLost):
                await pinned.cas(key, b"decided in the first term", first.revision)
            with pytest.raises(LeadershipLost):
                await pinned.delete_unchanged([(key, first.revision)])
            assert executor.leadership_lost.is_set()
            assert await store.current_revision() == before
            second = await executor.cas(key, b"in the second term", first.revision)
            assert second.succeeded
            assert (await executor.pin().cas(key, b"pinned to the second term", second.revision)).succeeded

    arun(main())


def test_an_asset_round_of_an_ended_term_records_nothing(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A source event and no mark yet: the round of a watcher whose term ended writes neither the first mark nor the
    event (both go through the executor, fenced), raises LeadershipLost and steps down; nothing reaches the target."""
    spec = parse_spec(json.dumps({"version": 1, "instances": {"team_a": {}, "team_b": {}}, "dags": {},
                                  "assets": [{"asset": ORDERS, "from": "team_a", "to": ["team_b"]}]}))  # fmt: skip

    async def main() -> None:
        with FakeAirflow() as source, FakeAirflow() as target:
            source.add_asset(ORDERS)
            target.add_asset(ORDERS)
            source.emit_asset_event(ORDERS)
            clients = {
                name: AirflowClient(InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin")),
                                    timeout_s=5.0, name=name)
                for name, fake in (("team_a", source), ("team_b", target))
            }  # fmt: skip
            try:
                async with await EtcdStore.connect(etcd_settings) as store:
                    fence = await ended_term(store, f"{etcd_prefix}/leader")
                    rig = AssetRig(store, AssetKeys(etcd_prefix), spec, clients, lambda: fence, datetime.now(UTC),
                                   job={"lookback_s": 86400.0})  # fmt: skip
                    await rig.start()
                    try:
                        before = await store.current_revision()
                        with pytest.raises(LeadershipLost):
                            await rig.job.run_once(datetime.now(UTC))
                    finally:
                        await rig.close()
                    assert rig.executor.leadership_lost.is_set()
                    assert await store.current_revision() == before
                    assert (await store.snapshot(f"{etcd_prefix}/asset")).kvs == ()
                    assert target.asset_events(ORDERS) == []
            finally:
                for client in clients.values():
                    await client.aclose()

    arun(main())


def test_an_audit_of_an_ended_term_repairs_nothing(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A run Airflow shows and etcd lacks: the audit of a watcher whose term ended does not write it (its repairs are
    the executor's fenced writes) and ends its round with LeadershipLost; the same audit through the store writes it."""
    keys = KeyLayout(etcd_prefix)
    graph = parse_spec('{"b": "a"}')

    async def main() -> None:
        with FakeAirflow(["a", "b"], password="pw", run_duration_s=0.02) as fake:
            fake.create_run("a", run_id_for(PARTITION), LD)
            fake.wait_idle()
            settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
            async with (
                await EtcdStore.connect(etcd_settings) as store,
                AirflowClient(settings, timeout_s=5.0) as client,
            ):
                fence = await ended_term(store, f"{etcd_prefix}/leader")
                executor = Executor(store, {"default": client}, fence=lambda: fence)
                lookback = timedelta(days=3650)
                with pytest.raises(LeadershipLost):
                    await audit_once(executor, keys, graph, {"default": client}, lookback, View(keys))
                assert executor.leadership_lost.is_set()
                assert await store.get(keys.run_key(NodeId("default", "a"), PARTITION)) is None
                repaired = await audit_once(store, keys, graph, {"default": client}, lookback, View(keys))
                assert repaired.repaired == 1
                assert await store.get(keys.run_key(NodeId("default", "a"), PARTITION)) is not None

    arun(main())


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        pytest.param(AirflowUnavailable("503 from the api-server", 503), Transient, id="unavailable-is-transient"),
        pytest.param(AirflowNotFound("404 no such DAG", 404), NotFound, id="404-is-not-found"),
        pytest.param(AirflowAuthError("403 forbidden", 403), Refused, id="403-is-refused"),
        pytest.param(AirflowConflict("409 unexplained", 409), Refused, id="409-is-refused"),
        pytest.param(NoAirflow("no Airflow configured for instance 'x'"), Refused, id="no-airflow-is-refused"),
        pytest.param(AirflowError("422 bad conf", 422), Refused, id="any-other-is-refused"),
    ],
)
def test_one_error_vocabulary_for_every_protocol(error: AirflowError, outcome: type) -> None:
    """Each failed Airflow call maps to one outcome whose text names the kind and the message, the same for a trigger
    and a delivery; each protocol then decides what it means (a 404 is a refusal for a trigger and for a delivery's
    resolve, a stale asset id for its POST)."""
    answer = failure(error)
    assert type(answer) is outcome
    assert answer.error == f"{type(error).__name__}: {error}"
    trigger = Trigger(NodeId("default", "b"), PARTITION, {}, TriggerAction.CREATE, run_id_for(PARTITION), "r", 1, 0, 1)
    state, _ = intent.start_trigger(trigger, LD, "w", 30.0)
    state, _ = intent.step(state, LedgerWritten(7), LD)
    assert state.record is not None
    state = replace(state, record=state.record.model_copy(update={"errors": 9}))  # its backoff at the cap
    _, next_step = intent.step(state, answer, LD)
    assert isinstance(next_step, RecordError)
    assert next_step.retry_in_s == (intent.ACTIVE_RETRY_S if outcome is Transient else 30.0)


class FakeWrites:
    """A fenced writer that answers compare-and-swaps from a dict (key -> (value, revision)), or raises ``fail``."""

    def __init__(self) -> None:
        self.kv: dict[str, tuple[bytes, int]] = {}
        self.revision = 100
        self.fail: Exception | None = None

    async def get(self, key: str) -> KV | None:  # pragma: no cover - the driver never reads
        raise AssertionError("the driver writes by compare-and-swap only")

    async def cas(self, key: str, value: bytes, expected_mod_revision: int) -> CasResult:
        if self.fail is not None:
            raise self.fail
        held = self.kv.get(key)
        if (held[1] if held else 0) != expected_mod_revision:
            return CasResult(False, self.revision, None)
        self.revision += 1
        self.kv[key] = (value, self.revision)
        return CasResult(True, self.revision, None)

    async def delete_unchanged(self, items: Any) -> DeleteResult:  # pragma: no cover - never called
        raise AssertionError(items)


TRIGGER = Trigger(NodeId("default", "b"), PARTITION, {}, TriggerAction.CREATE, run_id_for(PARTITION), "r", 1, 0, 1)


def ledger_of(writes: FakeWrites, key: str = "ledger/b") -> Ledger[TriggerRecord]:
    return Ledger(key, writes, dump_record)


def test_the_driver_writes_the_ledger_feeds_a_failed_call_back_and_records_the_error(
    arun: Callable[..., Any],
) -> None:
    """``drive`` writes the intent itself (the reconciler performs only Airflow calls); an Airflow failure becomes the
    protocol's outcome, whose error record the driver writes on the entry before the attempt ends FAILED with the
    protocol's delay; a lost leadership ends the drive with nothing more done."""
    executor = Executor(cast(EtcdStore, None), {}, fence=lambda: None, now=lambda: LD)
    performed: list[str] = []

    async def perform(state: intent.IntentState, instruction: intent.Instruction) -> intent.Event:
        performed.append(type(instruction).__name__)
        raise AirflowUnavailable("connection refused")

    async def main() -> None:
        writes = FakeWrites()
        state, first = intent.start_trigger(TRIGGER, LD, "w", 30.0)
        _, end = await executor.drive(state, first, step=intent.step, perform=perform, ledger=ledger_of(writes))
        error = "AirflowUnavailable: connection refused"
        assert end == End(Ending.FAILED, error, FIRST_S)  # the first error: the first step
        assert performed == ["CallCreate"]
        value, revision = writes.kv["ledger/b"]
        recorded = parse_trigger_record(value)[0]
        assert recorded is not None and revision == 102, "the intent, then the error record on it"
        assert (recorded.status, recorded.last_error, recorded.intent_rev) == (TriggerStatus.ERROR, error, 101)

        performed.clear()
        writes.fail = LeadershipLost("the term ended")
        state, first = intent.start_trigger(TRIGGER, LD, "w", 30.0)
        with pytest.raises(LeadershipLost):
            await executor.drive(state, first, step=intent.step, perform=perform, ledger=ledger_of(writes))
        assert performed == []

    arun(main())


def test_the_driver_ends_an_attempt_whose_entry_moved_and_one_whose_error_record_lost_its_compare(
    arun: Callable[..., Any],
) -> None:
    """A compare that fails ends the attempt MOVED with no call made; an error record whose compare fails (the entry
    changed after the failed call) still ends FAILED with the protocol's delay: the failure waits out its delay."""
    executor = Executor(cast(EtcdStore, None), {}, fence=lambda: None, now=lambda: LD)
    writes = FakeWrites()

    async def main() -> None:
        writes.kv["ledger/b"] = (b"{}", 50)  # the planner saw revision 0: this write loses
        state, first = intent.start_trigger(TRIGGER, LD, "w", 30.0)
        calls: list[object] = []

        async def perform(state: intent.IntentState, instruction: intent.Instruction) -> intent.Event:
            calls.append(instruction)
            writes.kv["ledger/b"] = (b"{}", 999)  # another writer, while the call is out
            raise AirflowNotFound("404 no such DAG", 404)

        _, moved = await executor.drive(state, first, step=intent.step, perform=perform, ledger=ledger_of(writes))
        assert moved == End(Ending.MOVED) and calls == []

        del writes.kv["ledger/b"]
        _, end = await executor.drive(state, first, step=intent.step, perform=perform, ledger=ledger_of(writes))
        assert end == End(Ending.FAILED, "AirflowNotFound: 404 no such DAG", FIRST_S)
        assert writes.kv["ledger/b"] == (b"{}", 999), "nothing written over the other writer's entry"

    arun(main())


@pytest.mark.parametrize(
    ("end", "result"),
    [
        pytest.param(End(Ending.CONFIRMED), DONE, id="confirmed-done"),
        pytest.param(End(Ending.SKIPPED), DONE, id="skipped-done"),
        pytest.param(End(Ending.SETTLED), DONE, id="settled-done"),
        pytest.param(End(Ending.MOVED), DONE, id="moved-done-the-watch-brings-it-back"),
        pytest.param(End(Ending.FAILED, "x", 5.0), Result(requeue_after=5.0), id="failed-at-its-recorded-time"),
        pytest.param(End(Ending.DEFERRED, retry_in_s=3.0), Result(requeue_after=3.0), id="deferred-requeued"),
        pytest.param(LeadershipLost("gone"), DONE, id="lost-leadership-done"),
        pytest.param(CoordinatorError("etcd down"), Result(retry=True, retry_max_s=9.0), id="etcd-trouble-backoff"),
        pytest.param(ValueError("bug"), Result(retry=True, retry_max_s=9.0), id="bug-backoff"),
    ],
)
def test_one_way_to_end_an_attempt_for_both_protocols(end: End | Exception, result: Result) -> None:
    """``result_of`` maps an attempt's end (or the exception that ended it) onto its key's next turn."""
    assert result_of(end, backoff_max_s=9.0) == result


def test_a_404_to_a_delivery_read_is_a_refusal_and_to_its_post_a_stale_id() -> None:
    """The delivery protocol takes the executor's NotFound as a stale asset id on a POST (resolve afresh) and as a
    refusal on anything else (an error recorded, retried after the refusal delay)."""
    record = DeliveryRecord(status=DeliveryStatus.PENDING, source="a", event_id=1, uri=ORDERS, requested_at=LD)
    asset = delivery.TargetAsset(3, ORDERS)
    base = delivery.DeliveryState(delivery.Step.RESOLVING, record, 5, True, {}, 30.0)
    _, on_read = delivery.step(base, NotFound("AirflowNotFound: 404"), LD)
    assert isinstance(on_read, RecordError) and on_read.record.status is DeliveryStatus.ERROR
    assert on_read.record.retry_at == LD + timedelta(seconds=30.0)
    posting = delivery.DeliveryState(delivery.Step.POSTING, record, 5, True, {}, 30.0, asset=asset)
    _, on_post = delivery.step(posting, NotFound("AirflowNotFound: 404"), LD)
    assert on_post == delivery.Resolve(ORDERS, None, fresh=True)


def test_attempts_in_flight_are_bounded_drained_and_cancelled(arun: Callable[..., Any]) -> None:
    """With a bound of 2, five spawned attempts run at most two at once, each in turn; ``drain`` waits for all of
    them; ``cancel`` ends those still waiting, and one never started is never begun."""
    executor = Executor(cast(EtcdStore, None), {}, fence=lambda: None, policy=ExecutorPolicy(max_concurrent=2))

    async def main() -> None:
        running = peak = 0
        release = asyncio.Event()
        started: list[int] = []

        def attempt(n: int) -> Callable[[], Any]:
            async def run() -> None:
                nonlocal running, peak
                started.append(n)
                running += 1
                peak = max(peak, running)
                await release.wait()
                running -= 1

            return run

        for n in range(5):
            executor.spawn(attempt(n), name=f"a{n}")
        assert executor.busy == 5
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(started) == 2 and peak == 2
        release.set()
        await executor.drain()
        assert executor.busy == 0 and sorted(started) == [0, 1, 2, 3, 4] and peak == 2

        started.clear()
        release.clear()
        for n in range(3):
            executor.spawn(attempt(n), name=f"b{n}")
        for _ in range(20):
            await asyncio.sleep(0)
        await executor.cancel()
        assert executor.busy == 0 and started == [0, 1]

    arun(main())


def test_a_call_bounded_as_a_whole_without_an_answer_is_transient(arun: Callable[..., Any]) -> None:
    """``call(within_s=...)`` with no answer in time raises AirflowUnavailable naming the call (``failure`` makes it
    Transient: the delivery looks before it posts again), and tries it only once without ``retry``."""
    executor = Executor(cast(EtcdStore, None), {}, fence=lambda: None)
    tries = 0

    async def never_answers() -> None:
        nonlocal tries
        tries += 1
        await asyncio.Event().wait()

    async def main() -> None:
        with pytest.raises(AirflowUnavailable, match=r"POST asset event: no answer within 0\.05 s") as caught:
            await executor.call(never_answers, retry=False, within_s=0.05, what="team_b: POST asset event")
        assert isinstance(failure(caught.value), Transient)
        assert tries == 1
        with pytest.raises(NoAirflow, match="no Airflow configured for instance 'nowhere'"):
            executor.client("nowhere")

    arun(main())
