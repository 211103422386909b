"""The one-shot commands with no watcher running: reconcile, reconcile --dry-run, why."""

from __future__ import annotations

import pytest

from tests.scenario.conftest import FAN_IN, JOIN, LAST, ROOT_DAG, Stack, new_partition

pytestmark = pytest.mark.scenario


def test_reconcile_once_dry_run_and_why(stack: Stack) -> None:
    """reconcile does due work, --dry-run prints it and changes nothing, why names 06's blocking upstream."""
    p = new_partition()
    first = stack.cli("reconcile", airflow=True)  # adopts the graph; nothing is due yet
    assert "0 action(s)" in first.stdout, first.stdout
    stack.trigger_root(p)
    stack.wait_success(ROOT_DAG, p)
    stack.settle()

    before = (stack.etcd.items(stack.prefix + "/"), stack.activity())
    dry = stack.cli("reconcile", "--dry-run")
    assert "4 action(s)" in dry.stdout, dry.stdout
    for dag in FAN_IN:
        assert f"create {dag} {p}" in dry.stdout, dry.stdout
    assert (stack.etcd.items(stack.prefix + "/"), stack.activity()) == before

    for expected in (FAN_IN, (JOIN,), (LAST,)):
        done = stack.cli("reconcile", airflow=True)
        assert f"{len(expected)} action(s), {len(expected)} done" in done.stdout, done.stdout
        for dag in expected:
            stack.wait_success(dag, p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    assert "nothing to do" in stack.cli("reconcile", "--dry-run").stdout

    # 01 reruns; 03's rerun is held (paused), so 03 is stale while 02, 04 and 05 caught up.
    stack.fake.set_paused("03_pipeline", True)
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    stack.wait_success(ROOT_DAG, p, attempt=1)
    stack.cli("reconcile", airflow=True)
    for dag in ("02_pipeline", "04_pipeline", "05_pipeline"):
        stack.wait_success(dag, p, attempt=1)
    stack.settle()
    why = stack.cli("why", JOIN, "-p", p).stdout
    first_line = why.splitlines()[0]
    assert first_line.startswith(f"{JOIN} waits: 03_pipeline is stale"), why
    assert "has not succeeded since" in first_line, why
    for dag in ("02_pipeline", "04_pipeline", "05_pipeline"):
        assert dag not in first_line, why
    row = next(r for r in stack.status_json(p)["rows"] if r["dag"] == JOIN)
    assert row["waiting_on"] == ["03_pipeline"], row
