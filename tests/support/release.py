"""The released wheel's venv for tests: built once per test session and wheel (devtools.release_venv), in a folder
every xdist worker of the session shares, so tests/test_release.py and tests/e2e/test_readme_e2e.py pay one install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools import release_venv


def session_shared_dir(factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder common to every xdist worker (each worker's own is a subfolder of it)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def released_venv(wheel: Path, factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``wheel`` and Airflow 3.3, pinned by constraints/dev.txt, shared by the session's tests."""
    return release_venv.ensure(wheel, session_shared_dir(factory) / "release-venvs")
