"""The plugin records the run type of a DAG run (docs/keys.md ``run_type``): Airflow's own ``DagRun`` objects of a
backfill and of a scheduled run, built by the installed Airflow 3.3 and by Airflow 2.11 (``.venv-airflow2``, built on
demand) in a subprocess with its own AIRFLOW_HOME (Airflow never runs in the test process), and duck-typed stand-ins
without a type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest

from coordinator.airflow_plugin.records import WriterConfig, run_type_of, run_write_from_dag_run
from coordinator.core.model import KeyLayout, RunState
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.airflow2_stack import ensure_venv

ROOT = Path(__file__).resolve().parents[1]
LOGICAL = datetime(2026, 1, 1, tzinfo=UTC)

#: Runs in the child: Airflow's DagRun of each type, as the listener would see it, through the plugin's record builder.
CHILD = """
import json
from datetime import UTC, datetime
import airflow
from airflow.models.dagrun import DagRun
from airflow.utils.types import DagRunType
from coordinator.airflow_plugin.records import WriterConfig, run_write_from_dag_run
from coordinator.core.model import RunState
from coordinator.runtime.settings import EtcdSettings, parse_endpoints

at = datetime(2026, 1, 1, tzinfo=UTC)
config = WriterConfig(etcd=EtcdSettings(endpoints=parse_endpoints("http://127.0.0.1:2379")))
found = {}
two = airflow.__version__.startswith("2.")
for kind in (DagRunType.BACKFILL_JOB, DagRunType.SCHEDULED):
    if two:  # Airflow 2.11 names the logical date execution_date
        run_id = DagRun.generate_run_id(kind, at)
        run = DagRun(dag_id="daily", run_id=run_id, execution_date=at, run_type=kind)
    else:
        run_id = DagRun.generate_run_id(run_type=kind, logical_date=at, run_after=at)
        run = DagRun(dag_id="daily", run_id=run_id, logical_date=at, run_type=kind)
    fact, why = run_write_from_dag_run(run, RunState.SUCCESS, config, at)
    assert fact is not None, why
    found[kind.value] = fact.record.model_dump(mode="json")
print(json.dumps(found))
"""


def _airflow3_python() -> Path:
    return Path(sys.executable)


def _airflow2_python() -> Path:
    """Airflow 2.11's Python: ``.venv-airflow2``, built now if it is missing or stale (``make venv-airflow2`` builds
    it before the tests; the end-to-end tests share it)."""
    return ensure_venv()


@pytest.mark.airflow  # runs Airflow's own code (make fast leaves it out)
@pytest.mark.parametrize(
    "python", [pytest.param(_airflow3_python, id="airflow-3.3"), pytest.param(_airflow2_python, id="airflow-2.11")]
)
def test_airflows_backfill_run_is_recorded_with_its_run_type(tmp_path: Path, python: Callable[[], Path]) -> None:
    """Airflow's DagRun of type BACKFILL_JOB (run id ``backfill__...``) is recorded with run_type ``backfill`` (a
    backfill to the view), a scheduled one with ``scheduled`` (not one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COORDINATOR_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)
    )
    done = subprocess.run(
        [str(python()), "-c", CHILD], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["backfill"]["run_type"] == "backfill" and found["backfill"]["run_id"].startswith("backfill__")
    assert found["scheduled"]["run_type"] == "scheduled"


class Kind(StrEnum):
    """A stand-in for a DagRunType: a str enum (Airflow 2.11's and 3's both are)."""

    BACKFILL_JOB = "backfill"


@dataclass
class Run:
    dag_id: str = "daily"
    run_id: str = "backfill__2026-01-01T00:00:00+00:00"
    logical_date: datetime = LOGICAL


@dataclass
class TypedRun(Run):
    run_type: object = Kind.BACKFILL_JOB


def test_the_run_type_is_the_enums_value_and_absent_when_the_run_has_none() -> None:
    """A str-enum run type is recorded as its value; a run without ``run_type`` (an old stand-in) records none, so
    its value reads as before (not a backfill), whatever its run id."""
    config = WriterConfig(etcd=EtcdSettings(endpoints=parse_endpoints("http://127.0.0.1:2379")), keys=KeyLayout())
    assert run_type_of(TypedRun()) == "backfill" and run_type_of(TypedRun(run_type="manual")) == "manual"
    assert run_type_of(Run()) is None and run_type_of(TypedRun(run_type=None)) is None
    typed, _ = run_write_from_dag_run(TypedRun(), RunState.SUCCESS, config, LOGICAL)
    plain, _ = run_write_from_dag_run(Run(), RunState.SUCCESS, config, LOGICAL)
    assert typed is not None and typed.record.backfill and typed.record.run_type == "backfill"
    assert plain is not None and not plain.record.backfill and plain.record.run_type is None
