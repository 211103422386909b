"""``coordinator validate --airflow`` against the fake Airflow at the HTTP boundary (a real Airflow 3.3 checks it in
tests/e2e/test_readme_e2e.py): every DAG of each instance must exist in that instance's Airflow."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_inproc import run_cli
from tests.support.fake_airflow import FakeAirflow

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = [f"0{i}_pipeline" for i in range(1, 8)]


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    with FakeAirflow(PIPELINES, username="coordinator", password="s3cret") as fake:
        yield fake


def validate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``coordinator validate ... --airflow`` with only the given COORDINATOR_* settings, in the test process
    (tests/support/cli_inproc.py; a process per call cost ~0.6 s of CPU)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    return run_cli(["validate", *args, "--airflow"], cwd=ROOT, env=base | env)


def default_env(fake: FakeAirflow, password: str = "s3cret") -> dict[str, str]:
    return {
        "COORDINATOR_AIRFLOW_URL": fake.url,
        "COORDINATOR_AIRFLOW_USERNAME": "coordinator",
        "COORDINATOR_AIRFLOW_PASSWORD": password,
    }


def test_every_dag_present_exits_0_with_one_line_per_instance(airflow: FakeAirflow) -> None:
    """When Airflow lists every DAG of the graph, validate --airflow says so on stdout and exits 0."""
    result = validate(env=default_env(airflow))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[1] == f"instance default ({airflow.url}): Airflow 3.3.2: 7 of 7 DAGs exist"


def test_a_dag_missing_in_airflow_exits_1_with_did_you_mean(airflow: FakeAirflow, tmp_path: Path) -> None:
    """A DAG of the graph that Airflow does not list is an error naming it, with the close Airflow DAG id; exit 1."""
    airflow.set_missing("05_pipeline")
    airflow.add_dag("04_pipeline_v2")
    doc = json.loads((ROOT / "dependencies.json").read_text(encoding="utf-8"))
    doc["07_pipeline"] = "06_pipelin"  # declared nowhere, so Airflow is asked about it too
    path = tmp_path / "deps.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    result = validate(str(path), env=default_env(airflow))
    assert result.returncode == 1, (result.stdout, result.stderr)
    where = f"{path}: instance default ({airflow.url})"
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [
        f"{where}: error: DAG '05_pipeline' does not exist in that Airflow — deploy its DAG file to that Airflow's "
        "dags folder, or correct its name in the dependencies file",
        f"{where}: error: DAG '06_pipelin' does not exist in that Airflow — did you mean '06_pipeline'?",
    ]
    assert f"instance default ({airflow.url}): Airflow 3.3.2: 6 of 8 DAGs exist" in result.stdout


def test_a_paused_dag_is_a_warning(airflow: FakeAirflow) -> None:
    """A paused DAG exists, so the exit code stays 0, but a warning says its runs will wait and how to unpause it."""
    airflow.set_paused("03_pipeline", True)
    result = validate(env=default_env(airflow))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        f"dependencies.json: instance default ({airflow.url}): warning: DAG '03_pipeline' is paused — runs the "
        "coordinator starts wait in 'queued' until it is unpaused (airflow dags unpause 03_pipeline)\n"
    )


def test_a_paused_root_is_not_warned_about(airflow: FakeAirflow) -> None:
    """A paused root gets no "runs the coordinator starts wait" warning: the coordinator never starts a root."""
    airflow.set_paused("01_pipeline", True)
    result = validate(env=default_env(airflow))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[1] == f"instance default ({airflow.url}): Airflow 3.3.2: 7 of 7 DAGs exist"


def test_an_instance_without_settings_exits_2(tmp_path: Path) -> None:
    """An instance of the graph that no setting maps to an Airflow exits 2 naming the settings to set."""
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"version": 1, "instances": {"team_a": {}}, "dags": {"team_a/etl": {}}}))
    result = validate(str(path), env={})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"{path}: instance team_a: error: no Airflow is configured for it — set an entry in the instances file" in (
        result.stderr
    )
    # An instance with no Airflow at all is told how to say so.
    assert f'declare "team_a": {{"kind": "external"}} under "instances" in {path}' in result.stderr
    assert "Traceback" not in result.stderr


def test_refused_credentials_exit_1_without_a_traceback(airflow: FakeAirflow) -> None:
    """A wrong password cannot list the DAGs: exit 1 with one error line naming the instance, no traceback."""
    result = validate(env=default_env(airflow, password="wrong"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"dependencies.json: instance default ({airflow.url}): error: cannot list its DAGs: ")
    assert "wrong" not in result.stderr


def test_each_instance_is_asked_through_the_instances_file(airflow: FakeAirflow, tmp_path: Path) -> None:
    """With an instances file, each instance's DAGs are checked in its own Airflow."""
    with FakeAirflow(["report"], username="coordinator", password="b") as other:
        instances = tmp_path / "instances.json"
        instances.write_text(
            json.dumps({
                "team_a": {"url": airflow.url, "username": "coordinator", "password_env": "A_PASSWORD"},
                "team_b": {"url": other.url, "username": "coordinator", "password_env": "B_PASSWORD"},
            })
        )  # fmt: skip
        deps = tmp_path / "deps.json"
        deps.write_text(json.dumps({
            "version": 1, "instances": {"team_a": {}, "team_b": {}},
            "dags": {"team_a/01_pipeline": {}, "team_b/report": {"upstreams": "team_a/01_pipeline"},
                     "team_b/reprot_check": {"upstreams": "team_b/report"}},
        }))  # fmt: skip
        env = {"COORDINATOR_INSTANCES_FILE": str(instances), "A_PASSWORD": "s3cret", "B_PASSWORD": "b"}
        result = validate(str(deps), env=env)
        other_url = other.url
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"instance team_a ({airflow.url}): Airflow 3.3.2: 1 of 1 DAGs exist" in result.stdout
    assert f"instance team_b ({other_url}): Airflow 3.3.2: 1 of 2 DAGs exist" in result.stdout
    assert "error: DAG 'reprot_check' does not exist in that Airflow" in result.stderr


