"""``coordinator why`` and ``status`` against a real etcd on a graph with condition groups: the group lines the
commands print are the ones ``explain.groups`` words, decided at the command's own clock (a cutoff long past holds)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `why` and `status` on the app
from coordinator.cli.app import app
from coordinator.core.model import (
    KeyLayout,
    NodeId,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
)
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings

assert engine_cmds
P = "2026-01-01T00:00:00Z"
DAGS = {
    "report": {"upstreams": [{"any": ["primary", "fallback"]}]},
    "rollup": {"partitions": {"cron": "@daily"}, "upstreams": [{"all": ["eu", "us", "apac"], "cutoff": "06:00"}]},
}


async def write_states(endpoints: EtcdSettings, prefix: str, states: dict[str, RunState]) -> None:
    keys = KeyLayout(prefix)
    async with await EtcdStore.connect(endpoints) as etcd:
        for dag, state in states.items():
            await etcd.put(keys.run_key(NodeId.parse(dag), P), dump_record(RunRecord(state=state, run_id="x")))


def test_why_and_status_print_the_group_lines(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """why says 'runs when any of fallback, primary: primary failed; fallback has not run'; status --format json has
    the same line in the row's conditions, and the rollup's cutoff (06:00 the next morning, long past) with eu in:
    one of three is enough then, and the line says it is met beside the declared 'all 3'."""
    deps = tmp_path / "deps.json"
    deps.write_text(json.dumps({"version": 1, "dags": DAGS}))
    asyncio.run(write_states(etcd_settings, etcd_prefix, {"primary": RunState.FAILED, "eu": RunState.SUCCESS}))
    common = ["--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--deps", str(deps)]
    why = CliRunner().invoke(app, ["why", "report", "-p", P, *common])
    assert why.exit_code == 0, why.output
    assert "  runs when any of fallback, primary: primary failed; fallback has not run" in why.stdout.splitlines()
    status = CliRunner().invoke(app, ["status", "--format", "json", *common])
    assert status.exit_code == 0, status.output
    rows = {r["dag"]: r for r in json.loads(status.stdout)["rows"]}
    assert rows["report"]["conditions"] == ["runs when any of fallback, primary: primary failed; fallback has not run"]
    assert rows["rollup"]["conditions"][0] == "all 3, met (1 after the cutoff): eu done; apac, us have not run"
    assert (
        rows["rollup"]["conditions"][1]
        == "all 3, 1 after the cutoff at 06:00 (2026-01-02 06:00Z): passed, not run yet (late: will rerun once)"
    )
    assert rows["eu"]["conditions"] == []


#: Two deployments' regions, at least 3 of 4 with 2 enough a minute into the partition (late members rerun it once).
REGIONS = {"version": 1, "instances": {"a": {}, "b": {}}, "dags": {
    "b/g_daily": {"upstreams": [{"at_least": 3, "of": ["a/cx_apac", "a/cx_eu", "b/cx_us", "b/cx_latam"],
                                 "cutoff": "1m", "min": 2}]},
}}  # fmt: skip


async def write_regions(endpoints: EtcdSettings, prefix: str) -> None:
    """eu and us in by 00:01Z, apac at 00:04Z, and g_daily's last run (its late rerun) triggered on the three."""
    keys = KeyLayout(prefix)
    ends = {"a/cx_eu": "00:00:20", "b/cx_us": "00:00:40", "a/cx_apac": "00:04:00"}
    async with await EtcdStore.connect(endpoints) as etcd:
        inputs = {}
        for dag, end in ends.items():
            at = datetime.fromisoformat(f"2026-01-01T{end}+00:00")
            record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{dag}", start_date=at, end_date=at)
            inputs[dag] = await etcd.put(keys.run_key(NodeId.parse(dag), P), dump_record(record))
        ledger = TriggerRecord(status=TriggerStatus.DONE, action=TriggerAction.CLEAR, run_id="coordinator__x",
                               inputs=inputs, trigger_count=2)  # fmt: skip
        rev = await etcd.put(keys.trigger_key(NodeId.parse("b/g_daily"), P), dump_record(ledger))
        done = RunRecord(state=RunState.SUCCESS, run_id="coordinator__x", clear_number=1)
        assert rev < await etcd.put(keys.run_key(NodeId.parse("b/g_daily"), P), dump_record(done))


def test_a_group_that_ran_at_its_cutoff_and_once_more_keeps_its_declared_rule(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """The group at least 3 of 4 (2 after the cutoff at 00:01Z) whose last run used eu, us and, late, apac: why and
    status --format json say 'at least 3 of 4' and what the run used, each member placed against the cutoff, never
    '3 of 3 needed'."""
    deps = tmp_path / "deps.json"
    deps.write_text(json.dumps(REGIONS))
    asyncio.run(write_regions(etcd_settings, etcd_prefix))
    common = ["--etcd", etcd_endpoint, "--prefix", etcd_prefix, "--deps", str(deps)]
    want = [
        "at least 3 of 4, met (2 after the cutoff): a/cx_apac, a/cx_eu, b/cx_us done; b/cx_latam has not run",
        "at least 3 of 4, 2 after the cutoff at 00:01Z: its last run used a/cx_eu, b/cx_us (in by the cutoff) and "
        "a/cx_apac (late)",
    ]
    why = CliRunner().invoke(app, ["why", "b/g_daily", "-p", P, *common])
    assert why.exit_code == 0, why.output
    lines = why.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("b/g_daily is up to date"))
    assert lines[start + 1 : start + 3] == [f"  {line}" for line in want], why.output
    status = CliRunner().invoke(app, ["status", "--format", "json", *common])
    assert status.exit_code == 0, status.output
    rows = {r["dag"]: r for r in json.loads(status.stdout)["rows"]}
    assert rows["b/g_daily"]["conditions"] == want
    assert "3 of 3" not in status.stdout + why.stdout
