"""The engine's commands on bad input and the backfill request, against a real etcd (no watcher needed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from tests.support.cli_inproc import run_cli

ROOT = Path(__file__).resolve().parents[1]
DEPS = str(ROOT / "dependencies.json")


def cli(*args: str, endpoint: str, prefix: str) -> subprocess.CompletedProcess[str]:
    """``coordinator <args>`` in this process (tests/support/cli_inproc.py): these tests are about the commands'
    answers; a subprocess would add about 0.6 s of CPU per call."""
    return run_cli([*args, "--etcd", endpoint, "--prefix", prefix, "--deps", DEPS])


def put_runs(arun, settings: EtcdSettings, prefix: str, dag: str, partitions: list[str]) -> None:
    keys = KeyLayout(prefix)

    async def write() -> None:
        async with await EtcdStore.connect(settings) as store:
            for p in partitions:
                record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{p}")
                await store.put(keys.run_key(NodeId("default", dag), p), dump_record(record))

    arun(write())


def backfill_keys(arun, settings: EtcdSettings, prefix: str) -> list[str]:
    async def read() -> list[str]:
        async with await EtcdStore.connect(settings) as store:
            snap = await store.snapshot(KeyLayout(prefix).config_key("backfill/"))
        return [kv.key.rsplit("/", 1)[1] for kv in snap.kvs]

    return arun(read())


def test_backfill_requests_only_partitions_in_range_where_upstreams_ran(
    arun, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """backfill writes one request per partition in [--from, --to] where an upstream has run; --dry-run writes none."""
    parts = ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z"]
    put_runs(arun, etcd_settings, etcd_prefix, "01_pipeline", parts)
    dry = cli("backfill", "02_pipeline", "--from", "2026-01-01", "--to", "2026-01-03", "--dry-run",
              endpoint=etcd_endpoint, prefix=etcd_prefix)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "would request backfill of 02_pipeline for 2 partition(s)" in dry.stdout
    assert backfill_keys(arun, etcd_settings, etcd_prefix) == []
    done = cli("backfill", "02_pipeline", "--from", "2026-01-01", "--to", "2026-01-03",
               endpoint=etcd_endpoint, prefix=etcd_prefix)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert backfill_keys(arun, etcd_settings, etcd_prefix) == parts[:2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["backfill", "01_pipeline", "--from", "2026-01-01", "--to", "2026-01-02"], "is a root",
                     id="backfill-root"),
        pytest.param(["backfill", "nope", "--from", "2026-01-01", "--to", "2026-01-02"], "is not a DAG",
                     id="backfill-unknown-dag"),
        pytest.param(["backfill", "02_pipeline", "--from", "2026-01-05", "--to", "2026-01-02"], "is after",
                     id="backfill-reversed-range"),
        pytest.param(["backfill", "02_pipeline", "--from", "yesterday", "--to", "2026-01-02"], "invalid partition",
                     id="backfill-bad-date"),
        pytest.param(["why", "nope", "-p", "2026-01-01"], "is not a DAG", id="why-unknown-dag"),
        pytest.param(["why", "06_pipeline", "-p", "2026-01-01T00:00:00"], "no time zone", id="why-naive-date"),
        pytest.param(["status", "--format", "xml"], "--format must be text or json", id="status-bad-format"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_message(args: list[str], message: str, etcd_endpoint: str, etcd_prefix: str) -> None:
    """Every engine command refuses bad input with exit code 2 and a message naming the problem, no traceback."""
    result = cli(*args, endpoint=etcd_endpoint, prefix=etcd_prefix)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["why", "6_pipeline", "-p", "2026-01-01"], id="why-missing-leading-zero"),
        pytest.param(["backfill", "06_pipline", "--from", "2026-01-01", "--to", "2026-01-02"], id="backfill-typo"),
    ],
)
def test_an_unknown_dag_close_to_a_known_one_gets_a_suggestion(
    args: list[str], etcd_endpoint: str, etcd_prefix: str
) -> None:
    """A DAG name one edit away from a DAG of the graph exits 2 with "did you mean" naming that DAG only."""
    result = cli(*args, endpoint=etcd_endpoint, prefix=etcd_prefix)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"error: {args[1]!r} is not a DAG in {DEPS}: did you mean 06_pipeline?" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_and_why_on_an_empty_store(etcd_endpoint: str, etcd_prefix: str) -> None:
    """status says there is nothing yet; why explains that the root has not run for the partition."""
    status = cli("status", endpoint=etcd_endpoint, prefix=etcd_prefix)
    assert status.returncode == 0, status.stderr
    assert "no run states" in status.stdout
    why = cli("why", "06_pipeline", "-p", "2026-01-01", endpoint=etcd_endpoint, prefix=etcd_prefix)
    assert why.returncode == 0, why.stderr
    assert "06_pipeline waits: 02_pipeline has not run for this partition" in why.stdout
    as_json = cli("status", "--format", "json", "-p", "2026-01-01", endpoint=etcd_endpoint, prefix=etcd_prefix)
    rows = json.loads(as_json.stdout)["rows"]
    assert [r["dag"] for r in rows][:2] == ["01_pipeline", "02_pipeline"]


@pytest.mark.parametrize("once", [pytest.param([], id="reconcile"), pytest.param(["--once"], id="reconcile-once")])
def test_reconcile_needs_no_once_and_still_accepts_it(once: list[str], etcd_endpoint: str, etcd_prefix: str) -> None:
    """`reconcile --dry-run` is the one pass; `--once` (once required) is still accepted for scripts and changes
    nothing; `--help` does not list it."""
    result = cli("reconcile", *once, "--dry-run", endpoint=etcd_endpoint, prefix=etcd_prefix)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    page = run_cli(["reconcile", "--help"])
    assert "--dry-run" in page.stdout and "--once" not in page.stdout


def test_a_flag_wins_over_its_environment_variable(etcd_endpoint: str, etcd_prefix: str) -> None:
    """An option reads its COORDINATOR_* variable when not given (a bad one fails), and the flag wins when given."""
    env = {**os.environ, "COORDINATOR_ETCD_ENDPOINTS": "http://127.0.0.1:9"}
    base = ["status", "--prefix", etcd_prefix, "--deps", DEPS]
    from_env = run_cli(base, env=env)
    assert from_env.returncode == 1 and "127.0.0.1:9" in from_env.stderr, from_env.stderr
    flag = run_cli([*base, "--etcd", etcd_endpoint], env=env)
    assert flag.returncode == 0, flag.stderr


def test_unreachable_etcd_exits_1_with_a_message(etcd_prefix: str) -> None:
    """A read command against a closed port fails with exit code 1 and says etcd could not be reached."""
    result = cli("status", endpoint="http://127.0.0.1:9", prefix=etcd_prefix)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "etcd" in result.stderr.lower()
    assert "Traceback" not in result.stderr
