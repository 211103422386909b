"""One read model: the page, ``status --format json`` and the watcher's pass decide alike on any store (issue 18).

Hypothesis draws stores against a real etcd: run states written in any order over three daily partitions, a graph
adopted before or after them or never (a first adoption, held or not by the first-start limit), a retention floor
or none, and a plain or a gridded graph (an edge reading yesterday), or one with a condition group (an ``any``, a
cutoff). For each store the test drives the REAL functions: the page service (``dependencies_page``, one request
per partition), the ``status`` command in process (``--format json``) and a leading watcher's reconcile pass
(``Watcher.reconcile_pass``, actions not sent).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `status` on the app
from coordinator.cli.app import app
from coordinator.core.actions import Trigger
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.floor import RetentionFloor, dump_floor
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.task_facts import TaskRecord
from coordinator.etcd import EtcdStore
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings
from coordinator.watcher.keys import AllPartitions
from coordinator.watcher.service import open_watcher
from tests.support.examples import examples

assert engine_cmds  # imported for its registrations only
DAYS = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")
DAILY = {"cron": "0 0 * * *"}
GRAPHS: dict[str, dict[str, Any]] = {
    "plain": {"r": {}, "a": {"upstreams": "r"}, "b": {"upstreams": "a"}, "h": {"on_failure_of": "a"}},
    # a reads r's YESTERDAY: a floor at day 2 retires a's decision for day 2 through its input (rule 11b).
    "grid": {
        "r": {"partitions": DAILY},
        "a": {"partitions": DAILY, "upstreams": [{"dag": "r", "offset": -1}]},
        "b": {"partitions": DAILY, "upstreams": "a"},
        "h": {"partitions": DAILY, "on_failure_of": "a"},
    },
    # a waits for its own yesterday (a gate): the page reads a's yesterday and r's there, one step (plan_scope 5).
    "gate": {
        "r": {"partitions": DAILY},
        "a": {"partitions": DAILY, "upstreams": ["r", {"dag": "a", "offset": -1}]},
        "b": {"partitions": DAILY, "upstreams": "a"},
        "h": {"partitions": DAILY, "on_failure_of": "a"},
    },
    # a waits for r's task "load" only: the page reads that task's keys (plan_scope 5).
    "task": {
        "r": {},
        "a": {"upstreams": [{"dag": "r", "task": "load"}]},
        "b": {"upstreams": "a"},
        "h": {"on_failure_of": "a"},
    },
    # a runs when r OR r's task "load" succeeded (a condition group): the page, status and the watcher judge it alike.
    "any": {
        "r": {},
        "a": {"upstreams": [{"any": ["r", {"dag": "r", "task": "load"}]}]},
        "b": {"upstreams": "a"},
        "h": {"on_failure_of": "a"},
    },
    # both, or one from 6 hours after the day's start (long past: the cutoff holds with one), late ones rerun a once.
    "cutoff": {
        "r": {"partitions": DAILY},
        "a": {"partitions": DAILY, "upstreams": [{"all": ["r", {"dag": "r", "task": "load"}], "cutoff": "6h"}]},
        "b": {"partitions": DAILY, "upstreams": "a"},
        "h": {"partitions": DAILY, "on_failure_of": "a"},
    },
}
#: status's one state per row (report.row_status) in the page's words (page.model.NodeState).
STATUS_TO_PAGE = {
    "success": "succeeded", "stale": "stale", "failed": "failed", "running": "running", "queued": "queued",
    "due": "due", "waiting": "waiting", "not run": "not run", "trigger failed": "error", "triggering": "triggered",
    "triggered": "triggered", "rerun requested": "triggered",
}  # fmt: skip

#: Mostly successes: cascades (and so decisions that are due) need them; every other state appears too.
STATES = (RunState.SUCCESS, RunState.SUCCESS, RunState.SUCCESS, RunState.FAILED, RunState.RUNNING, RunState.QUEUED)
#: "r:load" writes the task state of r's task "load" (what the plugin records for a task-level edge).
write = st.tuples(st.sampled_from(("r", "r", "a", "b", "r:load")), st.sampled_from(DAYS), st.sampled_from(STATES))
stores = st.fixed_dictionaries(
    {
        "graph": st.sampled_from(sorted(GRAPHS)),
        "writes": st.lists(write, min_size=1, max_size=10),
        # never: a first adoption; before/after: adopted before the run states, or after them (history inactive).
        "adopted": st.sampled_from(("never", "before", "after")),
        "limit": st.sampled_from((0, 100)),  # 0 holds any first adoption that would trigger something
        "floor": st.sampled_from((None, DAYS[1])),
    }
)


@pytest.fixture
def deps_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def page_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-dag="default/([^"]+)" data-state="([^"]+)"', html))


async def write_store(endpoints: EtcdSettings, prefix: str, store: dict[str, Any], deps: Path) -> None:
    graph = parse_spec(deps.read_text(), str(deps))
    keys = KeyLayout(prefix)
    async with await EtcdStore.connect(endpoints) as etcd:

        async def activate() -> None:
            rev = (await etcd.snapshot(keys.root)).revision
            activation = adopt(graph.shapes, graph.digest, None, rev, sources=graph.dags)
            assert activation is not None
            await etcd.put(keys.config_key("graph"), dump_activation(activation))

        if store["adopted"] == "before":
            await activate()
        for dag, day, state in store["writes"]:
            name, _, task = dag.partition(":")
            if task:
                record = TaskRecord(state=state, run_id="x", try_number=1)
                await etcd.put(keys.task_key(NodeId.parse(name), task, day), dump_record(record))
            else:
                await etcd.put(keys.run_key(NodeId.parse(dag), day), dump_record(RunRecord(state=state, run_id="x")))
        if store["adopted"] == "after":
            await activate()
        if store["floor"] is not None:
            await etcd.put(keys.config_key("retention"), dump_floor(RetentionFloor(before=store["floor"])))


async def watcher_pass(settings: Settings) -> tuple[set[tuple[str, str]], bool]:
    """What a leading watcher's pass would trigger, and whether it held a first adoption: adopt as the leader does,
    then plan every partition."""
    async with AsyncExitStack() as stack:
        watcher = await open_watcher(settings, stack)
        await watcher.load()
        assert await watcher.election.acquire(timeout=5)
        try:
            async with watcher.following():
                await watcher.triggers.adoption.ensure(watcher.graphs.graph)
            result = await watcher.reconcile_pass(act=False, keys=[AllPartitions])
        finally:
            await watcher.election.resign()
    held = watcher.triggers.adoption.first is not None and watcher.triggers.adoption.first.paused
    return {(a.node.dag_id, a.partition) for a in result.actions if isinstance(a, Trigger)}, held


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(store=stores)
# Stores the page reads only part of: a's own day 1 holds day 2 through the gate; r's task alone makes a due.
@example(store={"graph": "gate", "writes": [("a", DAYS[0], RunState.FAILED), ("r", DAYS[1], RunState.SUCCESS)],
                "adopted": "before", "limit": 100, "floor": None})  # fmt: skip
@example(store={"graph": "task", "writes": [("r:load", DAYS[0], RunState.SUCCESS)], "adopted": "before",
                "limit": 100, "floor": None})  # fmt: skip
def test_page_status_and_watcher_agree_for_every_dag_and_partition(
    store: dict[str, Any], etcd_settings: EtcdSettings, etcd_endpoint: str, deps_dir: Path
) -> None:
    """For every DAG and partition: the page's state is status's, and the watcher triggers exactly what both show
    as due (first adoption held or not, retired partitions, activations, grids). Slow by design: 150 Hypothesis
    stores, each written to etcd and read by status, the page (once per day) and a watcher pass."""
    prefix = f"/one-decision-{uuid.uuid4().hex[:10]}"
    deps = deps_dir / f"{store['graph']}.json"
    deps.write_text(json.dumps({"version": 1, "dags": GRAPHS[store["graph"]]}))
    asyncio.run(write_store(etcd_settings, prefix, store, deps))
    limit = store["limit"]
    cfg = Settings(etcd_endpoints=etcd_endpoint, prefix=prefix, deps=deps, first_start_limit=limit, http="off")

    done = CliRunner().invoke(
        app,
        ["status", "--format", "json", "--last", "10", "--etcd", etcd_endpoint, "--prefix", prefix,
         "--deps", str(deps), "--first-start-limit", str(limit)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    rows = {(r["dag"], r["partition"]): r["status"] for r in report["rows"]}
    # What the draws covered (--hypothesis-show-statistics): held first adoptions, retired decisions, dues.
    event(f"graph={store['graph']} adopted={store['adopted']} held={report['adoption'].get('held', False)}")
    event(f"retired decisions shown: {any('is retired for' in r['summary'] for r in report['rows'])}")

    # The page reads the same store as status: before the watcher's pass, which may adopt the graph (a first
    # adoption changes what is due: history it did not adopt then reads as predating the definition).
    shown: dict[tuple[str, str], str] = {}
    for day in sorted({*DAYS, *(p for _, p in rows)}):
        answer = asyncio.run(dependencies_page(day, None, instance="default", settings=cfg))
        assert answer.status == 200, answer.html
        shown.update({(dag, day): state for dag, state in page_states(answer.html).items()})

    triggers, held = asyncio.run(watcher_pass(cfg))
    assert held == report["adoption"].get("held", False), (held, report["adoption"], store)

    for (dag, day), status in rows.items():
        assert shown[(dag, day)] == STATUS_TO_PAGE[status], (dag, day, status, shown[(dag, day)], store)
    due = {at for at, status in rows.items() if status == "due"}
    assert triggers == due, (triggers, due, store)
    page_due = {at for at, state in shown.items() if state == "due"}
    assert page_due == due, (page_due, due, store)
    event(f"due decisions: {min(len(due), 3)}{'+' if len(due) >= 3 else ''}")
