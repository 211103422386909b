"""``plan rerun`` of a DAG the dependencies file does not name but whose runs the plugin records: its clear previewed
through Airflow's asset schedules (read from the fake Airflow's asset listing), or the exact reason it cannot be."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.scenario.conftest import DOWNSTREAM, LAST, ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario

URI = "s3://lake/orders"
RERUN_PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "rerun.md"


def _documented_command(partition: str, url: str) -> list[str]:
    """docs/howto/rerun.md's ``plan rerun`` of a DAG outside the graph, for ``partition`` and the fake's ``url``."""
    (line,) = re.findall(r"^coordinator (plan rerun orders_daily .*)$", RERUN_PAGE.read_text(encoding="utf-8"), re.M)
    words = shlex.split(line.replace("2031-01-01", partition))
    at = words.index("--airflow-url")
    return [*words[:at], "--airflow-url", url, *words[at + 2 :]]


def _recorded(stack: Stack, dag: str, partition: str) -> None:
    """``dag`` (in Airflow, not in the graph) runs for ``partition``; the plugin records it in etcd."""
    stack.fake.add_dag(dag)
    stack.trigger_root(partition, dag=dag)
    wait_for(lambda: stack.succeeded(dag, partition), f"{dag} success for {partition}", 30.0)


def test_plan_rerun_of_a_dag_outside_the_graph_follows_its_asset_schedules(stack: Stack) -> None:
    """orders_daily produces an asset that 01 (the graph's root) and orders_audit (not in the graph) schedule on: the
    preview clears orders_daily, lists both as started by Airflow, then the graph's cascade from 01, depth by depth."""
    p = new_partition()
    stack.start_watcher()
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    _recorded(stack, "orders_daily", p)
    stack.fake.add_asset(URI, consumers=[ROOT_DAG, "orders_audit"], producers=["orders_daily"])
    shown = stack.cli("plan", "rerun", "orders_daily", "--from", p, "--to", p, "-f", "json", airflow=True)
    result = json.loads(shown.stdout)
    depth = {(run["dag"], run["depth"], run["step"], run["by"]) for run in result["runs"]}
    assert ("orders_daily", 0, "clear", "rerun") in depth
    assert {(ROOT_DAG, 1, "create", "airflow"), ("orders_audit", 1, "create", "airflow")} <= depth
    assert {(dag, run_depth) for dag, run_depth, _, by in depth if by == "watcher"} == {
        *((dag, 2) for dag in DOWNSTREAM[:4]),
        ("06_pipeline", 3),
        (LAST, 4),
    }
    assert result["outside"] == {"node": "default/orders_daily", "in_graph": False, "produces": [URI],
                                 "unknown_targets": []}  # fmt: skip
    text = stack.cli(*_documented_command(p, stack.fake.url)).stdout  # the command the how-to shows
    assert "orders_daily is not in the graph; the plugin records its runs." in text
    assert "1 cleared by rerun, 2 by Airflow's asset schedules, 6 by the watchers after" in text
    assert f"create 01_pipeline {p} (airflow): scheduled on {URI}" in text
    assert "the graph does not name it, so nothing after it is known" in text


def test_plan_rerun_outside_the_graph_says_why_it_cannot(stack: Stack) -> None:
    """Without the Airflow to read the asset schedules from, or without a run of the DAG in the store, the command
    exits 2 saying exactly what is missing and how to give it."""
    p = new_partition()
    _recorded(stack, "orders_daily", p)
    no_url = stack.cli("plan", "rerun", "orders_daily", "--from", p, "--to", p, check=False)
    assert no_url.returncode == 2, (no_url.stdout, no_url.stderr)
    assert "which the coordinator reads from instance default's Airflow, and none is configured here: give its URL " \
           "with --airflow-url (COORDINATOR_AIRFLOW_URL)" in no_url.stderr  # fmt: skip
    unknown = stack.cli("plan", "rerun", "orders_weekly", "--from", p, "--to", p, airflow=True, check=False)
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert "'orders_weekly' is not a DAG in" in unknown.stderr
    assert "and the store holds no run of it" in unknown.stderr
