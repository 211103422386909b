"""The words ``why`` prints that the guides quote are the words it prints: ``docs/howto/doctor.md``'s "Ask why"
session (a rerun's reason and the line of a run in flight) and ``docs/dependencies.md``'s group lines, each rebuilt
here on the graph the page shows (revision numbers apart: a real store's are its own)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `why` on the app
from coordinator.cli.app import app
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.facts import RunFact
from coordinator.core.model import (
    KeyLayout,
    RunRecord,
    RunState,
    TriggerAction,
    TriggerRecord,
    TriggerStatus,
    dump_record,
    run_id_for,
)
from coordinator.core.newer_input import newer_input
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.explain.report import why
from coordinator.runtime.settings import EtcdSettings
from tests.support.world import P1, P2, World, n

assert engine_cmds
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUN = "scheduled__2026-01-01T00:00:00+00:00"


def _revisions(text: str) -> str:
    return re.sub(r"revision \d+", "revision N", text)


def _why(world: World, dag: str) -> list[str]:
    return why(world.graph, world.plan([P1]), n(dag), P1, world.view, world.clock)


class _Etcd:
    """Writes the example's keys to a real etcd, remembering each one's revision (a ledger's inputs name them)."""

    def __init__(self, etcd: EtcdStore, prefix: str) -> None:
        self.etcd, self.keys = etcd, KeyLayout(prefix)

    async def run(self, dag: str, state: RunState, run_id: str, attempt: int = 0) -> int:
        record = RunRecord(state=state, run_id=run_id, clear_number=attempt)
        return await self.etcd.put(self.keys.run_key(n(dag), P1), dump_record(record))

    async def trigger(self, dag: str, action: TriggerAction, inputs: dict[str, int], count: int = 1) -> int:
        record = TriggerRecord(status=TriggerStatus.DONE, action=action, run_id=run_id_for(P1), inputs=inputs,
                               trigger_count=count)  # fmt: skip
        return await self.etcd.put(self.keys.trigger_key(n(dag), P1), dump_record(record))


async def _cascaded_and_rerun(endpoints: EtcdSettings, prefix: str) -> None:
    """The example's first cascade, then 01 cleared and succeeded again, and 02, 04, 05 rerun on it; 03 not yet."""
    graph = parse_spec((ROOT / "dependencies.json").read_text(encoding="utf-8"), "dependencies.json")
    async with await EtcdStore.connect(endpoints) as etcd:
        put = _Etcd(etcd, prefix)
        activation = adopt(graph.shapes, graph.digest, None, 0, sources=graph.dags)
        assert activation is not None
        await etcd.put(put.keys.config_key("graph"), dump_activation(activation))
        first = await put.run("01_pipeline", RunState.SUCCESS, RUN)
        done: dict[str, int] = {}
        for dag in ("02_pipeline", "03_pipeline", "04_pipeline", "05_pipeline"):
            await put.trigger(dag, TriggerAction.CREATE, {"default/01_pipeline": first})
            done[f"default/{dag}"] = await put.run(dag, RunState.SUCCESS, run_id_for(P1))
        await put.trigger("06_pipeline", TriggerAction.CREATE, done)
        six = await put.run("06_pipeline", RunState.SUCCESS, run_id_for(P1))
        await put.trigger("07_pipeline", TriggerAction.CREATE, {"default/06_pipeline": six})
        await put.run("07_pipeline", RunState.SUCCESS, run_id_for(P1))
        again = await put.run("01_pipeline", RunState.SUCCESS, RUN, attempt=1)
        for dag in ("02_pipeline", "04_pipeline", "05_pipeline"):
            await put.trigger(dag, TriggerAction.CLEAR, {"default/01_pipeline": again}, count=2)
            await put.run(dag, RunState.SUCCESS, run_id_for(P1), attempt=1)


async def _three_reruns(endpoints: EtcdSettings, prefix: str) -> None:
    """03 cleared on 01's success again, and running."""
    async with await EtcdStore.connect(endpoints) as etcd:
        put = _Etcd(etcd, prefix)
        latest = await etcd.get(put.keys.run_key(n("01_pipeline"), P1))
        assert latest is not None
        await put.trigger("03_pipeline", TriggerAction.CLEAR, {"default/01_pipeline": latest.mod_revision}, count=2)
        await put.run("03_pipeline", RunState.RUNNING, run_id_for(P1), attempt=1)


def test_the_ask_why_session_is_what_why_prints(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """01 cleared and succeeded again, 02, 04, 05 rerun and 03 not yet: `coordinator why 06_pipeline` and, once 03
    runs, `coordinator why 03_pipeline` against etcd print the session of doctor.md's "Ask why" line for line."""
    page = (DOCS / "howto" / "doctor.md").read_text(encoding="utf-8")
    block = page.split("## Ask why", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    common = ["--partition", "2026-01-01", "--etcd", etcd_endpoint, "--prefix", etcd_prefix,
              "--deps", str(ROOT / "dependencies.json")]  # fmt: skip
    asyncio.run(_cascaded_and_rerun(etcd_settings, etcd_prefix))
    printed = ["$ coordinator status --partition 2026-01-01"]
    for dag, before in (("06_pipeline", None), ("03_pipeline", _three_reruns)):
        if before is not None:
            asyncio.run(before(etcd_settings, etcd_prefix))
        result = CliRunner().invoke(app, ["why", dag, *common])
        assert result.exit_code == 0, result.output
        printed += [f"$ coordinator why {dag} --partition 2026-01-01", *result.stdout.splitlines()]
    assert _revisions(block).splitlines() == [_revisions(line) for line in printed]


def _lands(world: World, dag: str, end: datetime) -> None:
    record = RunRecord(state=RunState.SUCCESS, run_id=f"scheduled__{dag}", start_date=end, end_date=end)
    world.write(world.keys.run_key(n(dag), P1), dump_record(record))


def _run(world: World) -> None:
    world.act()
    for node, partition in world.queued():
        world.start(node.dag_id, partition)
        world.finish(node.dag_id, partition)


def _world(group: dict[str, Any]) -> World:
    instances = {name: {} for name in ("eu", "us", "apac", "latam")}
    dags = {"global_rollup": {"upstreams": [group]}}
    world = World(parse_spec(json.dumps({"version": 1, "instances": instances, "dags": dags})))
    world.adopt()
    return world


def _group_lines(world: World) -> list[str]:
    return [line.strip() for line in _why(world, "global_rollup")[1:]]


def test_the_group_lines_dependencies_md_quotes_are_printed() -> None:
    """Every group line the condition-groups section quotes is printed by why for the groups it shows: 3 of the 4
    loads; the 3 loads with a cutoff at 6h and a minimum of 2, before and after the late load's rerun."""
    page = (DOCS / "dependencies.md").read_text(encoding="utf-8")
    bullet = page.split("- `coordinator why D -p P` (and `status`", 1)[1].split("The\n  page draws", 1)[0]
    quoted = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", bullet) if " of " in q or "all 3" in q]
    printed: list[str] = []
    loads = _world({"at_least": 3, "of": ["eu/load", "us/load", "apac/load", "latam/load"]})
    for dag in ("eu/load", "us/load", "apac/load"):
        loads.state(dag, P1, RunState.SUCCESS)
    loads.state("latam/load", P1, RunState.FAILED)
    printed += _group_lines(loads)
    three = {"all": ["eu/load", "us/load", "apac/load"], "cutoff": "6h", "min": 2}
    short = _world(three)
    _lands(short, "eu/load", datetime(2026, 1, 1, 5, tzinfo=UTC))
    short.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    printed += _group_lines(short)
    late = _world(three)
    _lands(late, "eu/load", datetime(2026, 1, 1, 5, tzinfo=UTC))
    _lands(late, "us/load", datetime(2026, 1, 1, 5, 30, tzinfo=UTC))
    late.clock = datetime(2026, 1, 1, 6, tzinfo=UTC)
    _run(late)
    late.clock = datetime(2026, 1, 1, 8, tzinfo=UTC)
    _lands(late, "apac/load", datetime(2026, 1, 1, 7, 45, tzinfo=UTC))
    printed += _group_lines(late)
    _run(late)
    printed += _group_lines(late)
    assert len(quoted) == 4, quoted
    assert [q for q in quoted if q not in printed] == [], printed


def _plain_world(group: dict[str, Any]) -> World:
    world = World(parse_spec(json.dumps({"version": 1, "dags": {"d": {"upstreams": [group]}}})))
    world.adopt()
    return world


def _plain_lines(world: World) -> list[str]:
    lines = why(world.graph, world.plan([P1]), n("d"), P1, world.view, world.clock)
    return [line.strip().replace(P1, "P") for line in lines[1:]]


def test_the_group_lines_semantics_quotes_are_printed() -> None:
    """Every group line (or part of one) semantics.md's **Explained** quotes is printed by why: any of a, b; 2 of eu,
    us, apac; 3 of 4 regions with a cutoff at 6h and a minimum of 2, through its cutoff and a late member's rerun."""
    page = (DOCS / "semantics.md").read_text(encoding="utf-8")
    paragraph = page.split("**Explained.** ", 1)[1].split("`status --format json` rows", 1)[0]
    spans = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", paragraph)]
    words = [part.strip() for q in spans for part in q.split("...") if part.strip()]
    quoted = [q for q in words if " " in q and q != "why D -p P"]  # `min`, `ignored`: a field and a word, no line
    printed = _plain_lines(_plain_world({"any": ["a", "b"]}))
    pair = _plain_world({"at_least": 2, "of": ["eu", "us", "apac"]})
    pair.state("eu", P1, RunState.SUCCESS)
    printed += _plain_lines(pair)
    pair.state("us", P1, RunState.SUCCESS)
    pair.state("apac", P1, RunState.FAILED)
    printed += _plain_lines(pair)
    regions = _plain_world({"at_least": 3, "of": ["eu", "us", "apac", "latam"], "cutoff": "6h", "min": 2})
    regions.clock = datetime(2026, 1, 1, 5, tzinfo=UTC)
    printed += _plain_lines(regions)
    _lands(regions, "eu", datetime(2026, 1, 1, 4, tzinfo=UTC))
    _lands(regions, "us", datetime(2026, 1, 1, 5, tzinfo=UTC))
    regions.clock = datetime(2026, 1, 1, 7, tzinfo=UTC)
    printed += _plain_lines(regions)
    _run(regions)
    _lands(regions, "apac", datetime(2026, 1, 1, 8, tzinfo=UTC))
    regions.clock = datetime(2026, 1, 1, 9, tzinfo=UTC)
    printed += _plain_lines(regions)
    _run(regions)
    printed += _plain_lines(regions)
    assert len(quoted) == 9, quoted
    assert [q for q in quoted if not any(q in line for line in printed)] == [], printed


def test_the_reasons_doctor_md_quotes_after_the_session_are_printed() -> None:
    """Each reason and line the paragraph after the "Ask why" session quotes ('...' standing for a run id or the rest
    of the line) is one the planner or why prints: the success without 'again' after a trigger that did not use it or
    after a run of the DAG's own, the trigger's line, an upstream that moved on, and a run no trigger is behind."""
    page = (DOCS / "howto" / "doctor.md").read_text(encoding="utf-8")
    paragraph = page.split("## Ask why", 1)[1].split("A rerun's reason", 1)[1].split("\n\n", 1)[0]
    quoted = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", paragraph) if q != "why"]
    printed: list[str] = []
    three, one = n("03_pipeline"), RunFact(RunState.SUCCESS, RUN, 0, 812)
    printed += [newer_input("01_pipeline", one, 812, three, 700, None, triggered) for triggered in (True, False)]
    printed += [newer_input("01_pipeline", one._replace(clear_number=1), 812, three, 640, 640, True)]
    world = World(parse_spec((ROOT / "dependencies.json").read_text(encoding="utf-8"), "dependencies.json"))
    world.adopt()
    world.state("01_pipeline", P1, RunState.SUCCESS, RUN)
    world.settle()
    world.state("01_pipeline", P1, RunState.SUCCESS, RUN, clear_number=1)
    world.act()
    world.start("03_pipeline", P1)
    printed += [line.strip() for line in _why(world, "03_pipeline")]
    world.state("01_pipeline", P1, RunState.RUNNING, RUN, clear_number=2)
    printed += [line.strip() for line in _why(world, "03_pipeline")]
    world.state("02_pipeline", P2, RunState.RUNNING, "scheduled__2")
    printed += [line.strip() for line in why(world.graph, world.plan([P2]), n("02_pipeline"), P2, world.view)]
    patterns = [re.escape(_revisions(q)).replace(re.escape("..."), ".*") for q in quoted]
    missing = [
        q for q, p in zip(quoted, patterns, strict=True) if not any(re.search(p, _revisions(x)) for x in printed)
    ]
    assert len(quoted) == 6, quoted
    assert missing == [], printed
