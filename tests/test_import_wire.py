"""The loader's JSON answer: every fact the estate's interpreter sends reads back equal, without Airflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coordinator.airflow_import import wire
from coordinator.airflow_import.loader import LoadedFolder
from coordinator.core.importer.facts import (
    DagFact,
    DateSample,
    LinkFact,
    LinkKind,
    Origin,
    ScheduleFact,
    ScheduleKind,
)
from coordinator.core.importer.failures import FailedFile

AT = datetime(2024, 3, 31, 1, 30, tzinfo=UTC)


def test_a_loaded_folder_round_trips_through_json() -> None:
    """Datetimes, timedeltas (to the microsecond), enums, nested tuples and None come back as they left."""
    loaded = LoadedFolder(
        dags=(
            DagFact(
                "up",
                Origin("a.py", 3),
                ScheduleFact(ScheduleKind.DELTA, "DeltaDataIntervalTimetable", "6:00:00", delta=timedelta(hours=6),
                             start=AT),
                task_groups=(("g", ("g.a", "g.b")),),
                outlets=(("load", "s3://x"),),
                task_ids=("g.a", "g.b", "load"),
            ),
            DagFact("asset", Origin("b.py"), ScheduleFact(ScheduleKind.ASSETS, "AssetTriggeredTimetable",
                                                         assets=("s3://x",))),
        ),
        links=(
            LinkFact(LinkKind.SENSOR, "down", "wait", Origin("c.py", 9), "up", tasks=("load",),
                     delta=timedelta(days=1, microseconds=7), samples=(DateSample(AT, (AT - timedelta(hours=4),)),),
                     allowed_states=("success", "failed")),
        ),
        failed=(FailedFile("d.py", "ModuleNotFoundError: No module named 'x'"),),
        airflow_version="2.11.2",
        files=4,
        failed_dags=(("warehouse", "d.py"),),
        python="/venv/bin/python",
    )  # fmt: skip
    assert wire.loads(wire.dumps(loaded)) == loaded


def test_an_error_answer_reads_as_its_message() -> None:
    """A load that could not start ({"error": ...}) reads back as the message the CLI prints."""
    assert wire.loads('{"error": "Airflow is not installed"}') == "Airflow is not installed"


def test_the_answer_is_found_among_other_output() -> None:
    """Lines Airflow or a DAG file print to stdout before or after the answer (at exit, say) are not taken for it."""
    stdout = f'INFO loading\n{wire.ANSWER}{{"error": "x"}}\n[atexit] Shutting down\n'
    assert wire.answer_line(stdout) == '{"error": "x"}'
    assert wire.answer_line("INFO only Airflow's lines\n") is None
