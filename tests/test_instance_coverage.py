"""Which instances of the graph need an Airflow and what to set (coordinator.core.instance_coverage), the readiness
verdict it makes (coordinator.runtime.health), the watcher's judgement on each graph taken into force
(coordinator.watcher.coverage) and the start check's fix for an instance without one: pure, no etcd or Airflow."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.core.instance_coverage import instances_in_use, missing_airflow_fix, unconfigured
from coordinator.core.spec.loader import parse_spec
from coordinator.runtime.graph_source import GraphSource
from coordinator.runtime.health import Health
from coordinator.runtime.metrics import Metrics
from coordinator.watcher.coverage import Coverage
from coordinator.watcher.graph_reload import GraphReload
from coordinator.watcher.instance_check import check_instance

SHORTHAND = parse_spec('{"b": "a"}')
EXTENDED = parse_spec(
    json.dumps(
        {
            "version": 1,
            "instances": {"team_a": {}, "team_b": {}, "declared_only": {}, "dbt": {"kind": "external"}},
            "dags": {"team_a/x": {"upstreams": ["dbt/model"]}, "dbt/model": {}},
            "assets": [{"asset": "s3://lake/*", "from": "team_a", "to": ["team_b"]}],
        }
    )
)


def test_instances_in_use_are_those_with_dags_or_routes_less_external_ones() -> None:
    """A DAG's instance and an asset route's instances need an Airflow; one only declared, or external, does not."""
    assert instances_in_use(SHORTHAND) == {"default"}
    assert instances_in_use(EXTENDED) == {"team_a", "team_b"}


def test_the_issues_mismatch_names_both_sides_and_every_way_to_configure_default() -> None:
    """team_a and team_b configured, the graph all in default: the verdict names default and both configured
    instances; the fix names the instances file (path, setting, chart value), airflow.url for default, and how the
    graph names a configured instance."""
    found = unconfigured(SHORTHAND, ["team_b", "team_a"], "/etc/coordinator/instances/instances.json")
    assert found is not None
    assert found.missing == ("default",) and found.configured == ("team_a", "team_b")
    assert "instance(s) default with no Airflow configured (configured: team_a, team_b)" in found.detail
    fix = found.fix
    assert "add 'default' to the instances file /etc/coordinator/instances/instances.json" in fix
    assert "(COORDINATOR_INSTANCES_FILE, or the Helm chart's airflow.instances)" in fix
    assert "COORDINATOR_AIRFLOW_URL (the Helm chart's airflow.url)" in fix
    assert '"team_a/DAG_ID"' in fix


def test_an_instance_other_than_default_is_fixed_only_in_the_instances_file() -> None:
    """An instance other than default cannot come from COORDINATOR_AIRFLOW_URL: its fix names only the instances
    file; everything configured means no verdict."""
    fix = missing_airflow_fix(["team_b"], ["default", "team_a"], None)
    assert fix.startswith("add 'team_b' to the instances file (COORDINATOR_INSTANCES_FILE")
    assert "COORDINATOR_AIRFLOW_URL" not in fix
    assert unconfigured(EXTENDED, ["team_a", "team_b"]) is None


def test_readiness_fails_first_on_an_unconfigured_instance_and_recovers_when_cleared() -> None:
    """With an instance unconfigured, /readyz's verdict is instances_missing with the detail and the fix, even before
    the view loaded; cleared, the usual verdicts follow."""
    now = [100.0]
    health = Health(clock=lambda: now[0])
    health.unconfigured = unconfigured(SHORTHAND, ["team_a"])
    verdict = health.readiness()
    assert (verdict.ok, verdict.reason) == (False, "instances_missing")
    assert "instance(s) default" in verdict.detail and "fix: add 'default' to" in verdict.detail
    health.view_loaded()
    health.etcd_answered()
    assert health.readiness().reason == "instances_missing"
    health.unconfigured = None
    assert health.readiness().ok


def test_the_watcher_judges_every_graph_taken_and_logs_each_change_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A graph reloaded that names team_c (not configured) makes the health not ready with one ERROR line and the
    gauge coordinator_instance_missing{instance="team_c"} 1; the same graph again logs nothing; the file without
    team_c, reloaded, clears it with one INFO line and the gauge 0."""
    deps = tmp_path / "dependencies.json"
    deps.write_text('{"b": "a"}')
    graphs = GraphSource(deps)
    health = Health()
    metrics = Metrics()
    coverage = Coverage(health, ["default"], None, metrics)
    coverage.observe(graphs.graph)
    reload = GraphReload(graphs, lambda: None, taken=coverage.observe)
    assert health.unconfigured is None
    now = datetime.now(UTC)
    caplog.set_level(logging.INFO, logger="coordinator.watcher.coverage")
    deps.write_text(json.dumps({"version": 1, "instances": {"team_c": {}}, "dags": {"b": {"upstreams": ["a"]},
                                                                                     "team_c/c": {}}}))  # fmt: skip
    asyncio.run(reload.run_once(now))
    assert health.unconfigured is not None and health.unconfigured.missing == ("team_c",)
    gauge = "coordinator_instance_missing"
    assert metrics.registry.get_sample_value(gauge, {"instance": "team_c"}) == 1
    coverage.observe(graphs.graph)
    deps.write_text('{"b": "a", "c": "b"}')
    asyncio.run(reload.run_once(now))
    assert health.unconfigured is None
    assert metrics.registry.get_sample_value(gauge, {"instance": "team_c"}) == 0
    # Only the coverage's lines: an earlier test in this worker may have left the root logger at INFO, which lets
    # graph_source's own graph.reloaded lines into the capture too.
    lines = [
        (r.levelname, r.getMessage().split()[0]) for r in caplog.records if r.name == "coordinator.watcher.coverage"
    ]
    assert lines == [("ERROR", "config.instances_missing"), ("INFO", "config.instances_configured")], lines


def test_the_start_check_of_an_instance_without_an_airflow_names_the_instances_file() -> None:
    """The start check (and doctor) of default with only team_a configured fails saying what is configured, with the
    fix naming the instances file and the chart value, not only COORDINATOR_AIRFLOW_URL."""
    check = asyncio.run(check_instance("default", None, ["b"], configured=["team_a"], instances_file=Path("/i.json")))
    assert not check.ok and check.error == "no Airflow configured for this instance (configured: team_a)"
    assert check.fix is not None and check.fix.startswith("add 'default' to the instances file /i.json")
    assert "airflow.instances" in check.fix
