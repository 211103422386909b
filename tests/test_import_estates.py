"""import-dags on estates that do not load as they are: the failure says why, and the estate's own Python loads them.

Real Airflow in subprocesses: 3.3 from this venv, 2.11 from ``.venv-airflow2`` through ``--python``. One import run
per estate and interpreter, shared by the asserts (module-scoped fixtures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli_inproc import run_cli
from tests.test_import_dags import HERE, airflow_env

#: Every test here loads DAG folders with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

#: Airflow 2 DAG files (schedule_interval, days_ago, DummyOperator) and one needing a library neither venv has.
LEGACY = HERE / "estate_legacy"
#: A fine DAGs folder whose plugins folder holds a `yaml` package, put on PYTHONPATH as estates' images do.
SHADOW = HERE / "estate_shadow"
#: Without --verbose the report alone: a summary, the cause groups with hints. Airflow's log is hundreds of lines.
SHORT_STDERR_LINES = 20


@dataclass(frozen=True)
class Run:
    returncode: int
    stderr: str
    output: Path
    report: dict[str, Any] | None


def run(folder: Path, tmp: Path, *flags: str, env: dict[str, str] | None = None, process: bool = False) -> Run:
    """``coordinator import-dags`` in the test process (tests/support/cli_inproc.py; a CLI process cost ~0.6 s of
    CPU): the command loads the folder in a child process of the estate's Python either way, so Airflow never enters
    the test process. With ``process``, a ``python -m coordinator.cli`` process of its own (``--verbose`` lets the
    loader write to the command's stderr file descriptor, which only a process of its own captures)."""
    output, report = tmp / "dependencies.json", tmp / "report.json"
    args = ["import-dags", str(folder), "-o", str(output), "--report", str(report), *flags]
    environment = airflow_env(tmp / "home") | (env or {})
    if process:
        done = subprocess.run([sys.executable, "-m", "coordinator.cli", *args], env=environment, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
    else:
        done = run_cli(args, env=environment)
    loaded = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return Run(done.returncode, done.stderr, output, loaded)


@pytest.fixture(scope="module")
def legacy_on_3(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run(LEGACY, tmp_path_factory.mktemp("legacy3"))


@pytest.fixture(scope="module")
def legacy_on_2(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The estate through --python of the Airflow 2.11 venv, with the coordinator hidden there, as in an estate's
    image: ``-S`` skips site-packages' .pth files, so the venv's editable install of this repository is not seen."""
    from devtools.airflow2_stack import ensure_venv

    tmp = tmp_path_factory.mktemp("legacy2")
    python = ensure_venv()
    (site,) = python.parent.parent.glob("lib/python3.*/site-packages")
    image_python = tmp / "image-python"
    image_python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{python}" -S "$@"\n', encoding="utf-8")
    image_python.chmod(0o755)
    hidden = subprocess.run([str(image_python), "-c", "import coordinator"], cwd=tmp, capture_output=True, check=False)
    assert hidden.returncode == 1, "the coordinator must not be importable in the estate's python"
    return run(LEGACY, tmp, "--python", str(image_python))


def test_an_airflow2_folder_under_airflow3_fails_and_writes_no_file(legacy_on_3: Run) -> None:
    """0 DAGs loaded: exit 1, the report says so first, and no (empty, misleading) dependencies file is written."""
    assert legacy_on_3.returncode == 1, legacy_on_3.stderr
    assert legacy_on_3.stderr.startswith("import-dags: FAILED: no DAG loaded, --min-loaded 1,50%: nothing written")
    lines = legacy_on_3.stderr.splitlines()
    assert lines[1].startswith("  5 files (5 failed), 0 DAGs loaded, 0 sensors")
    assert lines[2].startswith("  these look like Airflow 2 DAGs: ")
    assert "this is Airflow 3.3." in lines[2] and "--python" in lines[2]
    assert not any(line.startswith("  4 of 5 failed files: these are Airflow 2 DAGs") for line in lines)
    assert not legacy_on_3.output.exists()
    assert legacy_on_3.report is not None and legacy_on_3.report["written"] is False


def test_failed_files_are_grouped_by_deepest_cause_with_the_airflow2_hint(legacy_on_3: Run) -> None:
    """Two files on one missing module are one group of 2; each Airflow 2 idiom points to an Airflow 2 interpreter."""
    lines = legacy_on_3.stderr.splitlines()
    group = "  2 files: ModuleNotFoundError: No module named 'airflow.operators.dummy' (export.py:5, ingest.py:5)"
    assert group in lines
    assert lines[lines.index(group) + 1].startswith("    -> these are Airflow 2 DAGs (this is Airflow 3.3.")
    keyword = "  1 file: TypeError: DAG.__init__() got an unexpected keyword argument 'schedule_interval' (report.py:9)"
    assert keyword in lines
    assert "1 file: ImportError: cannot import name 'days_ago' from 'airflow.utils.dates'" in legacy_on_3.stderr
    assert legacy_on_3.stderr.count("    -> these are Airflow 2 DAGs") == 3
    assert legacy_on_3.report is not None
    causes = {c["cause"]: c["count"] for c in legacy_on_3.report["causes"]}
    assert causes["ModuleNotFoundError: No module named 'airflow.operators.dummy'"] == 2
    assert legacy_on_3.report["summary"]["failed_files"] == 5


def test_without_verbose_stderr_is_the_report_alone(legacy_on_3: Run) -> None:
    """Airflow's own log (its tracebacks, its INFO lines) is not shown: the report fits on a screen."""
    assert "Traceback" not in legacy_on_3.stderr
    assert "[error" not in legacy_on_3.stderr and "Filling up the DagBag" not in legacy_on_3.stderr
    assert len(legacy_on_3.stderr.splitlines()) < SHORT_STDERR_LINES


def test_verbose_brings_airflows_own_output_back(tmp_path: Path) -> None:
    """--verbose shows what Airflow logged while loading (its tracebacks of the failed files)."""
    verbose = run(LEGACY, tmp_path, "--verbose", process=True)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr
    assert len(verbose.stderr.splitlines()) > SHORT_STDERR_LINES


def test_the_estates_own_airflow2_python_loads_it(legacy_on_2: Run) -> None:
    """With --python of an Airflow 2.11 venv (no coordinator in it) the same folder converts: DAGs, the sensor's
    edge, the version shown."""
    assert legacy_on_2.returncode == 0, legacy_on_2.stderr
    assert "(Airflow 2.11." in legacy_on_2.stderr
    assert "  5 files (1 failed), 4 DAGs loaded, 2 sensors" in legacy_on_2.stderr
    dags = json.loads(legacy_on_2.output.read_text(encoding="utf-8"))["dags"]
    assert dags["legacy_report"]["upstreams"][0] == {"dag": "legacy_ingest", "shift": "-4h", "task": "load"}


def test_what_is_missing_in_the_estates_python_is_reported_with_its_hint(legacy_on_2: Run) -> None:
    """The library missing there too is one group with the install / --python hint."""
    assert "  1 file: ImportError: cannot import name 'bigquery' from 'google.cloud'" in legacy_on_2.stderr
    assert "-> google is not installed in this Python" in legacy_on_2.stderr


def test_a_sensor_on_a_dag_whose_file_failed_says_its_file_failed(legacy_on_2: Run) -> None:
    """Not "not in this folder": the DAG is in warehouse.py, which failed, and the note says why."""
    assert (
        "report.py:16: legacy_report.wait_warehouse: warehouse_load is not loaded: its file warehouse.py failed: "
        "ImportError: cannot import name 'bigquery' from 'google.cloud'"
    ) in legacy_on_2.stderr
    assert "warehouse_load is not in this folder" not in legacy_on_2.stderr


def test_a_plugin_shadowing_a_library_is_named_not_called_missing_airflow(tmp_path: Path) -> None:
    """plugins/yaml on PYTHONPATH hides PyYAML from Airflow: exit 2 naming the shadowing module, not "not installed"."""
    shadowed = run(SHADOW / "dags", tmp_path, env={"PYTHONPATH": str(SHADOW / "plugins")})
    assert shadowed.returncode == 2
    assert "Airflow is not installed" not in shadowed.stderr
    assert "Airflow is installed in this Python" in shadowed.stderr
    assert f"{SHADOW / 'plugins' / 'yaml' / '__init__.py'} shadows the library 'yaml'" in shadowed.stderr
    assert "Traceback" not in shadowed.stderr


BAD = {
    "folder": (("/nonexistent/dags",), "/nonexistent/dags: no such DAGs folder"),
    "python": ((str(LEGACY), "--python", "/nonexistent/python"), "--python /nonexistent/python: no such file"),
    "min-loaded": ((str(LEGACY), "--min-loaded", "5x"), "--min-loaded: '5x' is neither a DAG count"),
}


@pytest.mark.parametrize(("args", "message"), BAD.values(), ids=BAD.keys())
def test_bad_arguments_exit_2_saying_what_is_wrong(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    """A missing folder, a --python that is no file, a --min-loaded that is no count: exit 2 before loading."""
    done = run_cli(["import-dags", *args], env=airflow_env(tmp_path / "home"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_estate_python_without_pydantic_is_told_exactly_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python with Airflow but no pydantic (a plain Airflow 2.11 lacks it: only its [pydantic] extra brings it):
    the loader answers with the package specs to install there, and no longer claims Airflow installs it."""
    from coordinator.airflow_import.process import run_loader
    from coordinator.errors import ConfigError

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pydantic.py").write_text("raise ImportError(\"No module named 'pydantic'\", name='pydantic')\n")
    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(shim))
    with pytest.raises(ConfigError) as refused:
        run_loader(folder, Path(sys.executable))
    message = str(refused.value)
    assert "cannot import 'pydantic'" in message and "pip install 'pydantic>=2.7,<3' 'croniter>=2'" in message
    assert "installs both" not in message


ESTATE_OWN_MODULE = """
from datetime import datetime
from airflow import DAG
from operators.custom import build_task

with DAG("uses_own_operator", start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False):
    build_task()
"""


def test_a_module_of_the_estates_own_root_is_pointed_to_pythonpath_and_loads_with_it(tmp_path: Path) -> None:
    """A DAG importing `operators.custom`, which lives in the estate's root beside dags/ (its image puts the root on
    PYTHONPATH): the report says to put that root on PYTHONPATH (not "not installed", not --python), and with
    PYTHONPATH so set the same folder loads and writes its DAG."""
    root = tmp_path / "estate"
    (root / "dags").mkdir(parents=True)
    (root / "operators").mkdir()
    (root / "operators" / "__init__.py").write_text("")
    (root / "operators" / "custom.py").write_text(
        "from airflow.providers.standard.operators.empty import EmptyOperator\n\n"
        "def build_task():\n    return EmptyOperator(task_id='t')\n"
    )
    (root / "dags" / "job.py").write_text(ESTATE_OWN_MODULE)
    failed = run(root / "dags", tmp_path / "without", "--min-loaded", "0")
    assert f"operators is the estate's own code ({root}/operators), not a library: put {root} on PYTHONPATH" in (
        failed.stderr
    ), failed.stderr
    assert "operators is not installed" not in failed.stderr
    loaded = run(root / "dags", tmp_path / "with", env={"PYTHONPATH": str(root)})
    assert loaded.returncode == 0 and "1 DAGs loaded" in loaded.stderr, loaded.stderr
