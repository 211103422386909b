"""Segment partitions through a real watcher, real etcd and the fake Airflow (semantics `segment-mapping`,
`partition-count`): a day's success fans out to a per-region dependent triggered by partition key and without a
logical date, its regions roll up into a daily total once, and a rerun of one region reruns its dependents once."""

from __future__ import annotations

import pytest

from coordinator.core.model import run_id_for
from tests.scenario.conftest import Stack, wait_for

pytestmark = pytest.mark.scenario

DAY = "2026-01-05T00:00:00Z"
REGIONS = ("apac", "eu", "us")


def test_a_fan_out_to_regions_and_their_rollup_run_once_each_and_rerun_once(stack: Stack) -> None:
    """daily -> per_region (fan-out: three runs keyed 2026-01-05T00:00:00Z|eu ..., no logical date) -> total (all
    regions: one run by logical date); a rerun of per_region's eu reruns total once and nothing else."""
    for dag in ("daily", "per_region", "total"):
        stack.fake.add_dag(dag)
    regions = {"cron": "0 0 * * *", "segments": list(REGIONS)}
    stack.set_deps({"version": 1, "dags": {
        "daily": {"partitions": {"cron": "0 0 * * *"}},
        "per_region": {"partitions": regions, "upstreams": "daily"},
        "total": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "per_region"},
    }})  # fmt: skip
    stack.start_watcher()
    stack.trigger_root(DAY, "daily")
    for region in REGIONS:
        stack.wait_success("per_region", f"{DAY}~{region}")
    stack.wait_success("total", DAY)
    stack.settle(confirmed=True)
    per_region = {r.run_id: r for r in stack.fake.runs("per_region")}
    assert set(per_region) == {run_id_for(f"{DAY}~{r}") for r in REGIONS}
    for region in REGIONS:
        run = per_region[run_id_for(f"{DAY}~{region}")]
        assert run.logical_date is None and run.partition_key == f"{DAY}|{region}", run
    assert [r.run_id for r in stack.fake_runs("total", DAY)] == [run_id_for(DAY)]

    stack.fake.clear_run("per_region", run_id_for(f"{DAY}~eu"))
    stack.wait_success("per_region", f"{DAY}~eu", attempt=1)
    stack.wait_success("total", DAY, attempt=1)
    stack.settle(confirmed=True)
    ledger = stack.ledger("total", DAY)
    assert ledger is not None and ledger["trigger_count"] == 2, ledger
    for region in ("apac", "us"):
        assert stack.ledger("per_region", f"{DAY}~{region}")["trigger_count"] == 1  # type: ignore[index]
    wait_for(lambda: len(stack.fake.runs("total")) == 1, "one run of total (cleared, never created twice)")


def test_why_and_status_name_segments_and_what_a_rollup_is_missing(stack: Stack) -> None:
    """why names a region's partition as 2026-01-05T00:00:00Z~eu and says which regions the all-regions rollup is
    missing (apac, us), not timestamps; status lists the segment partitions."""
    for dag in ("per_region", "total"):
        stack.fake.add_dag(dag)
    regions = {"cron": "0 0 * * *", "segments": list(REGIONS)}
    stack.set_deps({"version": 1, "dags": {
        "per_region": {"partitions": regions},
        "total": {"partitions": {"cron": "0 0 * * *"}, "upstreams": "per_region"},
    }})  # fmt: skip
    stack.start_watcher()
    record = '{"state": "success", "run_id": "outside", "clear_number": 0, "source": "outside"}'
    stack.etcd.put(stack.run_key("per_region", f"{DAY}~eu"), record)
    stack.settle()
    blocked = stack.cli("why", "total", "-p", "2026-01-05").stdout
    assert "per_region: 1 of 3 partitions" in blocked and "missing apac, us" in blocked, blocked
    region = stack.cli("why", "per_region", "-p", "2026-01-05~eu").stdout
    assert "per_region (root) is success (run outside" in region, region
    assert "has not run" in stack.cli("why", "per_region", "-p", "2026-01-05~us").stdout
    status = stack.cli("status", "--format", "json").stdout
    assert f'"{DAY}~eu"' in status, status
