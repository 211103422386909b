"""The end-of-run line naming each end-to-end stack's database (tests/e2e/stacks_summary.py), in a real inner pytest
run with and without xdist workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stacks_summary import describe

ROOT = Path(__file__).resolve().parents[1]
#: Two modules, so that under ``-n 2`` both workers record a stack (each module's tests go to one worker at most).
INNER_TESTS = {
    "test_pg.py": """
import pytest
from tests.e2e import stacks_summary

@pytest.fixture(scope="session")
def shared(pytestconfig):
    stacks_summary.record(pytestconfig, "airflow 3.3 shared", "postgresql+psycopg2://postgres@127.0.0.1:5432/db_a")

def test_one(shared):
    pass
""",
    "test_lite.py": """
from tests.e2e import stacks_summary

def test_two(pytestconfig):
    stacks_summary.record(pytestconfig, "sqlite smoke", "/tmp/x/airflow.db")
""",
}


@pytest.mark.parametrize(
    ("database", "said"),
    [
        ("postgresql+psycopg2://postgres@127.0.0.1:41234/airflow_af2_1a2b3c",
         "postgresql db=airflow_af2_1a2b3c on 127.0.0.1:41234"),
        ("/tmp/home/airflow.db", "sqlite /tmp/home/airflow.db"),
        ("mysql://u:***@db:3306/airflow", "mysql://u:***@db:3306/airflow"),
    ],
    ids=["postgresql", "sqlite-file", "other-url"],
)  # fmt: skip
def test_a_database_is_described_by_its_kind_name_and_address(database: str, said: str) -> None:
    """A PostgreSQL URL reads as its database and address, a path as a SQLite file, anything else as given."""
    assert describe(database) == said


@pytest.mark.parametrize("workers", ["0", "2"], ids=["no-xdist", "xdist-2-workers"])
def test_the_run_ends_with_one_line_naming_every_recorded_stack(tmp_path: Path, workers: str) -> None:
    """Stacks recorded in fixtures and tests (in xdist workers too) are named on one line at the end of the run."""
    for name, text in INNER_TESTS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.e2e.stacks_summary", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-n", workers, "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("airflow stacks: ")]
    assert len(lines) == 1, done.stdout
    assert sorted(lines[0].removeprefix("airflow stacks: ").split("; ")) == [
        "airflow 3.3 shared -> postgresql db=db_a on 127.0.0.1:5432",
        "sqlite smoke -> sqlite /tmp/x/airflow.db",
    ]
