"""Operators' holds in ``status`` against a real etcd: a due run a standing hold covers is HELD with the hold's id
(text and JSON), ``why`` names the same hold, and the page draws it held."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from coordinator.cli import engine_cmds, incident_cmds  # registers `status`, `hold` and `release-hold` on the app
from coordinator.cli.app import app
from coordinator.core.holds import Hold, parse_selector
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.page.holds import with_holds
from coordinator.page.model import NodeState, PageModel, build_page
from coordinator.runtime.settings import EtcdSettings
from tests.support.world import P1, World

assert engine_cmds and incident_cmds
P = "2026-01-01T00:00:00Z"
P2 = "2026-01-02T00:00:00Z"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
DEPS = {"version": 1, "dags": {"a": {"upstreams": ["r"]}, "b": {"upstreams": ["a"]}}}


@pytest.fixture
def cli(etcd_endpoint: str, etcd_prefix: str, tmp_path: Path) -> CliRunner:
    deps = tmp_path / "deps.json"
    deps.write_text(json.dumps(DEPS))
    return CliRunner(
        env={"COORDINATOR_ETCD_ENDPOINTS": etcd_endpoint, "COORDINATOR_PREFIX": etcd_prefix,
             "COORDINATOR_DEPS": str(deps)}
    )  # fmt: skip


def run(cli: CliRunner, *words: str) -> Result:
    result = cli.invoke(app, list(words))
    assert result.exit_code == 0, (words, result.output)
    return result


def hold(cli: CliRunner, *words: str) -> str:
    first = run(cli, "hold", *words, "--by", "alice").stdout.splitlines()[0]
    assert first.startswith("hold h-"), first
    return first.split()[1].rstrip(":")


def root_succeeded(etcd_settings: EtcdSettings, prefix: str) -> None:
    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put(
                KeyLayout(prefix).run_key(NodeId.parse("r"), P),
                dump_record(RunRecord(state=RunState.SUCCESS, run_id="x")),
            )

    asyncio.run(write())


def test_status_says_held_with_the_holds_id_for_a_due_run_a_hold_keeps_back(
    cli: CliRunner, etcd_settings: EtcdSettings, etcd_prefix: str
) -> None:
    """r succeeded, so a is due; a hold on a for P makes status print 'HELD h-..' instead of DUE (JSON: status held,
    held_by the hold's id), and why names the same hold."""
    root_succeeded(etcd_settings, etcd_prefix)
    before = {r["dag"]: r for r in json.loads(run(cli, "status", "-p", P, "--format", "json").stdout)["rows"]}
    assert (before["a"]["status"], before["a"]["held_by"]) == ("due", None)
    held = hold(cli, "a", "--from", P, "--to", P, "--reason", "bad data in r")
    rows = {r["dag"]: r for r in json.loads(run(cli, "status", "-p", P, "--format", "json").stdout)["rows"]}
    assert (rows["a"]["status"], rows["a"]["held_by"], rows["a"]["due"]) == ("held", held, True)
    text = run(cli, "status", "-p", P).stdout
    assert f"HELD {held}" in text and "DUE" not in text, text
    assert f"held by hold {held}" in text, text
    why = run(cli, "why", "a", "-p", P).stdout
    assert f"held by hold {held}" in why, why


def test_the_page_draws_a_held_due_run_as_held() -> None:
    """The page's state for a due DAG a standing hold covers is 'held'; a DAG the hold covers that is not due keeps
    its own state."""
    world = World(parse_spec(json.dumps(DEPS), "deps.json"))
    world.adopt()
    world.state("r", P1, RunState.SUCCESS)
    page = build_page(world.graph, world.view, plan(world.graph, world.view, [P1]), P1)
    assert state_of(page, "a") is NodeState.DUE
    h = Hold(id="h-1", selector=parse_selector("a"), nodes=("default/a",), downstream=True, reason="bad data",
             by="alice", created_at=NOW)  # fmt: skip
    held = with_holds(page, world.graph, [h], NOW)
    assert (state_of(held, "a"), state_of(held, "b")) == (NodeState.HELD, state_of(page, "b"))


def state_of(page: PageModel, dag: str) -> NodeState:
    node = page.get(NodeId.parse(dag))
    assert node is not None
    return node.state
