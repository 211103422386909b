"""The one compiled module, optional: ``coordinator/core/_native.c`` (``core.canonical``'s reader in C).

Everything else is in pyproject.toml. The module is built wherever a C compiler and Python's headers are (an install
from the sdist, the watcher image, ``make test``'s venv) and skipped where they are not: ``optional`` makes a failed
build a warning, and ``core.canonical`` reads the same values in Python then. ``COORDINATOR_PURE_PYTHON=1`` builds
without it: the release's ``py3-none-any`` wheel, which every Airflow image installs (``make dist``).
"""

import os

from setuptools import Extension, setup

PURE = os.environ.get("COORDINATOR_PURE_PYTHON") == "1"

setup(
    ext_modules=[] if PURE else [Extension("coordinator.core._native", ["coordinator/core/_native.c"], optional=True)],
)
