"""The audit trail under retention (issue 51; ``core.retention``'s rule g): history entries written before the cutoff
and holds that stopped holding before it are deleted by ``coordinator prune``, guarded by their mod revisions, and left
alone by the leader's retention; a standing hold and everything after the cutoff stay (real etcd)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.holds import HistoryAction, HistoryEntry, Hold, parse_selector
from coordinator.core.model import KeyLayout, canonical_partition, dump_record
from coordinator.core.retention import AuditKind, select_audit
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.etcd.types import Fence
from coordinator.informer.retention import RetentionTracker
from coordinator.runtime.settings import EtcdSettings
from coordinator.watcher.executor import Executor
from coordinator.watcher.keys import AllPartitions, RetentionPartition
from coordinator.watcher.retention import RetentionReconciler, delete_selected, read_audit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUTOFF = "2026-02-01T00:00:00Z"
OLD, NEW = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 2, 10, tzinfo=UTC)


def a_hold(hold_id: str, created: datetime, **fields: Any) -> Hold:
    return Hold.model_validate({
        "id": hold_id, "selector": parse_selector("01_pipeline"), "nodes": ("default/01_pipeline",),
        "reason": "bad data", "by": "alice", "created_at": created, **fields,
    })  # fmt: skip


def entry(entry_id: str, at: datetime) -> HistoryEntry:
    return HistoryEntry(id=entry_id, action=HistoryAction.HOLD, by="alice", at=at, why="bad data", target="01_pipeline")


#: Each hold of the table, and whether retention at CUTOFF (at NOW) deletes it.
HOLDS = [
    pytest.param(a_hold("h-old", OLD, released_at=OLD + timedelta(days=1)), True, id="released-before-the-cutoff"),
    pytest.param(a_hold("h-late", OLD, released_at=NEW), False, id="released-after-the-cutoff"),
    pytest.param(a_hold("h-expired", OLD, until=OLD + timedelta(days=2)), True, id="expired-before-the-cutoff"),
    pytest.param(a_hold("h-stand", OLD - timedelta(days=300)), False, id="standing-however-old"),
    pytest.param(a_hold("h-until", OLD, until=NOW + timedelta(days=1)), False, id="standing-until-later"),
]


@pytest.mark.parametrize(("hold", "deleted"), HOLDS)
def test_a_hold_is_selected_only_once_it_stopped_holding_before_the_cutoff(hold: Hold, deleted: bool) -> None:
    """Released or expired before the cutoff: selected; released after it, or standing (however old): kept."""
    keys = KeyLayout("/p")
    found = select_audit(keys, {}, [(hold, 7)], CUTOFF, NOW)
    assert [(f.key, f.kind, f.mod_rev) for f in found] == ([(keys.hold_key(hold.id), AuditKind.HOLD, 7)] if deleted
                                                            else [])  # fmt: skip


def test_history_entries_before_the_cutoff_are_selected_by_the_time_in_their_key() -> None:
    """History keys written before the cutoff are selected oldest first; later ones, keys of another shape and values
    that do not parse (revision -1: their age is not known for sure) are not."""
    keys = KeyLayout("/p")
    old, older = keys.history_key(OLD, "e-1"), keys.history_key(OLD - timedelta(days=3), "e-0")
    history = {old: 11, older: 10, keys.history_key(NEW, "e-2"): 12, f"{keys.history}garbage": 13,
               keys.history_key(OLD, "e-bad"): -1}  # fmt: skip
    found = select_audit(keys, history, [], CUTOFF, NOW)
    assert [(f.key, f.mod_rev) for f in found] == [(older, 10), (old, 11)]


def seed(arun: Any, settings: EtcdSettings, keys: KeyLayout) -> None:
    """Two history entries (old, new) and four holds (released old, released new, standing old, expired old)."""

    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            for e in (entry("e-old", OLD), entry("e-new", NEW)):
                await store.put(keys.history_key(e.at, e.id), dump_record(e))
            for hold in (a_hold("h-old", OLD, released_at=OLD + timedelta(days=1)),
                         a_hold("h-new", OLD, released_at=NEW), a_hold("h-stand", OLD),
                         a_hold("h-expired", OLD, until=OLD + timedelta(days=1))):  # fmt: skip
                await store.put(keys.hold_key(hold.id), dump_record(hold))

    arun(write())


def remaining(arun: Any, settings: EtcdSettings, keys: KeyLayout) -> set[str]:
    async def read() -> set[str]:
        async with await EtcdStore.connect(settings) as store:
            records = await read_audit(store, keys)
        return {k.removeprefix(keys.history).split("Z-")[1] for k in records.history} | {h.id for h, _ in records.holds}

    result: set[str] = arun(read())
    return result


def test_prune_deletes_the_old_history_and_ended_holds_and_reports_them(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """`prune --dry-run` counts 1 history entry and 2 ended holds and deletes nothing; `prune` deletes exactly those;
    the new entry, the hold released after the cutoff and the standing hold stay."""
    keys = KeyLayout(etcd_prefix)
    seed(arun, etcd_settings, keys)

    def prune(*extra: str) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "coordinator.cli", "prune", "--before", CUTOFF, "--format", "json", *extra,
               "--etcd", etcd_endpoint, "--prefix", etcd_prefix]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    dry = prune("--dry-run")
    assert dry["audit"] == {"history": 1, "hold": 2} and dry["audit_deleted"] == 0 and dry["audit_refused"] is None
    assert remaining(arun, etcd_settings, keys) == {"e-old", "e-new", "h-old", "h-new", "h-stand", "h-expired"}
    report = prune()
    assert report["audit"] == {"history": 1, "hold": 2} and report["audit_deleted"] == 3, report
    assert remaining(arun, etcd_settings, keys) == {"e-new", "h-new", "h-stand"}


def test_an_audit_record_rewritten_after_it_was_read_is_kept(
    arun: Any, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """The deletes compare mod revisions: a released hold written again between the read and the delete is kept and
    reported as changed; the rest of the selection goes."""
    keys = KeyLayout(etcd_prefix)
    seed(arun, etcd_settings, keys)

    async def go() -> list[str]:
        async with await EtcdStore.connect(etcd_settings) as store:
            records = await read_audit(store, keys)
            facts = select_audit(keys, records.history, records.holds, CUTOFF, NOW)
            again = a_hold("h-old", OLD, released_at=OLD + timedelta(days=1), release_reason="noted later")
            await store.put(keys.hold_key("h-old"), dump_record(again))
            outcome = await delete_selected(store, facts)
        return outcome.changed

    assert arun(go()) == [keys.hold_key("h-old")]
    assert remaining(arun, etcd_settings, keys) == {"e-new", "h-new", "h-stand", "h-old"}


def test_the_leaders_retention_leaves_the_audit_trail_to_prune(
    arun: Any, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """The leader's retention (30 days at NOW), its sweep and a due partition retired (the floor recorded), deletes
    none of the history entries and holds, old or not: a watcher never writes the incident controls' keys
    (``coordinator prune`` ages them out)."""
    keys = KeyLayout(etcd_prefix)
    seed(arun, etcd_settings, keys)
    before = remaining(arun, etcd_settings, keys)

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.leader, b"w1")
            kv = await store.get(keys.leader)
            assert kv is not None
            fence = Fence(keys.leader, kv.create_revision)
            executor = Executor(store, {}, fence=lambda: fence)
            at = datetime(2026, 3, 3, tzinfo=UTC)  # cutoff 2026-02-01
            view, tracker = View(keys), RetentionTracker(keys)
            retention = RetentionReconciler(
                executor, keys, timedelta(days=30), 60.0, view, tracker, "w1", now=lambda: at
            )
            retention.controller.add(AllPartitions)
            retention.controller.add(RetentionPartition(canonical_partition(OLD)))
            assert await retention.controller.drain_ready() == 2
            assert await store.get(keys.config_key("retention")) is not None  # the partition was retired

    arun(go())
    assert remaining(arun, etcd_settings, keys) == before
