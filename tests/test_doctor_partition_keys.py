"""``coordinator doctor`` fails a keyed dependent (a ``key_format`` or ``segments``) whose Airflow DAG refuses a
``partition_key``, naming what to set where (``core.key_acceptance``); real etcd, the fake Airflow at the HTTP
boundary."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.activation import adopt, dump_activation
from coordinator.core.model import KeyLayout
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from coordinator.runtime.spec_file import load_spec
from tests.support.cli_inproc import run_cli
from tests.support.fake_airflow import FakeAirflow

PASSWORD = "right-password"  # the fake's; not a real secret
DAILY = {"cron": "0 0 * * *"}
GRAPH = {
    "version": 1,
    "dags": {
        "up": {"partitions": DAILY},
        "keyed": {"partitions": {**DAILY, "key_format": "%Y-%m-%d"}, "upstreams": ["up"]},
        "regional": {"partitions": {**DAILY, "segments": ["eu", "us"]}, "upstreams": ["up"]},
    },
}


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    with FakeAirflow(["up", "keyed", "regional"], username="coordinator", password=PASSWORD) as fake:
        fake.set_timetable("up", "@daily")
        yield fake


@pytest.fixture
def deps(tmp_path: Path) -> Path:
    path = tmp_path / "dependencies.json"
    path.write_text(json.dumps(GRAPH), encoding="utf-8")
    return path


def doctor(endpoint: str, prefix: str, fake: FakeAirflow, deps: Path) -> dict[str, dict[str, Any]]:
    """``doctor --format json``'s checks by name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
    env |= {
        "COORDINATOR_ETCD_ENDPOINTS": endpoint,
        "COORDINATOR_PREFIX": prefix,
        "COORDINATOR_DEPS": str(deps),
        "COORDINATOR_AIRFLOW_URL": fake.url,
        "COORDINATOR_AIRFLOW_USERNAME": "coordinator",
        "COORDINATOR_AIRFLOW_PASSWORD": PASSWORD,
    }
    done = run_cli(["doctor", "--format", "json"], env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_a_keyed_dependent_whose_dag_is_schedule_none_fails_doctor(
    etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow, deps: Path
) -> None:
    """schedule=None under a key_format dependent: ``partition keys default`` fails naming it, its detail says what to
    set in which file; the dependent on PartitionedAtRuntime is not named; nothing is triggered."""
    airflow.set_timetable("keyed", "None")
    check = doctor(etcd_endpoint, etcd_prefix, airflow, deps)["partition keys default"]
    assert check["status"] == "fail", check
    assert check["summary"] == (
        "1 keyed dependent(s) whose Airflow DAG refuses a partition_key: keyed (each trigger of theirs would be "
        "refused)"
    )
    [detail] = check["details"]
    assert detail.startswith("DAG 'keyed' is triggered with a partition_key (partitions.key_format '%Y-%m-%d')")
    assert "set schedule=PartitionedAtRuntime() in /opt/airflow/dags/keyed.py" in detail
    assert all(airflow.creates(d) == 0 for d in ("up", "keyed", "regional"))


def test_partitioned_dags_pass_and_a_custom_timetable_warns(
    etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow, deps: Path
) -> None:
    """Every keyed dependent's DAG accepts a key: ok, with how many were asked; a custom timetable: a warning."""
    checks = doctor(etcd_endpoint, etcd_prefix, airflow, deps)
    assert checks["partition keys default"]["status"] == "ok"
    assert checks["partition keys default"]["summary"] == "the DAGs of all 2 keyed dependent(s) accept a partition_key"
    airflow.set_timetable("regional", "custom")
    check = doctor(etcd_endpoint, etcd_prefix, airflow, deps)["partition keys default"]
    assert check["status"] == "warn", check
    assert "1 on a custom timetable that may refuse it: regional" in check["summary"]


def test_the_adopted_graph_is_judged_when_the_local_file_is_unreadable(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow, deps: Path
) -> None:
    """Without a readable local file, doctor judges the keyed dependents of the graph the watcher adopted."""
    graph = load_spec(deps)

    async def adopt_it() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            activation = adopt(graph.shapes, graph.digest, None, 1, by="test", sources=graph.dags)
            assert activation is not None
            await store.put(KeyLayout(etcd_prefix).config_key("graph"), dump_activation(activation))

    arun(adopt_it())
    deps.write_text("{not json", encoding="utf-8")
    airflow.set_timetable("regional", "None")
    check = doctor(etcd_endpoint, etcd_prefix, airflow, deps)["partition keys default"]
    assert check["status"] == "fail", check
    assert "refuses a partition_key: regional" in check["summary"]
