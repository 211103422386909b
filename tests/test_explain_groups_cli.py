"""``coordinator why`` and ``status`` against a real etcd on a graph with condition groups: the group lines the
commands print are the ones ``explain.groups`` words, decided at the command's own clock (a cutoff long past holds)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `why` and `status` on the app
from coordinator.cli.app import app
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
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
    one of three is enough then, and the line says it is met."""
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
    assert rows["rollup"]["conditions"][0] == "1 of 3 needed, met: eu done; apac, us have not run"
    assert (
        rows["rollup"]["conditions"][1]
        == "cutoff at 06:00 (2026-01-02 06:00Z) passed: runs with at least 1 (late: will rerun once)"
    )
    assert rows["eu"]["conditions"] == []
