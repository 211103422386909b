"""``coordinator mark`` against a real etcd: writes, refusals, input and connection errors. The connection error runs
a real process (``main()`` of ``coordinator.cli``); the others run the same ``main()`` in the test process
(tests/support/cli_inproc.py), which spares a 0.6 s CPU interpreter start per call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import pytest

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record, parse_run_record
from coordinator.etcd import KV, EtcdStore
from coordinator.runtime.settings import EtcdSettings
from tests.support.cli_inproc import run_cli

PARTITION = "2026-01-01T00:00:00Z"
Mark = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def mark(etcd_endpoint: str, etcd_prefix: str) -> Mark:
    """Run ``coordinator mark ARGS`` against the shared etcd under this test's prefix."""

    def run(*args: str, etcd: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(["mark", *args, "--etcd", etcd or etcd_endpoint, "--prefix", etcd_prefix])

    return run


def _read(settings: EtcdSettings, key: str) -> KV | None:
    async def get() -> KV | None:
        async with await EtcdStore.connect(settings) as store:
            return await store.get(key)

    return asyncio.run(get())


def _record(kv: KV | None) -> RunRecord:
    assert kv is not None
    record, problem = parse_run_record(kv.value)
    assert record is not None, problem
    return record


def test_mark_writes_a_run_record(mark: Mark, etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """mark writes the run key with the state, manual__ run id, attempt 0, source "mark" and a UTC timestamp."""
    done = mark("01_pipeline", "--partition", "2026-01-01", "--state", "SUCCESS")
    assert done.returncode == 0, done.stderr
    assert f"marked 01_pipeline {PARTITION} success (run manual__{PARTITION}, attempt 0)" in done.stdout
    key = KeyLayout(etcd_prefix).run_key(NodeId("default", "01_pipeline"), PARTITION)
    record = _record(_read(etcd_settings, key))
    assert (record.state, record.run_id, record.clear_number, record.source) == (
        RunState.SUCCESS,
        f"manual__{PARTITION}",
        0,
        "mark",
    )
    assert record.updated_at is not None and record.updated_at.utcoffset() is not None
    assert record.end_date is not None


def test_mark_keeps_the_stored_run_id_and_instance(mark: Mark, etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """Marking a run the plugin recorded keeps its run id and attempt; instance/dag_id addresses another instance."""
    key = KeyLayout(etcd_prefix).run_key(NodeId("team_a", "load"), PARTITION)

    async def seed() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            record = RunRecord(state=RunState.RUNNING, run_id="scheduled__x", clear_number=2, source="plugin")
            await store.put(key, dump_record(record))

    asyncio.run(seed())
    done = mark("team_a/load", "--partition", PARTITION, "--state", "failed")
    assert done.returncode == 0, done.stderr
    assert "was running" in done.stdout
    record = _record(_read(etcd_settings, key))
    assert (record.state, record.run_id, record.clear_number) == (RunState.FAILED, "scheduled__x", 2)


def test_mark_refuses_a_no_op_rewrite_unless_forced(mark: Mark, etcd_settings: EtcdSettings, etcd_prefix: str) -> None:
    """Marking the state a run already has is refused (nothing written); --force records a new attempt."""
    key = KeyLayout(etcd_prefix).run_key(NodeId("default", "dag"), PARTITION)
    assert mark("dag", "--partition", PARTITION, "--state", "success").returncode == 0
    before = _read(etcd_settings, key)

    again = mark("dag", "--partition", PARTITION, "--state", "success")
    assert again.returncode == 1
    assert "already success" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert _read(etcd_settings, key) == before

    forced = mark("dag", "--partition", PARTITION, "--state", "success", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "attempt 1" in forced.stdout
    assert _record(_read(etcd_settings, key)).clear_number == 1


def test_mark_writes_a_segment_and_a_time_with_a_segment(
    mark: Mark, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """--partition eu and 2026-01-01~eu write the run keys of those partitions (a date in any form, made canonical)."""
    keys = KeyLayout(etcd_prefix)
    for given, canonical in (("eu", "eu"), ("2026-01-01~eu", f"{PARTITION}~eu")):
        done = mark("regions", "--partition", given, "--state", "success")
        assert done.returncode == 0, done.stderr
        assert f"marked regions {canonical} success" in done.stdout
        assert _record(_read(etcd_settings, keys.run_key(NodeId("default", "regions"), canonical))).state == "success"


def test_mark_refuses_to_move_an_attempt_backwards(mark: Mark) -> None:
    """A finished attempt cannot be marked running again without --force (it would hide the result)."""
    assert mark("dag", "--partition", PARTITION, "--state", "success").returncode == 0
    back = mark("dag", "--partition", PARTITION, "--state", "running")
    assert back.returncode == 1
    assert "back in time" in back.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("bad id!", "--partition", PARTITION, "--state", "success"), "invalid dag id", id="dag-id"),
        pytest.param(("dag", "--partition", "2026-01-01T00:00:00", "--state", "success"), "no time zone", id="naive"),
        pytest.param(("dag", "--partition", "2026-1-1", "--state", "success"), "invalid partition", id="partition"),
        pytest.param(("dag", "--partition", PARTITION, "--state", "done"), "invalid state 'done'", id="state"),
        pytest.param(
            ("a/dag", "--partition", PARTITION, "--state", "success", "--instance", "b"),
            "--instance is 'b'",
            id="instance-conflict",
        ),
    ],
)
def test_mark_rejects_bad_input_with_exit_2(mark: Mark, args: tuple[str, ...], message: str) -> None:
    """Invalid dag id, partition, state or instance exits 2 with a one-line message and no traceback."""
    done = mark(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_mark_with_etcd_unreachable_exits_1() -> None:
    """An unreachable etcd exits 1 with a message naming the endpoint, without a traceback."""
    cli = [sys.executable, "-c", "from coordinator.cli import main; main()"]
    done = subprocess.run(
        [*cli, "mark", "dag", "--partition", PARTITION, "--state", "success", "--etcd", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
