"""The plugin records Airflow 3's runs without a logical date (``docs/keys.md``, "Partitions"): partitioned runs at
their key and date, asset-triggered runs at each partition their consumed events' source runs stand for (Airflow
3.3's own ORM objects in a real SQLite database, in a subprocess with its own AIRFLOW_HOME, and duck-typed
stand-ins), and counts what it cannot record."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.airflow_plugin import hooks
from coordinator.airflow_plugin.hooks import record_dag_run
from coordinator.airflow_plugin.records import (
    WriterConfig,
    run_writes_from_dag_run,
    task_writes_from_task_instance,
)
from coordinator.airflow_plugin.writer import RecordingWriter, install_writer
from coordinator.core.model import KeyLayout, RunState
from coordinator.runtime.settings import EtcdSettings, parse_endpoints

ROOT = Path(__file__).resolve().parents[1]
DAY1 = datetime(2026, 1, 1, tzinfo=UTC)
DAY2 = datetime(2026, 1, 2, tzinfo=UTC)
NOW = datetime(2026, 1, 3, tzinfo=UTC)
CONFIG = WriterConfig(etcd=EtcdSettings(endpoints=parse_endpoints("http://127.0.0.1:2379")), keys=KeyLayout("/p"))


@dataclass
class Run:
    """The DagRun attributes the plugin reads (Airflow 3's ORM and Task SDK runs have them all)."""

    dag_id: str = "clean"
    run_id: str = "asset_triggered__2026-01-03T00:00:00+00:00_abc"
    logical_date: datetime | None = None
    partition_date: datetime | None = None
    partition_key: str | None = None
    run_type: str = "asset_triggered"
    clear_number: int = 0
    start_date: datetime | None = None
    end_date: datetime | None = None
    consumed_asset_events: list[Any] = field(default_factory=list)


def _event(source: Run | None = None, key: str | None = None) -> SimpleNamespace:
    """An ORM AssetEvent's attributes: its source run as the relationship Airflow 3.3 defines."""
    return SimpleNamespace(
        partition_key=key,
        source_dag_run=source,
        source_dag_id=source.dag_id if source else None,
        source_run_id=source.run_id if source else None,
    )


def _keys(run: Any) -> list[str]:
    facts, why = run_writes_from_dag_run(run, RunState.SUCCESS, CONFIG, NOW)
    assert why is None, why
    return [f.key for f in facts]


def test_a_partitioned_run_is_recorded_at_its_key_and_date() -> None:
    """A CronPartitionTimetable run (no logical date) at its partition date; a segment key at its segment."""
    hourly = Run(dag_id="hourly", partition_key="2026-01-01T05:00:00", partition_date=DAY1.replace(hour=5))
    assert _keys(hourly) == ["/p/runs/default/hourly/2026-01-01T05:00:00Z"]
    assert _keys(Run(dag_id="regional", partition_key="eu", run_type="manual")) == ["/p/runs/default/regional/eu"]


def test_a_run_with_a_logical_date_is_recorded_exactly_as_before() -> None:
    """A logical-date run's key and value do not change (even asset-triggered, its consumed events are never read)."""

    class Untouchable(SimpleNamespace):
        @property
        def consumed_asset_events(self) -> list[Any]:
            raise AssertionError("read the events of a run with a logical date")

    fields = vars(Run("daily", "scheduled__x", DAY1, run_type="asset_triggered"))
    run = Untouchable(**{k: v for k, v in fields.items() if k != "consumed_asset_events"})
    facts, why = run_writes_from_dag_run(run, RunState.SUCCESS, CONFIG, NOW)
    assert why is None and [f.key for f in facts] == ["/p/runs/default/daily/2026-01-01T00:00:00Z"]
    assert facts[0].record.run_id == "scheduled__x" and facts[0].record.run_type == "asset_triggered"


def test_an_asset_triggered_run_that_merged_two_dates_is_recorded_at_both() -> None:
    """One record per consumed partition, each with the run's own run id and clear number."""
    load1, load2 = Run("load", "scheduled__1", DAY1, run_type="scheduled"), Run("load", "scheduled__2", DAY2)
    run = Run(clear_number=2, consumed_asset_events=[_event(load2), _event(load1), _event(load2)])
    facts, why = run_writes_from_dag_run(run, RunState.SUCCESS, CONFIG, NOW)
    assert why is None
    assert [f.key for f in facts] == [
        "/p/runs/default/clean/2026-01-01T00:00:00Z",
        "/p/runs/default/clean/2026-01-02T00:00:00Z",
    ]
    assert {(f.record.run_id, f.record.clear_number) for f in facts} == {(run.run_id, 2)}


def test_a_task_of_an_asset_triggered_run_is_recorded_at_the_runs_partitions_via_the_lookup() -> None:
    """A task process's run (Task SDK events carry no source run) reads the sources through the supervisor lookup."""
    sources = {("load", "scheduled__1"): Run("load", "scheduled__1", DAY1, run_type="scheduled")}
    sdk_event = SimpleNamespace(partition_key=None, source_dag_id="load", source_run_id="scheduled__1")
    run = Run(consumed_asset_events=[sdk_event])
    ti = SimpleNamespace(dag_id="clean", task_id="publish", run_id=run.run_id, map_index=-1, try_number=1, dag_run=run)
    facts, why = task_writes_from_task_instance(ti, RunState.SUCCESS, CONFIG, NOW, lambda d, r: sources.get((d, r)))
    assert why is None and [f.key for f in facts] == ["/p/tasks/default/clean/publish/2026-01-01T00:00:00Z"]


@pytest.mark.parametrize(
    ("run", "counter", "level"),
    [
        pytest.param(Run(run_type="manual"), "no_partition", logging.INFO, id="manual-without-anything"),
        pytest.param(
            Run(consumed_asset_events=[_event()]), "no_partition", logging.INFO, id="asset-triggered-no-source"
        ),
        pytest.param(
            Run(partition_key="a b", run_type="manual"), "unusable_partition_key", logging.WARNING, id="unusable-key"
        ),
    ],
)
def test_runs_of_no_partition_are_counted_and_logged(
    run: Run, counter: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is recorded; the counter named after the reason grows; one line at first, debug after."""
    recorder = RecordingWriter(CONFIG)
    install_writer(recorder)
    try:
        with caplog.at_level(logging.DEBUG, logger=hooks.__name__):
            record_dag_run(run, RunState.RUNNING)
            record_dag_run(run, RunState.SUCCESS)
    finally:
        install_writer(None)
    assert recorder.items == [] and getattr(recorder.stats, counter) == 2
    lines = [r for r in caplog.records if f"reason={counter}" in r.getMessage()]
    assert [r.levelno for r in lines] == [level, logging.DEBUG]


def test_sources_that_cannot_be_read_are_counted_never_raised() -> None:
    """An ORM error while reading consumed events (a detached run) is one source error, logged; the hook returns."""

    class Detached(SimpleNamespace):
        @property
        def consumed_asset_events(self) -> list[Any]:
            raise RuntimeError("Parent instance <DagRun> is not bound to a Session")

    recorder = RecordingWriter(CONFIG)
    install_writer(recorder)
    try:
        fields = {k: v for k, v in vars(Run()).items() if k != "consumed_asset_events"}
        record_dag_run(Detached(**fields), RunState.SUCCESS)
    finally:
        install_writer(None)
    assert recorder.items == [] and recorder.stats.source_errors == 1


#: Runs in the child: Airflow 3.3's own tables in a fresh SQLite database, the runs and events the scheduler makes
#: (a daily producer's two runs, a partitioned run, an asset-triggered consumer that merged both dates, an
#: asset-triggered run of that consumer), each read back on its session as the scheduler's hook sees it.
CHILD = """
import json
from datetime import UTC, datetime
from airflow import settings
from airflow.models import import_all_models
from airflow.models.base import Base
from airflow.models.asset import AssetEvent, AssetModel
from airflow.models.dagrun import DagRun
from airflow.utils.types import DagRunType
from sqlalchemy.orm import Session
from coordinator.airflow_plugin.records import WriterConfig, run_writes_from_dag_run
from coordinator.core.model import RunState
from coordinator.runtime.settings import EtcdSettings, parse_endpoints

import_all_models()
Base.metadata.create_all(settings.engine)
config = WriterConfig(etcd=EtcdSettings(endpoints=parse_endpoints("http://127.0.0.1:2379")))
now = datetime(2026, 1, 3, tzinfo=UTC)


def run(dag_id, run_id, kind, logical_date=None, **more):
    return DagRun(dag_id=dag_id, run_id=run_id, logical_date=logical_date, run_type=kind, run_after=now, **more)


def event(asset, source):
    return AssetEvent(asset_id=asset.id, source_dag_id=source.dag_id, source_run_id=source.run_id)


with Session(settings.engine) as session:
    loads = [asset := AssetModel(uri="s3://b/load", name="load"), cleaned := AssetModel(uri="s3://b/clean", name="c")]
    session.add_all(loads)
    day1 = run("load", "scheduled__1", DagRunType.SCHEDULED, datetime(2026, 1, 1, tzinfo=UTC))
    day2 = run("load", "scheduled__2", DagRunType.SCHEDULED, datetime(2026, 1, 2, tzinfo=UTC))
    hourly = run("hourly", "scheduled__h", DagRunType.SCHEDULED, partition_key="2026-01-01T05:00:00",
                 partition_date=datetime(2026, 1, 1, 5, tzinfo=UTC))
    clean = run("clean", "asset_triggered__c", DagRunType.ASSET_TRIGGERED)
    report = run("report", "asset_triggered__r", DagRunType.ASSET_TRIGGERED)
    session.add_all([day1, day2, hourly, clean, report])
    session.flush()
    clean.consumed_asset_events.extend([event(asset, day1), event(asset, day2)])
    report.consumed_asset_events.append(event(cleaned, clean))
    session.commit()
    session.expire_all()
    found = {}
    for dag_id in ("load", "hourly", "clean", "report"):
        for each in session.query(DagRun).filter(DagRun.dag_id == dag_id):
            facts, why = run_writes_from_dag_run(each, RunState.SUCCESS, config, now)
            found[each.run_id] = [f.key for f in facts] if why is None else str(why)
print(json.dumps(found))
"""


@pytest.mark.airflow  # runs Airflow's own code (make fast leaves it out)
def test_airflows_own_runs_are_recorded_at_their_partitions(tmp_path: Path) -> None:
    """Airflow 3.3's DagRun and AssetEvent rows: the merged consumer at both dates, its own consumer at them too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COORDINATOR_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)
    )
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    both = ["/coordinator/runs/default/{}/2026-01-01T00:00:00Z", "/coordinator/runs/default/{}/2026-01-02T00:00:00Z"]
    assert found == {
        "scheduled__1": ["/coordinator/runs/default/load/2026-01-01T00:00:00Z"],
        "scheduled__2": ["/coordinator/runs/default/load/2026-01-02T00:00:00Z"],
        "scheduled__h": ["/coordinator/runs/default/hourly/2026-01-01T05:00:00Z"],
        "asset_triggered__c": [k.format("clean") for k in both],
        "asset_triggered__r": [k.format("report") for k in both],
    }
