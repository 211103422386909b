"""What Airflow accepts is checked before it refuses, against the session's real Airflow 3.3: ``validate --airflow``
and ``doctor`` fail a dependent keyed by a ``key_format`` whose DAG is ``schedule=None``, naming the schedule to set
in its file, and pass the keyed dependents on ``PartitionedAtRuntime`` and ``CronPartitionTimetable``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import E2E

pytestmark = pytest.mark.e2e

DAILY = {"cron": "0 0 * * *", "timezone": "UTC"}
GRAPH = {
    "version": 1,
    "dags": {
        "e2e_chain_root": {"partitions": DAILY},
        # tests/e2e/dags/e2e_keys.py: schedule=None, keyed here by mistake.
        "e2e_keyed_unpartitioned": {"partitions": {**DAILY, "key_format": "%Y-%m-%d"}, "upstreams": ["e2e_chain_root"]},
        # tests/e2e/dags/e2e_partitions.py: PartitionedAtRuntime and CronPartitionTimetable, both accept keys.
        "e2e_seg_per": {"partitions": {**DAILY, "segments": ["eu", "us"]}, "upstreams": ["e2e_chain_root"]},
        "e2e_part_keyed": {"partitions": {**DAILY, "key_format": "%Y-%m-%dT%H:%M:%S"}, "upstreams": ["e2e_chain_root"]},
    },
}


def coordinator(e2e: E2E, *args: str) -> subprocess.CompletedProcess[str]:
    """``coordinator ARGS`` with the session's settings and this graph; a read-only command, so asked again when the
    API of a loaded machine timed out (as ``harness._get`` does), at most three times."""
    deps = e2e.write_dependencies(GRAPH, "keys.json")
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", *args],
            env=e2e.watcher_env(deps),
            cwd=e2e.work_dir,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if "timed out" not in done.stderr + done.stdout:
            break
    return done


def test_validate_and_doctor_name_a_keyed_dependent_whose_dag_is_schedule_none(e2e: E2E) -> None:
    """validate --airflow exits 1 with one error, for e2e_keyed_unpartitioned, naming Airflow's refusal and
    schedule=PartitionedAtRuntime() in its file; doctor's 'partition keys default' fails naming it alone."""
    validated = coordinator(e2e, "validate", "--airflow")
    assert validated.returncode == 1, (validated.stdout, validated.stderr)
    assert f"instance default ({e2e.stack.url}): Airflow 3.3.2: 4 of 4 DAGs exist" in validated.stdout
    errors = [line for line in validated.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, validated.stderr
    assert (
        "error: DAG 'e2e_keyed_unpartitioned' is triggered with a partition_key (partitions.key_format '%Y-%m-%d'), "
        "but its Airflow timetable, None ('Never, external triggers only'), is not partitioned: Airflow answers each "
        'such trigger 400 "is not a partitioned Dag and does not accept a partition_key" — set '
        f"schedule=PartitionedAtRuntime() in {e2e.stack.dags_folder / 'e2e_keys.py'} (from airflow.sdk import "
        "PartitionedAtRuntime)"
    ) in errors[0]
    doctor = coordinator(e2e, "doctor", "--format", "json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    keys = checks["partition keys default"]
    assert keys["status"] == "fail", keys
    assert keys["summary"].startswith("1 keyed dependent(s) whose Airflow DAG refuses a partition_key: "
                                      "e2e_keyed_unpartitioned ")  # fmt: skip
