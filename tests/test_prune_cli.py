"""``coordinator prune`` as a real process against a real etcd: dry run, deletes, kept partitions, floor, bad input."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, TriggerRecord, TriggerStatus, dump_record
from coordinator.core.permit import dump_permit, permit_key, permit_of
from coordinator.core.retention import KeepReason, KeyFact, KeyKind, parse_floor
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from coordinator.watcher.retention import delete_selected
from devtools.etcd_server import find_etcd_binary

OLD, HELD_INTENT, HELD_RUN, CUTOFF, NEW = (
    "2025-01-01T00:00:00Z",
    "2025-01-02T00:00:00Z",
    "2025-01-03T00:00:00Z",
    "2025-02-01T00:00:00Z",
    "2025-02-02T00:00:00Z",
)
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(etcd_endpoint: str, etcd_prefix: str, tmp_path: Path) -> Cli:
    """Run ``coordinator ARGS`` against the shared etcd under this test's prefix."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "coordinator.cli", *args, "--etcd", etcd_endpoint, "--prefix", etcd_prefix]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    return run


def _keys_of(settings: EtcdSettings, prefix: str) -> dict[str, bytes]:
    async def go() -> dict[str, bytes]:
        async with await EtcdStore.connect(settings) as store:
            snap = await store.snapshot(prefix + "/")
            return {kv.key: kv.value for kv in snap.kvs}

    return asyncio.run(go())


