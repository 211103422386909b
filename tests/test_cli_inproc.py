"""tests/support/cli_inproc.py: a command run in the test process leaves nothing behind for the next test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.support.cli_inproc import run_cli


def test_a_commands_logging_changes_do_not_silence_a_later_tests_caplog(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """doctor sets the coordinator logger to CRITICAL for its own run; after run_cli a warning of the plugin's logger
    still reaches caplog (before: every later test of the worker that asserted a coordinator warning failed)."""
    run_cli(["doctor", "--format", "json", "--etcd", "http://127.0.0.1:9", "--deps", str(tmp_path / "none.json")])
    with caplog.at_level(logging.WARNING):
        logging.getLogger("coordinator.airflow_plugin.writer").warning("still heard")
    assert "still heard" in caplog.text
    assert logging.getLogger("coordinator").level == logging.NOTSET


def test_the_environment_argv_and_working_directory_are_restored(tmp_path: Path) -> None:
    """env replaces the whole environment for the call only; sys.argv and the working directory come back."""
    import sys

    before_env, before_argv, before_cwd = dict(os.environ), list(sys.argv), Path.cwd()
    done = run_cli(["validate"], env={"COORDINATOR_DEPS": str(tmp_path / "missing.json")}, cwd=tmp_path)
    assert done.returncode == 2 and "missing.json" in done.stderr, done.stderr
    assert (dict(os.environ), sys.argv, Path.cwd()) == (before_env, before_argv, before_cwd)
