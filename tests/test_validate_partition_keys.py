"""``coordinator validate --airflow`` judges what Airflow accepts before it refuses (``core.key_acceptance``): a keyed
dependent (a ``key_format`` or ``segments``) whose Airflow DAG is not partitioned is an error naming the schedule it
needs, against the fake Airflow at the HTTP boundary (a real Airflow 3.3 checks it in
tests/e2e/test_partition_keys_e2e.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli_inproc import run_cli
from tests.support.fake_airflow import FakeAirflow

DAILY = {"cron": "0 0 * * *"}
GRAPH = {
    "version": 1,
    "dags": {
        "up": {"partitions": DAILY},
        "keyed": {"partitions": {**DAILY, "key_format": "%Y-%m-%d"}, "upstreams": ["up"]},
        "regional": {"partitions": {**DAILY, "segments": ["eu", "us"]}, "upstreams": ["up"]},
        "plain": {"partitions": DAILY, "upstreams": ["up"]},
    },
}
REFUSAL = '400 "is not a partitioned Dag and does not accept a partition_key"'


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    with FakeAirflow(["up", "keyed", "regional", "plain"], username="coordinator", password="s3cret") as fake:
        fake.set_timetable("up", "@daily")
        fake.set_timetable("plain", "None")
        yield fake


@pytest.fixture
def deps(tmp_path: Path) -> Path:
    path = tmp_path / "deps.json"
    path.write_text(json.dumps(GRAPH), encoding="utf-8")
    return path


def validate(fake: FakeAirflow, deps: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env = {
        "COORDINATOR_AIRFLOW_URL": fake.url,
        "COORDINATOR_AIRFLOW_USERNAME": "coordinator",
        "COORDINATOR_AIRFLOW_PASSWORD": "s3cret",
    }
    return run_cli(["validate", str(deps), "--airflow"], env=base | env)


def test_keyed_dependents_on_partitioned_timetables_pass(airflow: FakeAirflow, deps: Path) -> None:
    """PartitionedAtRuntime and CronPartitionTimetable DAGs accept a key, and unkeyed DAGs are not judged: exit 0,
    nothing on stderr."""
    airflow.set_timetable("keyed", "CronPartitionTimetable")
    result = validate(airflow, deps)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"instance default ({airflow.url}): Airflow 3.3.2: 4 of 4 DAGs exist" in result.stdout


def test_a_keyed_dependent_with_schedule_none_is_an_error_naming_the_schedule_it_needs(
    airflow: FakeAirflow, deps: Path
) -> None:
    """A key_format dependent and a segmented one whose DAGs are schedule=None: one error each, naming the DAG, what
    keys it, Airflow's refusal and the complete fix (the schedule, in the DAG's file); exit 1."""
    airflow.set_timetable("keyed", "None")
    airflow.set_timetable("regional", "None")
    result = validate(airflow, deps)
    assert result.returncode == 1, (result.stdout, result.stderr)
    where = f"{deps}: instance default ({airflow.url})"
    timetable = "None ('Never, external triggers only')"
    assert result.stderr.splitlines() == [
        f"{where}: error: DAG 'keyed' is triggered with a partition_key (partitions.key_format '%Y-%m-%d'), but its "
        f"Airflow timetable, {timetable}, is not partitioned: Airflow answers each such trigger {REFUSAL} — set "
        "schedule=PartitionedAtRuntime() in /opt/airflow/dags/keyed.py (from airflow.sdk import "
        f"PartitionedAtRuntime), or remove partitions.key_format from 'keyed' in {deps} to trigger it by logical "
        "date alone",
        f"{where}: error: DAG 'regional' is triggered with a partition_key (partitions.segments eu, us), but its "
        f"Airflow timetable, {timetable}, is not partitioned: Airflow answers each such trigger {REFUSAL} — set "
        "schedule=PartitionedAtRuntime() in /opt/airflow/dags/regional.py (from airflow.sdk import "
        "PartitionedAtRuntime)",
    ]


def test_a_cron_dependent_keyed_by_segments_is_an_error_too(airflow: FakeAirflow, deps: Path) -> None:
    """A built-in cron timetable refuses keys as schedule=None does: an error, exit 1."""
    airflow.set_timetable("regional", "@daily")
    result = validate(airflow, deps)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "error: DAG 'regional' is triggered with a partition_key" in result.stderr
    assert "its Airflow timetable, 0 0 * * * ('At 00:00'), is not partitioned" in result.stderr


def test_a_custom_timetable_is_a_warning_that_says_what_the_api_cannot_show(airflow: FakeAirflow, deps: Path) -> None:
    """A custom timetable may set partitioned_at_runtime, which the REST API does not show: a warning with the fix
    for the case it does not, exit 0."""
    airflow.set_timetable("keyed", "custom")
    result = validate(airflow, deps)
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{deps}: instance default ({airflow.url}): warning: DAG 'keyed' is triggered with")
    assert "is a custom one that is not partitioned" in line
    assert "unless that timetable sets partitioned_at_runtime = True, which its REST API does not show" in line
    assert "— if it does not, set schedule=PartitionedAtRuntime() in /opt/airflow/dags/keyed.py" in line


def test_an_airflow_without_partition_keys_fails_each_keyed_dependent(airflow: FakeAirflow, deps: Path) -> None:
    """An Airflow whose DAG list has no timetable_partitioned (before 3.2) refuses every key: an error per keyed
    dependent naming the upgrade, or the key_format to remove; exit 1."""
    for dag in ("up", "keyed", "regional", "plain"):
        airflow.set_timetable(dag, None)
    result = validate(airflow, deps)
    assert result.returncode == 1, (result.stdout, result.stderr)
    errors = result.stderr.splitlines()
    assert len(errors) == 2, errors
    assert "DAG 'keyed' is triggered with a partition_key (partitions.key_format '%Y-%m-%d'), but Airflow 3.3.2 has " \
        "no partition keys (Airflow 3.2 added them) and it refuses them: every trigger of it fails — remove " \
        f"partitions.key_format from 'keyed' in {deps} (it is then triggered by logical date), or run it on Airflow " \
        "3.2 or later with schedule=PartitionedAtRuntime() in /opt/airflow/dags/keyed.py" in errors[0]  # fmt: skip
    assert errors[1].endswith("its segments need partition keys"), errors[1]


def test_a_keyed_root_is_not_judged(airflow: FakeAirflow, tmp_path: Path) -> None:
    """A root is never triggered by the coordinator, so its keys are not checked: exit 0 with schedule=None."""
    path = tmp_path / "root.json"
    path.write_text(json.dumps({"version": 1, "dags": {"keyed": {"partitions": {**DAILY, "key_format": "%Y"}}}}))
    airflow.set_timetable("keyed", "None")
    result = validate(airflow, path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
