"""The dependencies page judges deadlines as ``status`` does on a real etcd: learned durations read back to each
DAG's latest successes (page rule 1d), not only the partition shown."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import engine_cmds  # registers `status` on the app
from coordinator.cli.app import app
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, canonical_partition, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.page.service import dependencies_page, learning_dags
from coordinator.runtime.settings import EtcdSettings, Settings

assert engine_cmds  # imported for its registrations only
DAILY = {"cron": "0 0 * * *"}
DEPS = {
    "version": 1,
    "dags": {
        "a": {"partitions": DAILY},
        "b": {"partitions": DAILY, "upstreams": "a"},
        "c": {"partitions": DAILY, "upstreams": "b", "expected_by": {"after_start": "20d", "duration": "learned"}},
        "fixed": {"partitions": DAILY, "upstreams": "a", "expected_by": {"after_start": "20d", "duration": "5m"}},
    },
}
#: Run times each DAG learns from its history: they move c's ETA by 90 minutes.
RUN_TIME = {"a": timedelta(minutes=60), "b": timedelta(minutes=1), "c": timedelta(minutes=30)}


async def write_store(endpoints: EtcdSettings, keys: KeyLayout, deps: Path, today: datetime) -> None:
    graph = parse_spec(deps.read_text(), str(deps))
    async with await EtcdStore.connect(endpoints) as etcd:
        rev = (await etcd.snapshot(keys.root)).revision
        activation = adopt(graph.shapes, graph.digest, None, rev, sources=graph.dags)
        assert activation is not None
        await etcd.put(keys.config_key("graph"), dump_activation(activation))
        for days in range(1, 26):  # 25 days of history: more than the 20 latest successes rule 5 learns from
            day = today - timedelta(days=days)
            for dag, took in RUN_TIME.items():
                start = day + timedelta(hours=1)
                record = RunRecord(state=RunState.SUCCESS, run_id=f"h{days}", start_date=start, end_date=start + took)
                await etcd.put(keys.run_key(NodeId.parse(dag), canonical_partition(day)), dump_record(record))
            if days % 2:  # failures in between, which teach nothing
                failed = RunRecord(state=RunState.FAILED, run_id="f", start_date=day, end_date=day)
                await etcd.put(keys.run_key(NodeId.parse("b"), canonical_partition(day + timedelta(hours=1))),
                               dump_record(failed))  # fmt: skip
        running = RunRecord(state=RunState.RUNNING, run_id="now", start_date=datetime.now(UTC) - timedelta(minutes=5))
        await etcd.put(keys.run_key(NodeId.parse("a"), canonical_partition(today)), dump_record(running))


def test_the_page_shows_the_eta_status_shows_from_learned_durations(
    etcd_settings: EtcdSettings, etcd_endpoint: str, tmp_path: Path
) -> None:
    """With a, b and c learning their run times from 25 days of history and a running today, the page's deadline
    row for c has status's ETA (90 minutes of learned run times later than without them)."""
    prefix = f"/page-deadlines-{uuid.uuid4().hex[:10]}"
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(DEPS))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    partition = canonical_partition(today)
    asyncio.run(write_store(etcd_settings, KeyLayout(prefix), deps, today))

    done = CliRunner().invoke(
        app, ["status", "--format", "json", "--etcd", etcd_endpoint, "--prefix", prefix, "--deps", str(deps)]
    )
    assert done.exit_code == 0, done.output
    rows = {(r["dag"], r["partition"]): r for r in json.loads(done.stdout)["deadlines"]}
    eta = datetime.fromisoformat(rows[("c", partition)]["eta"])
    start = datetime.fromisoformat(rows[("c", partition)]["deadline"]) - timedelta(days=20)
    assert eta > start + timedelta(hours=1, minutes=30)  # a's learned hour, then c's half hour (not "now")

    # As the api-server plugin asks: the adopted graph, no dependencies.json.
    cfg = Settings(etcd_endpoints=etcd_endpoint, prefix=prefix, deps=tmp_path / "absent.json")
    page = asyncio.run(dependencies_page(partition, "default/c", instance="default", settings=cfg))
    assert page.status == 200, page.html
    shown = re.search(r"<td>deadline</td><td>[a-z_]+ — due [^,]+, ETA ([0-9-]+ [0-9:]+)Z</td>", page.html)
    assert shown is not None, page.html
    assert shown.group(1) == f"{eta:%Y-%m-%d %H:%M}"


def test_learning_dags_are_the_deadlines_without_a_fixed_duration_and_their_ancestors() -> None:
    """c (learned) and its ancestors learn; fixed's own duration is given, its ancestor a still learns."""
    graph = parse_spec(json.dumps(DEPS))
    assert learning_dags(graph) == {NodeId.parse(n) for n in ("a", "b", "c")}


def test_the_page_judges_a_task_deadline_on_the_tasks_state(
    etcd_settings: EtcdSettings, etcd_endpoint: str, tmp_path: Path
) -> None:
    """The page reads the deadline task's state: its task ended after the deadline while the run runs: ``late``."""
    prefix = f"/page-deadlines-{uuid.uuid4().hex[:10]}"
    keys = KeyLayout(prefix)
    deps = {"version": 1, "dags": {"t": {"partitions": DAILY, "expected_by": {"after_start": "1h", "task": "load"}}}}
    graph = parse_spec(json.dumps(deps))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    partition, node = canonical_partition(today), NodeId.parse("t")

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as etcd:
            rev = (await etcd.snapshot(keys.root)).revision
            activation = adopt(graph.shapes, graph.digest, None, rev, sources=graph.dags)
            assert activation is not None
            await etcd.put(keys.config_key("graph"), dump_activation(activation))
            running = RunRecord(state=RunState.RUNNING, run_id="r", start_date=today)
            await etcd.put(keys.run_key(node, partition), dump_record(running))
            task = RunRecord(state=RunState.SUCCESS, run_id="r", start_date=today,
                             end_date=today + timedelta(minutes=90))  # fmt: skip
            await etcd.put(keys.task_key(node, "load", partition), dump_record(task))

    asyncio.run(write())
    cfg = Settings(etcd_endpoints=etcd_endpoint, prefix=prefix, deps=tmp_path / "absent.json")
    page = asyncio.run(dependencies_page(partition, "default/t", instance="default", settings=cfg))
    assert page.status == 200, page.html
    assert re.search(r"<td>deadline</td><td>late — due ", page.html), page.html
