"""The informer (``coordinator/informer``) against a real etcd: one list/watch feeds the view and every key family's
index; a load, the watch from an empty start and the readers' one read give the same model; a relist after a real
compaction removes from every index what was deleted while the watch was away; bad values are named, never fatal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.asset_index import AssetIndex
from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.states import DeadlineState
from coordinator.core.holds import Hold, Selector, SelectorKind
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.view import View
from coordinator.etcd import EtcdStore, WatchBatch
from coordinator.informer import Changes, DeadlineIndex, Informer, PresenceIndex
from coordinator.informer.holds import HoldIndex
from coordinator.informer.informer import _may_hold
from coordinator.informer.presence_value import RECONCILE_ONCE, WatcherPresence
from coordinator.informer.read_model import model_of, read_model
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.settings import EtcdSettings, Settings, parse_endpoints
from coordinator.watcher.service import Watcher
from devtools.etcd_server import EtcdServer

A, B = NodeId("team_a", "extract"), NodeId("team_b", "load")
P1, P2 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
URI = "s3://lake/orders"
AT = datetime(2026, 11, 1, tzinfo=UTC)


def informer_for(prefix: str) -> tuple[Informer, AssetIndex, DeadlineIndex, PresenceIndex]:
    """An informer with every index the watcher and the readers use."""
    keys = KeyLayout(prefix)
    assets, deadlines, presence = AssetIndex(AssetKeys(prefix)), DeadlineIndex(keys), PresenceIndex(keys)
    return Informer(View(keys), [assets, deadlines, presence], hints=AssetKeys(prefix).changes), assets, deadlines, \
        presence  # fmt: skip


def run_value(state: RunState, run_id: str) -> bytes:
    return dump_record(RunRecord(state=state, run_id=run_id))


def deadline_value(state: DeadlineState) -> bytes:
    return dump_record(DeadlineRecord(state=state, deadline=AT, changed_at=AT))


def event_value(event_id: int) -> bytes:
    return (
        AssetEventFact(event_id=event_id, uri=URI, timestamp=AT + timedelta(seconds=event_id))
        .model_dump_json()
        .encode()
    )


def delivery_value(event_id: int) -> bytes:
    record = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=event_id, uri=URI,
                            requested_at=AT, done_at=AT, target_event_id=event_id)  # fmt: skip
    return record.model_dump_json().encode()


def hold_value(hold_id: str) -> bytes:
    hold = Hold(id=hold_id, selector=Selector(kind=SelectorKind.DAG, text=A.qualified), nodes=(A.qualified,),
                reason="bad data", by="alice", created_at=AT)  # fmt: skip
    return hold.model_dump_json().encode()


def presence_value(watcher_id: str) -> bytes:
    return WatcherPresence(id=watcher_id, started_at=AT).model_dump_json().encode()


async def write_estate(store: EtcdStore, prefix: str) -> dict[str, bytes]:
    """One key or more of every family the informer feeds, and a hint; the keys written."""
    keys, assets = KeyLayout(prefix), AssetKeys(prefix)
    written = {
        keys.run_key(A, P1): run_value(RunState.SUCCESS, "a1"),
        keys.run_key(A, P2): run_value(RunState.RUNNING, "a2"),
        keys.run_key(B, P1): run_value(RunState.SUCCESS, "b1"),
        keys.deadline_key(B, P1): deadline_value(DeadlineState.AT_RISK),
        keys.deadline_key(B, P2): deadline_value(DeadlineState.LATE),
        keys.deadline_level_key(B, P2, "page"): deadline_value(DeadlineState.LATE),
        keys.leader: b"w1",
        keys.watcher_key("w1"): presence_value("w1"),
        keys.watcher_key("w2"): presence_value("w2"),
        assets.event_key("team_a", URI, 1): event_value(1),
        assets.event_key("team_a", URI, 2): event_value(2),
        assets.delivery_key("team_b", "team_a", URI, 1): delivery_value(1),
        assets.change_key("team_a"): b"1",
    }
    for key, value in written.items():
        await store.put(key, value)
    return written


def model_state(informer: Informer, assets: AssetIndex, deadlines: DeadlineIndex, presence: PresenceIndex) -> Any:
    """What a reader can see of each family: every key held with its revision, and the parsed values that matter."""
    return (
        informer.known(),
        sorted((n.qualified, p, f.state) for (n, p), f in informer.view.runs.items()),
        sorted(deadlines.records.items(), key=lambda kv: (kv[0][0].qualified, kv[0][1])),
        sorted(deadlines.levels),
        presence.leader,
        [w.id for w in presence.watchers],
        sorted(assets.events),
        sorted(assets.ledger),
    )


def connect(endpoint: str) -> Any:
    return EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(endpoint)))


def test_a_load_and_the_watch_from_an_empty_start_give_the_same_model_as_the_readers_read(
    etcd_endpoint: str, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """The informer's load, the same informer fed only by watch events from before the first write, and the readers'
    ``read_model`` and ``model_of`` hold the same keys at the same revisions in every family (rule 1)."""

    async def main() -> None:
        async with await connect(etcd_endpoint) as store:
            start = (await store.snapshot(etcd_prefix + "/")).revision
            await write_estate(store, etcd_prefix)
            loaded, *indexes = informer_for(etcd_prefix)
            done = await loaded.load(store, etcd_prefix + "/")
            assert done.problems == () and done.keys == 13
            followed, *f_indexes = informer_for(etcd_prefix)
            hints: list[str] = []
            async for batch in store.watch_prefix(etcd_prefix + "/", start, followed.known):
                hints += followed.apply(batch).of(Informer.HINTS)
                if batch.revision >= done.revision:
                    break
            assert len(hints) == 1  # the asset hint named, held by nobody (rule 6)
            assert model_state(followed, *f_indexes) == model_state(loaded, *indexes)
            state = model_state(loaded, *indexes)
            assert len(state[0]) == 12 and state[4] is not None and state[4].identity == "w1"
            assert state[5] == ["w1", "w2"] and len(state[6]) == 2 and len(state[7]) == 1
            # The readers' one read: the same view, leader, watchers and deadline records.
            read = await read_model(store, KeyLayout(etcd_prefix))
            snap = await store.snapshot(etcd_prefix + "/")
            for model in (read, model_of(KeyLayout(etcd_prefix), snap.revision, list(reversed(snap.kvs)))):
                assert model.view.known() == loaded.view.known()
                assert model.leader == indexes[2].leader
                assert [w.id for w in model.watchers] == ["w1", "w2"]
                assert model.recorded == indexes[1].records

    arun(main())


def test_a_relist_after_a_compaction_removes_what_was_deleted_from_every_index(
    private_etcd: EtcdServer, arun: Callable[..., Any]
) -> None:
    """Keys of every family deleted (and others written) while the watch was away, with the revisions in between
    compacted: the relist's difference reaches each index, so the view, the asset index, the deadline index and the
    presence index hold exactly what etcd holds (rule 4)."""
    prefix = "/relist"

    async def main() -> None:
        async with await connect(private_etcd.endpoint) as store:
            written = await write_estate(store, prefix)
            informer, *indexes = informer_for(prefix)
            revision = (await informer.load(store, prefix + "/")).revision
            keys, assets = KeyLayout(prefix), AssetKeys(prefix)
            for key in (keys.run_key(A, P2), keys.deadline_key(B, P1), keys.deadline_level_key(B, P2, "page"),
                        keys.leader, keys.watcher_key("w2"), assets.event_key("team_a", URI, 2),
                        assets.delivery_key("team_b", "team_a", URI, 1)):  # fmt: skip
                assert key in written
                await store.delete(key)
            await store.put(keys.run_key(B, P2), run_value(RunState.SUCCESS, "b2"))
            await store.put(keys.deadline_key(A, P2), deadline_value(DeadlineState.BLOCKED))
            now = await store.put(keys.leader, b"w3")
            await store.compact(now)
            batches: list[WatchBatch] = []
            async for batch in store.watch_prefix(prefix + "/", revision, informer.known):
                informer.apply(batch)
                batches.append(batch)
                if batch.revision >= now:
                    break
            assert batches[0].relisted  # the watch could not resume: the revisions were compacted
            fresh, *f_indexes = informer_for(prefix)
            await fresh.load(store, prefix + "/")
            assert model_state(informer, *indexes) == model_state(fresh, *f_indexes)
            state = model_state(informer, *indexes)
            assert state[4] is not None and state[4].identity == "w3" and state[5] == ["w1"]
            assert [(n.qualified, p) for (n, p), _ in state[2]] == [("team_a/extract", P2), ("team_b/load", P2)]
            assert state[3] == [] and len(state[6]) == 1 and state[7] == []

    arun(asyncio.wait_for(main(), 60))


def test_bad_values_are_named_by_their_index_and_the_rest_still_loads(
    etcd_endpoint: str, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """A malformed asset event, an unparsable deadline record and an unparsable run state are named with their key
    (the view's in its problems, an index's in the load's and a watch batch's problems); every good key of the same
    families is held (rule 5)."""

    async def main() -> None:
        async with await connect(etcd_endpoint) as store:
            keys, assets_keys = KeyLayout(etcd_prefix), AssetKeys(etcd_prefix)
            await write_estate(store, etcd_prefix)
            bad_event, bad_deadline = assets_keys.event_key("team_a", URI, 3), keys.deadline_key(A, P1)
            bad_run = keys.run_key(A, "2026-11-03T00:00:00Z")
            for key in (bad_event, bad_deadline, bad_run):
                await store.put(key, b"{not json")
            informer, assets, deadlines, _ = informer_for(etcd_prefix)
            loaded = await informer.load(store, etcd_prefix + "/")
            assert sorted((name, key) for name, key, _ in loaded.problems) == [
                ("asset", bad_event), ("deadline", bad_deadline)
            ]  # fmt: skip
            assert bad_run in informer.view.problems
            assert len(informer.view.runs) == 3 and len(assets.events) == 2 and len(deadlines.records) == 2
            # The same through the watch: a second bad deadline value is named in the batch's changes.
            other = keys.deadline_key(B, P1)
            revision = await store.put(other, b"[]")
            async for batch in store.watch_prefix(etcd_prefix + "/", loaded.revision, informer.known):
                changes = informer.apply(batch)
                assert changes.problems and changes.problems[0][:2] == ("deadline", other)
                if batch.revision >= revision:
                    break
            # The last valid record stays (``informer/deadlines.py`` rule 2).
            assert deadlines.records[(B, P1)].state is DeadlineState.AT_RISK

    arun(main())


def test_a_watch_batch_names_the_deadline_records_holds_and_asset_keys_it_moved(
    etcd_endpoint: str, etcd_prefix: str, arun: Callable[..., Any]
) -> None:
    """The changes of the watch batches after a load name exactly the (DAG, partition) whose deadline record was put
    or deleted (not an escalation level's, not a bad value), the hold ids put or deleted, and the asset event and
    delivery keys, each by the kind its index declares, as the deadline pass, the holds' interest and the page's asset
    feed read them (rule **Changes name what moved**)."""

    async def main() -> None:
        async with await connect(etcd_endpoint) as store:
            keys, assets_keys = KeyLayout(etcd_prefix), AssetKeys(etcd_prefix)
            await write_estate(store, etcd_prefix)
            await store.put(keys.hold_key("h-old"), hold_value("h-old"))
            informer, *_ = informer_for(etcd_prefix)
            holds = HoldIndex(keys)
            informer = Informer(informer.view, [*informer.indexes, holds], hints=informer.hints)
            loaded = await informer.load(store, etcd_prefix + "/")
            assert set(holds.holds) == {"h-old"}
            await store.put(keys.deadline_key(A, P1), deadline_value(DeadlineState.LATE))
            await store.delete(keys.deadline_key(B, P1))
            await store.put(keys.deadline_key(B, P2), b"{not json")  # named as a problem, not as moved
            await store.put(keys.deadline_level_key(A, P1, "page"), deadline_value(DeadlineState.LATE))
            await store.put(keys.hold_key("h-new"), hold_value("h-new"))
            await store.delete(keys.hold_key("h-old"))
            await store.put(assets_keys.event_key("team_a", URI, 3), event_value(3))
            await store.delete(assets_keys.delivery_key("team_b", "team_a", URI, 1))
            last = await store.put(keys.run_key(B, P2), run_value(RunState.RUNNING, "b2"))
            seen: list[Changes] = []
            async for batch in store.watch_prefix(etcd_prefix + "/", loaded.revision, informer.known):
                seen.append(informer.apply(batch))
                if batch.revision >= last:
                    break
            assert set().union(*(c.of(DeadlineIndex.RECORDS) for c in seen)) == {(A, P1), (B, P1)}
            assert set().union(*(c.of(HoldIndex.HOLDS) for c in seen)) == {"h-new", "h-old"}
            assert set().union(*(c.of(AssetIndex.KEYS) for c in seen)) == {
                assets_keys.event_key("team_a", URI, 3),
                assets_keys.delivery_key("team_b", "team_a", URI, 1),
            }
            assert [list(c.of(View.NODES)) for c in seen if c.of(View.NODES)] == [[(B, P2)]]
            assert [p[:2] for c in seen for p in c.problems] == [("deadline", keys.deadline_key(B, P2))]
            assert set(holds.holds) == {"h-new"}

    arun(main())


keys_strategy = st.lists(st.text(alphabet="ab/0", min_size=0, max_size=6), min_size=1, max_size=12)


@given(keys_strategy, st.text(alphabet="ab/0", min_size=1, max_size=4))
def test_a_page_reaches_an_index_whenever_it_holds_one_of_its_keys(keys: list[str], prefix: str) -> None:
    """The load's page test never skips a page (sorted keys) that holds a key under an index's prefix (rule 2)."""
    page = sorted(keys)
    if any(k.startswith(prefix) for k in page):
        assert _may_hold(page[0], page[-1], prefix)


def test_the_watcher_counts_what_every_index_skips_as_malformed(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path, arun: Callable[..., Any]
) -> None:
    """``coordinator_malformed_values_total`` counts the unparsable values the indexes leave out (a deadline record
    at load, an asset event from the watch) as it counts the view's (a run state)."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "instances": {"default": {}}, "dags": {}}))
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")
    keys, assets = settings.keys, AssetKeys(etcd_prefix)

    def malformed(watcher: Watcher) -> float:
        return next(s.value for family in watcher.metrics.registry.collect() for s in family.samples
                    if s.name == "coordinator_malformed_values_total")  # fmt: skip

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.deadline_key(A, P1), b"{not json")
            await store.put(keys.run_key(A, P1), b"{not json")
            watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w1")
            revision = await watcher.load()
            assert malformed(watcher) == 2
            last = await store.put(assets.event_key("team_a", URI, 9), b"{not json")
            async for batch in store.watch_prefix(keys.root, revision, watcher.informer.known):
                watcher._apply_batch(batch)
                if batch.revision >= last:
                    break
            assert malformed(watcher) == 3

    arun(main())


