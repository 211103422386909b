"""Holds under etcd authentication (issue 51): the operator role holds, releases and retracts; a plugin's user, the
read-only doctor and an outside writer are refused every incident write, and the hold still holds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record
from coordinator.etcd import EtcdStore
from tests.support.fake_airflow import FakeAirflow
from tests.test_roles import GRAPH, PARTITION, PREFIX, AuthEtcd, run_command
from tests.test_roles import airflow as airflow
from tests.test_roles import auth_etcd as auth_etcd

INCIDENT_WRITES = [
    ("hold", ["hold", "team_a/extract", "--downstream", "--reason", "bad data"]),
    ("release-hold", ["release-hold", "HOLD"]),
    ("retract", ["retract", "team_a/extract", "-p", PARTITION, "--reason", "wrong"]),
]


def test_only_the_operator_writes_holds_and_the_history(
    auth_etcd: AuthEtcd, airflow: FakeAirflow, tmp_path: Path, arun: Any
) -> None:
    """The operator user holds, lists, releases and retracts; team A's plugin user, the doctor user and an outside
    writer are refused each of those writes (exit 1, permission denied) and write nothing under holds/ or history/."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(GRAPH))
    instances = tmp_path / "instances.json"
    entry = {"url": airflow.url, "username": "coordinator", "password_env": "AF_PASSWORD"}
    instances.write_text(json.dumps({"team_a": entry, "team_b": entry}))
    keys = KeyLayout(PREFIX)

    def cli(user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_command(*args, env=auth_etcd.env(user, airflow, deps, instances))

    async def put_success() -> None:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as store:
            record = RunRecord(state=RunState.SUCCESS, run_id="scheduled__2026-01-01", source="test")
            await store.put(keys.run_key(NodeId("team_a", "extract"), PARTITION), dump_record(record))

    async def count(prefix: str) -> int:
        async with await EtcdStore.connect(auth_etcd.settings("root")) as store:
            return len((await store.snapshot(prefix)).kvs)

    arun(put_success())
    held = cli("coordinator-operator", "hold", "team_a/extract", "--downstream", "--reason", "bad data")
    assert held.returncode == 0, held.stdout + held.stderr
    hold_id = held.stdout.split()[1].rstrip(":")
    listed = cli("coordinator-doctor", "holds", "--format", "json")  # reading is everyone's who reads the prefix
    assert listed.returncode == 0 and [h["id"] for h in json.loads(listed.stdout)] == [hold_id], listed.stderr
    before = (arun(count(keys.holds)), arun(count(keys.history)))

    for user in ("coordinator-plugin-team_a", "coordinator-doctor", "coordinator-writer-spark"):
        for name, words in INCIDENT_WRITES:
            done = cli(user, *[hold_id if w == "HOLD" else w for w in words])
            assert done.returncode != 0, (user, name, done.stdout)
            refused = "permission denied" in done.stderr.lower()
            assert refused, (user, name, done.stderr)
    assert (arun(count(keys.holds)), arun(count(keys.history))) == before
    still = cli("coordinator-doctor", "holds", "--format", "json")
    assert [h["id"] for h in json.loads(still.stdout)] == [hold_id], "a refused release released the hold"

    retracted = cli("coordinator-operator", "retract", "team_a/extract", "-p", PARTITION, "--reason", "wrong")
    assert retracted.returncode == 0, retracted.stdout + retracted.stderr
    released = cli("coordinator-operator", "release-hold", hold_id, "--reason", "fixed")
    assert released.returncode == 0 and f"released hold {hold_id}" in released.stdout, released.stderr
    trail = json.loads(cli("coordinator-doctor", "history", "--format", "json").stdout)
    assert [(e["action"], e["by"]) for e in trail] == [("hold", "coordinator-operator"),
                                                       ("retract", "coordinator-operator"),
                                                       ("release", "coordinator-operator")]  # fmt: skip
