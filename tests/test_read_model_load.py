"""``coordinator.informer.read_model.load``, the one loader of every reader, and ``Informer.watch``, the one watch
loop, against a real etcd: families fill only their indexes, a scope reads only its parts, a restricted role loads
what it may read, the watch applies each batch under the caller's lock and relists after a compaction, and no module
outside the informer and the etcd adapter lists or watches the store."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.cli.doctor_cmds import is_denied, readable_parts
from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.deadline.records import DeadlineRecord
from coordinator.core.deadline.states import DeadlineState
from coordinator.core.floor import RetentionFloor, dump_floor
from coordinator.core.lineage.facts import LineageRun
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.view import View
from coordinator.errors import StoreError
from coordinator.etcd import EtcdStore
from coordinator.informer import Changes
from coordinator.informer.presence_value import WatcherPresence
from coordinator.informer.read_model import ALL, READERS, VIEW, Family, Scope, StoreModel, load
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer

A, B = NodeId("team_a", "extract"), NodeId("team_b", "load")
P1, P2 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
URI = "s3://lake/orders"
AT = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def lineage_value(partition: str) -> bytes:
    run = LineageRun(namespace="ns", job="job", dag="extract", partition=partition, anchor=AT)
    return run.model_dump_json().encode()


async def write_estate(store: EtcdStore, prefix: str) -> None:
    """A key or more of every family."""
    keys, assets = KeyLayout(prefix), AssetKeys(prefix)
    event = AssetEventFact(event_id=1, uri=URI, timestamp=AT).model_dump_json().encode()
    delivery = DeliveryRecord(status=DeliveryStatus.DONE, source="team_a", event_id=1, uri=URI, requested_at=AT,
                              done_at=AT, target_event_id=1).model_dump_json().encode()  # fmt: skip
    written = {
        keys.run_key(A, P1): dump_record(RunRecord(state=RunState.SUCCESS, run_id="a1")),
        keys.trigger_key(B, P1): b"not a ledger entry",
        keys.deadline_key(B, P1): dump_record(DeadlineRecord(state=DeadlineState.LATE, deadline=AT, changed_at=AT)),
        keys.config_key("retention"): dump_floor(RetentionFloor(before=P2, by="test", at=AT)),
        keys.leader: b"w1",
        keys.watcher_key("w1"): WatcherPresence(id="w1", started_at=AT).model_dump_json().encode(),
        assets.event_key("team_a", URI, 1): event,
        assets.delivery_key("team_b", "team_a", URI, 1): delivery,
        keys.lineage_key("team_a", "r1"): lineage_value(P1),
        keys.lineage_key("team_b", "r2"): lineage_value(P1),
    }
    for key, value in written.items():
        await store.put(key, value)


def filled(model: StoreModel) -> dict[str, bool]:
    """Which indexes a model holds anything in."""
    return {
        "view": bool(model.view.runs or model.view.problems or model.view.floor),
        "deadlines": model.deadlines is not None and bool(model.deadlines.records),
        "presence": model.presence is not None and model.presence.leader is not None,
        "assets": model.assets is not None and bool(model.assets.events) and bool(model.assets.ledger),
        "lineage": model.lineage is not None and len(model.lineage.records) == 2,
    }


@pytest.mark.parametrize(
    ("families", "expected"),
    [
        ({Family.ASSETS}, {"assets"}),
        ({Family.PRESENCE, Family.DEADLINES}, {"presence", "deadlines"}),
        ({Family.LINEAGE}, {"lineage"}),
        (VIEW, {"view"}),
        (READERS, {"view", "presence", "deadlines"}),
        (ALL, {"view", "presence", "deadlines", "assets", "lineage"}),
    ],
    ids=["assets", "presence-and-deadlines", "lineage", "view", "readers", "all"],
)
def test_load_fills_only_the_indexes_of_the_families_asked_for(
    etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any], families: set[Family], expected: set[str]
) -> None:
    """Each index of a family asked for holds its keys; the others are not built (None), and the view holds nothing
    when none of its families is asked for."""

    async def main() -> StoreModel:
        async with await EtcdStore.connect(etcd_settings) as store:
            await write_estate(store, etcd_prefix)
            return await load(store, KeyLayout(etcd_prefix), families)

    model = arun(main())
    assert {name for name, full in filled(model).items() if full} == expected
    built = {"deadlines": model.deadlines, "presence": model.presence, "assets": model.assets, "lineage": model.lineage}
    assert {name for name, index in built.items() if index is not None} == expected - {"view"}
    if "view" in expected:  # the bad ledger entry: the view's problem, kept (``read_model``'s **Bad values are kept**)
        assert list(model.bad_values()) == [KeyLayout(etcd_prefix).trigger_key(B, P1)]


def test_a_scope_reads_only_its_parts(etcd_settings: EtcdSettings, etcd_prefix: str, arun: Callable[..., Any]) -> None:
    """A scope of one instance's lineage records and the floor's key (the retirer's) reads those and nothing else:
    the other instance's record, the run states and the presence stay unread."""
    keys = KeyLayout(etcd_prefix)

    async def main() -> StoreModel:
        async with await EtcdStore.connect(etcd_settings) as store:
            await write_estate(store, etcd_prefix)
            scope = Scope((f"{keys.lineage}team_a/",), (keys.config_key("retention"),))
            return await load(store, keys, {Family.CONFIG, Family.LINEAGE}, scope)

    model = arun(main())
    assert model.lineage is not None and list(model.lineage.records) == [keys.lineage_key("team_a", "r1")]
    assert model.view.floor is not None and model.view.floor.before == P2
    assert not model.view.runs and not model.view.problems and model.presence is None
    assert list(model.revisions) == [f"{keys.lineage}team_a/"]


def test_a_role_that_may_read_only_part_of_the_prefix_loads_what_it_may_and_names_the_rest(
    private_etcd: EtcdServer, arun: Callable[..., Any]
) -> None:
    """Under a role granted only the run states and the leader key (doctor's restricted path): the
    whole-prefix load is refused, and the load of the families one by one holds the run state and the leader and
    names every other family as unread."""
    prefix = "/coordinator"
    keys = KeyLayout(prefix)
    etcdctl = [str(private_etcd.binary.with_name("etcdctl")), f"--endpoints={private_etcd.endpoint}"]

    def ctl(*args: str) -> None:
        subprocess.run([*etcdctl, *args], check=True, capture_output=True, timeout=30)

    async def seed() -> None:
        async with await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))) as store:
            await write_estate(store, prefix)

    arun(seed())
    ctl("role", "add", "root")
    ctl("user", "add", "root", "--new-user-password=root-pw")
    ctl("user", "grant-role", "root", "root")
    ctl("role", "add", "runs")
    ctl("role", "grant-permission", "runs", "read", "--prefix=true", keys.runs)
    ctl("role", "grant-permission", "runs", "read", keys.leader)
    ctl("user", "add", "runs", "--new-user-password=runs-pw")
    ctl("user", "grant-role", "runs", "runs")
    ctl("auth", "enable")
    settings = EtcdSettings.model_validate(
        {"endpoints": parse_endpoints(private_etcd.endpoint), "username": "runs", "password": "runs-pw"}
    )

    async def main() -> StoreModel:
        async with await EtcdStore.connect(settings) as store:
            with pytest.raises(StoreError) as refused:
                await load(store, keys, READERS)
            assert is_denied(refused.value)
            return await load(store, keys, READERS, readable_parts(keys), readable_only=is_denied)

    model = arun(main())
    assert sorted((n, p) for (n, p) in model.view.runs) == [(A, P1)]
    assert model.leader is not None and model.leader.identity == "w1"
    assert keys.runs not in model.unread and keys.leader not in model.unread
    assert {keys.triggers, keys.deadlines, keys.watchers, keys.config_key("retention"), keys.lineage} <= set(
        model.unread
    )
    assert model.view.floor is None and not model.recorded


