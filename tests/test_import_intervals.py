"""``import-dags`` writes each converted dependent's ``data_interval`` from its original timetable (semantics
`triggered-data-interval`): the rule's table on schedule facts, and the command on real Airflow 3.3 and 2.11 folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.importer import unrun_tasks
from coordinator.core.importer.facts import ScheduleFact, ScheduleKind
from coordinator.core.importer.intervals import interval_entry
from coordinator.runtime.settings import Settings
from tests.test_import_dags import run_import

CRON = {"cron": "0 0 * * *", "timezone": "UTC"}
DEPENDENT = {"partitions": CRON, "upstreams": ["up"]}


@pytest.mark.parametrize(
    ("timetable", "entry", "expected"),
    [
        pytest.param("CronDataIntervalTimetable", DEPENDENT, "period", id="airflow2-cron-or-data-interval"),
        pytest.param("DeltaDataIntervalTimetable", DEPENDENT, "period", id="airflow2-timedelta"),
        pytest.param("CronTriggerTimetable", DEPENDENT, "point", id="airflow3-cron-default"),
        pytest.param("DeltaTriggerTimetable", DEPENDENT, "point", id="airflow3-timedelta"),
        pytest.param("NullTimetable", DEPENDENT, "point", id="no-schedule-inheriting-a-grid"),
        pytest.param("AssetTriggeredTimetable", DEPENDENT, "point", id="asset-schedule-inheriting-a-grid"),
        pytest.param("CronDataIntervalTimetable", {"partitions": CRON}, None, id="root-never-triggered"),
        pytest.param("NullTimetable", {"upstreams": ["up"]}, None, id="no-grid-nothing-to-say"),
        pytest.param("CronPartitionTimetable", {"partitions": {**CRON, "key_format": "%Y-%m-%d"}, "upstreams": ["up"]},
                     None, id="airflow-partitioned-own-timetable"),
        pytest.param("NullTimetable", {"partitions": {"segments": ["eu"]}, "upstreams": ["up"]}, None,
                     id="segments-only"),
    ],
)  # fmt: skip
def test_the_data_interval_written_for_each_original_timetable(
    timetable: str, entry: dict[str, Any], expected: str | None
) -> None:
    """What the original timetable gave the run of P, written only where the coordinator triggers a gridded DAG."""
    assert interval_entry(ScheduleFact(ScheduleKind.CRON, timetable), entry) == expected


AF3_FOLDER = """
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import DAG, CronDataIntervalTimetable, CronTriggerTimetable

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("up", schedule="@daily", start_date=START):
    EmptyOperator(task_id="load")
with DAG("by_interval", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up")
with DAG("by_trigger", schedule=CronTriggerTimetable("@daily", timezone="UTC"), start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up")
with DAG("cron_string", schedule="@daily", start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up")
with DAG("by_lookback", schedule=CronTriggerTimetable("@daily", timezone="UTC", interval=timedelta(hours=1)),
         start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up")
with DAG("on_marker", schedule="@daily", start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up", external_task_id="load")
    ExternalTaskSensor(task_id="wait_run", external_dag_id="by_interval", external_task_id="wait")
"""

AF2_FOLDER = """
from datetime import datetime
from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.sensors.external_task import ExternalTaskSensor

with DAG("up", schedule="@daily", start_date=datetime(2024, 1, 1)):
    EmptyOperator(task_id="load")
with DAG("daily_preset", schedule="@daily", start_date=datetime(2024, 1, 1)):
    ExternalTaskSensor(task_id="wait", external_dag_id="up")
"""


def import_folder(python: Path, source: str, tmp_path: Path, said: list[str] | None = None) -> dict[str, Any]:
    """The written file's DAG entries; what the command printed is appended to ``said``."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "estate.py").write_text(source, encoding="utf-8")
    output = tmp_path / "deps.json"
    done = run_import(python, folder, output, tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    if said is not None:
        said.append(done.stdout + done.stderr)
    dags: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))["dags"]
    return dags


def test_airflow3_timetables_convert_to_period_and_point(tmp_path: Path) -> None:
    """On Airflow 3.3: a CronDataIntervalTimetable dependent gets "period", a CronTriggerTimetable one and a plain cron
    string (Airflow 3's CronTriggerTimetable) get "point"; the root gets none; a CronTriggerTimetable with an interval
    gets "point" and a note naming the [P - interval, P] it gave and to keep its schedule."""
    said: list[str] = []
    dags = import_folder(Path(sys.executable), AF3_FOLDER, tmp_path, said)
    assert {name: entry.get("data_interval") for name, entry in dags.items()} == {
        "up": None, "by_interval": "period", "by_trigger": "point", "cron_string": "point", "by_lookback": "point",
        "on_marker": "point",
    }  # fmt: skip
    notes = [line for line in said[0].splitlines() if "[P - 1:00:00, P]" in line]
    assert len(notes) == 1 and "by_lookback" in notes[0] and "keep its schedule instead" in notes[0], said[0]


def test_an_edge_on_a_task_airflow_never_runs_gets_a_note_and_one_on_a_task_it_runs_none(tmp_path: Path) -> None:
    """On Airflow 3.3: a sensor on up.load (an EmptyOperator the scheduler marks success unrun) is written as a task
    edge with a note naming the audit's delay and the fix; a sensor on by_interval.wait (a task that runs) gets none."""
    said: list[str] = []
    dags = import_folder(Path(sys.executable), AF3_FOLDER, tmp_path, said)
    assert {"dag": "up", "task": "load"} in dags["on_marker"]["upstreams"]
    assert {"dag": "by_interval", "task": "wait"} in dags["on_marker"]["upstreams"]
    notes = [line for line in said[0].splitlines() if "marks success without running it" in line]
    assert len(notes) == 1 and "on_marker.wait:" in notes[0] and "COORDINATOR_AUDIT_INTERVAL_S" in notes[0], said[0]
    assert "name the task before it, or the whole DAG" in notes[0]
    assert Settings.model_fields["audit_interval_s"].default == unrun_tasks.AUDIT_INTERVAL_DEFAULT_S


def test_airflow2_daily_preset_converts_to_period(tmp_path: Path) -> None:
    """On Airflow 2.11 (its own venv): ``@daily`` is a CronDataIntervalTimetable, so its dependent gets "period"."""
    from devtools.airflow2_stack import ensure_venv

    dags = import_folder(ensure_venv(), AF2_FOLDER, tmp_path)
    assert dags["daily_preset"]["data_interval"] == "period" and "data_interval" not in dags["up"]
    assert dags["daily_preset"]["partitions"]["cron"] == "@daily"