def test_asset_routes_warn_about_unconsumed_or_unknown_assets_in_the_target(
    airflow: FakeAirflow, tmp_path: Path
) -> None:
    """validate --airflow checks each asset route against its target: an asset no DAG there schedules on, and a
    pattern no asset there matches, are warnings naming the route (exit 0: the events are not lost)."""
    with FakeAirflow([], username="b", password="b-pw") as team_b:
        team_b.add_asset("s3://lake/orders", consumers=["load_orders"])
        team_b.add_asset("s3://lake/refunds")
        deps = tmp_path / "dependencies.json"
        deps.write_text(json.dumps({
            "version": 1, "instances": {"team_b": {}}, "dags": {"01_pipeline": {}},
            "assets": [{"asset": "s3://lake/orders", "from": "default", "to": ["team_b"]},
                       {"asset": "s3://lake/refunds", "from": "default", "to": ["team_b"]},
                       {"asset": "s3://lake/missing*", "from": "default", "to": ["team_b"]}],
        }))  # fmt: skip
        instances = tmp_path / "instances.json"
        instances.write_text(json.dumps({"team_b": {"url": team_b.url, "username": "b", "password_env": "B_PW"}}))
        env = default_env(airflow) | {"COORDINATOR_INSTANCES_FILE": str(instances), "B_PW": "b-pw"}
        result = validate(str(deps), env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2, result.stderr
    assert "$.assets[1] ('s3://lake/refunds' -> team_b): warning: no DAG of team_b schedules on" in warnings[0]
    assert "$.assets[2] ('s3://lake/missing*' -> team_b): warning: no asset of team_b matches" in warnings[1]