def _seed(settings: EtcdSettings, prefix: str) -> KeyLayout:
    """Three old partitions (one plain, one with a pending intent, one with a running run) and two after the cutoff."""
    keys = KeyLayout(prefix)
    a, b = NodeId("default", "a"), NodeId("default", "b")
    done = TriggerRecord(status=TriggerStatus.DONE, action="create", run_id="coordinator__x")
    items: dict[str, bytes] = {}
    for p in (OLD, HELD_INTENT, HELD_RUN, CUTOFF, NEW):
        items[keys.run_key(a, p)] = dump_record(RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{p}"))
        items[keys.run_key(b, p)] = dump_record(RunRecord(state=RunState.SUCCESS, run_id=f"coordinator__{p}"))
        items[keys.trigger_key(b, p)] = dump_record(done)
    items[keys.trigger_key(b, HELD_INTENT)] = dump_record(done.model_copy(update={"status": TriggerStatus.PENDING}))
    items[keys.run_key(b, HELD_RUN)] = dump_record(RunRecord(state=RunState.RUNNING, run_id="r", clear_number=1))
    items[keys.config_key(f"backfill/default/b/{OLD}")] = b"{}"

    async def put_all() -> None:
        async with await EtcdStore.connect(settings) as store:
            for key, value in items.items():
                await store.put(key, value)

    asyncio.run(put_all())
    return keys


def _floor_before(settings: EtcdSettings, keys: KeyLayout) -> str:
    floor, problem = parse_floor(_keys_of(settings, keys.prefix)[keys.config_key("retention")])
    assert floor is not None, problem
    return floor.before


def test_dry_run_lists_what_would_go_and_changes_nothing(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """--dry-run prints the selection and the kept partitions with reasons; no key is deleted, no floor written."""
    _seed(etcd_settings, etcd_prefix)
    before = _keys_of(etcd_settings, etcd_prefix)
    result = cli("prune", "--before", "2025-02-01", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would delete 4 key(s) of 1 partition(s) (2025-01-01T00:00:00Z .. 2025-01-01T00:00:00Z): " \
           "run 2, ledger 1, backfill 1" in result.stdout  # fmt: skip
    assert "retention floor 2025-02-01T00:00:00Z (would record; was none)" in result.stdout
    assert f"  {HELD_INTENT}: unfinished intent: default/b: intent pending (create coordinator__x)" in result.stdout
    assert f"  {HELD_RUN}: queued or running run: default/b: running (run r)" in result.stdout
    assert _keys_of(etcd_settings, etcd_prefix) == before


def test_prune_records_the_floor_then_deletes_old_keys_and_keeps_held_partitions(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """The floor is written; the plain old partition's keys are gone; held partitions and newer ones stay whole."""
    keys = _seed(etcd_settings, etcd_prefix)
    result = cli("prune", "--before", CUTOFF, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["deleted"] == 4 and report["transactions"] == 1 and report["floor_written"] is True
    assert report["kept_counts"] == {"unfinished intent": 1, "queued or running run": 1}
    assert [k["partition"] for k in report["kept"]] == [HELD_INTENT, HELD_RUN]
    left = _keys_of(etcd_settings, etcd_prefix)
    assert not [k for k in left if k.endswith(OLD)]
    for p in (HELD_INTENT, HELD_RUN, CUTOFF, NEW):
        assert len([k for k in left if k.endswith(p)]) == 3, p
    floor, _ = parse_floor(left[keys.config_key("retention")])
    assert floor is not None and floor.before == CUTOFF and floor.by.startswith("prune@")


def test_prune_deletes_the_permits_of_the_partitions_it_prunes(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A scheduled dependent's permit goes with its pruned partition; the permits of a partition kept whole (a run
    still running) and of one after the cutoff stay."""
    keys = _seed(etcd_settings, etcd_prefix)
    b = NodeId("default", "b")
    granted = dump_permit(permit_of(TriggerRecord(status=TriggerStatus.DONE, action="create", run_id="scheduled__x")))

    async def grant() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for p in (OLD, HELD_RUN, NEW):
                await store.put(permit_key(keys, b, p), granted)

    asyncio.run(grant())
    result = cli("prune", "--before", CUTOFF, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["selected"]["permit"] == 1 and report["deleted"] == 5, report
    left = _keys_of(etcd_settings, etcd_prefix)
    assert permit_key(keys, b, OLD) not in left
    assert permit_key(keys, b, HELD_RUN) in left and permit_key(keys, b, NEW) in left


def test_the_leaders_retention_deletes_a_permit_with_its_ledger_entry(
    etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A permit written in its ledger entry's transaction has the entry's mod revision: the leader's retention, whose
    view holds no permit, deletes it by that revision with the entry (``partition_facts`` with the scheduled DAGs)."""
    keys = KeyLayout(etcd_prefix)
    b = NodeId("default", "b")
    record = TriggerRecord(status=TriggerStatus.DONE, action="create", run_id="scheduled__x")

    async def go() -> dict[str, bytes]:
        async with await EtcdStore.connect(etcd_settings) as store:
            wrote = await store.cas(keys.trigger_key(b, OLD), dump_record(record), 0,
                                    also=((permit_key(keys, b, OLD), dump_permit(permit_of(record))),))  # fmt: skip
            assert wrote.succeeded
            facts = [KeyFact(keys.trigger_key(b, OLD), KeyKind.LEDGER, b, OLD, wrote.revision),
                     KeyFact(permit_key(keys, b, OLD), KeyKind.PERMIT, b, OLD, wrote.revision)]  # fmt: skip
            outcome = await delete_selected(store, facts)
            assert (outcome.deleted, outcome.changed) == (2, [])
            return {kv.key: kv.value for kv in (await store.snapshot(etcd_prefix + "/")).kvs}

    assert asyncio.run(go()) == {}


def test_the_floor_never_moves_back_without_lower_floor(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """An earlier cutoff keeps the floor and says so; --lower-floor moves it back on purpose."""
    keys = _seed(etcd_settings, etcd_prefix)
    assert cli("prune", "--before", NEW).returncode == 0
    result = cli("prune", "--before", OLD)
    assert result.returncode == 0, result.stderr
    assert f"retention floor {NEW} (unchanged)" in result.stdout and "never moves back" in result.stdout
    assert _floor_before(etcd_settings, keys) == NEW
    result = cli("prune", "--before", OLD, "--lower-floor")
    assert f"retention floor {OLD} (recorded; was {NEW})" in result.stdout, result.stdout
    assert _floor_before(etcd_settings, keys) == OLD


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--before", "yesterday"], "--before: invalid partition 'yesterday'"),
        (["--before", "2025-01-01", "--older-than", "90d"], "give exactly one of --before DATE or --older-than"),
        ([], "give exactly one of --before DATE or --older-than"),
        (["--before", "2999-01-01"], "the cutoff 2999-01-01T00:00:00Z is in the future"),
        (["--older-than", "90days"], "--older-than: invalid duration '90days'"),
        (["--older-than", "0d"], "it must be longer than zero"),
        (["--before", "2025-01-01", "--format", "yaml"], "--format must be text or json"),
    ],
    ids=["unparsable-date", "both-flags", "neither-flag", "future-cutoff", "bad-duration", "zero-duration", "format"],
)
def test_bad_input_exits_2_with_a_clear_message_and_touches_nothing(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str, args: list[str], message: str
) -> None:
    """Each bad input exits 2 naming what is wrong; etcd is left as it was."""
    _seed(etcd_settings, etcd_prefix)
    before = _keys_of(etcd_settings, etcd_prefix)
    result = cli("prune", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert _keys_of(etcd_settings, etcd_prefix) == before


def test_older_than_prunes_by_age(cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """--older-than 1d retires every seeded partition (all long past) except the held ones."""
    _seed(etcd_settings, etcd_prefix)
    report = json.loads(cli("prune", "--older-than", "1d", "--format", "json").stdout)
    assert report["partitions"] == [OLD, CUTOFF, NEW] and report["deleted"] == 10


def test_a_key_written_during_the_prune_is_kept_and_the_rest_deleted(
    etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """A guarded batch that meets a changed key deletes the others and keeps the changed one (never lost)."""
    keys = KeyLayout(etcd_prefix)
    node = NodeId("default", "a")

    async def go() -> tuple[int, list[str], dict[str, bytes]]:
        async with await EtcdStore.connect(etcd_settings) as store:
            facts = []
            for p in (OLD, HELD_INTENT, HELD_RUN):
                rev = await store.put(keys.run_key(node, p), b'{"state":"success","run_id":"x"}')
                facts.append(KeyFact(keys.run_key(node, p), KeyKind.RUN, node, p, rev))
            await store.put(keys.run_key(node, HELD_INTENT), b'{"state":"running","run_id":"x","clear_number":1}')
            outcome = await delete_selected(store, facts, size=2)
            snap = await store.snapshot(etcd_prefix + "/")
            return outcome.deleted, outcome.changed, {kv.key: kv.value for kv in snap.kvs}

    deleted, changed, left = asyncio.run(go())
    assert deleted == 2 and changed == [keys.run_key(node, HELD_INTENT)]
    assert list(left) == [keys.run_key(node, HELD_INTENT)] and b"running" in left[keys.run_key(node, HELD_INTENT)]
    assert KeepReason.CHANGED.value == "changed while pruning"


def test_a_partition_larger_than_one_transaction_goes_whole_and_nothing_else_is_touched(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """130 DAGs in one old partition take several transactions; config, leader, malformed and newer keys stay."""
    keys = KeyLayout(etcd_prefix)
    old = [keys.run_key(NodeId("team_b", f"dag_{i:03d}"), OLD) for i in range(130)]
    untouchable = [keys.config_key("graph"), keys.leader, keys.runs + "default/a/not-a-partition",
                   keys.run_key(NodeId("default", "a"), CUTOFF)]  # fmt: skip

    async def put_all() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key in old + untouchable:
                await store.put(key, b'{"state":"success","run_id":"x"}')

    asyncio.run(put_all())
    report = json.loads(cli("prune", "--before", CUTOFF, "--format", "json").stdout)
    assert report["deleted"] == 130 and report["transactions"] == 3
    assert sorted(_keys_of(etcd_settings, etcd_prefix)) == sorted([*untouchable, keys.config_key("retention")])


def test_the_etcd_flags_the_retention_docs_name_exist() -> None:
    """Every etcd server flag in docs/howto/etcd.md's retention and compaction sections is one etcd 3.5 knows."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "howto" / "etcd.md").read_text()
    section = text[text.index("## Retire old partitions") : text.index("## Backups")]
    helptext = subprocess.run([str(find_etcd_binary()), "--help"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", helptext.stdout + helptext.stderr, flags=re.MULTILINE))
    named = set(re.findall(r"(--(?:auto-compaction|quota-backend|max-txn)[a-z-]*)", section))
    assert named >= {"--auto-compaction-mode", "--auto-compaction-retention", "--quota-backend-bytes", "--max-txn-ops"}
    assert named <= known, named - known


def test_backfill_refuses_a_window_that_reaches_below_the_floor(
    cli: Cli, etcd_settings: EtcdSettings, etcd_prefix: str, tmp_path: Path
) -> None:
    """An hour after the floor whose day starts before it is retired: backfill exits 2 and writes no request."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps({"version": 1, "dags": {
        "daily": {"partitions": {"cron": "0 0 * * *"}},
        "hourly": {"partitions": {"cron": "0 * * * *"}, "upstreams": "daily"}}}))  # fmt: skip
    keys = KeyLayout(etcd_prefix)

    async def put() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(keys.run_key(NodeId("default", "daily"), "2025-03-10T00:00:00Z"),
                            dump_record(RunRecord(state=RunState.SUCCESS, run_id="scheduled__x")))  # fmt: skip

    assert cli("prune", "--before", "2025-03-10T12:00:00Z").returncode == 0
    asyncio.run(put())  # the day's success, written (again) after the prune
    result = cli("backfill", "hourly", "--from", "2025-03-10T12:00:00Z", "--to", "2025-03-10T23:00:00Z",
                 "--deps", str(deps))  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = " ".join(result.stderr.split())
    assert "hourly 2025-03-10T12:00:00Z: its inputs reach back to 2025-03-10T00:00:00Z" in message, message
    assert not [k for k in _keys_of(etcd_settings, etcd_prefix) if "/config/backfill/" in k]
