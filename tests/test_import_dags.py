"""``coordinator import-dags`` against Airflow's own code: the file waits for exactly the dates the sensors waited for.

The oracle is Airflow: ``tests/import_dags/oracle.py`` loads the same folder with Airflow's DagBag and asks every
sensor's own ``_get_dttm_filter`` (with the context a task really runs with) which upstream dates a run waits for;
``required_inputs`` of the imported file must name the same partitions, for hundreds of dependent dates per sensor,
across daylight-saving changes. Airflow runs in subprocesses (its own AIRFLOW_HOME), never in the test process; one
oracle process per module and Airflow version answers every question (``tests/support/oracle_client.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.core.graph import Graph
from coordinator.core.grid import Grid
from coordinator.core.inputs import required_inputs
from coordinator.core.model import NodeId, partition_datetime
from coordinator.runtime.spec_file import load_spec
from tests.support.cli_inproc import run_cli
from tests.support.oracle_client import Oracle, running_oracle

#: Every test here loads DAG folders with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

HERE = Path(__file__).parent / "import_dags"
ESTATE = HERE / "estate"
#: Airflow 3 schedules and a package imported from the DAGs folder (issue 24's crashes), kept out of ESTATE's oracle.
ESTATE_AF3 = HERE / "estate_af3"
FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Dependent dates per sensor: consecutive grid points from each of these (a year start, both 2024 daylight-saving
#: changes in Europe and North America, a leap-day month end, the 2025 spring change).
WINDOWS = ("2023-12-20", "2024-02-20", "2024-03-05", "2024-03-25", "2024-10-20", "2024-10-29", "2025-03-26")
POINTS_PER_WINDOW = 40


@dataclass(frozen=True)
class Imported:
    path: Path
    graph: Graph
    returncode: int
    stderr: str


def airflow_env(home: Path) -> dict[str, str]:
    """Airflow isolated in ``home`` (no examples, no user config), quiet enough to read our own output."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "COORDINATOR_DEPS"}
    return keep | {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONWARNINGS": "ignore"}


def run_import(python: Path, folder: Path, output: Path, home: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``coordinator import-dags`` run by ``python``: this interpreter's runs the command in the test process
    (tests/support/cli_inproc.py; the command loads the folder in a child process either way, so Airflow still never
    enters the test process), saving a CLI start (about 0.6 s of CPU) per call; another interpreter's in a
    subprocess."""
    args = ["import-dags", str(folder), "--output", str(output), *flags]
    if python == Path(sys.executable):
        return run_cli(args, env=airflow_env(home))
    return subprocess.run([str(python), "-m", "coordinator.cli", *args], env=airflow_env(home), capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def imported(python: Path, folder: Path, tmp: Path, *flags: str) -> Imported:
    output = tmp / "dependencies.json"
    done = run_import(python, folder, output, tmp / "home", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return Imported(output, load_spec(output), done.returncode, done.stderr)


def dependent_dates(graph: Graph, dag: str) -> list[str]:
    """Many partitions of ``dag``: consecutive points of its grid from each window (rule: the oracle's inputs)."""
    grid = graph.dags[NodeId("default", dag)].grid
    assert grid is not None, f"{dag} has no grid"
    found: set[str] = set()
    for day in WINDOWS:
        point = grid.floor(datetime.fromisoformat(day).replace(tzinfo=UTC))
        for _ in range(POINTS_PER_WINDOW):
            point = grid.next(point)
            found.add(point.strftime(FORMAT))
    return sorted(found)


@dataclass(frozen=True)
class Sensor:
    """A translated sensor: its DAG and task, the upstream and the upstream tasks its edges name."""

    dag: str
    task: str
    upstream: str
    tasks: tuple[str | None, ...] = (None,)
    #: The DAG of the file holding the sensor's edges when it is not ``dag`` (a SubDAG's sensor is its parent's).
    entry: str = ""

    @property
    def node(self) -> str:
        return self.entry or self.dag


def mismatches(graph: Graph, sensor: Sensor, oracle: dict[str, list[str]]) -> list[str]:
    """Every dependent date where the file's inputs differ from Airflow's dates (a date off the upstream's grid
    means the sensor waits forever, which an edge says by mapping to nothing)."""
    up_grid: Grid | None = graph.dags[NodeId("default", sensor.upstream)].grid
    found = []
    for partition, dates in oracle.items():
        expected = tuple(dates)
        if up_grid is not None and not all(up_grid.contains(partition_datetime(d)) for d in dates):
            expected = ()
        inputs = required_inputs(graph, NodeId("default", sensor.node), partition)
        for task in sensor.tasks:
            got = [i.partitions for i in inputs if i.dag.dag_id == sensor.upstream and i.task == task]
            if got != [expected]:
                found.append(f"{sensor.dag}.{sensor.task} at {partition}: file {got}, Airflow {expected}")
    return found


def check_oracle(oracle: Oracle, folder: Path, result: Imported, sensors: Sequence[Sensor]) -> int:
    """Assert the oracle agrees on every dependent date of every sensor; return how many dates were compared."""
    requests = [{"dag": s.dag, "task": s.task, "partitions": dependent_dates(result.graph, s.node)} for s in sensors]
    answers = oracle.ask(folder, requests)
    problems = [m for s in sensors for m in mismatches(result.graph, s, answers[(s.dag, s.task)])]
    assert not problems, f"{len(problems)} mismatches, e.g. " + "; ".join(problems[:5])
    return sum(len(r["partitions"]) for r in requests)


@dataclass(frozen=True)
class Operator:
    """A translated marker or trigger in ``dag`` whose templated logical_date names a run of ``target``; its edges
    name these tasks of ``dag``."""

    dag: str
    task: str
    target: str
    tasks: tuple[str | None, ...] = (None,)


def check_templates(oracle: Oracle, folder: Path, result: Imported, operators: Sequence[Operator]) -> int:
    """Assert that, for every run of each operator's DAG, the target's date Airflow renders from its template waits
    for exactly that run in the file; return how many runs were compared."""
    graph = result.graph
    requests = [
        {"dag": o.dag, "task": o.task, "field": "logical_date", "partitions": dependent_dates(graph, o.dag)}
        for o in operators
    ]
    answers = oracle.ask(folder, requests)
    problems = []
    for o in operators:
        for partition, (target_date,) in answers[(o.dag, o.task)].items():
            inputs = required_inputs(graph, NodeId("default", o.target), target_date)
            for task in o.tasks:
                got = [i.partitions for i in inputs if i.dag.dag_id == o.dag and i.task == task]
                if got != [(partition,)]:
                    problems.append(f"{o.target} at {target_date} (from {o.dag} at {partition}): file {got}")
    assert not problems, f"{len(problems)} mismatches, e.g. " + "; ".join(problems[:5])
    return sum(len(r["partitions"]) for r in requests)


# ----- the estate: sensors written the ways Airflow's docs and real repositories write them -----

ESTATE_SENSORS = (
    Sensor("report_sales", "wait_orders", "ingest_orders", ("load",)),
    Sensor("early_check", "wait_warehouse", "ingest_warehouse", ("extract_a", "extract_b")),
    Sensor("warehouse_quality", "wait_transform", "ingest_warehouse", ("transform.clean", "transform.dedupe")),
    Sensor("weekly_summary", "wait_friday", "ingest_orders", ("load",)),
    Sensor("weekly_rollup", "wait_saturday", "ingest_customers"),
    Sensor("books_check", "wait_books", "ingest_late", ("close_books",)),
    Sensor("hourly_enrich", "wait_land", "ingest_hourly", ("land",)),
    Sensor("daily_from_hourly", "wait_all_hours", "ingest_hourly", ("land",)),
    Sensor("monthly_close", "wait_month_end", "ingest_customers"),
    Sensor("daily_snapshot", "wait_yesterday", "daily_snapshot", ("publish",)),
    Sensor("cleanup", "wait_orders_done", "ingest_orders"),
    Sensor("berlin_report", "wait_load", "berlin_load", ("load",)),
    Sensor("berlin_fx", "wait_orders", "ingest_orders", ("load",)),
    Sensor("report_stale", "wait_orders", "ingest_orders"),
)

EXPECTED_EDGES = {
    "report_sales": [{"dag": "ingest_orders", "shift": "-4h", "task": "load"}],
    "early_check": [
        {"dag": "ingest_warehouse", "shift": "+2h", "task": "extract_a"},
        {"dag": "ingest_warehouse", "shift": "+2h", "task": "extract_b"},
    ],
    "warehouse_quality": [
        {"dag": "ingest_warehouse", "task": "transform.clean"},
        {"dag": "ingest_warehouse", "task": "transform.dedupe"},
    ],
    "weekly_summary": [{"dag": "ingest_orders", "shift": "-1d9h", "task": "load"}],
    "weekly_rollup": [{"dag": "ingest_customers", "shift": "+6d"}],
    "books_check": [{"dag": "ingest_late", "shift": "+23h", "task": "close_books"}],
    "hourly_enrich": [{"dag": "ingest_hourly", "shift": "-15m", "task": "land"}],
    "daily_from_hourly": [{"dag": "ingest_hourly", "offset": -1, "task": "land"}],
    "monthly_close": [{"dag": "ingest_customers", "member": "last"}],
    "daily_snapshot": [{"dag": "daily_snapshot", "shift": "-1d", "task": "publish"}],
    "cleanup": [{"dag": "ingest_orders", "condition": "finished"}],
    "berlin_report": [{"dag": "berlin_load", "shift": "-4h", "task": "load"}],
    "orders_export": [{"dag": "ingest_orders", "task": "load"}],
    "customer_scoring": [{"dag": "ingest_customers", "task": "publish"}],
}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    """Airflow 3's oracle for every question of this module (the estate's sensors, the templates, the mappers)."""
    tmp = tmp_path_factory.mktemp("oracle")
    with running_oracle(Path(sys.executable), airflow_env(tmp / "home"), tmp / "oracle.log") as running:
        yield running


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    tmp = tmp_path_factory.mktemp("estate")
    yield imported(Path(sys.executable), ESTATE, tmp, "--report", str(tmp / "report.json"))


def test_every_sensor_waits_for_the_dates_airflow_computes(estate: Imported, oracle: Oracle) -> None:
    """For every translated sensor and hundreds of its DAG's dates, required_inputs equals the sensor's own dates."""
    compared = check_oracle(oracle, ESTATE, estate, ESTATE_SENSORS)
    assert compared > 2500


@pytest.mark.parametrize("dag", sorted(EXPECTED_EDGES), ids=sorted(EXPECTED_EDGES))
def test_sensors_markers_triggers_and_assets_become_these_edges(estate: Imported, dag: str) -> None:
    """Each pattern becomes the simplest edge that reproduces it (shift, offset, member, task, condition)."""
    document = json.loads(estate.path.read_text(encoding="utf-8"))
    assert document["dags"][dag]["upstreams"] == EXPECTED_EDGES[dag]


def test_grids_come_from_timetables_with_presets_and_zones(estate: Imported) -> None:
    """Cron and presets keep what the DAG wrote, the zone is the start date's, a 90-minute delta gets no grid, and a
    DAG run only by a trigger or an asset gets its producer's grid."""
    dags = json.loads(estate.path.read_text(encoding="utf-8"))["dags"]
    assert dags["weekly_rollup"]["partitions"] == {"cron": "@weekly", "timezone": "UTC"}
    assert dags["berlin_report"]["partitions"] == {"cron": "30 5 * * *", "timezone": "Europe/Berlin"}
    assert dags["hourly_enrich"]["partitions"] == {"cron": "15 * * * *", "timezone": "UTC"}
    assert "partitions" not in dags["every_90_minutes"]
    assert dags["orders_export"]["partitions"] == {"cron": "0 1 * * *", "timezone": "UTC"}  # its trigger's grid
    assert dags["customer_scoring"]["partitions"] == {"cron": "@daily", "timezone": "UTC"}  # its producer's


REPORTED = {
    "never-satisfied": "broken.py:13: report_finance.wait_orders: never satisfied: it waits for a time ingest_orders "
    "never runs at (ingest_orders runs at 0 1 * * *): report_finance's run at 2024-01-01T05:00:00Z waits for "
    "ingest_orders at 2024-01-01T02:00:00Z",
    "no-delta": "broken.py:17: report_naive.wait_orders: never satisfied",
    "stale": "broken.py:21: report_stale.wait_orders: satisfied by an old run: report_stale's run at "
    "2024-01-01T06:00:00Z accepts ingest_orders's run at 2023-12-29T01:00:00Z, older than report_stale's previous "
    "partition 2023-12-31T06:00:00Z",
    "dst": "berlin.py:17: berlin_report.wait_load: not satisfied on 4 of 50 sampled runs",
    "dst-dates": "berlin_report's run at 2024-03-31T03:30:00Z waits for berlin_load at 2024-03-30T23:30:00Z",
    "states": "broken.py:26: skips_ok.wait_orders: allowed_states ['success', 'skipped']",
    "raises": "broken.py:39: calendar_driven.wait_calendar: cannot evaluate its dates: RuntimeError: looks up a "
    "calendar table",
    "template": "broken.py:42: templated.wait_param: the DAG id '{{ params.source }}' is a template",
    "delta-schedule": "broken.py:44: every_90_minutes: schedule every 1:30:00 from 2024-01-01T00:00:00Z: no cron",
    "marker": "ingest.py:13: ingest_orders.mark_report: covered by report_sales's sensor on ingest_orders",
    "trigger": "ingest.py:14: ingest_orders.trigger_export: orders_export is triggered by the coordinator",
    "failed-states": "reports.py:14: report_sales.wait_orders: failed_states=['failed', 'upstream_failed']",
}


@pytest.mark.parametrize("line", REPORTED.values(), ids=REPORTED.keys())
def test_the_report_names_file_line_and_dates(estate: Imported, line: str) -> None:
    """Bugs, what cannot be expressed and notes are reported with file:line, the dates involved and why."""
    assert line in estate.stderr


def test_the_json_report_holds_every_finding(estate: Imported) -> None:
    """--report writes the same findings as JSON, with file and line apart, for CI and review tools."""
    report = json.loads((estate.path.parent / "report.json").read_text(encoding="utf-8"))
    assert report["dags"] == 28 and report["edges"] == 16
    assert {
        "kind": "sensor bug",
        "file": "broken.py",
        "line": 13,
        "subject": "report_finance.wait_orders",
    }.items() <= next(f for f in report["findings"] if f["subject"] == "report_finance.wait_orders").items()
    kinds = [f["kind"] for f in report["findings"]]
    schedules = [f for f in report["findings"] if f["message"].startswith("schedule:")]
    assert kinds.count("sensor bug") == 4 and kinds.count("cannot express") == 4
    # The corpus's upstream tasks are mostly EmptyOperators: each edge on one is noted (semantics `edge-task`).
    unrun = [f for f in report["findings"] if "marks success without running it" in f["message"]]
    assert len(unrun) == 13 and all(f["kind"] == "note" and f["line"] > 0 for f in unrun), unrun
    assert kinds.count("note") - len(schedules) - len(unrun) == 6
    # One schedule note per written dependent (the estate has no runtime-keyed producer).
    written = json.loads(estate.path.read_text(encoding="utf-8"))["dags"]
    assert sorted(f["subject"] for f in schedules) == sorted(d for d, e in written.items() if e.get("upstreams"))


def test_never_satisfied_sensors_get_no_edge(estate: Imported) -> None:
    """A sensor that can never be satisfied is reported, not translated into an edge that waits forever."""
    dags = json.loads(estate.path.read_text(encoding="utf-8"))["dags"]
    for dag in ("report_finance", "report_naive", "skips_ok", "calendar_driven", "templated"):
        assert "upstreams" not in dags[dag], dag


def test_strict_exits_1_and_a_clean_folder_exits_0(tmp_path: Path) -> None:
    """--strict fails on anything inexpressible; a folder where everything translates passes --strict."""
    done = run_import(Path(sys.executable), ESTATE, tmp_path / "a.json", tmp_path / "home", "--strict")
    assert done.returncode == 1
    assert "--strict: " in done.stderr
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "pair.py").write_text((ESTATE / "ingest.py").read_text(encoding="utf-8").split("with DAG(")[0] + PAIR)
    done = run_import(Path(sys.executable), clean, tmp_path / "b.json", tmp_path / "home", "--strict")
    assert done.returncode == 0, done.stderr
    assert "import-dags: 2 DAGs, 1 edges" in done.stderr


PAIR = """
from datetime import timedelta
from airflow.providers.standard.sensors.external_task import ExternalTaskSensor

with DAG("up", schedule="0 1 * * *", start_date=START):
    EmptyOperator(task_id="load")
with DAG("down", schedule="0 5 * * *", start_date=START):
    ExternalTaskSensor(task_id="wait", external_dag_id="up", execution_delta=timedelta(hours=4))
"""


def test_an_existing_file_is_merged_and_the_diff_shown(tmp_path: Path) -> None:
    """--output onto a file keeps its other DAGs and descriptions, replaces imported edges, and prints the diff."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "pair.py").write_text((ESTATE / "ingest.py").read_text(encoding="utf-8").split("with DAG(")[0] + PAIR)
    output = tmp_path / "deps.json"
    existing = {
        "version": 1,
        "dags": {
            "down": {"description": "the 05:00 report", "upstreams": ["legacy"]},
            "hand_written": {"upstreams": ["up"]},
        },
    }
    output.write_text(json.dumps(existing), encoding="utf-8")
    done = run_import(Path(sys.executable), folder, output, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    dags = json.loads(output.read_text(encoding="utf-8"))["dags"]
    assert dags["down"] == {
        "description": "the 05:00 report",
        "upstreams": [{"dag": "up", "shift": "-4h"}],
        "partitions": {"cron": "0 5 * * *", "timezone": "UTC"},
        "data_interval": "point",  # Airflow 3's cron string: a CronTriggerTimetable's point
    }
    assert dags["hand_written"] == {"upstreams": ["up"]}
    assert "changed  down" in done.stderr
    assert "removed legacy -> down" in done.stderr
    assert "added up -> down" in done.stderr


def test_an_invalid_existing_output_is_left_alone(tmp_path: Path) -> None:
    """An --output that does not validate: every problem, exit 2, the file unchanged."""
    output = tmp_path / "deps.json"
    output.write_text('{"b": []}', encoding="utf-8")
    done = run_import(Path(sys.executable), ESTATE, output, tmp_path / "home")
    assert done.returncode == 2
    assert "empty upstream list" in done.stderr
    assert output.read_text(encoding="utf-8") == '{"b": []}'


def test_the_output_validates_and_inputs_shows_one_upstream_date(estate: Imported) -> None:
    """`coordinator validate` accepts the file; `coordinator inputs` shows the 05:00 run waits for 01:00, task load."""
    env = {k: v for k, v in os.environ.items() if k != "COORDINATOR_DEPS"}
    done = run_cli(["validate", str(estate.path)], env=env)
    assert done.returncode == 0, done.stderr
    done = run_cli(
        ["inputs", "report_sales", "--partition", "2024-03-10T05:00:00Z", "--deps", str(estate.path), "-f", "json"],
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "dag": "report_sales",
        "partition": "2024-03-10T05:00:00Z",
        "upstreams": [
            {
                "dag": "ingest_orders",
                "instance": "default",
                "task": "load",
                "condition": "success",
                "partitions": ["2024-03-10T01:00:00Z"],
            }
        ],
    }


JSON = ("--format", "json")


def test_instance_qualifies_every_dag(tmp_path: Path) -> None:
    """--instance team_a declares the instance and writes every DAG and reference as team_a/<dag>."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "pair.py").write_text((ESTATE / "ingest.py").read_text(encoding="utf-8").split("with DAG(")[0] + PAIR)
    done = run_import(Path(sys.executable), folder, tmp_path / "deps.json", tmp_path / "home", "--instance", "team_a")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "deps.json").read_text(encoding="utf-8"))
    assert document["instances"] == {"team_a": {}}
    assert document["dags"]["team_a/down"]["upstreams"] == [{"dag": "team_a/up", "shift": "-4h"}]


def test_without_airflow_the_command_says_where_to_run_it(tmp_path: Path) -> None:
    """--python naming an interpreter without Airflow: exit 2 and a message saying where to run, no traceback."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    done = run_import(
        Path(sys.executable), ESTATE, tmp_path / "a.json", tmp_path / "home", "--python", str(bare / "bin" / "python")
    )
    assert done.returncode == 2
    assert "Airflow is not installed in this Python environment" in done.stderr
    assert "--python" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "a.json").exists()


# ----- Airflow 2.11 (its own venv): the same oracle, DAG files written for Airflow 2 -----

AF2_SENSORS = (
    Sensor("report_sales", "wait_orders", "ingest_orders", ("load",)),
    Sensor("early_check", "wait_orders", "ingest_orders", ("load",)),
    Sensor("hourly_enrich", "wait_land", "ingest_hourly", ("land",)),
    Sensor("daily_snapshot", "wait_yesterday", "daily_snapshot"),
    Sensor("cleanup", "wait_orders_done", "ingest_orders"),
    Sensor("berlin_report", "wait_load", "berlin_load", ("load",)),
    # legacy.py: a timedelta schedule whose start date is only in default_args, and a sensor inside a SubDAG.
    Sensor("six_hourly_report", "wait_land", "six_hourly", ("land",)),
    Sensor("with_sections.section", "wait_orders", "ingest_orders", ("load",), entry="with_sections"),
)


#: Airflow 2's trigger with execution_date="{{ ds }}" (legacy.py).
AF2_TEMPLATED = (Operator("with_sections", "trigger_ds", "by_ds", ("section",)),)


def test_airflow2_sensors_are_translated_exactly(tmp_path: Path) -> None:
    """On Airflow 2.11 (data-interval cron timetables, core sensor) the file waits for the sensors' own dates too;
    default_args start dates place timedelta grids, a SubDAG is skipped with its sensor kept as its parent's, and a
    trigger's execution_date="{{ ds }}" waits for the run Airflow 2 renders."""
    from devtools.airflow2_stack import ensure_venv

    python = ensure_venv()
    result = imported(python, HERE / "estate_af2", tmp_path)
    assert "(Airflow 2.11." in result.stderr
    dags = json.loads(result.path.read_text(encoding="utf-8"))["dags"]
    assert dags["six_hourly"]["partitions"] == {"cron": "0 3-23/6 * * *", "timezone": "UTC"}
    assert dags["six_hourly_report"]["upstreams"] == [{"dag": "six_hourly", "shift": "-2h", "task": "land"}]
    assert "with_sections.section" not in dags
    assert dags["with_sections"]["upstreams"] == [{"dag": "ingest_orders", "shift": "-4h", "task": "load"}]
    assert result.stderr.count("SubDAG(s) with_sections.section skipped") == 1
    assert dags["by_ds"]["upstreams"] == [{"dag": "with_sections", "shift": "+5h", "task": "section"}]
    with running_oracle(python, airflow_env(tmp_path / "home"), tmp_path / "oracle.log") as airflow2:
        assert check_oracle(airflow2, HERE / "estate_af2", result, AF2_SENSORS) > 1000
        assert check_templates(airflow2, HERE / "estate_af2", result, AF2_TEMPLATED) > 200


SIMPLE_DAG = """
from datetime import datetime
from airflow import DAG
from airflow.operators.empty import EmptyOperator

with DAG("{name}", start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False):
    EmptyOperator(task_id="t")
"""


def test_airflow2_counts_each_failed_file_once_with_its_dags_folder_set(tmp_path: Path) -> None:
    """Airflow 2.11 with AIRFLOW__CORE__DAGS_FOLDER set to the folder (as the docs advise): 3 good files and 1 that
    fails read as 4 files (1 failed), not 5; --min-loaded 80% then fails at 75% (exit 1, nothing written)."""
    from devtools.airflow2_stack import ensure_venv

    folder = tmp_path / "dags"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.py").write_text(SIMPLE_DAG.format(name=name), encoding="utf-8")
    (folder / "broken.py").write_text("from airflow import DAG\nimport no_such_module_here\n", encoding="utf-8")
    env = airflow_env(tmp_path / "home") | {"AIRFLOW__CORE__DAGS_FOLDER": str(folder)}
    output = tmp_path / "deps.json"

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(ensure_venv()), "-m", "coordinator.cli", "import-dags", str(folder), "--output", str(output)]
        return subprocess.run([*cmd, *flags], env=env, capture_output=True, text=True, timeout=600, check=False)

    done = run()
    assert done.returncode == 0 and "4 files (1 failed), 3 DAGs loaded" in done.stderr, done.stderr
    output.unlink()
    gated = run("--min-loaded", "80%")
    assert gated.returncode == 1, gated.stderr
    assert "3 of 4 files imported (75%), --min-loaded 80%" in gated.stderr and not output.exists()


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """--output in a missing directory: exit 2 with the path and what to check."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "pair.py").write_text((ESTATE / "ingest.py").read_text(encoding="utf-8").split("with DAG(")[0] + PAIR)
    done = run_import(Path(sys.executable), folder, tmp_path / "missing" / "deps.json", tmp_path / "home")
    assert done.returncode == 2
    assert "cannot write the file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def estate_af3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    tmp = tmp_path_factory.mktemp("estate_af3")
    yield imported(Path(sys.executable), ESTATE_AF3, tmp, "--report", str(tmp / "report.json"))


def test_airflow3_schedules_and_a_package_in_the_dags_folder_load_without_a_crash(estate_af3: Imported) -> None:
    """AssetOrTimeSchedule keeps its cron, identity-partitioned assets are edges, other mappers and the asset half are
    reported, and a DAG importing a package of its own folder loads (before: AttributeError, No module named)."""
    assert "Traceback" not in estate_af3.stderr
    dags = json.loads(estate_af3.path.read_text(encoding="utf-8"))["dags"]
    assert dags["uses_lib"]["partitions"] == {"cron": "0 2 * * *", "timezone": "UTC"}
    assert dags["either"]["partitions"] == {"cron": "0 3 * * *", "timezone": "UTC"}
    assert "upstreams" not in dags["either"]
    assert dags["same_key"]["upstreams"] == [{"dag": "producer", "task": "publish"}]
    assert "upstreams" not in dags["daily_rollup"]
    report = json.loads((estate_af3.path.parent / "report.json").read_text(encoding="utf-8"))
    assert report["import_errors"] == []
    messages = {f["subject"]: f["message"] for f in report["findings"] if f["kind"] == "cannot express"}
    assert "it also runs whenever s3://estate/raw is updated" in messages["either"]
    assert "StartOfDayMapper" in messages["daily_rollup"]


TEMPLATED = (
    Operator("load_at_one", "trigger_ds", "by_ds", ("done",)),
    Operator("load_at_one", "trigger_yesterday", "by_yesterday", ("done",)),
    Operator("load_at_one", "trigger_start", "by_start", ("done",)),
    Operator("load_at_one", "mark_midnight", "marked"),
)


def test_templated_markers_and_triggers_wait_for_the_run_airflow_renders(estate_af3: Imported, oracle: Oracle) -> None:
    """For hundreds of runs of the operator's DAG, the target's date Airflow renders from the template ({{ ds }},
    macros.ds_add, data_interval_start) waits for exactly that run in the file."""
    compared = check_templates(oracle, ESTATE_AF3, estate_af3, TEMPLATED)
    assert compared > 750


TEMPLATE_FINDINGS = {
    "covered": "templates.py:26: load_at_one.mark_sensed: covered by sensed's sensor on load_at_one",
    "many-to-one": "templates.py:32: hourly_source.trigger_day: logical_date '{{ ds }}' gives hourly_source's runs at "
    "2024-01-01T01:00:00Z, 2024-01-01T02:00:00Z, 2024-01-01T03:00:00Z",
}


@pytest.mark.parametrize("line", TEMPLATE_FINDINGS.values(), ids=TEMPLATE_FINDINGS.keys())
def test_templated_operators_that_need_no_edge_or_cannot_have_one_are_reported(estate_af3: Imported, line: str) -> None:
    """A redundant templated marker is covered by its target's sensor; 24 hourly runs triggering one date of a DAG
    cannot be one edge; neither is "write the edge by hand" for a template that renders."""
    assert line in estate_af3.stderr
    assert "is a template the importer cannot evaluate" not in estate_af3.stderr


#: (consumer, its asset, the producer): partitioned assets whose mapper is a date mapping.
PARTITIONED = (
    ("day_of_producer", "s3://estate/raw", "producer"),
    ("hourly_rolled_up", "s3://estate/hourly", "hourly_producer"),
    ("monthly_rolled_up", "s3://estate/daily", "hourly_rolled_up"),
)


def test_partition_mappers_that_map_dates_wait_for_the_runs_airflow_maps(estate_af3: Imported, oracle: Oracle) -> None:
    """StartOfDayMapper over a daily 01:00 producer is a +1h shift; a day's RollupMapper waits for all 24 hours, a
    month's over that daily rollup for all its days: for every producer run sampled, the consumer's partition date
    Airflow's mapper gives waits for the same producer runs in the file."""
    graph = estate_af3.graph
    dags = json.loads(estate_af3.path.read_text(encoding="utf-8"))["dags"]
    assert dags["day_of_producer"]["upstreams"] == [{"dag": "producer", "shift": "+1h", "task": "publish"}]
    assert dags["hourly_rolled_up"]["upstreams"] == [{"dag": "hourly_producer", "task": "publish"}]
    assert dags["hourly_rolled_up"]["partitions"] == {"cron": "0 0 * * *", "timezone": "UTC", "key_format": "%Y-%m-%d"}
    assert dags["monthly_rolled_up"]["upstreams"] == [{"dag": "hourly_rolled_up", "task": "publish"}]
    assert dags["monthly_rolled_up"]["partitions"] == {"cron": "0 0 1 * *", "timezone": "UTC", "key_format": "%Y-%m"}
    requests = [
        {"dag": d, "asset": a, "producer": p, "partitions": dependent_dates(graph, p)} for d, a, p in PARTITIONED
    ]
    answers = oracle.ask(ESTATE_AF3, requests)
    problems, compared = [], 0
    for consumer, asset, producer in PARTITIONED:
        for date, upstream in answers[(consumer, asset)].items():
            compared += 1
            inputs = required_inputs(graph, NodeId("default", consumer), date)
            got = [list(i.partitions) for i in inputs if i.dag.dag_id == producer and i.task == "publish"]
            if got != [upstream]:
                problems.append(f"{consumer} at {date}: file {got}, Airflow {upstream}")
    assert not problems, f"{len(problems)} mismatches, e.g. " + "; ".join(problems[:5])
    assert compared > 200
