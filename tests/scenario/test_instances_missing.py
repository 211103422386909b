"""An instance of the graph with no Airflow configured, against real watcher processes, a real etcd and the fake
Airflow: the watcher leads but is not ready, naming the instance, both sides and the fix (the instances file or the
chart's airflow.instances, not only COORDINATOR_AIRFLOW_URL); doctor fails naming it; fixing either side (the
instances file and a restart, or the graph and its reload) makes it ready again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.scenario.conftest import PIPELINE, SEVEN_DAGS, Stack, WatcherProc, wait_for
from tests.scenario.test_metrics_health import probe, scrape, total

pytestmark = pytest.mark.scenario

LOGIN = {"username": "admin", "password_env": "COORDINATOR_AIRFLOW_PASSWORD"}


def instances_file(stack: Stack, tmp_path: Path, *names: str, file: str = "instances.json") -> Path:
    """An instances file giving each of ``names`` the fake Airflow."""
    path = tmp_path / file
    path.write_text(json.dumps({name: {"url": stack.fake.url, **LOGIN} for name in names}), encoding="utf-8")
    return path


def not_ready(watcher: WatcherProc) -> dict[str, Any]:
    """The body of /readyz once it answers 503 with reason instances_missing."""
    status, body = wait_for(lambda: (r := probe(watcher, "/readyz"))[0] == 503 and r[1]["reason"] == "instances_missing"
                            and r, f"/readyz 503 instances_missing on {watcher.id}")  # fmt: skip
    assert status == 503 and body["status"] == "fail", body
    return body


def ready(watcher: WatcherProc) -> None:
    wait_for(lambda: probe(watcher, "/readyz")[0] == 200, f"/readyz 200 on {watcher.id}")


def test_instances_that_the_graph_never_names_leave_the_watcher_not_ready_until_fixed(
    stack: Stack, tmp_path: Path
) -> None:
    """The issue's case: an instances file with team_a and team_b, a graph whose DAGs are all in default: the watcher
    leads, /readyz is 503 naming default, both sides and the instances file, one ERROR line says the same and
    coordinator_instance_missing{instance="default"} is 1, doctor
    fails naming default with the same fix; with default added to the file and a restart it is ready."""
    mismatched = instances_file(stack, tmp_path, "team_a", "team_b")
    watcher = stack.start_watcher(airflow=False, COORDINATOR_INSTANCES_FILE=mismatched)
    detail = not_ready(watcher)["detail"]
    assert "instance(s) default with no Airflow configured (configured: team_a, team_b)" in detail, detail
    assert f"add 'default' to the instances file {mismatched}" in detail, detail
    assert "airflow.instances" in detail and "COORDINATOR_INSTANCES_FILE" in detail, detail
    (line,) = watcher.lines(r"config\.instances_missing")
    assert "ERROR" in line and "instances=default configured=team_a,team_b" in line, line
    assert "airflow.instances" in line, line
    assert probe(watcher, "/healthz")[0] == 200  # alive: a restart would not help
    assert total(scrape(watcher), "coordinator_instance_missing", instance="default") == 1

    doctor = stack.command("doctor", "--etcd", stack.endpoint, "--prefix", stack.prefix, "--deps", str(stack.deps),
                           COORDINATOR_INSTANCES_FILE=mismatched)  # fmt: skip
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("[fail] airflow default:")]
    assert failed and "no Airflow configured for this instance (configured: team_a, team_b)" in failed[0], doctor.stdout
    assert f"fix: add 'default' to the instances file {mismatched}" in doctor.stdout, doctor.stdout
    assert "(COORDINATOR_INSTANCES_FILE, or the Helm chart's airflow.instances)" in doctor.stdout, doctor.stdout

    assert watcher.stop() == 0
    fixed = instances_file(stack, tmp_path, "default", "team_a", file="fixed.json")
    restarted = stack.start_watcher(airflow=False, COORDINATOR_INSTANCES_FILE=fixed)
    ready(restarted)
    assert not restarted.lines(r"config\.instances_missing")


def test_a_reloaded_graph_naming_an_unconfigured_instance_makes_it_not_ready_until_reverted(stack: Stack) -> None:
    """A watcher ready with default configured takes a new graph that adds team_c/load: /readyz turns 503 naming
    team_c (the instances file is the only way to configure it); the graph without it, reloaded, makes it ready again
    with one INFO line saying so."""
    watcher = stack.start_watcher()
    ready(watcher)
    dags: dict[str, Any] = {dag: {"upstreams": up if isinstance(up, list) else [up]} for dag, up in SEVEN_DAGS.items()}
    stack.set_deps({"version": 1, "instances": {"team_c": {}},
                    "dags": {PIPELINE[0]: {}, **dags, "team_c/load": {"upstreams": [PIPELINE[-1]]}}})  # fmt: skip
    detail = not_ready(watcher)["detail"]
    assert "instance(s) team_c with no Airflow configured (configured: default)" in detail, detail
    assert "add 'team_c' to the instances file (" in detail and "airflow.url" not in detail, detail
    stack.set_deps(SEVEN_DAGS)
    ready(watcher)
    watcher.wait_log(r"config\.instances_configured instances=team_c")
