"""The real-estate corpus (``tests/import_dags/estate``) converted with ``import-dags --rewrite --diff-out``, the diff
applied with ``patch -p1``, the rewritten files deployed to the session's real Airflow 3.3 and the written
dependencies file adopted by a watcher: its scheduled dependents wait deferred, open once, run once, a clear of a
producer cascades once through them, and then nothing moves.

What the corpus offers, and so what this covers:

- Every file is deployed, ``broken.py`` too: it parses (its sensor bugs are in its sensors' arguments, and
  ``calendar_driven``'s date function fails only when a run evaluates it). Its DAGs, and every DAG not in the
  scenario below, stay paused (Airflow pauses new DAGs), so none of them makes a run in the shared Airflow. No DAG id
  of the corpus is used by the session's other DAGs (``dags/``, ``tests/e2e/dags/``, ``tests/e2e/dags_rewrite/``).
- The longest chain through rewritten DAGs is one hop: no rewritten dependent has a rewritten dependent of its own
  (``daily_snapshot`` depends on its own previous day, so its first scheduled run waits for a day Airflow never runs
  with ``catchup=False``). The scenario covers every one-hop chain from a daily UTC producer whose dependent's
  partition Airflow schedules at a fixed hour: ``ingest_orders`` -> ``report_sales`` (``-4h``, the wait before
  ``build``) and ``cleanup`` (``"condition": "finished"``), ``ingest_warehouse`` -> ``warehouse_quality`` (a task
  group's tasks).
- No DAG of the corpus keeps an untranslated sensor beside the wait: each has one sensor, and the five the rewrite
  kept (``broken.py``) are their DAGs' only sensors, in DAGs not marked scheduled.
- ``ingest_orders`` keeps its ``TriggerDagRunOperator`` (the report's note says to remove it; the rewrite edits
  sensors only): ``orders_export`` stays paused, so the runs it and the coordinator make of it stay queued.
- The tasks the producers' edges name (``ingest_orders.load``, ``ingest_warehouse.extract_a``, ...) are
  ``EmptyOperator`` tasks, which Airflow's scheduler marks success without a task process: no plugin code records them,
  the leader's audit does (``audit.task_recorded``, at info), so the audit runs every few seconds here.

The estate's crons are strings, so Airflow 3.3 gives them ``CronTriggerTimetable`` (logical date = the cron point)
and, with ``catchup=False``, each unpaused DAG one scheduled run: its latest point. The partitions follow from the
clock: between 01:00 and 05:00 UTC ``report_sales``'s latest run is the previous day's, whose ``ingest_orders`` run
the test triggers itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.core.model import RunState, canonical_partition
from tests.e2e.harness import E2E, REPO, parse_time, task_runs, wait_for_audit_passes
from tests.e2e.settle import wait_settled
from tests.e2e.test_multi_instance_e2e import all_runs, scheduled_run, wait_state

pytestmark = pytest.mark.e2e

ESTATE = REPO / "tests" / "import_dags" / "estate"
WATCHER = "estate-watcher"
#: The audit's interval here: a few passes within seconds, to see that none of them moves anything.
AUDIT_S = 3
QUIET_PASSES = 3
PRODUCERS = ["ingest_orders", "ingest_warehouse"]


@dataclass(frozen=True)
class Dependent:
    """A rewritten scheduled dependent of the scenario: its wait task, its scheduled run's logical date, and the
    producer run (DAG, logical date) its edge waits for."""

    dag: str
    wait: str
    day: datetime
    upstream: str
    upstream_day: datetime

    @property
    def partition(self) -> str:
        return canonical_partition(self.day)


def latest_point(now: datetime, hour: int) -> datetime:
    """The latest ``0 <hour> * * *`` UTC point at or before ``now``: what ``catchup=False`` schedules on unpause."""
    point = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return point if point <= now else point - timedelta(days=1)


def scenario(now: datetime) -> list[Dependent]:
    """The dependents whose scheduled runs the scenario follows, with the producer run each one waits for (the
    edges of the written file: ``report_sales`` waits for ``ingest_orders`` 4 h before, the others the same point)."""
    sales, orders, warehouse = (latest_point(now, hour) for hour in (5, 1, 2))
    return [
        Dependent("report_sales", "wait_orders", sales, "ingest_orders", sales - timedelta(hours=4)),
        Dependent("cleanup", "wait_orders_done", orders, "ingest_orders", orders),
        Dependent("warehouse_quality", "wait_transform", warehouse, "ingest_warehouse", warehouse),
    ]


def convert(work: Path) -> Path:
    """``import-dags --rewrite --diff-out`` on a copy of the corpus, then ``patch -p1``, as the docs say; returns
    the dependencies file. Airflow is isolated in a home of its own, as a user's shell would be."""
    shutil.copytree(ESTATE, work / "dags")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COORDINATOR_"))}
    env |= {"AIRFLOW_HOME": str(work / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": str(REPO)}  # fmt: skip
    commands = [
        [sys.executable, "-m", "coordinator.cli", "import-dags", "dags", "--output", "dependencies.json",
         "--rewrite", "--diff-out", "rewrite.diff"],
        ["patch", "-p1", "-i", "rewrite.diff"],
    ]  # fmt: skip
    for argv in commands:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"$ {' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return work / "dependencies.json"


def permit(e2e: E2E, dependent: Dependent) -> dict[str, object]:
    raw = e2e.read_key(f"{e2e.prefix}/permits/{e2e.stack.instance}/{dependent.dag}/{dependent.partition}")
    return dict(json.loads(raw)) if raw is not None else {}


@pytest.fixture
def paused_afterwards(e2e: E2E) -> Iterator[list[str]]:
    """The DAGs the test unpauses, paused again at its end, so the estate makes no scheduled run later in the
    session."""
    unpaused: list[str] = []
    yield unpaused
    for dag_id in unpaused:
        e2e.stack.request("PATCH", f"{e2e.stack.API_ROOT}/dags/{urllib.parse.quote(dag_id)}", {"is_paused": True})


def test_the_rewritten_estate_cascades_once_through_its_scheduled_dependents_and_then_nothing_moves(
    e2e: E2E, paused_afterwards: list[str]
) -> None:
    """On the real-estate corpus rewritten and adopted: each followed dependent's scheduled run waits deferred with
    no permit, its producer's runs succeed (their EmptyOperator tasks recorded by the audit), the wait opens once
    (try 1, permit generation 1) and the run succeeds with its own point interval, with no run made by the
    coordinator; a clear of ingest_orders clears each of its scheduled dependents' runs once
    (clear 1, ledger "clear" at trigger 2), their waits reopen at generation 2 and succeed; then over three audit
    passes no run-state, permit or ledger key moves and the watcher repairs nothing."""
    work = e2e.work_dir / "rewrite-estate"
    deps = convert(work)
    graph = json.loads(deps.read_text(encoding="utf-8"))["dags"]
    dependents = scenario(datetime.now(UTC))
    for dependent in dependents:
        assert graph[dependent.dag]["runs"] == "scheduled", graph[dependent.dag]
        assert {u["dag"] for u in graph[dependent.dag]["upstreams"]} == {dependent.upstream}
    reports = (work / "dags" / "reports.py").read_text(encoding="utf-8")
    assert "ExternalTaskSensor(" not in reports and reports.count("WaitForPermitOperator(") == 11

    # Deploy: every rewritten file into the Airflow's DAGs folder (new DAGs are paused), the file to a watcher.
    for source in sorted((work / "dags").glob("*.py")):
        shutil.copy2(source, e2e.stack.dags_folder / f"estate_{source.name}")
    e2e.stack.wait_for_dags(graph)
    log = e2e.work_dir / f"{WATCHER}.log"
    e2e.start_watcher(deps, "--id", WATCHER, name=WATCHER, COORDINATOR_AUDIT_INTERVAL_S=str(AUDIT_S))
    e2e.wait_for_leader(deps, WATCHER)
    e2e.wait_for_named_tasks()

    # The dependents first: each scheduled run waits deferred in the triggerer, no permit yet.
    paused_afterwards.extend(d.dag for d in dependents)
    e2e.stack.unpause([d.dag for d in dependents])
    runs = {d.dag: scheduled_run(e2e.stack, d.dag, d.day) for d in dependents}
    for dependent in dependents:
        wait_state(e2e.stack, dependent.dag, runs[dependent.dag], dependent.wait, "deferred")
        assert permit(e2e, dependent) == {}, dependent

    # The producers: Airflow schedules each one's latest point; a day a dependent needs besides it is triggered.
    needed = {(d.upstream, d.upstream_day) for d in dependents}
    for upstream, day in sorted(needed):
        if day != latest_point(datetime.now(UTC), 1 if upstream == "ingest_orders" else 2):
            e2e.stack.trigger(upstream, e2e.run_id("estate_up"), canonical_partition(day))
    paused_afterwards.extend(PRODUCERS)
    e2e.stack.unpause(PRODUCERS)
    producer_runs = {(dag, day): scheduled_run(e2e.stack, dag, day) for dag, day in needed}
    for (dag, _), run_id in producer_runs.items():
        e2e.stack.wait_for_run(dag, run_id, ["success"], timeout_s=120)

    for dependent in dependents:
        run = runs[dependent.dag]
        done = e2e.stack.wait_for_run(dependent.dag, run, ["success"], timeout_s=120)
        interval = (parse_time(done["data_interval_start"]), parse_time(done["data_interval_end"]))
        assert interval == (dependent.day, dependent.day), done  # its own timetable's (CronTriggerTimetable) point
        # A second try only when Airflow 3.3.2 failed the deferred wait in its own race (docs: the wait's retry).
        assert task_runs(e2e.stack, dependent.dag, run)[dependent.wait].try_number in (1, 2)
        got = permit(e2e, dependent)
        assert (got["granted"], got["generation"]) == (True, 1), (dependent, got)
        assert [r.run_id for r in all_runs(e2e.stack, dependent.dag)] == [run], "the coordinator made a run"

    # The producers' named tasks are EmptyOperators, which Airflow's scheduler marks success without a task process:
    # no plugin code runs for them, and the leader's audit writes their keys (docs: semantics `edge-task`).
    text = log.read_text(encoding="utf-8", errors="replace")
    for dag, day in needed:
        task = "load" if dag == "ingest_orders" else "extract_a"
        key = e2e.keys.task_key(e2e.stack_node(dag), task, canonical_partition(day))
        assert f"audit.task_recorded key={key} " in text and f"audit.task_repaired key={key} " not in text, key

    # A clear of ingest_orders's run cascades once through its scheduled dependents of that day.
    cleared_day = dependents[0].upstream_day
    cleared = [d for d in dependents if (d.upstream, d.upstream_day) == ("ingest_orders", cleared_day)]
    e2e.stack.clear("ingest_orders", producer_runs[("ingest_orders", cleared_day)])
    for dependent in cleared:
        e2e.wait_for_run_record(
            dependent.dag, dependent.partition, lambda r: r.state is RunState.SUCCESS and r.clear_number == 1,
            timeout_s=120, what="the cleared scheduled run's success",
        )  # fmt: skip
    wait_settled(log, max(e2e.read_run(d.dag, d.partition)[1] for d in cleared))
    for dependent in cleared:
        run = runs[dependent.dag]
        record, _ = e2e.read_run(dependent.dag, dependent.partition)
        assert record is not None and (record.state, record.clear_number, record.run_id) == (
            RunState.SUCCESS, 1, run
        ), record  # fmt: skip
        ledger = e2e.read_ledger(dependent.dag, dependent.partition)
        assert ledger is not None and (ledger.trigger_count, ledger.action) == (2, "clear"), ledger
        got = permit(e2e, dependent)
        assert (got["granted"], got["generation"]) == (True, 2), (dependent, got)
        assert task_runs(e2e.stack, dependent.dag, run)[dependent.wait].try_number in (
            2,
            3,
        )  # the clear's try, or its retry
        assert [r.run_id for r in all_runs(e2e.stack, dependent.dag)] == [run]

    # Nothing moves afterwards: the run states, the permits and the ledgers stay as they are over three passes.
    watched = [e2e.keys.run_key(e2e.stack_node(dag), canonical_partition(day)) for dag, day in needed]
    for dependent in dependents:
        node = e2e.stack_node(dependent.dag)
        watched += [e2e.keys.run_key(node, dependent.partition), e2e.keys.trigger_key(node, dependent.partition),
                    f"{e2e.prefix}/permits/{e2e.stack.instance}/{dependent.dag}/{dependent.partition}"]  # fmt: skip
    before = {key: e2e.revisions(key).get(key) for key in watched}
    settled_at = log.stat().st_size
    wait_for_audit_passes(log, QUIET_PASSES, AUDIT_S, f"{QUIET_PASSES} audit passes")
    assert {key: e2e.revisions(key).get(key) for key in watched} == before
    assert all(before.values()), before
    for dependent in dependents:
        assert [r.run_id for r in all_runs(e2e.stack, dependent.dag)] == [runs[dependent.dag]]
    # No audit pass found a state to repair once the cascade settled. (During it, an audit that lists a cleared run
    # before the plugin's own write of its new state lands may write that state first: a late write, not a lost one.)
    with log.open("rb") as out:
        out.seek(settled_at)
        assert b"audit.repaired" not in out.read()
