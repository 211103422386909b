"""A condition group's cutoff through a real watcher, real etcd and the fake Airflow (semantics `group-cutoff`): with
nothing written at the cutoff's instant, the watcher plans again then (time as a requeue of its planner) and the
dependent runs once with the members that have arrived."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.model import canonical_partition
from tests.scenario.conftest import Stack, wait_for

pytestmark = pytest.mark.scenario

#: The cutoff comes this long after the watcher has adopted the graph and seen the member land.
AHEAD_S = 12


def forge_success(stack: Stack, dag: str, partition: str) -> None:
    record = {"state": "success", "run_id": f"outside__{partition}", "clear_number": 0, "source": "outside"}
    stack.etcd.put(stack.run_key(dag, partition), json.dumps(record))


def test_a_cutoff_with_nothing_written_at_its_instant_runs_the_rollup_once_with_what_has_arrived(stack: Stack) -> None:
    """Two of three regions needed, a cutoff one hour after the partition's start, min 1: one region lands well
    before the cutoff and nothing runs; once the cutoff passes (no etcd write then) the rollup runs exactly once,
    and its ledger records only the region it consumed."""
    for dag in ("eu", "us", "apac", "rollup"):
        stack.fake.add_dag(dag)
    stack.set_deps({"version": 1, "dags": {"rollup": {"upstreams": [
        {"at_least": 2, "of": ["eu", "us", "apac"], "cutoff": "1h", "min": 1},
    ]}}})  # fmt: skip
    # A resync far away: only the cutoff's own requeue can plan the partition again in time.
    stack.start_watcher(COORDINATOR_RESYNC_INTERVAL_S="600")
    # A partition whose start is an hour (less AHEAD_S) ago: its cutoff is AHEAD_S seconds from now.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1) + timedelta(seconds=AHEAD_S)
    p, cutoff = canonical_partition(start), start + timedelta(hours=1)
    forge_success(stack, "eu", p)
    runs = wait_for(lambda: stack.fake_runs("rollup", p), "the rollup's run after the cutoff", timeout=AHEAD_S + 60)
    # Not before its cutoff, however slow the machine: the fake Airflow stamps the run when the watcher creates it.
    assert runs[0].queued_at is not None and runs[0].queued_at >= cutoff, (runs[0].queued_at, cutoff)
    stack.settle(confirmed=True)
    assert len(stack.fake_runs("rollup", p)) == 1
    ledger = stack.ledger("rollup", p)
    assert ledger is not None and set(ledger["inputs"]) == {"default/eu"}, ledger