def test_the_informer_watch_applies_each_batch_under_the_lock_and_relists_after_a_compaction(
    private_etcd: EtcdServer, arun: Callable[..., Any]
) -> None:
    """``Informer.watch`` from a load's revision: a put reaches the view, ``then`` sees each batch's changes while
    the caller's lock is held; restarted from that revision after a delete and a put were compacted away, it
    relists: one relisted batch that drops the deleted key and adds the new one."""
    prefix = "/watch"
    keys = KeyLayout(prefix)
    settings = EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))

    async def main() -> None:
        async with await EtcdStore.connect(settings) as store:
            await store.put(keys.run_key(A, P1), dump_record(RunRecord(state=RunState.SUCCESS, run_id="a1")))
            model = await load(store, keys, READERS)
            informer = model.informer
            assert informer is not None
            lock = asyncio.Lock()
            seen: list[tuple[Changes, bool]] = []

            async def follow(revision: int, until: Callable[[], bool]) -> None:
                async with asyncio.timeout(30):
                    async for _ in informer.watch(store, keys.root, revision, lock=lock,
                                                  then=lambda c: seen.append((c, lock.locked()))):  # fmt: skip
                        if until():
                            return

            put = await store.put(keys.run_key(B, P1), dump_record(RunRecord(state=RunState.RUNNING, run_id="b1")))
            await follow(model.revision, lambda: (B, P1) in informer.view.runs)
            assert [(c.revision, c.relisted, locked) for c, locked in seen] == [(put, False, True)]
            assert list(seen[0][0].of(View.NODES)) == [(B, P1)]
            seen.clear()
            await store.delete(keys.run_key(A, P1))
            last = await store.put(keys.run_key(A, P2), dump_record(RunRecord(state=RunState.SUCCESS, run_id="a2")))
            await store.compact(last)
            await follow(put, lambda: True)
            assert [(c.revision, c.relisted) for c, _ in seen] == [(last, True)]
            assert sorted(informer.view.runs) == [(A, P2), (B, P1)]
            assert informer.view.revision == last

    arun(main())


#: Outside the watcher and the commands: the wait's hub runs in Airflow's triggerer, where no read model exists, and
#: follows the permits of its own waiting tasks alone (one watch of ``{prefix}/permits/`` per triggerer loop, semantics
#: `scheduled-permit`); loading the whole store there would cost every triggerer the watcher's memory.
TRIGGERER_WATCH = {("coordinator/airflow_plugin/permit_hub.py", "watch_prefix")}
#: ``coordinator prune`` deletes the permits of the partitions it prunes: no read model holds permits (the watcher's
#: view leaves them to the triggerer's waits), so the command reads that one prefix itself, once, by mod revision.
PRUNE_PERMITS = {("coordinator/cli/prune_cmds.py", "snapshot")}


def test_no_module_outside_the_informer_and_the_etcd_adapter_lists_or_watches_the_store() -> None:
    """Only ``coordinator/informer/`` and ``coordinator/etcd/`` call ``watch_prefix``, ``snapshot`` or
    ``stream_snapshot`` (and the triggerer's wait hub watches its permits, prune reads them): every other reader
    loads through ``read_model.load``."""
    call = re.compile(r"\.(watch_prefix|stream_snapshot|snapshot)\(")
    found = set()
    for path in sorted((ROOT / "coordinator").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(("coordinator/informer/", "coordinator/etcd/")):
            continue
        for match in call.finditer(path.read_text()):
            found.add((relative, match.group(1)))
    assert found == TRIGGERER_WATCH | PRUNE_PERMITS
