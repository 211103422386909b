"""``import-dags --rewrite`` on the real-estate corpus, checked by Airflow itself: the diff applied, every rewritten
file loads in its own Airflow (3.3 from this venv: ``tests/import_dags/estate``; 2.11 from ``.venv-airflow2``:
``estate_af2``, SubDAG included) with the same DAGs, task ids, task edges and timetables as before, each replaced
sensor now a ``WaitForPermitOperator`` and every other task its old class; what stays is listed with its line.

One import and one DagBag process per Airflow (``tests/import_dags/shape_oracle.py`` loads the original and the
rewritten folder side by side).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coordinator.runtime.spec_file import load_spec
from tests.support.cli_inproc import run_cli
from tests.test_import_dags import HERE, airflow_env

#: Every test here loads DAG folders with Airflow's own DagBag (``make fast`` leaves them out).
pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[1]
ORACLE = HERE / "shape_oracle.py"


@dataclass(frozen=True)
class Rewritten:
    stderr: str
    report: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    graph: dict[str, Any]


def rewritten(estate: Path, tmp: Path, python: Path, *, in_place: bool = False) -> Rewritten:
    """``import-dags dags -o dependencies.json --rewrite --diff-out rewrite.diff`` from ``tmp`` (loaded by
    ``python``), the diff applied to a copy with ``git apply``, and Airflow's view of both folders. With
    ``in_place``, ``--in-place`` too: the folder's files must then be the ones the diff gives."""
    shutil.copytree(estate, tmp / "dags")
    flags = [] if python == Path(sys.executable) else ["--python", str(python)]
    flags += ["--in-place"] if in_place else []
    args = ["import-dags", "dags", "-o", "dependencies.json", "--rewrite", "--diff-out", "rewrite.diff",
            "--report", "report.json", *flags]  # fmt: skip
    done = run_cli(args, env=airflow_env(tmp / "home"), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    applied = tmp / "applied"
    shutil.copytree(estate, applied / "dags")
    subprocess.run(["git", "apply", str(tmp / "rewrite.diff")], cwd=applied, check=True, capture_output=True)
    env = airflow_env(tmp / "home") | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if in_place:
        edited = {p.relative_to(tmp / "dags"): p.read_bytes() for p in sorted((tmp / "dags").rglob("*.py"))}
        assert edited == {
            p.relative_to(applied / "dags"): p.read_bytes() for p in sorted((applied / "dags").rglob("*.py"))
        }
    shapes = subprocess.run([str(python), str(ORACLE), str(estate), str(applied / "dags")], env=env,
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    line = next((x for x in shapes.stdout.splitlines() if x.startswith("SHAPES ")), None)
    assert line is not None, shapes.stderr[-3000:]
    before, after = json.loads(line.removeprefix("SHAPES "))
    report = json.loads((tmp / "report.json").read_text(encoding="utf-8"))
    graph = json.loads((tmp / "dependencies.json").read_text(encoding="utf-8"))
    load_spec(tmp / "dependencies.json")  # the marked file validates
    return Rewritten(done.stderr, report, before, after, graph)


def check_same_estate(result: Rewritten) -> set[str]:
    """The rewritten folder is the original one, but for the replaced sensors; the replaced subjects."""
    before, after = result.before, result.after
    assert before["errors"] == after["errors"]
    assert sorted(before["dags"]) == sorted(after["dags"])
    replaced = {item["subject"] for item in result.report["rewrite"]["replaced"]}
    assert replaced
    for dag_id, dag in before["dags"].items():
        new = after["dags"][dag_id]
        assert new["timetable"] == dag["timetable"], dag_id
        assert sorted(new["tasks"]) == sorted(dag["tasks"]), dag_id
        assert new["edges"] == dag["edges"], dag_id
        for task_id, cls in dag["tasks"].items():
            subject = f"{dag_id}.{task_id}"
            if subject in replaced:
                assert (cls, new["tasks"][task_id]) == ("ExternalTaskSensor", "WaitForPermitOperator"), subject
            else:
                assert new["tasks"][task_id] == cls, subject
    scheduled = {ref for ref, entry in result.graph["dags"].items() if entry.get("runs") == "scheduled"}
    assert scheduled == {s.split(".", 1)[0] for s in replaced} == set(result.report["rewrite"]["scheduled"])
    return replaced


def test_the_airflow3_estate_rewritten_loads_with_the_same_dags_tasks_edges_and_schedules(tmp_path: Path) -> None:
    """Airflow 3.3: 15 sensors replaced in place (variables, ``>>`` and the task group kept), the DAGs' task ids,
    edges and timetables unchanged; the sensors whose edge is not in the file (never satisfied, cannot express) stay
    ExternalTaskSensors and are listed with file:line and the report's reason."""
    result = rewritten(HERE / "estate", tmp_path, Path(sys.executable))
    replaced = check_same_estate(result)
    assert {"report_sales.wait_orders", "warehouse_quality.wait_transform", "daily_snapshot.wait_yesterday"} <= replaced
    kept = {(k["file"], k["line"], k["subject"]): k["reason"] for k in result.report["rewrite"]["kept"]}
    assert sorted(kept) == [
        ("broken.py", 13, "report_finance.wait_orders"),
        ("broken.py", 17, "report_naive.wait_orders"),
        ("broken.py", 26, "skips_ok.wait_orders"),
        ("broken.py", 39, "calendar_driven.wait_calendar"),
        ("broken.py", 42, "templated.wait_param"),
    ]
    assert "never satisfied" in kept[("broken.py", 13, "report_finance.wait_orders")]
    for (_, _, subject), _reason in kept.items():
        dag_id, task_id = subject.split(".")
        assert result.after["dags"][dag_id]["tasks"][task_id] == "ExternalTaskSensor"
    assert "broken.py:26: skips_ok.wait_orders: its edge is not in the file" in result.stderr
    # The line docs/howto/external-task-sensor.md quotes.
    assert (
        'rewrite: 15 sensor(s) replaced by WaitForPermitOperator in 3 file(s), 15 DAG(s) marked "runs": "scheduled" '
        "(diff -> rewrite.diff); 5 kept"
    ) in result.stderr
    assert len(replaced) == 15


def test_the_airflow2_estate_rewritten_loads_in_airflow_2_11_the_same(tmp_path: Path) -> None:
    """Airflow 2.11 (its own venv loads the folder and the rewritten one): the sensors replaced, the DAGs unchanged
    otherwise; the SubDAG's sensor, built in the function ``section()``, stays and is listed with its line;
    ``--in-place`` edits the files into exactly what the diff gives."""
    from devtools.airflow2_stack import ensure_venv

    result = rewritten(HERE / "estate_af2", tmp_path, ensure_venv(), in_place=True)
    replaced = check_same_estate(result)
    assert {"report_sales.wait_orders", "six_hourly_report.wait_land"} <= replaced
    kept = {(k["file"], k["subject"]): k["reason"] for k in result.report["rewrite"]["kept"]}
    assert "function section()" in kept[("legacy.py", "with_sections.wait_orders")], kept
    assert result.after["dags"]["with_sections.section"]["tasks"]["wait_orders"] == "ExternalTaskSensor"
