"""The Airflow 2 launcher's venv caching and environment, without installing or starting Airflow."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from devtools import airflow2_stack
from devtools.airflow2_stack import (
    AIRFLOW2_VERSION,
    CONSTRAINTS,
    REQUIREMENTS,
    Airflow2Stack,
    ensure_venv,
    fingerprint,
    users_create_argv,
)


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Venvs the code under test asked to build; the stand-in only creates ``bin/python``."""
    built: list[Path] = []

    def fake_install(venv: Path, constraints: Path | None) -> Path:
        built.append(venv)
        python = venv / "bin" / "python"
        python.parent.mkdir(parents=True, exist_ok=True)
        python.touch()
        return python

    monkeypatch.setattr(airflow2_stack, "_install", fake_install)
    return built


def test_the_committed_pins_hold_the_airflow_version_the_launcher_installs() -> None:
    """constraints/airflow2.txt pins apache-airflow to AIRFLOW2_VERSION (else pip would refuse the install) and pins
    every other requirement the launcher installs (the PostgreSQL driver), so the venv never floats."""
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    assert f"apache-airflow=={AIRFLOW2_VERSION}" in lines
    pinned = {line.split("==", 1)[0].lower() for line in lines if "==" in line}
    assert {requirement.split("==", 1)[0] for requirement in REQUIREMENTS} <= pinned
    assert not [line for line in lines if line.startswith("airflow-etcd-coordinator")], "the project must stay editable"


def test_a_venv_is_built_once_and_reused_while_its_pins_are_unchanged(tmp_path: Path, installs: list[Path]) -> None:
    """The first call builds the venv; later calls with the same pins reuse it without installing anything."""
    constraints = tmp_path / "pins.txt"
    constraints.write_text("apache-airflow==2.11.2\n", encoding="utf-8")
    venv = tmp_path / "venv"
    first = ensure_venv(venv, constraints)
    second = ensure_venv(venv, constraints)
    assert first == second == venv / "bin" / "python"
    assert installs == [venv]
    assert (venv / airflow2_stack.FINGERPRINT_FILE).read_text(encoding="utf-8") == fingerprint(constraints)


def test_changed_pins_or_a_half_built_venv_are_rebuilt(tmp_path: Path, installs: list[Path]) -> None:
    """A changed constraints file, or a venv without its fingerprint (an interrupted build), is built again."""
    constraints = tmp_path / "pins.txt"
    constraints.write_text("apache-airflow==2.11.2\n", encoding="utf-8")
    venv = tmp_path / "venv"
    ensure_venv(venv, constraints)
    constraints.write_text("apache-airflow==2.11.2\nflask==2.3.3\n", encoding="utf-8")
    ensure_venv(venv, constraints)
    (venv / airflow2_stack.FINGERPRINT_FILE).unlink()
    ensure_venv(venv, constraints)
    assert installs == [venv, venv, venv]


def test_a_changed_requirement_list_rebuilds_the_venv(
    tmp_path: Path, installs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requirement added to the launcher's install list (as the PostgreSQL driver was) rebuilds a current venv."""
    constraints = tmp_path / "pins.txt"
    constraints.write_text("apache-airflow==2.11.2\n", encoding="utf-8")
    venv = tmp_path / "venv"
    ensure_venv(venv, constraints)
    monkeypatch.setattr(airflow2_stack, "REQUIREMENTS", (*REQUIREMENTS, "some-driver"))
    ensure_venv(venv, constraints)
    assert installs == [venv, venv]


def test_the_environment_is_loopback_only_basic_auth_and_ignores_the_callers_airflow_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow 2 binds 127.0.0.1, serves REST v1 with basic auth, runs SequentialExecutor; inherited AIRFLOW__* go."""
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("COORDINATOR_PREFIX", "/leaked")
    stack = Airflow2Stack(home=tmp_path / "home", dags_folder=tmp_path, instance="af2", prefix="/p", port=8123)
    stack.home.mkdir()
    env = stack.environment()
    assert env["AIRFLOW__WEBSERVER__WEB_SERVER_HOST"] == "127.0.0.1"
    assert env["AIRFLOW__WEBSERVER__WEB_SERVER_PORT"] == "8123"
    assert env["AIRFLOW__API__AUTH_BACKENDS"].split(",")[0] == "airflow.api.auth.backend.basic_auth"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "SequentialExecutor"
    assert (env["COORDINATOR_INSTANCE"], env["COORDINATOR_PREFIX"]) == ("af2", "/p")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(stack.python).parent)
    assert stack.environment()["AIRFLOW__WEBSERVER__SECRET_KEY"] == env["AIRFLOW__WEBSERVER__SECRET_KEY"], "kept"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{stack.home}/airflow.db"
    assert stack.database == str(stack.home / "airflow.db")


def test_the_scheduler_finds_new_files_at_once_and_re_parses_unchanged_ones_only_every_300_s(tmp_path: Path) -> None:
    """Airflow 2's scheduler scans the DAG folder every 5 s, parses a changed file first (modified_time) and an
    unchanged one again only after 300 s, as the Airflow 3 launcher's dag-processor does."""
    (tmp_path / "home").mkdir()
    env = Airflow2Stack(home=tmp_path / "home", dags_folder=tmp_path).environment()
    assert env["AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL"] == "5"
    assert env["AIRFLOW__SCHEDULER__FILE_PARSING_SORT_MODE"] == "modified_time"
    assert env["AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL"] == "300"


def test_with_a_database_url_airflow2_keeps_its_metadata_there_and_runs_local_executor(tmp_path: Path) -> None:
    """Given a PostgreSQL URL, Airflow 2 connects to it (named by ``database``) and runs LocalExecutor."""
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow_af2_abc123"
    stack = Airflow2Stack(home=tmp_path / "home", dags_folder=tmp_path, database_url=url)
    stack.home.mkdir()
    env = stack.environment()
    assert (env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["AIRFLOW__CORE__EXECUTOR"]) == (url, "LocalExecutor")
    assert (stack.database, stack.database_file) == (url, None)


@pytest.mark.parametrize("password", ["-3xQ_secret", "--role", "plain"])
def test_the_admin_password_reaches_airflow_intact_even_when_it_begins_with_a_dash(password: str) -> None:
    """A generated password beginning with ``-`` is parsed as the password, not as an option (argparse, as Airflow)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("command", nargs=2)
    for option in ("username", "password", "role", "email", "firstname", "lastname"):
        parser.add_argument(f"--{option}", required=True)
    parsed = parser.parse_args(users_create_argv("admin", password))
    assert (parsed.command, parsed.username, parsed.password, parsed.role) == (
        ["users", "create"],
        "admin",
        password,
        "Admin",
    )