def test_the_watcher_counts_live_watcher_services_from_the_presence_keys(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path, arun: Callable[..., Any]
) -> None:
    """The watcher's ``coordinator_watchers`` gauge follows the presence keys its informer loads and watches: watcher
    services only (a ``reconcile`` pass and a value of another version are not counted), down when a key
    goes (a dead watcher's lease expired)."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "instances": {"default": {}}, "dags": {}}))
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=deps, http="off")
    keys = settings.keys

    def gauge(watcher: Watcher) -> float:
        return next(s.value for family in watcher.metrics.registry.collect() for s in family.samples
                    if s.name == "coordinator_watchers")  # fmt: skip

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.watcher_key("w1"), presence_value("w1"))
            once = WatcherPresence(id="dag", started_at=AT, mode=RECONCILE_ONCE).model_dump_json().encode()
            await store.put(keys.watcher_key("dag"), once)
            await store.put(keys.watcher_key("old"), b'{"id": 1}')  # another version's value: not counted
            watcher = Watcher(settings, store, GraphSource(deps), {}, watcher_id="w1")
            revision = await watcher.load()
            assert gauge(watcher) == 1
            await store.put(keys.watcher_key("w2"), presence_value("w2"))
            assert await store.delete(keys.watcher_key("w1"))
            last = await store.put(keys.watcher_key("w3"), presence_value("w3"))
            async for batch in store.watch_prefix(keys.root, revision, watcher.informer.known):
                watcher._apply_batch(batch)
                if batch.revision >= last:
                    break
            assert gauge(watcher) == 2 and [w.id for w in watcher.running.watchers] == ["dag", "w2", "w3"]

    arun(main())
