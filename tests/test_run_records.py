"""The one run-record writer against a real etcd: CAS on the revision read, should_replace, lost races, bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.core.model import RunRecord, RunState, dump_record, parse_run_record
from coordinator.etcd import KV, EtcdStore
from coordinator.runtime.settings import EtcdSettings
from coordinator.writers.run_records import RunWriteStatus, write_run_record

RUN = "scheduled__2026-01-01T00:00:00+00:00"


def rec(state: RunState, clear_number: int = 0, source: str = "test") -> RunRecord:
    return RunRecord(state=state, run_id=RUN, clear_number=clear_number, source=source)


def stored(kv: KV | None) -> RunRecord:
    assert kv is not None
    record, problem = parse_run_record(kv.value)
    assert record is not None, problem
    return record


def test_writes_a_missing_record_at_the_revision_it_reports(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """An absent key is created; the outcome's revision is the key's mod revision and previous is None."""
    key = f"{etcd_prefix}/runs/default/a/p"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            done = await write_run_record(store, key, lambda _old: rec(RunState.SUCCESS))
            kv = await store.get(key)
        assert done.status is RunWriteStatus.WRITTEN
        assert (done.previous, done.unreadable, done.rounds) == (None, None, 1)
        assert kv is not None and kv.mod_revision == done.revision
        assert stored(kv).state is RunState.SUCCESS

    arun(go())


def test_an_older_fact_never_overwrites_a_newer_one(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Attempt 0's success proposed over attempt 1's running is refused: etcd keeps attempt 1 at the same revision."""
    key = f"{etcd_prefix}/runs/default/a/p"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            newer_rev = await store.put(key, dump_record(rec(RunState.RUNNING, 1, "plugin")))
            done = await write_run_record(store, key, lambda _old: rec(RunState.SUCCESS, 0))
            kv = await store.get(key)
        assert done.status is RunWriteStatus.UNCHANGED
        assert done.revision == newer_rev
        assert done.previous is not None and done.previous.clear_number == 1
        assert kv is not None and kv.mod_revision == newer_rev
        assert (stored(kv).state, stored(kv).clear_number) == (RunState.RUNNING, 1)

    arun(go())


def test_identical_rewrite_makes_no_new_generation(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Writing the state the attempt already has changes nothing in etcd (a success rewrite would rerun dependents)."""
    key = f"{etcd_prefix}/runs/default/a/p"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            first = await write_run_record(store, key, lambda _old: rec(RunState.SUCCESS, source="one"))
            second = await write_run_record(store, key, lambda _old: rec(RunState.SUCCESS, source="two"))
            kv = await store.get(key)
        assert (first.status, second.status) == (RunWriteStatus.WRITTEN, RunWriteStatus.UNCHANGED)
        assert kv is not None and kv.mod_revision == first.revision and stored(kv).source == "one"

    arun(go())


def test_a_lost_race_is_decided_again_against_the_winner(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A write landing between read and CAS makes the CAS fail; the next round sees it and decides again."""
    key_newer = f"{etcd_prefix}/runs/default/a/newer"
    key_older = f"{etcd_prefix}/runs/default/a/older"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            # The competitor wins with a NEWER attempt: the second round refuses to write ours.
            racer = RaceOnce(store, key_newer, rec(RunState.RUNNING, 1, "competitor"))
            lost = await write_run_record(racer, key_newer, lambda _old: rec(RunState.SUCCESS, 0))  # type: ignore[arg-type]
            # The competitor wins with an OLDER state of our attempt: the second round writes ours over it.
            racer2 = RaceOnce(store, key_older, rec(RunState.RUNNING, 0, "competitor"))
            won = await write_run_record(racer2, key_older, lambda _old: rec(RunState.SUCCESS, 0))  # type: ignore[arg-type]
            kv_newer, kv_older = await store.get(key_newer), await store.get(key_older)
        assert (lost.status, lost.rounds) == (RunWriteStatus.UNCHANGED, 2)
        assert lost.previous is not None and lost.previous.source == "competitor"
        assert (stored(kv_newer).state, stored(kv_newer).clear_number) == (RunState.RUNNING, 1)
        assert (won.status, won.rounds) == (RunWriteStatus.WRITTEN, 2)
        assert stored(kv_older).state is RunState.SUCCESS
        assert kv_older is not None and kv_older.mod_revision == won.revision
        assert racer.cas_calls == 1 and racer2.cas_calls == 2

    arun(go())


class RaceOnce:
    """The store, except that just before the first CAS a competitor writes ``record`` to ``key``."""

    def __init__(self, store: EtcdStore, key: str, record: RunRecord) -> None:
        self.store, self.key, self.record = store, key, record
        self.cas_calls = 0

    async def get(self, key: str) -> KV | None:
        return await self.store.get(key)

    async def cas(self, key: str, value: bytes, expected: int) -> Any:
        self.cas_calls += 1
        if self.cas_calls == 1:
            await self.store.put(self.key, dump_record(self.record))
        return await self.store.cas(key, value, expected)


class RaceAlways(RaceOnce):
    """A competitor that writes before every CAS: each round loses."""

    async def cas(self, key: str, value: bytes, expected: int) -> Any:
        self.cas_calls += 1
        await self.store.put(self.key, dump_record(self.record.model_copy(update={"source": f"c{self.cas_calls}"})))
        return await self.store.cas(key, value, expected)


def test_lost_races_are_bounded_and_reported_as_contended(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A key that changes before every CAS ends after max_rounds rounds as CONTENDED, with nothing of ours written."""
    key = f"{etcd_prefix}/runs/default/a/p"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            racer = RaceAlways(store, key, rec(RunState.RUNNING, 0, "competitor"))
            done = await write_run_record(racer, key, lambda _old: rec(RunState.SUCCESS), max_rounds=3)  # type: ignore[arg-type]
            kv = await store.get(key)
        assert (done.status, done.rounds, done.record) == (RunWriteStatus.CONTENDED, 3, None)
        assert racer.cas_calls == 3
        assert stored(kv).state is RunState.RUNNING and stored(kv).source == "c3"

    arun(go())


def test_an_unreadable_value_is_replaced_and_reported(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """Garbage at the key counts as absent: the proposal is written and the outcome says what was wrong."""
    key = f"{etcd_prefix}/runs/default/a/p"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(key, b"not json")
            seen: list[RunRecord | None] = []
            done = await write_run_record(store, key, lambda old: seen.append(old) or rec(RunState.FAILED))
            kv = await store.get(key)
        assert seen == [None]
        assert done.status is RunWriteStatus.WRITTEN and done.unreadable
        assert stored(kv).state is RunState.FAILED

    arun(go())
